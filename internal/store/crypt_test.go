package store_test

import (
	"crypto/rand"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/internal/store"
	"github.com/agentpg/agentpg/keys"
)

// testKeys returns a provider with one random key-encryption key.
func testKeys(t *testing.T) keys.Provider {
	t.Helper()
	kek := make([]byte, keys.KeySize)
	rand.Read(kek)
	p, err := keys.Static(map[string][]byte{"kek-1": kek}, "kek-1")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Encryption switched on for a session stored in plaintext: new messages
// are sealed, old ones stay plaintext, and the history reads both, in
// order; a rotation then seals the old ones too.
func TestEncryptionSwitchedOnMidSession(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	plain, err := store.New(agentpgtest.DB(t), "")
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := plain.WithKeys(testKeys(t))
	if err != nil {
		t.Fatal(err)
	}
	sessionID := uuid.NewString()
	if _, err := plain.CreateSession(ctx, store.CreateSessionParams{ID: sessionID, TenantID: "acme", Identifier: "u",
		Metadata: json.RawMessage(`{"plan":"pro"}`)}); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i, st := range []*store.Store{plain, plain, sealed, sealed} {
		begun, err := st.BeginRun(ctx, store.BeginRunParams{TenantID: "acme", SessionID: sessionID, RunID: uuid.NewString(),
			Model: "m", LeaseTTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		content := json.RawMessage(`[{"type":"text","text":"turn ` + string(rune('0'+i)) + `"}]`)
		want = append(want, normalized(t, content))
		if _, err := st.CommitStep(ctx, begun.Lease, store.StepParams{Status: store.RunCompleted,
			Messages: []store.NewMessage{{ID: uuid.NewString(), Role: "user", Content: content}}}); err != nil {
			t.Fatalf("turn %d: %v", i, err)
		}
	}
	read := func() []string {
		msgs, err := sealed.History(ctx, "acme", sessionID, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range msgs {
			got = append(got, normalized(t, m.Content))
		}
		return got
	}
	if got := read(); !slices.Equal(got, want) {
		t.Fatalf("history %q, want %q", got, want)
	}
	if _, err := plain.History(ctx, "acme", sessionID, 0, nil); err == nil {
		t.Error("a store without keys read sealed messages")
	}
	keys, plaintext, err := sealed.DataKeys(ctx, "acme")
	// Sealed: 2 messages; plaintext: 2 messages and the session's metadata.
	if err != nil || len(keys) != 1 || keys[0].Rows != 2 || plaintext != 3 {
		t.Fatalf("data keys %+v, %d plaintext rows, %v; want 1 key", keys, plaintext, err)
	}
	r, err := sealed.BeginRotation(ctx, "acme")
	if err != nil || r.Version != 2 || r.Resumed {
		t.Fatalf("BeginRotation: %+v, %v", r, err)
	}
	for {
		n, err := sealed.ReencryptBatch(ctx, &r, 1)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	if got := read(); !slices.Equal(got, want) {
		t.Fatalf("history after the rotation %q, want %q", got, want)
	}
	keys, plaintext, err = sealed.DataKeys(ctx, "acme")
	if err != nil || keys[0].Rows != 0 || keys[1].Rows != 5 || plaintext != 0 {
		t.Fatalf("after the rotation: data keys %+v, %d plaintext rows, %v", keys, plaintext, err)
	}
	sess, err := sealed.GetSession(ctx, "acme", sessionID)
	if err != nil || normalized(t, sess.Metadata) != `{"plan":"pro"}` {
		t.Fatalf("session %+v, %v", sess, err)
	}
}

// normalized returns JSON re-encoded with sorted keys and no spaces, as
// jsonb and a sealed copy of the original bytes compare equal.
func normalized(t *testing.T, data json.RawMessage) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}
