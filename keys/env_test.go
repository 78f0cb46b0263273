package keys_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/agentpg/agentpg/internal/envelope/leaktest"
	"github.com/agentpg/agentpg/keys"
)

const envName = "AGENTPG_TEST_KEYS"

func TestFromEnv(t *testing.T) {
	k1, k2, k3 := testKey(0x11), testKey(0xfb), testKey(0xfe) // 0xfb.. encode with + / or - _
	cases := []struct {
		name, value, current string
		keys                 map[string][]byte
	}{
		{"one key", "k1:" + base64.StdEncoding.EncodeToString(k1), "k1", map[string][]byte{"k1": k1}},
		{"last is current", "k1:" + base64.StdEncoding.EncodeToString(k1) + ",k2:" + base64.StdEncoding.EncodeToString(k2),
			"k2", map[string][]byte{"k1": k1, "k2": k2}},
		{"url and raw base64, whitespace", " \tk1 : " + base64.RawStdEncoding.EncodeToString(k1) + " ,\n 2026-02_b :" +
			base64.URLEncoding.EncodeToString(k2) + ", k3:" + base64.RawURLEncoding.EncodeToString(k3) + "\n",
			"k3", map[string][]byte{"k1": k1, "2026-02_b": k2, "k3": k3}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(envName, c.value)
			p, err := keys.FromEnv(envName)
			if err != nil {
				t.Fatal(err)
			}
			if p.Current() != c.current {
				t.Errorf("Current = %q, want %q", p.Current(), c.current)
			}
			// Every key was read right: a provider built with Static from
			// the expected bytes unwraps what p wraps, and the reverse.
			for id, kek := range c.keys {
				want := newStatic(t, map[string][]byte{id: kek}, id)
				assertSameKey(t, want, p, id)
			}
		})
	}
}

// assertSameKey checks that from wraps under id what to unwraps.
func assertSameKey(t *testing.T, from, to keys.Provider, id string) {
	t.Helper()
	ctx := context.Background()
	dataKey := testKey(0x3c)
	w, err := from.Wrap(ctx, dataKey)
	if err != nil {
		t.Fatal(err)
	}
	got, err := to.Unwrap(ctx, id, w.Ciphertext)
	if err != nil || !bytes.Equal(got, dataKey) {
		t.Errorf("key %q differs: %v", id, err)
	}
}

func TestFromEnvInvalid(t *testing.T) {
	good := base64.StdEncoding.EncodeToString(testKey(0x21))
	short := testKey(0x22)[:16]
	secrets := [][]byte{testKey(0x21), short, testKey(0x23)}
	cases := []struct {
		name, value string
		want        error
		mentions    string
	}{
		{"empty", "", keys.ErrNoKeys, "AGENTPG_TEST_KEYS is empty"},
		{"blank", " \n\t", keys.ErrNoKeys, "is empty"},
		{"no id", good, keys.ErrInvalidKey, "entry 1: want id:base64"},
		{"empty id", ":" + good, keys.ErrInvalidKey, "entry 1: key id is malformed"},
		{"bad id", "k1:" + good + ",k 2:" + good, keys.ErrInvalidKey, "entry 2: key id is malformed"},
		{"key as id", good + ":" + good, keys.ErrInvalidKey, "entry 1: key id is malformed"},
		{"not base64", "k1:" + good + "!", keys.ErrInvalidKey, `entry 1: key "k1" is not valid base64`},
		{"mixed alphabets", "k1:+" + base64.RawURLEncoding.EncodeToString(testKey(0xfb))[1:], keys.ErrInvalidKey, "not valid base64"},
		{"short key", "k1:" + good + ",k2:" + base64.StdEncoding.EncodeToString(short), keys.ErrInvalidKey,
			`AGENTPG_TEST_KEYS: key "k2": 16 bytes, want 32`},
		{"empty key", "k1:", keys.ErrInvalidKey, `key "k1": 0 bytes`},
		{"empty entry", "k1:" + good + ",,k2:" + good, keys.ErrInvalidKey, "entry 2: want id:base64"},
		{"trailing comma", "k1:" + good + ",", keys.ErrInvalidKey, "entry 2"},
		{"duplicate id", "k1:" + good + ",k2:" + good + ",k1:" + base64.StdEncoding.EncodeToString(testKey(0x23)),
			keys.ErrInvalidKey, `entry 3: key id "k1" appears twice`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(envName, c.value)
			p, err := keys.FromEnv(envName)
			if !errors.Is(err, c.want) || p != nil {
				t.Fatalf("FromEnv = %v, %v; want nil, %v", p, err, c.want)
			}
			if !strings.Contains(err.Error(), c.mentions) {
				t.Errorf("error %q lacks %q", err, c.mentions)
			}
			leaktest.AssertNoSecret(t, "FromEnv error", err.Error(), secrets...)
			if strings.Contains(err.Error(), good) {
				t.Errorf("error shows the encoded key: %q", err)
			}
		})
	}
}

func TestFromEnvUnset(t *testing.T) {
	t.Setenv(envName, "") // restored after the test
	if err := os.Unsetenv(envName); err != nil {
		t.Fatal(err)
	}
	_, err := keys.FromEnv(envName)
	if !errors.Is(err, keys.ErrNoKeys) || !strings.Contains(err.Error(), "AGENTPG_TEST_KEYS is not set") {
		t.Errorf("unset variable: %v", err)
	}
}
