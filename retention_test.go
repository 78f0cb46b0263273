package agentpg_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg"
)

// backdate sets a time column of the rows of table that match where
// (given $1) to ago before now.
func backdate(t *testing.T, b *bundle, table, column, where string, arg any, ago time.Duration) {
	t.Helper()
	_, err := b.db.Exec(ctx(t), `UPDATE agentpg.`+table+` SET `+column+` = now() - make_interval(secs => $2) WHERE `+where,
		arg, ago.Seconds())
	if err != nil {
		t.Fatal(err)
	}
}

func count(t *testing.T, b *bundle, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := b.db.QueryRow(ctx(t), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

const day = 24 * time.Hour

// Backdated rows are deleted exactly as each tenant's policy, or the
// default, says, in batches: a tenant's policy replaces the default, zero
// keeps forever, a session a run waits in is kept, and the report counts
// what went, by tenant.
func TestApplyRetention(t *testing.T) {
	t.Parallel()
	b := erasureSetup(t) // batches of 2 rows
	for _, tenant := range []string{"acme", "globex", "initech"} {
		for _, user := range []string{"old", "new"} {
			userData(t, b, tenant, user, tenant+"-"+user)
		}
	}
	waiting := b.session(t, "acme", "waiting")
	if _, err := waiting.Enqueue(ctx(t), "later"); err != nil { // no Worker: it stays queued
		t.Fatal(err)
	}
	policies := map[string]agentpg.RetentionPolicy{
		"":        agentpg.GuideRetention, // globex
		"acme":    {Sessions: 10 * day, Archive: day, RunEvents: time.Hour},
		"initech": {}, // forever
	}
	for tenant, p := range policies {
		if err := b.agent.SetRetention(ctx(t), tenant, p); err != nil {
			t.Fatal(err)
		}
	}
	root := "parent_id IS NULL AND identifier = $1"
	backdate(t, b, "sessions", "updated_at", root, "old", 1000*day) // expired but for initech
	backdate(t, b, "sessions", "updated_at", root, "new", 9*day)    // within every policy
	backdate(t, b, "sessions", "updated_at", root, "waiting", 1000*day)
	// The archive: acme's 2 days old (expired), globex's 29 days (kept).
	backdate(t, b, "message_archive", "archived_at", "tenant_id = $1", "acme", 2*day)
	backdate(t, b, "message_archive", "archived_at", "tenant_id = $1", "globex", 29*day)
	// Events: two hours old, expired for acme only (globex keeps them).
	backdate(t, b, "run_events", "created_at", "tenant_id <> $1", "", 2*time.Hour)

	archived := func(tenant, user string) int64 {
		return count(t, b, `SELECT count(*) FROM agentpg.message_archive a JOIN agentpg.sessions s ON s.id = a.session_id
			WHERE s.tenant_id = $1 AND s.identifier = $2`, tenant, user)
	}
	events := func(tenant string) int64 {
		return count(t, b, `SELECT count(*) FROM agentpg.run_events WHERE tenant_id = $1`, tenant)
	}
	// Events and the archive go first, in batches; then the sessions, with
	// what is left of theirs.
	acmeEvents, acmeArchived := events("acme"), archived("acme", "new")+archived("acme", "old")

	preview, err := b.agent.PreviewRetention(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if preview.Sessions != 2 || preview.ArchivedMessages != acmeArchived || preview.RunEvents != acmeEvents {
		t.Fatalf("preview %+v", preview)
	}
	report, err := b.agent.ApplyRetention(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := int((acmeEvents+1)/2 + (acmeArchived+1)/2 + 1); report.Batches < want {
		t.Fatalf("%d batches of 2 rows at most, want at least %d", report.Batches, want)
	}
	got := map[string]int64{}
	for _, tenant := range []string{"acme", "globex", "initech"} {
		for _, user := range []string{"old", "new"} {
			got[tenant+"/"+user] = count(t, b, `SELECT count(*) FROM agentpg.sessions WHERE tenant_id = $1 AND identifier = $2`, tenant, user)
		}
	}
	wantSessions := map[string]int64{"acme/old": 0, "acme/new": 1, "globex/old": 0, "globex/new": 1, "initech/old": 1, "initech/new": 1}
	for k, n := range wantSessions {
		if got[k] != n {
			t.Fatalf("sessions left %v, want %v", got, wantSessions)
		}
	}
	if n := count(t, b, `SELECT count(*) FROM agentpg.sessions WHERE identifier = 'waiting'`); n != 1 {
		t.Fatal("the session a run waits in was deleted")
	}
	if archived("acme", "new") != 0 || archived("globex", "new") == 0 || archived("initech", "old") == 0 {
		t.Fatalf("archive left: acme %d, globex %d, initech %d", archived("acme", "new"), archived("globex", "new"), archived("initech", "old"))
	}
	if events("acme") != 0 || events("globex") == 0 || events("initech") == 0 {
		t.Fatalf("events left: acme %d, globex %d, initech %d", events("acme"), events("globex"), events("initech"))
	}
	if report.Sessions != 2 || report.Tenants["acme"].Sessions != 1 || report.Tenants["globex"].Sessions != 1 ||
		report.Tenants["acme"].RunEvents != acmeEvents || report.Tenants["acme"].ArchivedMessages != acmeArchived ||
		report.Tenants["globex"].ArchivedMessages != 0 || report.Tenants["initech"] != (agentpg.RetentionCounts{}) {
		t.Fatalf("report %+v", report)
	}
	again, err := b.agent.ApplyRetention(ctx(t))
	if err != nil || again.Batches != 0 || again.Sessions+again.ArchivedMessages+again.RunEvents != 0 {
		t.Fatalf("a second pass: %+v, %v", again, err)
	}
	if err := b.agent.SetRetention(ctx(t), "acme", agentpg.RetentionPolicy{Sessions: -time.Hour}); !errors.Is(err, agentpg.ErrInvalidArgument) {
		t.Fatalf("a negative period: %v", err)
	}
	// Back to the default: acme's 9-day-old session is within 90 days.
	if err := b.agent.RemoveRetention(ctx(t), "acme"); err != nil {
		t.Fatal(err)
	}
	if all, err := b.agent.RetentionPolicies(ctx(t)); err != nil || len(all) != 2 || all[""] != agentpg.GuideRetention {
		t.Fatalf("policies %+v, %v", all, err)
	}
}

// Two processes apply retention at once, in batches of 3 rows: between
// them they delete every expired session exactly once, and nothing else.
func TestApplyRetentionFromTwoProcesses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const expired, kept = 300, 10
	for i := range expired + kept {
		sess := b.session(t, "acme", fmt.Sprintf("user-%03d", i))
		if i%30 == 0 {
			if _, err := sess.Run(ctx(t), "hello"); err != nil {
				t.Fatal(err)
			}
		}
	}
	backdate(t, b, "sessions", "updated_at", "identifier < $1", fmt.Sprintf("user-%03d", expired), 100*day)
	if err := b.agent.SetRetention(ctx(t), "", agentpg.GuideRetention); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var wg sync.WaitGroup
	reports := make([]agentpg.RetentionReport, 2)
	for i := range reports {
		out := filepath.Join(dir, fmt.Sprintf("report-%d", i))
		child := exec.Command(os.Args[0], "-test.run=^TestRetentionHelper$")
		child.Env = append(os.Environ(), "AGENTPG_RETENTION_DB="+b.db.Config().ConnString(),
			"AGENTPG_RETENTION_START="+filepath.Join(dir, "start"), "AGENTPG_RETENTION_OUT="+out,
			"AGENTPG_RETENTION_READY="+out+".ready")
		output := &strings.Builder{}
		child.Stdout, child.Stderr = output, output
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := child.Wait(); err != nil {
				t.Errorf("retention process: %v\n%s", err, output)
				return
			}
			data, err := os.ReadFile(out)
			if err == nil {
				err = json.Unmarshal(data, &reports[i])
			}
			if err != nil {
				t.Errorf("report: %v", err)
			}
		})
	}
	waitFor(t, func() bool {
		ready, _ := filepath.Glob(filepath.Join(dir, "*.ready"))
		return len(ready) == len(reports)
	})
	if err := os.WriteFile(filepath.Join(dir, "start"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("deleted %d and %d sessions, in %d and %d batches", reports[0].Sessions, reports[1].Sessions, reports[0].Batches, reports[1].Batches)
	if total := reports[0].Sessions + reports[1].Sessions; total != expired {
		t.Fatalf("the processes deleted %d sessions in all, want %d", total, expired)
	}
	if left := count(t, b, `SELECT count(*) FROM agentpg.sessions`); left != kept {
		t.Fatalf("%d sessions left, want %d", left, kept)
	}
	if old := count(t, b, `SELECT count(*) FROM agentpg.sessions WHERE updated_at < now() - interval '90 days'`); old != 0 {
		t.Fatalf("%d expired sessions left", old)
	}
}

// TestRetentionHelper is a process of TestApplyRetentionFromTwoProcesses:
// once ready and the start file exists, it applies retention in batches of 3 and
// writes its report. It does nothing unless started by that test.
func TestRetentionHelper(t *testing.T) {
	dsn := os.Getenv("AGENTPG_RETENTION_DB")
	if dsn == "" {
		return
	}
	pool, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	client := anthropic.NewClient(option.WithAPIKey("unused"))
	agent, err := agentpg.New(agentpg.Config{DB: pool, Client: &client, Model: "claude-sonnet-5-5", RetentionBatchSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(os.Getenv("AGENTPG_RETENTION_READY"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, err := os.Stat(os.Getenv("AGENTPG_RETENTION_START")); err != nil; _, err = os.Stat(os.Getenv("AGENTPG_RETENTION_START")) {
		time.Sleep(time.Millisecond)
	}
	report, err := agent.ApplyRetention(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(report)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(os.Getenv("AGENTPG_RETENTION_OUT"), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Workers apply the retention policies by themselves, as a periodic job
// (once on start, then every RetentionInterval).
func TestWorkersApplyRetention(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.session(t, "acme", "old")
	b.session(t, "acme", "new")
	backdate(t, b, "sessions", "updated_at", "identifier = $1", "old", 91*day)
	if err := b.agent.SetRetention(ctx(t), "", agentpg.GuideRetention); err != nil {
		t.Fatal(err)
	}
	b.startWorker(t, agentpg.WorkerConfig{})
	deadline := time.Now().Add(time.Minute)
	for count(t, b, `SELECT count(*) FROM agentpg.sessions WHERE identifier = 'old'`) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the expired session is still there after a minute")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := count(t, b, `SELECT count(*) FROM agentpg.sessions WHERE identifier = 'new'`); n != 1 {
		t.Fatal("the Workers deleted a session within the policy")
	}
}
