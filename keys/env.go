package keys

import (
	"encoding/base64"
	"fmt"
	"os"
	"strings"
)

// FromEnv returns a Static provider with the key-encryption keys in the
// environment variable name, written "id1:base64,id2:base64": entries
// separated by commas, each an id, a colon and the key in standard or URL
// base64 (padded or not). Whitespace around entries, ids and keys is
// ignored. The last entry is the current key: to rotate, append a new entry
// and keep the old ones until everything is re-wrapped.
//
// An unset or empty variable is an error wrapping ErrNoKeys; a malformed
// entry one wrapping ErrInvalidKey. Errors name the variable and the entry's
// position or id, never the key.
func FromEnv(name string) (Provider, error) {
	value, ok := os.LookupEnv(name)
	if !ok {
		return nil, fmt.Errorf("keys: environment variable %s is not set: %w", name, ErrNoKeys)
	}
	return parse(name, value)
}

// Parse returns a Static provider with the key-encryption keys of text,
// written as FromEnv's variable holds them: for a value read elsewhere
// than the process's environment, such as a secret store's.
func Parse(text string) (Provider, error) {
	return parse("the keys", text)
}

// parse reads the keys of value; name names it in errors.
func parse(name, value string) (Provider, error) {
	if strings.TrimSpace(value) == "" {
		return nil, fmt.Errorf("keys: %s is empty: %w", name, ErrNoKeys)
	}
	keks := map[string][]byte{}
	defer func() {
		for _, k := range keks {
			clear(k)
		}
	}()
	var current string
	for i, entry := range strings.Split(value, ",") {
		id, key, err := parseEntry(entry)
		if err != nil {
			return nil, fmt.Errorf("keys: %s entry %d: %w", name, i+1, err)
		}
		if _, dup := keks[id]; dup {
			return nil, fmt.Errorf("keys: %s entry %d: key id %q appears twice: %w", name, i+1, id, ErrInvalidKey)
		}
		keks[id], current = key, id
	}
	p, err := newStatic(keks, current)
	if err != nil {
		return nil, fmt.Errorf("keys: %s: %w", name, err)
	}
	return p, nil
}

// parseEntry splits "id:base64" and decodes the key. Its errors show the id
// only once it is known to be well formed.
func parseEntry(entry string) (id string, key []byte, err error) {
	id, encoded, ok := strings.Cut(strings.TrimSpace(entry), ":")
	if !ok {
		return "", nil, fmt.Errorf("want id:base64: %w", ErrInvalidKey)
	}
	id = strings.TrimSpace(id)
	if !validID(id) {
		return "", nil, fmt.Errorf("key id is malformed (want 1 to %d of A-Z a-z 0-9 . _ -): %w", maxIDLen, ErrInvalidKey)
	}
	key, err = decodeBase64(strings.TrimSpace(encoded))
	if err != nil {
		return "", nil, fmt.Errorf("key %q is not valid base64: %w", id, ErrInvalidKey)
	}
	return id, key, nil
}

// decodeBase64 decodes standard or URL base64, padded or not. The decoder's
// own error is dropped: the caller's message is enough.
func decodeBase64(s string) ([]byte, error) {
	enc := base64.RawStdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.RawURLEncoding
	}
	return enc.Strict().DecodeString(strings.TrimRight(s, "="))
}
