package agentpg

import (
	"bytes"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on what callers pass in, checked before anything reaches the
// database; going over one is ErrInvalidArgument. They keep every key
// within what a PostgreSQL index can hold.
const (
	// MaxTenantIDBytes bounds a tenant id.
	MaxTenantIDBytes = 256
	// MaxIdentifierBytes bounds a session identifier.
	MaxIdentifierBytes = 1024
	// MaxMetadataBytes bounds a session's metadata, encoded as JSON.
	MaxMetadataBytes = 64 << 10
)

// validateTenant checks a tenant id: not blank, valid UTF-8 without control
// characters, at most MaxTenantIDBytes.
func validateTenant(tenantID string) error {
	return validateKey("tenant id", tenantID, MaxTenantIDBytes)
}

// validateIdentifier checks a session identifier like a tenant id, within
// MaxIdentifierBytes.
func validateIdentifier(identifier string) error {
	return validateKey("session identifier", identifier, MaxIdentifierBytes)
}

// validateSessionID checks a session id: required, and ErrSessionNotFound
// unless it is a well-formed id.
func validateSessionID(id string) error {
	if strings.TrimSpace(id) == "" {
		return fmt.Errorf("agentpg: %w: session id is required", ErrInvalidArgument)
	}
	if !validID(id) {
		return fmt.Errorf("agentpg: %w", ErrSessionNotFound)
	}
	return nil
}

// validateKey checks a caller's key: not blank, at most max bytes, valid
// UTF-8 without control characters (NUL included).
func validateKey(what, key string, max int) error {
	switch {
	case strings.TrimSpace(key) == "":
		return fmt.Errorf("agentpg: %w: %s is required", ErrInvalidArgument, what)
	case len(key) > max:
		return fmt.Errorf("agentpg: %w: %s is %d bytes, over the limit of %d", ErrInvalidArgument, what, len(key), max)
	case !utf8.ValidString(key):
		return fmt.Errorf("agentpg: %w: %s is not valid UTF-8", ErrInvalidArgument, what)
	case strings.ContainsFunc(key, unicode.IsControl):
		return fmt.Errorf("agentpg: %w: %s contains a control character", ErrInvalidArgument, what)
	}
	return nil
}

// validateText checks text that is stored as given, such as a prompt: not
// blank, at most max bytes, valid UTF-8 without NUL, which PostgreSQL cannot
// store.
func validateText(what, text string, max int) error {
	switch {
	case strings.TrimSpace(text) == "":
		return fmt.Errorf("agentpg: %w: %s is empty", ErrInvalidArgument, what)
	case len(text) > max:
		return fmt.Errorf("agentpg: %w: %s is %d bytes, over the limit of %d", ErrInvalidArgument, what, len(text), max)
	case !utf8.ValidString(text):
		return fmt.Errorf("agentpg: %w: %s is not valid UTF-8", ErrInvalidArgument, what)
	case strings.IndexByte(text, 0) >= 0:
		return fmt.Errorf("agentpg: %w: %s contains a NUL character", ErrInvalidArgument, what)
	}
	return nil
}

// validateJSONValue checks encoded JSON the caller gave, such as metadata:
// at most max bytes, and no \u0000, which jsonb cannot store.
func validateJSONValue(what string, encoded []byte, max int) error {
	switch {
	case len(encoded) > max:
		return fmt.Errorf("agentpg: %w: %s is %d bytes as JSON, over the limit of %d", ErrInvalidArgument, what, len(encoded), max)
	case hasNULEscape(encoded):
		return fmt.Errorf("agentpg: %w: %s contains a NUL character", ErrInvalidArgument, what)
	}
	return nil
}

// hasNULEscape reports whether JSON text holds the escape \u0000.
func hasNULEscape(encoded []byte) bool {
	_, n := storableJSON(bytes.Clone(encoded))
	return n > 0
}
