package keys

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
)

// Format of a data key wrapped by Static: one version byte, then the
// 96-bit random nonce and the AES-256-GCM ciphertext and tag of the data key.
// The additional data is wrapLabel followed by the KEK id, so a wrapped key
// presented under another id does not open.
const (
	wrapVersion byte = 1
	wrapLabel        = "agentpg/keys/wrap/v1:"
	wrappedSize      = 1 + 12 + KeySize + 16
)

// static is the Provider that Static and FromEnv return. It keeps no copy
// of the raw keys: only their AES-GCM ciphers.
type static struct {
	current string
	ids     []string // sorted, for printing
	aeads   map[string]cipher.AEAD
}

// Static returns a Provider that keeps the key-encryption keys keks, by id,
// in memory, and wraps under keks[current]. Every key must be KeySize bytes
// (ErrInvalidKey otherwise) and every id 1 to 64 ASCII letters, digits, '.',
// '_' or '-'. Static keeps no reference to keks: the caller may zero the
// slices afterwards.
//
// Wrapping is AES-256-GCM with a random 96-bit nonce and the KEK id as
// additional data (see docs/encryption.md for why not AES-KW).
func Static(keks map[string][]byte, current string) (Provider, error) {
	p, err := newStatic(keks, current)
	if err != nil {
		return nil, fmt.Errorf("keys: Static: %w", err)
	}
	return p, nil
}

// newStatic builds the provider; its errors name key ids, never key bytes.
func newStatic(keks map[string][]byte, current string) (*static, error) {
	if len(keks) == 0 {
		return nil, ErrNoKeys
	}
	p := &static{current: current, ids: slices.Sorted(maps.Keys(keks)), aeads: make(map[string]cipher.AEAD, len(keks))}
	for _, id := range p.ids {
		if !validID(id) {
			return nil, fmt.Errorf("a key id is malformed (want 1 to %d of A-Z a-z 0-9 . _ -): %w", maxIDLen, ErrInvalidKey)
		}
		aead, err := newAEAD(keks[id])
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", id, err)
		}
		p.aeads[id] = aead
	}
	if _, ok := p.aeads[current]; !ok {
		return nil, fmt.Errorf("current key %s: %w", quoteID(current), ErrUnknownKey)
	}
	return p, nil
}

// newAEAD returns AES-256-GCM with random nonces under key.
func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("%d bytes, want %d: %w", len(key), KeySize, ErrInvalidKey)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}

// Current returns the id of the key-encryption key that Wrap uses.
func (p *static) Current() string { return p.current }

// Wrap encrypts dataKey under the current key-encryption key.
func (p *static) Wrap(ctx context.Context, dataKey []byte) (WrappedKey, error) {
	if err := ctx.Err(); err != nil {
		return WrappedKey{}, fmt.Errorf("keys: wrapping: %w", err)
	}
	if len(dataKey) != KeySize {
		return WrappedKey{}, fmt.Errorf("keys: wrapping: data key of %d bytes, want %d: %w", len(dataKey), KeySize, ErrInvalidKey)
	}
	out := make([]byte, 1, wrappedSize)
	out[0] = wrapVersion
	out = p.aeads[p.current].Seal(out, nil, dataKey, []byte(wrapLabel+p.current))
	return WrappedKey{KEKID: p.current, Ciphertext: out}, nil
}

// Unwrap decrypts a data key wrapped under the key-encryption key kekID.
func (p *static) Unwrap(ctx context.Context, kekID string, wrapped []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("keys: unwrapping: %w", err)
	}
	aead, ok := p.aeads[kekID]
	if !ok {
		return nil, fmt.Errorf("keys: unwrapping with key %s: %w", quoteID(kekID), ErrUnknownKey)
	}
	if len(wrapped) != wrappedSize || wrapped[0] != wrapVersion {
		return nil, fmt.Errorf("keys: unwrapping with key %q: not a wrapped key of format %d: %w", kekID, wrapVersion, ErrDecrypt)
	}
	dataKey, err := aead.Open(nil, nil, wrapped[1:], []byte(wrapLabel+kekID))
	if err != nil {
		return nil, fmt.Errorf("keys: unwrapping with key %q: %w", kekID, ErrDecrypt)
	}
	return dataKey, nil
}

// String describes the provider by its key ids; it never shows a key.
func (p *static) String() string {
	return fmt.Sprintf("keys.Static{current: %s, ids: [%s]}", p.current, strings.Join(p.ids, " "))
}

// GoString is String: %#v shows no key either.
func (p *static) GoString() string { return p.String() }

// Format prints String whatever the verb (%d, %x, %+v...), so no verb can
// reach the ciphers through reflection.
func (p *static) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, p.String()) }

// LogValue logs the provider's key ids, never its keys.
func (p *static) LogValue() slog.Value {
	return slog.GroupValue(slog.String("provider", "static"), slog.String("current", p.current),
		slog.Any("ids", p.ids))
}
