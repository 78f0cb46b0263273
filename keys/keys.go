// Package keys holds the key-encryption keys (KEKs) of AgentPG's encryption
// at rest.
//
// Content is encrypted under per-tenant data keys; a [Provider] wraps
// (encrypts) those data keys under a key-encryption key it keeps, and
// unwraps them again. Only wrapped data keys are stored in PostgreSQL, so a
// dump or a backup of the database alone reveals nothing. docs/encryption.md
// describes the whole scheme.
//
// [Static] keeps the KEKs in memory; [FromEnv] reads them from an
// environment variable such as AGENTPG_KEYS="k1:base64,k2:base64". A
// provider for a key management service (AWS KMS, Google Cloud KMS, Vault)
// implements the same three methods with its own calls.
//
// Rotating the KEK means giving the provider a new current id while keeping
// the old ones: data keys wrapped under an old id still unwrap, and are
// re-wrapped under the current one without touching the content they
// protect.
//
// Key material never appears in an error string, and printing a provider
// (fmt with any verb, slog) shows its key ids only.
package keys

import (
	"context"
	"errors"
	"fmt"
)

// KeySize is the size in bytes of every key: key-encryption keys and data
// keys are AES-256 keys.
const KeySize = 32

// Errors callers branch on with errors.Is. Their texts, and those of the
// errors that wrap them, never contain key material.
var (
	// ErrNoKeys: a provider was asked for with no key-encryption key at all
	// (an empty map, an unset or empty environment variable).
	ErrNoKeys = errors.New("no key-encryption keys")
	// ErrInvalidKey: a key is not KeySize bytes long, is not valid base64,
	// or its id is malformed or repeated.
	ErrInvalidKey = errors.New("invalid key")
	// ErrUnknownKey: the provider has no key-encryption key with that id
	// (it was removed before everything wrapped under it was re-wrapped).
	ErrUnknownKey = errors.New("unknown key-encryption key")
	// ErrDecrypt: a wrapped key or a ciphertext does not authenticate: it
	// was tampered with, moved to another row, or is opened with the wrong
	// key.
	ErrDecrypt = errors.New("decryption failed (tampered, moved or wrong key)")
)

// Provider wraps and unwraps data keys under key-encryption keys (KEKs)
// named by ids. There is one implementation per key store: [Static] for keys
// in memory, one per KMS. Methods take a context because a KMS call is a
// network call.
//
// Implementations must be safe for concurrent use, must return errors that
// wrap [ErrUnknownKey] for an id they do not have and [ErrDecrypt] for a
// wrapped key that does not authenticate, and must never put key material
// in an error.
type Provider interface {
	// Current returns the id of the KEK that Wrap uses.
	Current() string
	// Wrap encrypts dataKey, KeySize bytes, under the current KEK and
	// returns that KEK's id with the ciphertext.
	Wrap(ctx context.Context, dataKey []byte) (WrappedKey, error)
	// Unwrap decrypts a data key wrapped under the KEK kekID.
	Unwrap(ctx context.Context, kekID string, wrapped []byte) ([]byte, error)
}

// WrappedKey is a data key encrypted under a key-encryption key: what is
// stored in the database next to the data key's version.
type WrappedKey struct {
	// KEKID names the key-encryption key that wrapped the data key.
	KEKID string
	// Ciphertext is the wrapped data key, in the provider's format.
	Ciphertext []byte
}

// maxIDLen bounds the length of a key id.
const maxIDLen = 64

// validID reports whether id is a well-formed key id: 1 to 64 ASCII
// letters, digits, '.', '_' or '-'. Ids are printed in errors and written in
// AGENTPG_KEYS, so they cannot hold anything else.
func validID(id string) bool {
	if id == "" || len(id) > maxIDLen {
		return false
	}
	for _, c := range []byte(id) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// quoteID returns id quoted for an error message, or a placeholder when id
// is malformed: a malformed id may be a key pasted in the wrong place, or
// hostile text read from a row, and is never printed.
func quoteID(id string) string {
	if !validID(id) {
		return "(malformed id)"
	}
	return fmt.Sprintf("%q", id)
}
