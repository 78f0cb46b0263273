package agentpg_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/keys"
)

// testKeys returns a provider with one random key-encryption key.
func testKeys(t testing.TB) keys.Provider {
	_, p := testKeysEnv(t, "kek-1")
	return p
}

// testKeysEnv returns a random key-encryption key for each id, the last
// current, as AGENTPG_KEYS would hold them, and their provider.
func testKeysEnv(t testing.TB, ids ...string) (string, keys.Provider) {
	t.Helper()
	var entries []string
	for _, id := range ids {
		entries = append(entries, id+":"+base64.StdEncoding.EncodeToString(randomKey()))
	}
	env := strings.Join(entries, ",")
	p, err := keys.Parse(env)
	if err != nil {
		t.Fatal(err)
	}
	return env, p
}

func randomKey() []byte {
	k := make([]byte, keys.KeySize)
	rand.Read(k)
	return k
}

// encrypted is erasureSetup with content encrypted at rest.
func encrypted(t *testing.T, p keys.Provider) *bundle {
	return erasureSetupWith(t, func(c *agentpg.Config) { c.Keys = p })
}

// readAll returns, decrypted through the Agent, everything the session
// stores: its metadata, messages, archive, and its runs' tool calls and
// events.
func readAll(t *testing.T, a *agentpg.Agent, tenantID, sessionID string) (string, error) {
	t.Helper()
	sess, err := a.LoadSession(ctx(t), tenantID, sessionID)
	if err != nil {
		return "", err
	}
	var all strings.Builder
	meta, _ := json.Marshal(sess.Metadata)
	all.Write(meta)
	msgs, err := sess.Messages(ctx(t), agentpg.ListOptions{Limit: agentpg.MaxPageSize})
	if err != nil {
		return "", err
	}
	for _, m := range msgs.Items {
		content, _ := json.Marshal(m.Content)
		all.Write(content)
	}
	archive, err := sess.Archive(ctx(t), agentpg.ListOptions{Limit: agentpg.MaxPageSize})
	if err != nil {
		return "", err
	}
	for _, m := range archive.Items {
		content, _ := json.Marshal(m.Content)
		all.Write(content)
	}
	runs, err := sess.Runs(ctx(t), agentpg.ListOptions{Limit: agentpg.MaxPageSize})
	if err != nil {
		return "", err
	}
	for _, r := range runs.Items {
		if r.Status == "queued" { // no events yet, and RunEvents would wait for them
			continue
		}
		calls, err := sess.ToolCalls(ctx(t), r.ID)
		if err != nil {
			return "", err
		}
		for _, c := range calls {
			fmt.Fprintf(&all, "%s %s %s", c.Input, c.Output, c.DecisionNote)
		}
		for e, err := range a.RunEvents(ctx(t), tenantID, r.ID, 0) {
			if err != nil {
				return "", err
			}
			fmt.Fprintf(&all, "%s %s", e.Text, e.Input)
		}
	}
	return all.String(), nil
}

// pgDump returns pg_dump's dump of the bundle's database.
func pgDump(t *testing.T, b *bundle) string {
	t.Helper()
	out, err := exec.CommandContext(ctx(t), "pg_dump", "--dbname", b.db.Config().ConnString()).Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	if !bytes.Contains(out, []byte("CREATE TABLE agentpg.messages")) {
		t.Fatalf("pg_dump's output has no messages table:\n%.500s", out)
	}
	return string(out)
}

// With Config.Keys, a marker written through every path that stores
// content (metadata, prompts, answers, a nested agent's task and answer as
// tool input and output, events, a summary, the archive, a queued run's
// prompt) never appears in pg_dump's output, and reads back through the
// Agent. Without keys the same dump holds it: the test can see a leak.
func TestEncryptionKeepsContentOutOfTheDump(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprintf("keys=%v", on), func(t *testing.T) {
			t.Parallel()
			var p keys.Provider
			if on {
				p = testKeys(t)
			}
			b := encrypted(t, p)
			const marker = "MARKER-5e1d9c"
			sess := userData(t, b, "acme", "user-1", marker)
			if _, err := sess.Enqueue(ctx(t), "queued "+marker); err != nil {
				t.Fatal(err)
			}
			dumped := strings.Contains(pgDump(t, b), marker)
			if dumped == on {
				t.Errorf("with keys %v, the marker is in pg_dump's output: %v", on, dumped)
			}
			if holding := tablesHolding(t, b, marker); on && len(holding) > 0 {
				t.Errorf("tables holding the marker in plaintext: %v", holding)
			}
			all, err := readAll(t, b.another(t), "acme", sess.ID)
			if err != nil {
				t.Fatal(err)
			}
			// metadata, prompts, answers, task, events: each holds it.
			if n := strings.Count(all, marker); n < 20 {
				t.Errorf("the marker reads back %d times, want every path's", n)
			}
			if on {
				st, err := b.agent.KeyStatus(ctx(t), "acme")
				if err != nil || len(st.Keys) != 1 || st.Keys[0].Rows < 20 || st.PlaintextRows != 0 {
					t.Errorf("key status %+v, %v; want one key sealing every row", st, err)
				}
			}
		})
	}
}

