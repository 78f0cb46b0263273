package keys_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log"
	"os"

	"github.com/agentpg/agentpg/keys"
)

// Static keeps key-encryption keys in memory. Keys come from a secret store
// in production; here they are fixed so the output is stable.
func ExampleStatic() {
	ctx := context.Background()
	provider, err := keys.Static(map[string][]byte{
		"2026-01": bytes.Repeat([]byte{1}, keys.KeySize),
		"2026-07": bytes.Repeat([]byte{2}, keys.KeySize),
	}, "2026-07")
	if err != nil {
		log.Fatal(err)
	}

	// A data key, as the store makes one per tenant and version.
	dataKey := make([]byte, keys.KeySize)
	rand.Read(dataKey)
	wrapped, err := provider.Wrap(ctx, dataKey)
	if err != nil {
		log.Fatal(err)
	}
	// Only wrapped.KEKID and wrapped.Ciphertext are stored.
	unwrapped, err := provider.Unwrap(ctx, wrapped.KEKID, wrapped.Ciphertext)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("wrapped under:", wrapped.KEKID)
	fmt.Println("round trip:", bytes.Equal(unwrapped, dataKey))
	fmt.Println(provider) // ids only, never keys
	// Output:
	// wrapped under: 2026-07
	// round trip: true
	// keys.Static{current: 2026-07, ids: [2026-01 2026-07]}
}

// FromEnv reads "id:base64" entries; the last one is current. Generate a key
// with `head -c 32 /dev/urandom | base64`.
func ExampleFromEnv() {
	old := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, keys.KeySize))
	current := base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{2}, keys.KeySize))
	os.Setenv("AGENTPG_KEYS", "k1:"+old+", k2:"+current)
	defer os.Unsetenv("AGENTPG_KEYS")

	provider, err := keys.FromEnv("AGENTPG_KEYS")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("current:", provider.Current())

	// A mistake names the variable and the entry, never the key.
	os.Setenv("AGENTPG_KEYS", "k1:"+old+", k2:"+current[:20])
	_, err = keys.FromEnv("AGENTPG_KEYS")
	fmt.Println(err)
	// Output:
	// current: k2
	// keys: AGENTPG_KEYS: key "k2": 15 bytes, want 32: invalid key
}
