package envelope

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"

	"github.com/agentpg/agentpg/keys"
)

// DataKey is one version of a tenant's data key: the key itself, which
// never leaves the process, and its wrapped form, which is what the store
// keeps. A DataKey is immutable and safe for concurrent use. Printing it
// (fmt with any verb, slog) shows its version and KEK id only.
type DataKey struct {
	version int
	wrapped keys.WrappedKey
	key     *secret
}

// secret holds a data key two pointers away from any DataKey value. fmt,
// even when it reaches a DataKey by reflection with a verb that does not
// fit (as for an unexported field printed with %s), follows one pointer at
// most and prints the next as an address.
type secret struct{ bytes *[keys.KeySize]byte }

// newSecret copies key, keys.KeySize bytes, into a secret.
func newSecret(key []byte) *secret { return &secret{bytes: (*[keys.KeySize]byte)(bytes.Clone(key))} }

// NewDataKey makes a random data key with the given version (1 or more)
// and wraps it under the provider's current key-encryption key.
func NewDataKey(ctx context.Context, p keys.Provider, version int) (*DataKey, error) {
	if err := checkVersion(version); err != nil {
		return nil, err
	}
	var key [keys.KeySize]byte
	rand.Read(key[:]) // never fails since Go 1.24
	wrapped, err := p.Wrap(ctx, key[:])
	if err != nil {
		return nil, fmt.Errorf("envelope: wrapping data key %d: %w", version, err)
	}
	return &DataKey{version: version, wrapped: wrapped, key: &secret{bytes: &key}}, nil
}

// UnwrapDataKey unwraps a stored data key with the provider.
func UnwrapDataKey(ctx context.Context, p keys.Provider, version int, wrapped keys.WrappedKey) (*DataKey, error) {
	if err := checkVersion(version); err != nil {
		return nil, err
	}
	key, err := p.Unwrap(ctx, wrapped.KEKID, wrapped.Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("envelope: unwrapping data key %d: %w", version, err)
	}
	if len(key) != keys.KeySize {
		return nil, fmt.Errorf("envelope: unwrapping data key %d: %d bytes, want %d: %w", version, len(key), keys.KeySize, keys.ErrInvalidKey)
	}
	defer clear(key)
	return &DataKey{version: version, wrapped: cloneWrapped(wrapped), key: newSecret(key)}, nil
}

// checkVersion refuses versions below 1.
func checkVersion(version int) error {
	if version < 1 {
		return fmt.Errorf("envelope: data key version %d, want 1 or more: %w", version, keys.ErrInvalidKey)
	}
	return nil
}

// cloneWrapped copies w, so that neither the caller nor a DataKey can
// change the other's ciphertext.
func cloneWrapped(w keys.WrappedKey) keys.WrappedKey {
	return keys.WrappedKey{KEKID: w.KEKID, Ciphertext: bytes.Clone(w.Ciphertext)}
}

// Version returns the key's version within its tenant.
func (k *DataKey) Version() int { return k.version }

// Wrapped returns (a copy of) the wrapped form to store.
func (k *DataKey) Wrapped() keys.WrappedKey { return cloneWrapped(k.wrapped) }

// Rewrap returns the same data key, same version, wrapped under the
// provider's current key-encryption key: rotating a KEK re-wraps data keys
// and touches no content.
func (k *DataKey) Rewrap(ctx context.Context, p keys.Provider) (*DataKey, error) {
	wrapped, err := p.Wrap(ctx, k.key.bytes[:])
	if err != nil {
		return nil, fmt.Errorf("envelope: re-wrapping data key %d: %w", k.version, err)
	}
	return &DataKey{version: k.version, wrapped: wrapped, key: k.key}, nil
}

// Seal is [Seal] under this key.
func (k *DataKey) Seal(plaintext, aad []byte) ([]byte, error) {
	return Seal(k.key.bytes[:], plaintext, aad)
}

// Open is [Open] under this key.
func (k *DataKey) Open(sealed, aad []byte) ([]byte, error) { return Open(k.key.bytes[:], sealed, aad) }

// String describes the key by version and KEK id; it never shows the key.
func (k *DataKey) String() string {
	return fmt.Sprintf("envelope.DataKey{version: %d, kek: %s}", k.version, k.wrapped.KEKID)
}

// GoString is String: %#v shows no key either.
func (k *DataKey) GoString() string { return k.String() }

// Format prints String whatever the verb, so no verb reaches the key
// through reflection.
func (k *DataKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// LogValue logs the version and KEK id, never the key.
func (k *DataKey) LogValue() slog.Value {
	return slog.GroupValue(slog.Int("version", k.version), slog.String("kek", k.wrapped.KEKID))
}
