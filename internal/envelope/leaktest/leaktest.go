// Package leaktest checks, in tests, that text shows no secret.
package leaktest

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

// AssertNoSecret fails t if s holds any of the secrets: raw, in hex, in
// base64, as fmt prints a byte slice, or as the decimal first word that a
// reflected AES key schedule would show. Secrets under 8 bytes are too short
// to search for and are skipped.
func AssertNoSecret(t testing.TB, what, s string, secrets ...[]byte) {
	t.Helper()
	for _, secret := range secrets {
		if len(secret) < 8 {
			continue
		}
		for _, form := range []string{string(secret), hex.EncodeToString(secret),
			base64.StdEncoding.EncodeToString(secret), base64.RawURLEncoding.EncodeToString(secret),
			fmt.Sprint(secret), fmt.Sprintf("%#v", secret), fmt.Sprint(binary.BigEndian.Uint32(secret))} {
			if strings.Contains(s, form) {
				t.Errorf("%s shows a secret: %q", what, s)
				return
			}
		}
	}
}
