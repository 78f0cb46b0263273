// Package envelope seals row content under per-tenant data keys: the
// encryption at rest that the store applies to message content, tool
// inputs and outputs, event payloads, summaries and metadata.
//
// A sealed value is
//
//	version (1 byte, 1) | nonce (12 bytes, random) | AES-256-GCM ciphertext | tag (16 bytes)
//
// The GCM key is not the data key itself but a row key derived from it with
// HKDF-Expand (SHA-256), the row's additional data (its [Row] identity) in
// the info. The data key is uniformly random, so it serves as HKDF's
// pseudorandom key as it is, without the Extract step (RFC 5869, 3.3).
// The same additional data is authenticated by GCM too. So a value moved to
// another row (another tenant, table, column or key) does not open, and the
// 2^32 limit of random 96-bit nonces applies per row, not per data key: a
// busy tenant never has to rotate its data key for nonce safety.
//
// Every failure to open (tampering, a moved value, the wrong key, an
// unknown format) wraps [keys.ErrDecrypt]; a key of the wrong length wraps
// [keys.ErrInvalidKey]. Errors never hold key material or plaintext.
//
// A [DataKey] is a data key with its version and wrapped form; a [Cache]
// keeps unwrapped data keys by tenant and version so that a provider (a KMS)
// is asked once per key, not once per row.
package envelope

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/agentpg/agentpg/keys"
)

const (
	// formatV1 is the version byte of the format above.
	formatV1 byte = 1
	// rowKeyLabel starts the HKDF info of format 1's row keys.
	rowKeyLabel = "agentpg/envelope/v1/row-key:"
	// Overhead is how many bytes Seal adds to a plaintext.
	Overhead = 1 + 12 + 16
)

// ErrNoAAD: Seal or Open was called without additional data. Every sealed
// value must be bound to its row; see [Row.AAD].
var ErrNoAAD = errors.New("envelope: no additional data (a sealed value must be bound to its row)")

// Seal encrypts plaintext under dataKey (keys.KeySize bytes), bound to aad,
// the [Row.AAD] of the row it is stored in.
func Seal(dataKey, plaintext, aad []byte) ([]byte, error) {
	aead, err := rowAEAD(dataKey, aad)
	if err != nil {
		return nil, fmt.Errorf("envelope: sealing: %w", err)
	}
	out := make([]byte, 1, Overhead+len(plaintext))
	out[0] = formatV1
	return aead.Seal(out, nil, plaintext, aad), nil
}

// Open decrypts a value sealed under dataKey with the same aad. Any change
// to sealed or aad, or another key, fails with an error wrapping
// keys.ErrDecrypt.
func Open(dataKey, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("envelope: opening: %d bytes is too short for a sealed value: %w", len(sealed), keys.ErrDecrypt)
	}
	if sealed[0] != formatV1 {
		return nil, fmt.Errorf("envelope: opening: unknown format %d: %w", sealed[0], keys.ErrDecrypt)
	}
	aead, err := rowAEAD(dataKey, aad)
	if err != nil {
		return nil, fmt.Errorf("envelope: opening: %w", err)
	}
	plaintext, err := aead.Open(nil, nil, sealed[1:], aad)
	if err != nil {
		return nil, fmt.Errorf("envelope: opening: %w", keys.ErrDecrypt)
	}
	return plaintext, nil
}

// rowAEAD returns AES-256-GCM with random nonces under the row key that
// HKDF-Expand derives from dataKey and aad.
func rowAEAD(dataKey, aad []byte) (cipher.AEAD, error) {
	if len(dataKey) != keys.KeySize {
		return nil, fmt.Errorf("data key of %d bytes, want %d: %w", len(dataKey), keys.KeySize, keys.ErrInvalidKey)
	}
	if len(aad) == 0 {
		return nil, ErrNoAAD
	}
	rowKey, err := hkdf.Expand(sha256.New, dataKey, rowKeyLabel+string(aad), keys.KeySize)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(rowKey)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}
