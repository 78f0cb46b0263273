package keys_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/agentpg/agentpg/internal/envelope/leaktest"
	"github.com/agentpg/agentpg/keys"
)

// testKey returns a KeySize key whose every byte is b.
func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, keys.KeySize) }

// newStatic returns a Static provider or fails the test.
func newStatic(t testing.TB, keks map[string][]byte, current string) keys.Provider {
	t.Helper()
	p, err := keys.Static(keks, current)
	if err != nil {
		t.Fatalf("Static: %v", err)
	}
	return p
}

func TestStaticWrapUnwrap(t *testing.T) {
	ctx := context.Background()
	p := newStatic(t, map[string][]byte{"k1": testKey(1), "k2": testKey(2)}, "k2")
	if p.Current() != "k2" {
		t.Fatalf("Current = %q, want k2", p.Current())
	}
	dataKey := testKey(0xd4)
	w, err := p.Wrap(ctx, dataKey)
	if err != nil {
		t.Fatal(err)
	}
	if w.KEKID != "k2" {
		t.Errorf("wrapped under %q, want the current k2", w.KEKID)
	}
	if bytes.Contains(w.Ciphertext, dataKey[:8]) {
		t.Errorf("wrapped key holds the data key in clear")
	}
	got, err := p.Unwrap(ctx, w.KEKID, w.Ciphertext)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, dataKey) {
		t.Errorf("Unwrap = %x, want %x", got, dataKey)
	}
	again, err := p.Wrap(ctx, dataKey)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(again.Ciphertext, w.Ciphertext) {
		t.Errorf("two wraps of one key are equal: the nonce is not random")
	}
}