// A sealed value changed in the database, or copied into another row,
// fails to read with keys.ErrDecrypt; an Agent without keys reads none
// (ErrNoKeys); nothing of the content is in either error.
func TestEncryptionRefusesTamperedAndMovedValues(t *testing.T) {
	t.Parallel()
	p := testKeys(t)
	b := encrypted(t, p)
	sess := b.session(t, "acme", "user-1")
	for _, prompt := range []string{"first secret", "second secret"} {
		if _, err := sess.Run(ctx(t), prompt); err != nil {
			t.Fatal(err)
		}
	}
	readMessages := func(a *agentpg.Agent, sessionID string) error {
		s, err := a.LoadSession(ctx(t), "acme", sessionID)
		if err != nil {
			return err
		}
		_, err = s.Messages(ctx(t), agentpg.ListOptions{})
		return err
	}
	if err := readMessages(b.another(t), sess.ID); err != nil {
		t.Fatalf("reading intact messages: %v", err)
	}
	noKeys := b.another(t, func(c *agentpg.Config) { c.Keys = nil })
	if err := readMessages(noKeys, sess.ID); !errors.Is(err, agentpg.ErrNoKeys) {
		t.Errorf("reading without keys: %v, want ErrNoKeys", err)
	}
	otherKeys := b.another(t, func(c *agentpg.Config) { c.Keys = testKeys(t) })
	if err := readMessages(otherKeys, sess.ID); !errors.Is(err, keys.ErrUnknownKey) && !errors.Is(err, keys.ErrDecrypt) {
		t.Errorf("reading with another provider's keys: %v, want a decryption error", err)
	}

	for name, tamper := range map[string]string{
		// A character of the ciphertext's base64 changed.
		"changed": `UPDATE agentpg.messages SET content = to_jsonb(overlay(content #>> '{}' placing
			CASE WHEN substr(content #>> '{}', 20, 1) = 'A' THEN 'B' ELSE 'A' END from 20 for 1))
			WHERE session_id = $1 AND seq = 2`,
		// The first message's ciphertext copied over the third's.
		"moved": `UPDATE agentpg.messages m SET content = f.content
			FROM agentpg.messages f WHERE f.session_id = $1 AND f.seq = 1 AND m.session_id = $1 AND m.seq = 3`,
	} {
		t.Run(name, func(t *testing.T) {
			sess := b.session(t, "acme", "tampered-"+name)
			for _, prompt := range []string{"first secret", "second secret"} {
				if _, err := sess.Run(ctx(t), prompt); err != nil {
					t.Fatal(err)
				}
			}
			if tag, err := b.db.Exec(ctx(t), tamper, sess.ID); err != nil || tag.RowsAffected() != 1 {
				t.Fatalf("tampering: %v, %v", tag, err)
			}
			err := readMessages(b.another(t), sess.ID)
			if !errors.Is(err, keys.ErrDecrypt) {
				t.Fatalf("reading %s ciphertext: %v, want keys.ErrDecrypt", name, err)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("the error shows content: %v", err)
			}
			// A run of the session cannot build on it either.
			fresh, err := b.another(t).LoadSession(ctx(t), "acme", sess.ID)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fresh.Run(ctx(t), "third"); !errors.Is(err, keys.ErrDecrypt) {
				t.Errorf("a run on the tampered session: %v, want keys.ErrDecrypt", err)
			}
		})
	}
}

