package envelope_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/agentpg/agentpg/internal/envelope"
	"github.com/agentpg/agentpg/internal/envelope/leaktest"
	"github.com/agentpg/agentpg/keys"
)

// kek returns a KeySize key-encryption key whose every byte is b.
func kek(b byte) []byte { return bytes.Repeat([]byte{b}, keys.KeySize) }

// provider returns a Static provider of the keks, the last id current.
func provider(t testing.TB, ids ...string) keys.Provider {
	t.Helper()
	keks := map[string][]byte{}
	for i, id := range ids {
		keks[id] = kek(byte(i + 1))
	}
	p, err := keys.Static(keks, ids[len(ids)-1])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDataKeyLifecycle: a key made in one process opens, unwrapped in
// another, what the first sealed; KEK rotation re-wraps it without changing
// it.
func TestDataKeyLifecycle(t *testing.T) {
	ctx := context.Background()
	aad := messageRow.AAD()
	made, err := envelope.NewDataKey(ctx, provider(t, "k1"), 3)
	if err != nil {
		t.Fatal(err)
	}
	if made.Version() != 3 || made.Wrapped().KEKID != "k1" {
		t.Fatalf("made %v", made)
	}
	sealed, err := made.Seal([]byte("hello"), aad)
	if err != nil {
		t.Fatal(err)
	}

	rotated := provider(t, "k1", "k2")
	loaded, err := envelope.UnwrapDataKey(ctx, rotated, 3, made.Wrapped())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := loaded.Open(sealed, aad); err != nil || string(got) != "hello" {
		t.Fatalf("unwrapped key opens %q, %v", got, err)
	}
	rewrapped, err := loaded.Rewrap(ctx, rotated)
	if err != nil {
		t.Fatal(err)
	}
	if rewrapped.Version() != 3 || rewrapped.Wrapped().KEKID != "k2" {
		t.Fatalf("re-wrapped %v", rewrapped)
	}

	// Once every key is re-wrapped, k1 can go.
	retired, err := keys.Static(map[string][]byte{"k2": kek(2)}, "k2")
	if err != nil {
		t.Fatal(err)
	}
	again, err := envelope.UnwrapDataKey(ctx, retired, 3, rewrapped.Wrapped())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := again.Open(sealed, aad); err != nil || string(got) != "hello" {
		t.Errorf("key re-wrapped under k2 opens %q, %v", got, err)
	}
	if _, err := envelope.UnwrapDataKey(ctx, retired, 3, made.Wrapped()); !errors.Is(err, keys.ErrUnknownKey) {
		t.Errorf("key wrapped under the retired k1: %v, want ErrUnknownKey", err)
	}
}

func TestUnwrapDataKeyErrors(t *testing.T) {
	ctx := context.Background()
	p := provider(t, "k1")
	dk, err := envelope.NewDataKey(ctx, p, 1)
	if err != nil {
		t.Fatal(err)
	}
	w := dk.Wrapped()
	w.Ciphertext[len(w.Ciphertext)-1] ^= 1
	if _, err := envelope.UnwrapDataKey(ctx, p, 1, w); !errors.Is(err, keys.ErrDecrypt) {
		t.Errorf("tampered wrapped key: %v, want ErrDecrypt", err)
	}
	if _, err := envelope.UnwrapDataKey(ctx, p, 1, keys.WrappedKey{KEKID: "k9", Ciphertext: dk.Wrapped().Ciphertext}); !errors.Is(err, keys.ErrUnknownKey) {
		t.Errorf("unknown KEK: %v, want ErrUnknownKey", err)
	}
	for _, v := range []int{0, -1} {
		if _, err := envelope.NewDataKey(ctx, p, v); !errors.Is(err, keys.ErrInvalidKey) {
			t.Errorf("NewDataKey version %d: %v", v, err)
		}
		if _, err := envelope.UnwrapDataKey(ctx, p, v, dk.Wrapped()); !errors.Is(err, keys.ErrInvalidKey) {
			t.Errorf("UnwrapDataKey version %d: %v", v, err)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := envelope.NewDataKey(cancelled, p, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("NewDataKey with a cancelled context: %v", err)
	}
}

// TestDataKeyWrappedIsACopy: changing what Wrapped returned, or what
// UnwrapDataKey was given, does not change the key's wrapped form.
func TestDataKeyWrappedIsACopy(t *testing.T) {
	ctx := context.Background()
	p := provider(t, "k1")
	dk, err := envelope.NewDataKey(ctx, p, 1)
	if err != nil {
		t.Fatal(err)
	}
	given := dk.Wrapped()
	loaded, err := envelope.UnwrapDataKey(ctx, p, 1, given)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(given.Ciphertext)
	clear(given.Ciphertext)
	out := loaded.Wrapped()
	clear(out.Ciphertext)
	if !bytes.Equal(loaded.Wrapped().Ciphertext, want) || !bytes.Equal(dk.Wrapped().Ciphertext, want) {
		t.Errorf("the wrapped form changed with the caller's slice")
	}
}

// TestDataKeyHidesKey prints a DataKey every way a program might; the key
// shows nowhere. The key is recovered by unwrapping, to search for it.
func TestDataKeyHidesKey(t *testing.T) {
	ctx := context.Background()
	p := provider(t, "k1")
	dk, err := envelope.NewDataKey(ctx, p, 2)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := p.Unwrap(ctx, dk.Wrapped().KEKID, dk.Wrapped().Ciphertext)
	if err != nil {
		t.Fatal(err)
	}
	type holder struct {
		Key   *envelope.DataKey
		inner *envelope.DataKey
	}
	var outputs []string
	type valueHolder struct{ inner envelope.DataKey }
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d", "%t", "%e"} {
		outputs = append(outputs, fmt.Sprintf(verb, dk), fmt.Sprintf(verb, holder{dk, dk}),
			fmt.Sprintf(verb, *dk), fmt.Sprintf(verb, valueHolder{*dk}), fmt.Sprintf(verb, []any{dk}))
	}
	j, err := json.Marshal(holder{Key: dk})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("key", "dk", dk, "h", holder{dk, dk})
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("key", "dk", dk)
	outputs = append(outputs, string(j), logs.String())
	for _, out := range outputs {
		leaktest.AssertNoSecret(t, "formatted data key", out, raw)
	}
	if s := fmt.Sprint(dk); s != "envelope.DataKey{version: 2, kek: k1}" {
		t.Errorf("fmt.Sprint(data key) = %q", s)
	}
	if !strings.Contains(logs.String(), "dk.version=2 dk.kek=k1") {
		t.Errorf("log lacks version and kek: %s", logs.String())
	}
}