// TestKEKRotation: a new current KEK wraps new keys, keys wrapped under the
// old one still unwrap, and once re-wrapped they no longer need it.
func TestKEKRotation(t *testing.T) {
	ctx := context.Background()
	dataKey := testKey(0x42)
	old, err := newStatic(t, map[string][]byte{"k1": testKey(1)}, "k1").Wrap(ctx, dataKey)
	if err != nil {
		t.Fatal(err)
	}

	rotated := newStatic(t, map[string][]byte{"k1": testKey(1), "k2": testKey(2)}, "k2")
	plain, err := rotated.Unwrap(ctx, old.KEKID, old.Ciphertext)
	if err != nil {
		t.Fatalf("a key wrapped before rotation: %v", err)
	}
	rewrapped, err := rotated.Wrap(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	if rewrapped.KEKID != "k2" {
		t.Fatalf("re-wrapped under %q, want k2", rewrapped.KEKID)
	}

	retired := newStatic(t, map[string][]byte{"k2": testKey(2)}, "k2")
	if _, err := retired.Unwrap(ctx, old.KEKID, old.Ciphertext); !errors.Is(err, keys.ErrUnknownKey) {
		t.Errorf("old wrapping after k1 is retired: %v, want ErrUnknownKey", err)
	}
	got, err := retired.Unwrap(ctx, rewrapped.KEKID, rewrapped.Ciphertext)
	if err != nil || !bytes.Equal(got, dataKey) {
		t.Errorf("re-wrapped key: %x, %v", got, err)
	}
}

func TestUnwrapWrongKEK(t *testing.T) {
	ctx := context.Background()
	p := newStatic(t, map[string][]byte{"k1": testKey(1), "k2": testKey(2)}, "k1")
	w, err := p.Wrap(ctx, testKey(9))
	if err != nil {
		t.Fatal(err)
	}
	// The same id with other key material (a misconfigured deployment).
	impostor := newStatic(t, map[string][]byte{"k1": testKey(3)}, "k1")
	if _, err := impostor.Unwrap(ctx, "k1", w.Ciphertext); !errors.Is(err, keys.ErrDecrypt) {
		t.Errorf("other key material under the same id: %v, want ErrDecrypt", err)
	}
	// Another id the provider has: the id is bound as additional data.
	if _, err := p.Unwrap(ctx, "k2", w.Ciphertext); !errors.Is(err, keys.ErrDecrypt) {
		t.Errorf("wrapped key presented under another id: %v, want ErrDecrypt", err)
	}
}

func TestUnwrapUnknownKEK(t *testing.T) {
	ctx := context.Background()
	secret := testKey(1)
	p := newStatic(t, map[string][]byte{"k1": secret}, "k1")
	w, err := p.Wrap(ctx, testKey(9))
	if err != nil {
		t.Fatal(err)
	}
	for id, shown := range map[string]string{"k0": `"k0"`, "K1": `"K1"`, "": "(malformed id)",
		"k1 ": "(malformed id)", strings.Repeat("k", 65): "(malformed id)",
		"k1\nlevel=ERROR forged": "(malformed id)", base64.StdEncoding.EncodeToString(secret): "(malformed id)"} {
		_, err := p.Unwrap(ctx, id, w.Ciphertext)
		if !errors.Is(err, keys.ErrUnknownKey) {
			t.Errorf("Unwrap(%q): %v, want ErrUnknownKey", id, err)
			continue
		}
		if !strings.Contains(err.Error(), "key "+shown+":") {
			t.Errorf("Unwrap(%q): error %q should name the id as %s", id, err, shown)
		}
		leaktest.AssertNoSecret(t, "unknown id error", err.Error(), secret)
	}
}

// TestUnwrapTampered changes, cuts and extends the wrapped key at every
// position: each variant fails with ErrDecrypt.
func TestUnwrapTampered(t *testing.T) {
	ctx := context.Background()
	kek, dataKey := testKey(1), testKey(0x5a)
	p := newStatic(t, map[string][]byte{"k1": kek}, "k1")
	w, err := p.Wrap(ctx, dataKey)
	if err != nil {
		t.Fatal(err)
	}
	var variants [][]byte
	for i := range w.Ciphertext {
		for _, flip := range []byte{0x01, 0x80} {
			v := bytes.Clone(w.Ciphertext)
			v[i] ^= flip
			variants = append(variants, v)
		}
		variants = append(variants, w.Ciphertext[:i])
	}
	variants = append(variants, append(bytes.Clone(w.Ciphertext), 0), nil)
	for _, v := range variants {
		_, err := p.Unwrap(ctx, "k1", v)
		if !errors.Is(err, keys.ErrDecrypt) {
			t.Fatalf("tampered wrapped key %x: %v, want ErrDecrypt", v, err)
		}
		leaktest.AssertNoSecret(t, "decrypt error", err.Error(), kek, dataKey)
	}
}

func TestWrapInvalidDataKey(t *testing.T) {
	p := newStatic(t, map[string][]byte{"k1": testKey(1)}, "k1")
	for _, n := range []int{0, 1, 16, 31, 33, 64} {
		dataKey := bytes.Repeat([]byte{0x77}, n)
		_, err := p.Wrap(context.Background(), dataKey)
		if !errors.Is(err, keys.ErrInvalidKey) {
			t.Errorf("data key of %d bytes: %v, want ErrInvalidKey", n, err)
			continue
		}
		leaktest.AssertNoSecret(t, "invalid data key error", err.Error(), dataKey)
	}
}

func TestStaticInvalid(t *testing.T) {
	good := testKey(1)
	short := bytes.Repeat([]byte{0x33}, 16)
	long := bytes.Repeat([]byte{0x44}, 33)
	cases := []struct {
		name     string
		keks     map[string][]byte
		current  string
		want     error
		mentions string
	}{
		{"nil map", nil, "k1", keys.ErrNoKeys, ""},
		{"empty map", map[string][]byte{}, "k1", keys.ErrNoKeys, ""},
		{"short key", map[string][]byte{"k1": good, "k2": short}, "k1", keys.ErrInvalidKey, `"k2"`},
		{"long key", map[string][]byte{"k1": long}, "k1", keys.ErrInvalidKey, `"k1"`},
		{"nil key", map[string][]byte{"k1": nil}, "k1", keys.ErrInvalidKey, "0 bytes"},
		{"empty id", map[string][]byte{"": good}, "", keys.ErrInvalidKey, "malformed"},
		{"id with a colon", map[string][]byte{"a:b": good}, "a:b", keys.ErrInvalidKey, "malformed"},
		{"id too long", map[string][]byte{strings.Repeat("x", 65): good}, "k1", keys.ErrInvalidKey, "malformed"},
		{"current missing", map[string][]byte{"k1": good}, "k2", keys.ErrUnknownKey, `"k2"`},
		{"current empty", map[string][]byte{"k1": good}, "", keys.ErrUnknownKey, "current"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := keys.Static(c.keks, c.current)
			if !errors.Is(err, c.want) || p != nil {
				t.Fatalf("Static = %v, %v; want nil, %v", p, err, c.want)
			}
			if !strings.HasPrefix(err.Error(), "keys: Static: ") || !strings.Contains(err.Error(), c.mentions) {
				t.Errorf("error %q lacks context %q", err, c.mentions)
			}
			leaktest.AssertNoSecret(t, "Static error", err.Error(), good, short, long)
		})
	}
}

