package envelope_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/agentpg/agentpg/internal/envelope"
	"github.com/agentpg/agentpg/internal/envelope/leaktest"
	"github.com/agentpg/agentpg/keys"
)

// randomKey returns a fresh random data key.
func randomKey() []byte {
	k := make([]byte, keys.KeySize)
	rand.Read(k)
	return k
}

// messageRow is a typical row identity.
var messageRow = envelope.Row{TenantID: "company-a", Table: "messages", Column: "content",
	Key: []string{"0195c4d2-7f4e-7c3b-9a1d-2f6e8b0c4a11", "7"}}

func TestSealOpen(t *testing.T) {
	key, aad := randomKey(), messageRow.AAD()
	for _, size := range []int{0, 1, 15, 16, 17, 1024, 64 << 10} {
		plaintext := bytes.Repeat([]byte("x"), size)
		sealed, err := envelope.Seal(key, plaintext, aad)
		if err != nil {
			t.Fatal(err)
		}
		if len(sealed) != size+envelope.Overhead || sealed[0] != 1 {
			t.Errorf("%d bytes sealed as %d bytes, version %d", size, len(sealed), sealed[0])
		}
		if size >= 16 && bytes.Contains(sealed, plaintext[:16]) {
			t.Errorf("sealed value holds the plaintext")
		}
		again, err := envelope.Seal(key, plaintext, aad)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(sealed[1:13], again[1:13]) {
			t.Errorf("two seals share a nonce")
		}
		got, err := envelope.Open(key, sealed, aad)
		if err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		if !bytes.Equal(got, plaintext) {
			t.Errorf("%d bytes: round trip changed the plaintext", size)
		}
	}
}

// TestOpenTampered changes, cuts and extends a sealed value at every
// position: each variant fails with ErrDecrypt, and no error shows the
// plaintext or the key.
func TestOpenTampered(t *testing.T) {
	key, aad := randomKey(), messageRow.AAD()
	plaintext := []byte("the user's secret marker 7f3a9c: a confidential conversation")
	sealed, err := envelope.Seal(key, plaintext, aad)
	if err != nil {
		t.Fatal(err)
	}
	var variants [][]byte
	for i := range sealed {
		for _, flip := range []byte{0x01, 0x80} {
			v := bytes.Clone(sealed)
			v[i] ^= flip
			variants = append(variants, v)
		}
		variants = append(variants, sealed[:i])
	}
	variants = append(variants, append(bytes.Clone(sealed), 0))
	for _, v := range variants {
		_, err := envelope.Open(key, v, aad)
		if !errors.Is(err, keys.ErrDecrypt) {
			t.Fatalf("tampered value %x: %v, want ErrDecrypt", v, err)
		}
		leaktest.AssertNoSecret(t, "open error", err.Error(), key, plaintext)
	}
}

// TestOpenMovedRow: a value opens only in the row it was sealed for.
func TestOpenMovedRow(t *testing.T) {
	key := randomKey()
	sealed, err := envelope.Seal(key, []byte(`{"text":"hello"}`), messageRow.AAD())
	if err != nil {
		t.Fatal(err)
	}
	with := func(edit func(r *envelope.Row)) envelope.Row {
		r := messageRow
		r.Key = append([]string(nil), messageRow.Key...)
		edit(&r)
		return r
	}
	for name, other := range map[string]envelope.Row{
		"other tenant":  with(func(r *envelope.Row) { r.TenantID = "company-b" }),
		"other table":   with(func(r *envelope.Row) { r.Table = "message_archive" }),
		"other column":  with(func(r *envelope.Row) { r.Column = "metadata" }),
		"other session": with(func(r *envelope.Row) { r.Key[0] = "0195c4d2-7f4e-7c3b-9a1d-2f6e8b0c4a12" }),
		"other seq":     with(func(r *envelope.Row) { r.Key[1] = "8" }),
		"shorter key":   with(func(r *envelope.Row) { r.Key = r.Key[:1] }),
		"longer key":    with(func(r *envelope.Row) { r.Key = append(r.Key, "") }),
	} {
		_, err := envelope.Open(key, sealed, other.AAD())
		if !errors.Is(err, keys.ErrDecrypt) || !strings.Contains(err.Error(), "moved") {
			t.Errorf("%s: %v, want ErrDecrypt saying the value may have moved", name, err)
		}
	}
}

