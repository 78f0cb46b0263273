package agentpg_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
)

// A run whose lease was taken over cannot write: the database refuses its
// answer, and the run that took over goes on from a valid conversation.
func TestLeaseTakeoverFencesOldRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sess := b.session(t, "acme", "user-1")
	b.model.Push(
		agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("stale answer")}, Delay: time.Second},
		agentpgtest.Text("fresh answer"),
	)
	stale := make(chan error, 1)
	go func() { _, err := sess.Run(ctx(t), "slow"); stale <- err }()
	waitFor(t, func() bool { return len(b.model.Requests()) == 1 })

	// Make the first run's lease look expired, as if its process had
	// stalled past the TTL, and let another process take the session.
	if _, err := b.db.Exec(ctx(t), `UPDATE agentpg.sessions SET lease_expires_at = now() - interval '1 second' WHERE id = $1`, sess.ID); err != nil {
		t.Fatal(err)
	}
	other, err := b.another(t).LoadSession(ctx(t), "acme", sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	res, err := other.Run(ctx(t), "fast")
	if err != nil || res.Text != "fresh answer" {
		t.Fatalf("takeover run: %v, %v", res, err)
	}

	if err := <-stale; !errors.Is(err, agentpg.ErrLeaseLost) {
		t.Fatalf("stale run: err = %v, want ErrLeaseLost", err)
	}
	// The stale run stored nothing, not even its prompt: it had not
	// committed a step before it lost the lease.
	_, texts := conversation(t, sess)
	if !slices.Equal(texts, []string{"fast", "fresh answer"}) {
		t.Fatalf("stored %q", texts)
	}
	if got := runStatuses(t, sess); !slices.Equal(got, []string{"failed", "completed"}) {
		t.Fatalf("runs %q", got)
	}
}

// Taking a session's lease changes none of the session's indexed columns,
// updated_at included, so that PostgreSQL updates the row in place (a HOT
// update, writing no index entry): the session changes when a step is
// stored, and only then is its updated_at moved.
func TestLeaseLeavesUpdatedAt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sess := b.session(t, "acme", "user-1")
	b.model.Push(agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("slow")}, Delay: 300 * time.Millisecond})
	updatedAt := func() time.Time {
		t.Helper()
		var at time.Time
		if err := b.db.QueryRow(ctx(t), `SELECT updated_at FROM agentpg.sessions WHERE id = $1`, sess.ID).Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	before := updatedAt()
	done := make(chan error, 1)
	go func() { _, err := sess.Run(ctx(t), "q"); done <- err }()
	waitFor(t, func() bool { return len(b.model.Requests()) == 1 })
	if during := updatedAt(); !during.Equal(before) {
		t.Errorf("updated_at moved from %v to %v when the lease was taken", before, during)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if after := updatedAt(); !after.After(before) {
		t.Errorf("updated_at = %v after the run stored its answer, want after %v", after, before)
	}
}

// A process killed while its run holds the lease does not lock the session
// for longer than the lease's TTL.
func TestKilledProcessReleasesSession(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sess := b.session(t, "acme", "user-1")
	killRunMidCall(t, b, sess)

	b.model.Push(agentpgtest.Text("back again"))
	start := time.Now()
	res, err := sess.Run(ctx(t), "anyone there?")
	if err != nil || res.Text != "back again" {
		t.Fatalf("run after the kill: %v, %v", res, err)
	}
	t.Logf("session usable again %s after the kill", time.Since(start).Round(time.Millisecond))
	runsPage, err := sess.Runs(ctx(t), agentpg.ListOptions{Limit: agentpg.MaxPageSize})
	runs := runsPage.Items
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].Status != "failed" || !strings.Contains(runs[0].Error, "abandoned") || runs[1].Status != "completed" {
		t.Fatalf("runs = %+v", runs)
	}
	last := b.model.Requests()[1]
	if len(last.Messages) != 1 || last.Messages[0].Content[0].Text != "anyone there?" {
		t.Fatalf("the dead run's prompt reached the model: %+v", last.Messages)
	}
}

// child is a helper process that a test kills.
type child struct {
	cmd *exec.Cmd
	out *strings.Builder
}

// helperProcess starts this test binary as a second process that takes
// the session with a one-second lease and does action ("run" or
// "compact") against the bundle's database and model.
func helperProcess(t *testing.T, b *bundle, sessionID, action string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.v")
	cmd.Env = append(os.Environ(),
		"AGENTPG_HELPER_PROCESS="+action,
		"AGENTPG_HELPER_DB="+b.db.Config().ConnString(),
		"AGENTPG_HELPER_MODEL="+b.model.URL(),
		"AGENTPG_HELPER_SESSION="+sessionID,
		fmt.Sprintf("AGENTPG_HELPER_WINDOW=%d", b.cfg.ContextWindow),
	)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return &child{cmd: cmd, out: out}
}

// kill kills the process at once, as a crash or an OOM killer would.
func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = c.cmd.Wait()
	if strings.Contains(c.out.String(), "--- FAIL") {
		t.Fatalf("helper process failed:\n%s", c.out.String())
	}
}

// TestHelperProcess is the process helperProcess starts: it takes the
// session with a one-second lease and blocks in a model call until killed.
// It does nothing unless started by helperProcess.
func TestHelperProcess(t *testing.T) {
	action := os.Getenv("AGENTPG_HELPER_PROCESS")
	if action == "" {
		return
	}
	pool, err := pgxpool.New(t.Context(), os.Getenv("AGENTPG_HELPER_DB"))
	if err != nil {
		t.Fatal(err)
	}
	window, _ := strconv.Atoi(os.Getenv("AGENTPG_HELPER_WINDOW"))
	client := anthropic.NewClient(option.WithBaseURL(os.Getenv("AGENTPG_HELPER_MODEL")), option.WithAPIKey("test"), option.WithMaxRetries(0))
	agent, err := agentpg.New(agentpg.Config{
		DB: pool, Client: &client, Model: "claude-sonnet-5-5", LeaseTTL: time.Second, ContextWindow: window,
	})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := agent.LoadSession(t.Context(), "acme", os.Getenv("AGENTPG_HELPER_SESSION"))
	if err != nil {
		t.Fatal(err)
	}
	switch action {
	case "run":
		_, err = sess.Run(t.Context(), "I will die mid-call")
	case "compact":
		_, err = sess.Compact(t.Context())
	}
	t.Fatalf("%s returned (%v) instead of being killed", action, err)
}