// TestStaticCurrentNotPrintedWhenMalformed: a key passed by mistake as the
// current id is not echoed.
func TestStaticCurrentNotPrintedWhenMalformed(t *testing.T) {
	kek := testKey(1)
	mistake := base64.StdEncoding.EncodeToString(kek)
	_, err := keys.Static(map[string][]byte{"k1": kek}, mistake)
	if !errors.Is(err, keys.ErrUnknownKey) {
		t.Fatalf("err = %v, want ErrUnknownKey", err)
	}
	leaktest.AssertNoSecret(t, "Static error", err.Error(), kek)
}

// TestStaticCopiesKeys: zeroing the caller's slices changes nothing.
func TestStaticCopiesKeys(t *testing.T) {
	ctx := context.Background()
	kek := testKey(7)
	p := newStatic(t, map[string][]byte{"k1": kek}, "k1")
	clear(kek)
	w, err := p.Wrap(ctx, testKey(9))
	if err != nil {
		t.Fatal(err)
	}
	// A provider built from the original bytes opens it: p used them, not
	// the zeroed slice.
	if _, err := newStatic(t, map[string][]byte{"k1": testKey(7)}, "k1").Unwrap(ctx, "k1", w.Ciphertext); err != nil {
		t.Errorf("wrapped after the caller zeroed its key: %v", err)
	}
	if _, err := newStatic(t, map[string][]byte{"k1": kek}, "k1").Unwrap(ctx, "k1", w.Ciphertext); !errors.Is(err, keys.ErrDecrypt) {
		t.Errorf("opened by the zero key: %v", err)
	}
}

func TestStaticHonoursContext(t *testing.T) {
	p := newStatic(t, map[string][]byte{"k1": testKey(1)}, "k1")
	w, err := p.Wrap(context.Background(), testKey(2))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Wrap(ctx, testKey(2)); !errors.Is(err, context.Canceled) {
		t.Errorf("Wrap with a cancelled context: %v", err)
	}
	if _, err := p.Unwrap(ctx, w.KEKID, w.Ciphertext); !errors.Is(err, context.Canceled) {
		t.Errorf("Unwrap with a cancelled context: %v", err)
	}
}

// TestProviderHidesKeys prints a provider every way a program might.
func TestProviderHidesKeys(t *testing.T) {
	k1, k2 := make([]byte, keys.KeySize), make([]byte, keys.KeySize)
	rand.Read(k1)
	rand.Read(k2)
	p := newStatic(t, map[string][]byte{"old": k1, "new": k2}, "new")
	type config struct {
		Keys  keys.Provider
		inner keys.Provider
	}
	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%t", "%e", "%T %p"} {
		outputs = append(outputs, fmt.Sprintf(verb, p), fmt.Sprintf(verb, config{p, p}), fmt.Sprintf(verb, &config{p, p}))
	}
	outputs = append(outputs, fmt.Sprint(p), fmt.Sprintln([]keys.Provider{p}))
	if j, err := json.Marshal(config{Keys: p}); err == nil {
		outputs = append(outputs, string(j))
	}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("text", "keys", p, "cfg", config{p, p})
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("json", "keys", p)
	outputs = append(outputs, logs.String())
	for _, out := range outputs {
		leaktest.AssertNoSecret(t, "formatted provider", out, k1, k2)
	}
	if s := fmt.Sprint(p); s != "keys.Static{current: new, ids: [new old]}" {
		t.Errorf("fmt.Sprint(provider) = %q", s)
	}
	if !strings.Contains(logs.String(), "keys.current=new") || !strings.Contains(logs.String(), `"current":"new"`) {
		t.Errorf("logs lack the current id: %s", logs.String())
	}
}

// TestConcurrentUse wraps and unwraps from many goroutines (run with -race).
func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	p := newStatic(t, map[string][]byte{"k1": testKey(1), "k2": testKey(2)}, "k2")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				dataKey := testKey(byte(g*200 + i))
				w, err := p.Wrap(ctx, dataKey)
				if err != nil {
					t.Error(err)
					return
				}
				if got, err := p.Unwrap(ctx, w.KEKID, w.Ciphertext); err != nil || !bytes.Equal(got, dataKey) {
					t.Errorf("goroutine %d, key %d: %x, %v", g, i, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
