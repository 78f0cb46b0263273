package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"testing"
)

// keys status shows the rows still in plaintext; keys rotate, with
// AGENTPG_KEYS, encrypts them (and refuses to run without it); every
// command then needs the keys to read the content back.
func TestKeys(t *testing.T) {
	t.Parallel()
	schema := migrated(t)
	agent, _ := testAgent(t, schema)
	session, err := agent.NewSession(t.Context(), "acme", "user-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := session.Run(t.Context(), "the secret plan"); err != nil {
		t.Fatal(err)
	}
	kek := make([]byte, 32)
	rand.Read(kek)
	withKeys := invocation{env: map[string]string{keysEnv: "kek-1:" + base64.StdEncoding.EncodeToString(kek)}}
	cli := func(inv invocation, args ...string) result {
		t.Helper()
		return inv.run(t, append(args, "--schema", schema)...)
	}

	res := cli(invocation{}, "keys", "status", "--tenant", "acme")
	wantCode(t, res, 0)
	wantContains(t, "keys status before any key", res.stdout, "acme    plaintext")
	res = cli(invocation{}, "keys", "rotate", "--tenant", "acme")
	wantCode(t, res, 2)
	wantContains(t, "keys rotate without keys", res.stderr, "AGENTPG_KEYS is not set")
	res = cli(withKeys, "keys", "rotate")
	wantCode(t, res, 2)
	wantContains(t, "keys rotate without a tenant", res.stderr, "give --tenant or --all")
	res = cli(invocation{env: map[string]string{keysEnv: "kek-1:c2hvcnQ="}}, "keys", "rotate", "--all")
	wantCode(t, res, 2)
	wantContains(t, "keys rotate with a short key", res.stderr, "AGENTPG_KEYS")

	res = cli(withKeys, "keys", "rotate", "--all")
	wantCode(t, res, 0)
	wantContains(t, "keys rotate --all", res.stdout, "rows re-encrypted", "acme: rotated (")
	res = cli(withKeys, "keys", "status", "--all", "--json")
	wantCode(t, res, 0)
	var statuses []struct {
		TenantID      string
		PlaintextRows int64
		Keys          []struct {
			Version int
			KEKID   string
			Rows    int64
		}
	}
	if err := json.Unmarshal([]byte(res.stdout), &statuses); err != nil || len(statuses) != 1 {
		t.Fatalf("keys status --json: %v\n%s", err, res.stdout)
	}
	st := statuses[0]
	// A rotation from plaintext makes version 1 (the tenant had no key)
	// and seals every row: the session, 2 messages, 2 run events at least.
	if st.TenantID != "acme" || st.PlaintextRows != 0 || len(st.Keys) != 1 || st.Keys[0].KEKID != "kek-1" || st.Keys[0].Rows < 5 {
		t.Fatalf("keys status after the rotation: %+v", st)
	}

	// A new key-encryption key: --rewrap-only re-wraps the data key under
	// it, and the old one is no longer needed.
	kek2 := make([]byte, 32)
	rand.Read(kek2)
	newEntry := "kek-2:" + base64.StdEncoding.EncodeToString(kek2)
	res = cli(invocation{env: map[string]string{keysEnv: withKeys.env[keysEnv] + "," + newEntry}}, "keys", "rotate", "--all", "--rewrap-only")
	wantCode(t, res, 0)
	wantContains(t, "keys rotate --rewrap-only", res.stdout, "acme: 1 data key re-wrapped.")
	withKeys = invocation{env: map[string]string{keysEnv: newEntry}}
	res = cli(withKeys, "keys", "status", "--tenant", "acme")
	wantCode(t, res, 0)
	wantContains(t, "keys status after the re-wrap", res.stdout, "kek-2")

	res = cli(withKeys, "sessions", "show", "--tenant", "acme", "--identifier", "user-1")
	wantCode(t, res, 0)
	wantContains(t, "sessions show with keys", res.stdout, "the secret plan")
	res = cli(invocation{}, "sessions", "show", "--tenant", "acme", "--identifier", "user-1")
	if res.code == 0 {
		t.Fatalf("sessions show without keys read encrypted content:\n%s", res.stdout)
	}
	wantContains(t, "sessions show without keys", res.stderr, "no keys are configured")
}