func TestOpenWrongKey(t *testing.T) {
	aad := messageRow.AAD()
	sealed, err := envelope.Seal(randomKey(), []byte("hello"), aad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envelope.Open(randomKey(), sealed, aad); !errors.Is(err, keys.ErrDecrypt) {
		t.Errorf("another data key: %v, want ErrDecrypt", err)
	}
}

func TestUnknownFormat(t *testing.T) {
	key, aad := randomKey(), messageRow.AAD()
	sealed, err := envelope.Seal(key, []byte("hello"), aad)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []byte{0, 2, 255} {
		sealed[0] = v
		_, err := envelope.Open(key, sealed, aad)
		if !errors.Is(err, keys.ErrDecrypt) || !strings.Contains(err.Error(), fmt.Sprintf("unknown format %d", v)) {
			t.Errorf("format %d: %v", v, err)
		}
	}
}

func TestDataKeyLength(t *testing.T) {
	aad := messageRow.AAD()
	sealed, err := envelope.Seal(randomKey(), []byte("hello"), aad)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 16, 24, 31, 33, 64} {
		key := bytes.Repeat([]byte{0x5c}, n)
		_, err := envelope.Seal(key, []byte("hello"), aad)
		if !errors.Is(err, keys.ErrInvalidKey) {
			t.Errorf("Seal with a %d-byte key: %v, want ErrInvalidKey", n, err)
		}
		_, err = envelope.Open(key, sealed, aad)
		if !errors.Is(err, keys.ErrInvalidKey) {
			t.Errorf("Open with a %d-byte key: %v, want ErrInvalidKey", n, err)
		}
		if err != nil {
			leaktest.AssertNoSecret(t, "key length error", err.Error(), key)
		}
	}
}

func TestSealNeedsAAD(t *testing.T) {
	key := randomKey()
	for _, aad := range [][]byte{nil, {}} {
		if _, err := envelope.Seal(key, []byte("hello"), aad); !errors.Is(err, envelope.ErrNoAAD) {
			t.Errorf("Seal without AAD: %v, want ErrNoAAD", err)
		}
	}
	sealed, err := envelope.Seal(key, []byte("hello"), messageRow.AAD())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envelope.Open(key, sealed, nil); !errors.Is(err, envelope.ErrNoAAD) {
		t.Errorf("Open without AAD: %v, want ErrNoAAD", err)
	}
}

// TestSealOpenConcurrent shares one key between goroutines (run with -race).
func TestSealOpenConcurrent(t *testing.T) {
	key := randomKey()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				aad := envelope.Row{TenantID: "t", Table: "messages", Column: "content",
					Key: []string{fmt.Sprint(g), fmt.Sprint(i)}}.AAD()
				plaintext := fmt.Appendf(nil, "goroutine %d message %d", g, i)
				sealed, err := envelope.Seal(key, plaintext, aad)
				if err != nil {
					t.Error(err)
					return
				}
				if got, err := envelope.Open(key, sealed, aad); err != nil || !bytes.Equal(got, plaintext) {
					t.Errorf("goroutine %d, message %d: %q, %v", g, i, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkSeal(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("%dKB", size>>10), func(b *testing.B) {
			key, aad, plaintext := randomKey(), messageRow.AAD(), make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := envelope.Seal(key, plaintext, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("%dKB", size>>10), func(b *testing.B) {
			key, aad := randomKey(), messageRow.AAD()
			sealed, err := envelope.Seal(key, make([]byte, size), aad)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := envelope.Open(key, sealed, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