// sessionsOf writes turns runs on each of n sessions of tenant acme and
// returns the sessions.
func sessionsOf(t *testing.T, b *bundle, n, turns int) []*agentpg.Session {
	t.Helper()
	sessions := make([]*agentpg.Session, n)
	for i := range sessions {
		sessions[i] = b.session(t, "acme", fmt.Sprintf("user-%d", i))
		for turn := range turns {
			if _, err := sessions[i].Run(ctx(t), fmt.Sprintf("session %d turn %d", i, turn)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return sessions
}

// contents returns what readAll reads of each session, through a, which
// must not fail.
func contents(t *testing.T, a *agentpg.Agent, sessions []*agentpg.Session) []string {
	t.Helper()
	all := make([]string, len(sessions))
	for i, sess := range sessions {
		var err error
		if all[i], err = readAll(t, a, sess.TenantID, sess.ID); err != nil {
			t.Fatalf("reading session %d: %v", i, err)
		}
	}
	return all
}

// RotateKeys, while 8 sessions run turns, re-encrypts every row with the
// new key and loses or corrupts nothing: each session holds each of its
// turns once, readable, in order. A new key-encryption key in the provider
// re-wraps the data keys, and the old one is then no longer needed.
func TestRotateKeysUnderConcurrentRuns(t *testing.T) {
	t.Parallel()
	env, p := testKeysEnv(t, "kek-1")
	b := encrypted(t, p)
	sessions := sessionsOf(t, b, 8, 2)
	const turns = 12
	var wg sync.WaitGroup
	errs := make(chan error, len(sessions)+1)
	for i, sess := range sessions {
		wg.Go(func() {
			for turn := 2; turn < turns; turn++ {
				if _, err := sess.Run(ctx(t), fmt.Sprintf("session %d turn %d", i, turn)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 3 {
			if err := b.agent.RotateKeys(ctx(t), "acme"); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, sess := range sessions {
		_, texts := conversation(t, sess)
		if len(texts) != 2*turns {
			t.Fatalf("session %d holds %d messages, want %d", i, len(texts), 2*turns)
		}
		for turn := range turns {
			if want := fmt.Sprintf("session %d turn %d", i, turn); texts[2*turn] != want {
				t.Errorf("session %d, message %d: %q, want %q", i, 2*turn, texts[2*turn], want)
			}
		}
	}
	// Once the runs are done, a last rotation leaves no row on an old key.
	if err := b.agent.RotateKeys(ctx(t), "acme"); err != nil {
		t.Fatal(err)
	}
	st, err := b.agent.KeyStatus(ctx(t), "acme")
	if err != nil {
		t.Fatal(err)
	}
	last := st.Keys[len(st.Keys)-1]
	if len(st.Keys) != 5 || last.RotatedAt == nil || st.PlaintextRows != 0 {
		t.Fatalf("key status %+v, want 5 versions, the last one finished", st)
	}
	for _, k := range st.Keys[:len(st.Keys)-1] {
		if k.Rows != 0 {
			t.Errorf("version %d still seals %d rows after the last rotation", k.Version, k.Rows)
		}
	}
	before := contents(t, b.another(t), sessions)

	// The key-encryption key: kek-2 becomes current, kek-1 stays to unwrap.
	rotatedEnv, _ := testKeysEnv(t, "kek-2")
	both, err := keys.Parse(env + "," + rotatedEnv)
	if err != nil {
		t.Fatal(err)
	}
	withBoth := b.another(t, func(c *agentpg.Config) { c.Keys = both })
	if err := withBoth.RotateKeys(ctx(t), "acme"); err != nil {
		t.Fatal(err)
	}
	onlyNew, err := keys.Parse(rotatedEnv)
	if err != nil {
		t.Fatal(err)
	}
	after := contents(t, b.another(t, func(c *agentpg.Config) { c.Keys = onlyNew }), sessions)
	for i := range before {
		if before[i] != after[i] {
			t.Errorf("session %d reads differently after the rotations", i)
		}
	}
	st, err = withBoth.KeyStatus(ctx(t), "acme")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range st.Keys {
		if k.KEKID != "kek-2" {
			t.Errorf("data key %d is wrapped by %s, want kek-2", k.Version, k.KEKID)
		}
	}
}

// A rotation killed (SIGKILL, in another process) between batches leaves
// every row readable, on the old key or the new one; RotateKeys then
// finishes that rotation rather than starting another.
func TestRotateKeysResumesAfterKill(t *testing.T) {
	t.Parallel()
	env, p := testKeysEnv(t, "kek-1")
	b := encrypted(t, p)
	sessions := sessionsOf(t, b, 3, 3)
	before := contents(t, b.another(t), sessions)

	dir := t.TempDir()
	killWhenReached(t, "TestRotationHelper", dir, "the second batch", "AGENTPG_ROTATION_DB="+b.db.Config().ConnString(),
		"AGENTPG_ROTATION_KEYS="+env, "AGENTPG_ROTATION_DIR="+dir)

	st, err := b.agent.KeyStatus(ctx(t), "acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Keys) != 2 || st.Keys[1].RotatedAt != nil || st.Keys[1].Rows == 0 || st.Keys[0].Rows == 0 {
		t.Fatalf("after the kill, key status %+v; want a rotation half done", st)
	}
	if mid := contents(t, b.another(t), sessions); !slices.Equal(mid, before) {
		t.Fatal("the half-rotated sessions read differently")
	}
	if err := b.agent.RotateKeys(ctx(t), "acme"); err != nil {
		t.Fatal(err)
	}
	if st, err = b.agent.KeyStatus(ctx(t), "acme"); err != nil {
		t.Fatal(err)
	}
	if len(st.Keys) != 2 || st.Keys[1].RotatedAt == nil || st.Keys[0].Rows != 0 {
		t.Fatalf("after resuming, key status %+v; want the same rotation finished", st)
	}
	if after := contents(t, b.another(t), sessions); !slices.Equal(after, before) {
		t.Fatal("the rotated sessions read differently")
	}
}

// TestRotationHelper is the process TestRotateKeysResumesAfterKill kills:
// it rotates tenant acme's keys, 3 rows a batch, and stops dead after the
// second batch. It does nothing unless started by that test.
func TestRotationHelper(t *testing.T) {
	dsn := os.Getenv("AGENTPG_ROTATION_DB")
	if dsn == "" {
		return
	}
	p, err := keys.Parse(os.Getenv("AGENTPG_ROTATION_KEYS"))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	agent, err := agentpg.New(agentpg.Config{DB: pool, Client: agentpgtest.NewServer(t).Client(), Model: "claude-sonnet-5-5",
		Keys: p, RetentionBatchSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	batches := 0
	_, err = agent.RotateKeysProgress(context.Background(), "acme", func(int) {
		if batches++; batches == 2 {
			stopDead(os.Getenv("AGENTPG_ROTATION_DIR"))
		}
	})
	t.Fatalf("the rotation ended before its second batch: %v", err)
}

// With encryption on, EraseIdentifier leaves nothing of the end user in
// what the tenant's sessions hold, decrypted; the other user keeps all of
// theirs. EraseTenant then deletes the tenant's data keys with its rows.
func TestEraseEncrypted(t *testing.T) {
	t.Parallel()
	b := encrypted(t, testKeys(t))
	const victim, bystander = "VICTIM-0b7e", "BYSTANDER-33af"
	userData(t, b, "acme", "user-1", victim)
	userData(t, b, "acme", "user-2", bystander)
	if err := b.agent.EraseIdentifier(ctx(t), "acme", "user-1"); err != nil {
		t.Fatal(err)
	}
	page, err := b.agent.ListSessions(ctx(t), "acme", agentpg.ListOptions{Limit: agentpg.MaxPageSize})
	if err != nil || len(page.Items) == 0 {
		t.Fatalf("sessions left: %d, %v", len(page.Items), err)
	}
	var left strings.Builder
	for _, sess := range page.Items {
		all, err := readAll(t, b.agent, "acme", sess.ID)
		if err != nil {
			t.Fatal(err)
		}
		left.WriteString(all)
	}
	if strings.Contains(left.String(), victim) {
		t.Error("the erased user's marker is still readable")
	}
	if n := strings.Count(left.String(), bystander); n < 20 {
		t.Errorf("the other user's marker reads back %d times, want all of theirs", n)
	}

	if err := b.agent.EraseTenant(ctx(t), "acme"); err != nil {
		t.Fatal(err)
	}
	st, err := b.agent.KeyStatus(ctx(t), "acme")
	if err != nil || len(st.Keys) != 0 || st.PlaintextRows != 0 {
		t.Fatalf("after EraseTenant, key status %+v, %v; want no key and no row", st, err)
	}
	// The tenant id can be used again, with a new key.
	sess := b.session(t, "acme", "user-3")
	if _, err := sess.Run(ctx(t), "hello again"); err != nil {
		t.Fatal(err)
	}
	if all, err := readAll(t, b.another(t), "acme", sess.ID); err != nil || !strings.Contains(all, "hello again") {
		t.Fatalf("the tenant's new session reads %q, %v", all, err)
	}
}

// An enqueued run of an encrypted tenant: its prompt waits sealed, a Worker
// opens it, and WaitRun and RunEvents, from another Agent, read the answer.
func TestEncryptedEnqueuedRun(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *agentpg.Config) { c.Keys = testKeys(t) })
	sess := b.session(t, "acme", "user-1")
	runID, err := sess.Enqueue(ctx(t), "the queued secret")
	if err != nil {
		t.Fatal(err)
	}
	if holding := tablesHolding(t, b, "queued secret"); len(holding) > 0 {
		t.Fatalf("the queued prompt is in plaintext in %v", holding)
	}
	b.startWorker(t, agentpg.WorkerConfig{})
	other := b.another(t)
	res, err := other.WaitRun(ctx(t), "acme", runID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Text, "the queued secret") {
		t.Errorf("WaitRun's answer %q does not echo the prompt", res.Text)
	}
	var text strings.Builder
	for e, err := range other.RunEvents(ctx(t), "acme", runID, 0) {
		if err != nil {
			t.Fatal(err)
		}
		text.WriteString(e.Text)
	}
	if !strings.Contains(text.String(), "the queued secret") {
		t.Errorf("the run's events read %q", text.String())
	}
}
