package agentpg_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/audit"
	"github.com/agentpg/agentpg/compaction"
	"github.com/agentpg/agentpg/tool"
)

// setLimits sets the tenant's limits, failing the test on an error.
func (b *bundle) setLimits(t *testing.T, tenantID string, l agentpg.TenantLimits) {
	t.Helper()
	if err := b.agent.SetTenantLimits(ctx(t), tenantID, l); err != nil {
		t.Fatalf("SetTenantLimits: %v", err)
	}
}

// refused checks that err is a refusal by limit, of the session's own
// limit when perSession, and returns it.
func refused(t *testing.T, err error, limit string, perSession bool) *agentpg.LimitError {
	t.Helper()
	if !errors.Is(err, agentpg.ErrLimitExceeded) {
		t.Fatalf("err = %v, want ErrLimitExceeded", err)
	}
	le, ok := errors.AsType[*agentpg.LimitError](err)
	if !ok {
		t.Fatalf("err = %v, not a *LimitError", err)
	}
	if le.Limit != limit || le.PerSession != perSession {
		t.Fatalf("refused by %s (per session: %v), want %s (per session: %v)", le.Limit, le.PerSession, limit, perSession)
	}
	return le
}

// A tenant's requests-per-minute limit refuses the run before the model
// is called, records no run, says when to retry, and leaves other tenants
// alone; removing the limit lets the session go on.
func TestRequestsPerMinuteRefusesBeforeTheModel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.model.SetResponder(agentpgtest.Echo)
	sess := b.session(t, "acme", "user-1")
	b.setLimits(t, "acme", agentpg.TenantLimits{RequestsPerMinute: 2})

	start := time.Now()
	var second time.Time // before the second run
	for i := range 2 {
		if i == 1 {
			time.Sleep(2 * time.Second) // so that the two calls leave the window apart
		}
		second = time.Now()
		if _, err := sess.Run(ctx(t), fmt.Sprintf("turn %d", i)); err != nil {
			t.Fatalf("run %d under the limit: %v", i, err)
		}
	}
	_, err := sess.Run(ctx(t), "one too many")
	elapsed := time.Since(start)
	le := refused(t, err, agentpg.LimitRequestsPerMinute, false)
	if le.Tenant != "acme" || le.SessionID != sess.ID || le.Max != 2 {
		t.Errorf("LimitError = %+v", le)
	}
	// The window frees a place when the first call of the two leaves it: a
	// minute after it was admitted, which was after start.
	if le.RetryAfter > time.Minute || le.RetryAfter < time.Minute-elapsed-time.Second {
		t.Errorf("RetryAfter = %s, want about %s", le.RetryAfter, time.Minute-elapsed)
	}
	// Lowered to one, the limit frees a place only when the second call
	// leaves the window too.
	b.setLimits(t, "acme", agentpg.TenantLimits{RequestsPerMinute: 1})
	_, err = sess.Run(ctx(t), "one too many")
	le = refused(t, err, agentpg.LimitRequestsPerMinute, false)
	if lower := time.Minute - time.Since(second) - time.Second; le.RetryAfter > time.Minute || le.RetryAfter < lower {
		t.Errorf("RetryAfter under the lowered limit = %s, want at least %s", le.RetryAfter, lower)
	}
	if n := len(b.model.Requests()); n != 2 {
		t.Fatalf("the model received %d requests, want 2: a refused run reached it", n)
	}
	if got := runStatuses(t, sess); !slices.Equal(got, []string{agentpg.RunCompleted, agentpg.RunCompleted}) {
		t.Errorf("runs = %q: the refused run left a trace", got)
	}

	other := b.session(t, "globex", "user-1")
	for i := range 3 {
		if _, err := other.Run(ctx(t), "fine"); err != nil {
			t.Fatalf("another tenant's run %d: %v", i, err)
		}
	}

	b.setLimits(t, "acme", agentpg.TenantLimits{})
	res, err := sess.Run(ctx(t), "after the limit")
	if err != nil || res.Text != "echo: after the limit" {
		t.Fatalf("run after removing the limit = %+v, %v", res, err)
	}
	if _, texts := conversation(t, sess); !slices.Equal(texts, []string{"turn 0", "echo: turn 0", "turn 1", "echo: turn 1", "after the limit", "echo: after the limit"}) {
		t.Errorf("conversation = %q", texts)
	}
}

// A daily token budget admits calls while the day's input and output
// tokens are below it, then refuses until midnight UTC; the usage is
// reported with its cost.
func TestTokensPerDayBudget(t *testing.T) {
	t.Parallel()
	b := setup(t)
	used := agentpgtest.Usage{InputTokens: 60, OutputTokens: 50, CacheReadInputTokens: 1000, CacheCreationInputTokens: 10}
	b.model.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
		return agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("ok")}, Usage: &used}
	})
	sess := b.session(t, "acme", "user-1")
	b.setLimits(t, "acme", agentpg.TenantLimits{TokensPerDay: 200})

	for i := range 2 { // 0, then 110 tokens used: below 200
		if _, err := sess.Run(ctx(t), "spend"); err != nil {
			t.Fatalf("run %d within the budget: %v", i, err)
		}
	}
	_, err := sess.Run(ctx(t), "spend more")
	now := time.Now().UTC()
	le := refused(t, err, agentpg.LimitTokensPerDay, false)
	midnight := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
	if le.Max != 200 || le.RetryAfter > midnight.Sub(now)+time.Second || le.RetryAfter < midnight.Sub(now)-time.Second {
		t.Errorf("LimitError = %+v, want a retry at midnight UTC, in %s", le, midnight.Sub(now))
	}
	if n := len(b.model.Requests()); n != 2 {
		t.Fatalf("the model received %d requests, want 2", n)
	}
	if _, err := b.session(t, "globex", "user-1").Run(ctx(t), "fine"); err != nil {
		t.Fatalf("another tenant's run: %v", err)
	}

	days, err := b.agent.TenantUsage(ctx(t), "acme", now.AddDate(0, 0, -1), now)
	if err != nil {
		t.Fatalf("TenantUsage: %v", err)
	}
	want := agentpg.Usage{InputTokens: 120, OutputTokens: 100, CacheReadInputTokens: 2000, CacheCreationInputTokens: 20}
	if len(days) != 1 || days[0].Model != "claude-sonnet-5-5" || days[0].Requests != 2 || days[0].Usage != want ||
		!days[0].Day.Equal(midnight.AddDate(0, 0, -1)) {
		t.Fatalf("usage = %+v", days)
	}
	// claude-sonnet-5 at $3 and $15 per million, cache reads $0.30, writes $3.75.
	cost := (120*3 + 100*15 + 2000*0.3 + 20*3.75) / 1e6
	if !days[0].Priced || days[0].Cost < cost*0.999 || days[0].Cost > cost*1.001 {
		t.Errorf("cost = %v (priced: %v), want %v", days[0].Cost, days[0].Priced, cost)
	}
	if days, err := b.agent.TenantUsage(ctx(t), "globex", now, now); err != nil || len(days) != 1 || days[0].Requests != 1 {
		t.Errorf("the other tenant's usage = %+v, %v", days, err)
	}
}

// A tenant's usage is kept in shards, a session adding to one, so that
// concurrent runs of its sessions do not take turns on one row: usage,
// budgets and the usage read back count every shard.
func TestUsageAcrossSessionsCountsEveryShard(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.model.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
		return agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("ok")},
			Usage: &agentpgtest.Usage{InputTokens: 6, OutputTokens: 4}}
	})
	const sessions = 40
	b.setLimits(t, "acme", agentpg.TenantLimits{TokensPerDay: sessions * 10})
	var wg sync.WaitGroup
	for i := range sessions {
		sess := b.session(t, "acme", fmt.Sprintf("user-%d", i))
		wg.Go(func() {
			if _, err := sess.Run(ctx(t), "spend"); err != nil {
				t.Errorf("run of session %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	var rows int
	if err := b.db.QueryRow(ctx(t), `SELECT count(*) FROM agentpg.tenant_usage WHERE tenant_id = 'acme'`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows < 2 {
		t.Errorf("the usage of %d sessions is in %d row(s), want it spread over shards", sessions, rows)
	}
	days, err := b.agent.TenantUsage(ctx(t), "acme", time.Now(), time.Now())
	want := agentpg.Usage{InputTokens: sessions * 6, OutputTokens: sessions * 4}
	if err != nil || len(days) != 1 || days[0].Requests != sessions || days[0].Usage != want {
		t.Fatalf("TenantUsage = %+v, %v; want one day of %d requests, %+v", days, err, sessions, want)
	}
	// The budget is spent in every shard: no session may go on.
	_, err = b.session(t, "acme", "user-new").Run(ctx(t), "spend more")
	refused(t, err, agentpg.LimitTokensPerDay, false)
}

// oneCallAMinute is an agent whose tool "count" counts its runs, and a
// session of tenant acme allowed one model call a minute; runs returns the
// count.
func oneCallAMinute(t *testing.T) (b *bundle, sess *agentpg.Session, runs func() int) {
	t.Helper()
	var mu sync.Mutex
	n := 0
	counted, err := tool.NewFunc("count", "Counts.", func(context.Context, struct{}) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		return "counted", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b = setup(t, func(c *agentpg.Config) { c.Tools = []tool.Tool{counted} })
	sess = b.session(t, "acme", "user-1")
	b.setLimits(t, "acme", agentpg.TenantLimits{PerSession: agentpg.SessionLimits{RequestsPerMinute: 1}})
	return b, sess, func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// A limit reached in the middle of a run, once the model asked for a
// tool, fails the run with class "limit" before the tool runs, keeping the
// model's answer for the record; the session goes on.
func TestLimitReachedMidRun(t *testing.T) {
	t.Parallel()
	b, sess, runs := oneCallAMinute(t)
	b.model.Push(agentpgtest.Blocks(agentpgtest.TextBlock("Counting."), agentpgtest.ToolUse("toolu_1", "count", map[string]any{})))

	_, err := sess.Run(ctx(t), "count")
	refused(t, err, agentpg.LimitRequestsPerMinute, true)
	if n := runs(); n != 0 {
		t.Fatalf("the tool ran %d times after its run was refused", n)
	}
	if n := len(b.model.Requests()); n != 1 {
		t.Fatalf("the model received %d requests, want 1", n)
	}
	page, err := sess.Runs(ctx(t), agentpg.ListOptions{})
	if err != nil || len(page.Items) != 1 {
		t.Fatalf("runs = %+v, %v", page.Items, err)
	}
	info := page.Items[0]
	if info.Status != agentpg.RunFailed || info.ErrorClass != "limit" || !strings.Contains(info.Error, "requests_per_minute") ||
		info.Iterations != 1 {
		t.Fatalf("the refused run = %+v", info)
	}
	_, err = b.agent.WaitRun(ctx(t), "acme", info.ID)
	if _, ok := errors.AsType[*agentpg.RunError](err); !ok || !errors.Is(err, agentpg.ErrLimitExceeded) {
		t.Errorf("WaitRun = %v, want a RunError matching ErrLimitExceeded", err)
	}
	msgs, err := sess.Messages(ctx(t), agentpg.ListOptions{})
	if err != nil || len(msgs.Items) != 2 || msgs.Items[1].Text() != "Counting." {
		t.Errorf("stored messages = %+v, %v: the model's answer is kept for the record", msgs.Items, err)
	}
	// Its events tell the refused step: the tool call asked for, then the
	// failure.
	if got := eventKinds(t, b.agent, info.ID); !slices.Equal(got, []string{"text", "tool_call", "run_end:failed"}) {
		t.Errorf("events = %q", got)
	}

	// Another session of the tenant has a minute of its own.
	b.model.Push(agentpgtest.Text("hello"))
	if _, err := b.session(t, "acme", "user-2").Run(ctx(t), "hi"); err != nil {
		t.Fatalf("another session: %v", err)
	}
	b.setLimits(t, "acme", agentpg.TenantLimits{})
	b.model.Push(agentpgtest.Text("again"))
	if res, err := sess.Run(ctx(t), "again"); err != nil || res.Text != "again" {
		t.Fatalf("run after the limit = %+v, %v", res, err)
	}
	if _, texts := conversation(t, sess); !slices.Equal(texts[len(texts)-2:], []string{"again", "again"}) {
		t.Errorf("conversation = %q", texts)
	}
}

// eventKinds returns the kinds of the run's stored events, with the
// status of its end.
func eventKinds(t *testing.T, agent *agentpg.Agent, runID string) []string {
	t.Helper()
	events, errs := follow(t, agent, "acme", runID, 0)
	if len(errs) > 0 {
		t.Fatalf("RunEvents: %v", errs)
	}
	var kinds []string
	for _, e := range events {
		kind := string(e.Kind)
		if e.Kind == agentpg.EventRunEnd {
			kind += ":" + e.Status
		}
		kinds = append(kinds, kind)
	}
	return kinds
}

// An enqueued run refused before a later model call goes back to the
// queue instead of failing: nothing of the refused step runs, and once the
// limit admits it, a Worker resumes it where it stopped.
func TestWorkerRequeuesRunRefusedMidWay(t *testing.T) {
	t.Parallel()
	b, sess, runs := oneCallAMinute(t)
	b.model.Push(agentpgtest.Blocks(agentpgtest.TextBlock("Counting."), agentpgtest.ToolUse("toolu_1", "count", map[string]any{})),
		agentpgtest.Text("Counted once."))
	runID, err := sess.Enqueue(ctx(t), "count")
	if err != nil {
		t.Fatal(err)
	}
	b.startWorker(t, agentpg.WorkerConfig{})
	waitFor(t, func() bool {
		var state string
		err := b.db.QueryRow(ctx(t), `SELECT state FROM agentpg.river_job WHERE args->>'run_id' = $1`, runID).Scan(&state)
		return err == nil && state == "scheduled"
	})
	info, err := b.agent.GetRun(ctx(t), "acme", runID)
	if err != nil || info.Status != agentpg.RunQueued || info.Iterations != 1 {
		t.Fatalf("the refused run = %+v, %v; want it queued again after one model call", info, err)
	}
	if ran := runs(); ran != 0 || len(b.model.Requests()) != 1 {
		t.Fatalf("after the refusal the tool ran %d times and the model got %d requests; want 0 and 1", ran, len(b.model.Requests()))
	}
	// The session waits for the queued run: a new run may not overtake it.
	if _, err := sess.RunWithOptions(ctx(t), "overtake", agentpg.RunOptions{NoWait: true}); !errors.Is(err, agentpg.ErrSessionBusy) {
		t.Fatalf("a run overtaking the queued one = %v, want ErrSessionBusy", err)
	}

	b.setLimits(t, "acme", agentpg.TenantLimits{})
	if _, err := b.db.Exec(ctx(t), `UPDATE agentpg.river_job SET scheduled_at = now() WHERE args->>'run_id' = $1`, runID); err != nil {
		t.Fatal(err)
	}
	res, err := b.agent.WaitRun(ctx(t), "acme", runID)
	if err != nil || res.Text != "Counted once." || res.Iterations != 2 {
		t.Fatalf("WaitRun = %+v, %v", res, err)
	}
	if ran := runs(); ran != 1 {
		t.Errorf("the tool ran %d times, want once", ran)
	}
	if roles, texts := conversation(t, sess); !slices.Equal(roles, []string{"user", "assistant", "user", "assistant"}) ||
		texts[0] != "count" || texts[3] != "Counted once." {
		t.Errorf("conversation = %q %q", roles, texts)
	}
	if got := eventKinds(t, b.agent, runID); !slices.Equal(got, []string{"text", "tool_call", "tool_result", "text", "run_end:completed"}) {
		t.Errorf("events = %q", got)
	}
}

// A session's daily budget counts that session only.
func TestSessionTokenBudget(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.model.SetResponder(func(agentpgtest.Request) agentpgtest.Reply {
		return agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("ok")},
			Usage: &agentpgtest.Usage{InputTokens: 30, OutputTokens: 20}}
	})
	b.setLimits(t, "acme", agentpg.TenantLimits{TokensPerDay: 1000, PerSession: agentpg.SessionLimits{TokensPerDay: 50}})
	first := b.session(t, "acme", "user-1")
	if _, err := first.Run(ctx(t), "spend"); err != nil {
		t.Fatal(err)
	}
	_, err := first.Run(ctx(t), "spend more")
	refused(t, err, agentpg.LimitTokensPerDay, true)
	if _, err := b.session(t, "acme", "user-2").Run(ctx(t), "spend"); err != nil {
		t.Fatalf("another session of the tenant: %v", err)
	}
}

// Limits are the tenant's own: set, read back, invalid ones refused, and
// another tenant's untouched.
func TestSetTenantLimits(t *testing.T) {
	t.Parallel()
	b := setup(t)
	want := agentpg.TenantLimits{RequestsPerMinute: 10, TokensPerDay: 5000, PerSession: agentpg.SessionLimits{TokensPerDay: 700}}
	b.setLimits(t, "acme", want)
	b.setLimits(t, "globex", agentpg.TenantLimits{RequestsPerMinute: 3})
	if got, err := b.agent.GetTenantLimits(ctx(t), "acme"); err != nil || got != want {
		t.Fatalf("GetTenantLimits = %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []agentpg.TenantLimits{
		{RequestsPerMinute: -1},
		{TokensPerDay: -5},
		{PerSession: agentpg.SessionLimits{RequestsPerMinute: -1}},
		{PerSession: agentpg.SessionLimits{TokensPerDay: -1}},
		{RequestsPerMinute: 1 << 31},
	} {
		if err := b.agent.SetTenantLimits(ctx(t), "acme", bad); !errors.Is(err, agentpg.ErrInvalidArgument) {
			t.Errorf("SetTenantLimits(%+v) = %v, want ErrInvalidArgument", bad, err)
		}
	}
	if err := b.agent.SetTenantLimits(ctx(t), "", want); !errors.Is(err, agentpg.ErrInvalidArgument) {
		t.Errorf("SetTenantLimits without a tenant = %v", err)
	}
	if got, err := b.agent.GetTenantLimits(ctx(t), "acme"); err != nil || got != want {
		t.Fatalf("after invalid limits, GetTenantLimits = %+v, %v; want %+v unchanged", got, err, want)
	}
	if got, err := b.agent.GetTenantLimits(ctx(t), "globex"); err != nil || got != (agentpg.TenantLimits{RequestsPerMinute: 3}) {
		t.Fatalf("the other tenant's limits = %+v, %v", got, err)
	}
	b.setLimits(t, "acme", agentpg.TenantLimits{PerSession: agentpg.SessionLimits{RequestsPerMinute: 4}})
	if got, err := b.agent.GetTenantLimits(ctx(t), "acme"); err != nil || got != (agentpg.TenantLimits{PerSession: agentpg.SessionLimits{RequestsPerMinute: 4}}) {
		t.Fatalf("replaced limits = %+v, %v", got, err)
	}
	b.setLimits(t, "acme", agentpg.TenantLimits{})
	if got, err := b.agent.GetTenantLimits(ctx(t), "acme"); err != nil || got != (agentpg.TenantLimits{}) {
		t.Fatalf("removed limits = %+v, %v", got, err)
	}
	if got, err := b.agent.GetTenantLimits(ctx(t), "globex"); err != nil || got != (agentpg.TenantLimits{RequestsPerMinute: 3}) {
		t.Fatalf("the other tenant's limits after removing acme's = %+v, %v", got, err)
	}
}

// An enqueued run its tenant's limit refuses stays queued, its job snoozed
// until the limit admits it, and then completes.
func TestWorkerSnoozesRefusedRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.model.SetResponder(agentpgtest.Echo)
	sess := b.session(t, "acme", "user-1")
	b.setLimits(t, "acme", agentpg.TenantLimits{RequestsPerMinute: 1})
	if _, err := sess.Run(ctx(t), "first"); err != nil {
		t.Fatal(err)
	}
	runID, err := sess.Enqueue(ctx(t), "second")
	if err != nil {
		t.Fatal(err)
	}
	b.startWorker(t, agentpg.WorkerConfig{})
	var snoozedFor time.Duration
	waitFor(t, func() bool {
		var state string
		err := b.db.QueryRow(ctx(t), `SELECT state, scheduled_at - now() FROM agentpg.river_job WHERE args->>'run_id' = $1`, runID).
			Scan(&state, &snoozedFor)
		return err == nil && state == "scheduled"
	})
	if snoozedFor <= 0 || snoozedFor > time.Minute {
		t.Errorf("the job was snoozed for %s, want until the minute of the first run ends", snoozedFor)
	}
	if info, err := b.agent.GetRun(ctx(t), "acme", runID); err != nil || info.Status != agentpg.RunQueued {
		t.Fatalf("the refused run = %+v, %v; want it still queued", info, err)
	}
	if n := len(b.model.Requests()); n != 1 {
		t.Fatalf("the model received %d requests, want 1", n)
	}
	// Lifting the limit and bringing the snooze's end forward stands for
	// the minute passing.
	b.setLimits(t, "acme", agentpg.TenantLimits{})
	if _, err := b.db.Exec(ctx(t), `UPDATE agentpg.river_job SET scheduled_at = now() WHERE args->>'run_id' = $1`, runID); err != nil {
		t.Fatal(err)
	}
	res, err := b.agent.WaitRun(ctx(t), "acme", runID)
	if err != nil || res.Text != "echo: second" {
		t.Fatalf("WaitRun = %+v, %v", res, err)
	}
}

// Two OS processes hammering one tenant never get more model calls
// admitted together than its requests-per-minute limit in any minute, and
// each refused run says when to retry.
func TestRequestsLimitAcrossProcesses(t *testing.T) {
	t.Parallel()
	const limit, attemptsPerProcess = 20, 20
	b := setup(t)
	var mu sync.Mutex
	var arrivals []time.Time
	b.model.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		mu.Unlock()
		return agentpgtest.Echo(req)
	})
	b.setLimits(t, "acme", agentpg.TenantLimits{RequestsPerMinute: limit})

	children := make([]*exec.Cmd, 2)
	outputs := make([]*strings.Builder, 2)
	for i := range children {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLimitsHelperProcess$", "-test.v")
		cmd.Env = append(os.Environ(),
			"AGENTPG_LIMITS_DB="+b.db.Config().ConnString(),
			"AGENTPG_LIMITS_MODEL="+b.model.URL(),
			fmt.Sprintf("AGENTPG_LIMITS_ATTEMPTS=%d", attemptsPerProcess),
		)
		outputs[i] = &strings.Builder{}
		cmd.Stdout, cmd.Stderr = outputs[i], outputs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		children[i] = cmd
	}
	admitted, refusals := 0, 0
	for i, cmd := range children {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper process %d: %v\n%s", i, err, outputs[i])
		}
		var a, r int
		scanner := bufio.NewScanner(strings.NewReader(outputs[i].String()))
		found := false
		for scanner.Scan() {
			if n, _ := fmt.Sscanf(scanner.Text(), "admitted %d refused %d", &a, &r); n == 2 {
				found = true
			}
		}
		if !found || a+r != attemptsPerProcess {
			t.Fatalf("helper process %d reported no counts, or not %d attempts:\n%s", i, attemptsPerProcess, outputs[i])
		}
		admitted, refusals = admitted+a, refusals+r
	}
	mu.Lock()
	defer mu.Unlock()
	if len(arrivals) != admitted {
		t.Fatalf("the model received %d requests, the processes were admitted %d", len(arrivals), admitted)
	}
	if admitted < limit || refusals == 0 {
		t.Fatalf("admitted %d, refused %d: want the limit, %d, reached", admitted, refusals, limit)
	}
	slices.SortFunc(arrivals, func(x, y time.Time) int { return x.Compare(y) })
	for i, first := range arrivals {
		in := 0
		for _, at := range arrivals[i:] {
			if at.Sub(first) < time.Minute {
				in++
			}
		}
		if in > limit {
			t.Fatalf("%d model calls in the minute from %s, limit %d", in, first.Format(time.StampMilli), limit)
		}
	}
}

// TestLimitsHelperProcess is a process of TestRequestsLimitAcrossProcesses:
// it runs a session of its own of tenant acme as often as it is told,
// counting the runs admitted and those refused by a limit, whose
// RetryAfter must lie within the minute. It does nothing unless started
// by that test.
func TestLimitsHelperProcess(t *testing.T) {
	dsn := os.Getenv("AGENTPG_LIMITS_DB")
	if dsn == "" {
		return
	}
	attempts, err := strconv.Atoi(os.Getenv("AGENTPG_LIMITS_ATTEMPTS"))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	client := anthropic.NewClient(option.WithBaseURL(os.Getenv("AGENTPG_LIMITS_MODEL")), option.WithAPIKey("test"), option.WithMaxRetries(0))
	agent, err := agentpg.New(agentpg.Config{DB: pool, Client: &client, Model: "claude-sonnet-5-5"})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := agent.NewSession(t.Context(), "acme", fmt.Sprintf("process-%d", os.Getpid()), nil)
	if err != nil {
		t.Fatal(err)
	}
	admitted, refusals := 0, 0
	for i := range attempts {
		_, err := sess.Run(t.Context(), fmt.Sprintf("attempt %d", i))
		if le, ok := errors.AsType[*agentpg.LimitError](err); ok {
			if le.RetryAfter <= 0 || le.RetryAfter > time.Minute {
				t.Fatalf("RetryAfter = %s, not within the minute", le.RetryAfter)
			}
			refusals++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		admitted++
	}
	fmt.Printf("admitted %d refused %d\n", admitted, refusals)
}

// Usage anomalies are the tenants whose tokens today exceed a multiple of
// their daily average over the week before.
func TestUsageAnomalies(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.model.SetResponder(func(agentpgtest.Request) agentpgtest.Reply {
		return agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("ok")},
			Usage: &agentpgtest.Usage{InputTokens: 600, OutputTokens: 400}}
	})
	// A week of history: acme used 700 tokens in all (100 a day), steady
	// used 7,000 (1,000 a day).
	_, err := b.db.Exec(ctx(t), `
INSERT INTO agentpg.tenant_usage (tenant_id, day, model, requests, input_tokens, output_tokens)
SELECT tenant_id, (now() AT TIME ZONE 'UTC')::date - d, 'claude-sonnet-5-5', 1, tokens / 2, tokens / 2
FROM (VALUES ('acme', 100), ('steady', 1000)) AS t(tenant_id, tokens), generate_series(1, 7) AS d`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tenant := range []string{"acme", "steady", "newcomer"} {
		if _, err := b.session(t, tenant, "user-1").Run(ctx(t), "spend"); err != nil {
			t.Fatal(err)
		}
	}
	anomalies, err := b.agent.UsageAnomalies(ctx(t), 3)
	if err != nil {
		t.Fatalf("UsageAnomalies: %v", err)
	}
	if len(anomalies) != 1 || anomalies[0].Tenant != "acme" || anomalies[0].TodayTokens != 1000 ||
		anomalies[0].TrailingAverage != 100 || anomalies[0].Ratio != 10 {
		t.Fatalf("anomalies = %+v, want acme at 10 times its average", anomalies)
	}
	if anomalies, err := b.agent.UsageAnomalies(ctx(t), 10); err != nil || len(anomalies) != 0 {
		t.Errorf("anomalies over 10 times = %+v, %v; want none", anomalies, err)
	}
	for _, bad := range []float64{0, -1} {
		if _, err := b.agent.UsageAnomalies(ctx(t), bad); !errors.Is(err, agentpg.ErrInvalidArgument) {
			t.Errorf("UsageAnomalies(%v) = %v, want ErrInvalidArgument", bad, err)
		}
	}
}

// Limits cost no round trip: a plain turn and a tool turn take as many
// round trips with limits as without, the admissions and the usage riding
// in the batches the turn sends anyway.
func TestLimitsAddNoRoundTrip(t *testing.T) {
	t.Parallel()
	echo, err := tool.NewFunc("echo", "Echoes its input.", func(ctx context.Context, in cityInput) (string, error) {
		return in.City, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	counter := &statementCounter{}
	pool, _ := tracedPool(t, agentpgtest.DB(t), counter)
	model := agentpgtest.NewServer(t)
	model.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
		last := req.Messages[len(req.Messages)-1]
		if last.Content[0].Type == "tool_result" || req.LastUserText() == "plain" {
			return agentpgtest.Text("done")
		}
		return agentpgtest.Blocks(agentpgtest.ToolUse(fmt.Sprintf("toolu_%d", len(req.Messages)), "echo", map[string]any{"city": "Oslo"}))
	})
	agent, err := agentpg.New(agentpg.Config{DB: pool, Client: model.Client(), Model: "claude-sonnet-5-5", Tools: []tool.Tool{echo}})
	if err != nil {
		t.Fatal(err)
	}
	roundTrips := func(tenant, prompt string) int64 {
		sess, err := agent.NewSession(ctx(t), tenant, prompt, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sess.Run(ctx(t), "warm the statement caches up"); err != nil {
			t.Fatal(err)
		}
		counter.statements.Store(0)
		counter.on.Store(true)
		defer counter.on.Store(false)
		if _, err := sess.Run(ctx(t), prompt); err != nil {
			t.Fatal(err)
		}
		return counter.statements.Load()
	}
	if err := agent.SetTenantLimits(ctx(t), "limited", agentpg.TenantLimits{RequestsPerMinute: 1000, TokensPerDay: 1 << 40,
		PerSession: agentpg.SessionLimits{RequestsPerMinute: 1000, TokensPerDay: 1 << 40}}); err != nil {
		t.Fatal(err)
	}
	for _, prompt := range []string{"plain", "use the tool"} {
		free, limited := roundTrips("free-"+prompt, prompt), roundTrips("limited", prompt)
		if free != limited {
			t.Errorf("a %q turn takes %d round trips with limits, %d without", prompt, limited, free)
		}
		if prompt == "plain" && free != 2 {
			t.Errorf("a plain turn takes %d round trips, want 2: begin, then complete", free)
		}
	}
}

// A compaction's summary counts in the tenant's usage, as a model call of
// its own, and in the session's token budget.
func TestCompactionCountsInUsage(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *agentpg.Config) {
		c.ContextWindow = 20000
		c.Compaction = agentpg.CompactionConfig{Disabled: true, Strategy: compaction.StrategySummarize}
	})
	b.model.SetResponder(longAnswers(agentpgtest.Text("the user asked many things")))
	sess := buildHistory(t, b.agent, "compacted", 24)
	usage := func() agentpg.DailyUsage {
		t.Helper()
		days, err := b.agent.TenantUsage(ctx(t), "acme", time.Now(), time.Now())
		if err != nil || len(days) != 1 {
			t.Fatalf("TenantUsage = %+v, %v", days, err)
		}
		return days[0]
	}
	before := usage()
	if before.Requests != 24 {
		t.Fatalf("usage before compaction = %+v, want 24 model calls", before)
	}
	event, err := sess.Compact(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	after := usage()
	want := before.Usage
	want.InputTokens += event.Usage.InputTokens
	want.OutputTokens += event.Usage.OutputTokens
	want.CacheReadInputTokens += event.Usage.CacheReadInputTokens
	want.CacheCreationInputTokens += event.Usage.CacheCreationInputTokens
	if after.Requests != 25 || after.Usage != want || event.Usage.OutputTokens == 0 {
		t.Fatalf("usage after compaction = %+v, want %+v and one more call", after, want)
	}
	// The session's budget counts the summary's tokens too.
	sessionTokens := want.InputTokens + want.OutputTokens
	b.setLimits(t, "acme", agentpg.TenantLimits{PerSession: agentpg.SessionLimits{TokensPerDay: sessionTokens}})
	_, err = sess.Run(ctx(t), "one more")
	refused(t, err, agentpg.LimitTokensPerDay, true)
	b.setLimits(t, "acme", agentpg.TenantLimits{PerSession: agentpg.SessionLimits{TokensPerDay: sessionTokens + 1}})
	if _, err := sess.Run(ctx(t), "one more"); err != nil {
		t.Fatalf("run below the session's budget: %v", err)
	}
}

// Config.Prices override the default prices, the longest matching name
// winning; a model without a price is reported so, and invalid prices are
// refused.
func TestPrices(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *agentpg.Config) {
		c.Prices = map[string]agentpg.ModelPrice{"claude-sonnet-5-5": {Input: 1, Output: 2, CacheRead: 0.5, CacheWrite: 4}}
	})
	b.model.SetResponder(func(agentpgtest.Request) agentpgtest.Reply {
		return agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("ok")},
			Usage: &agentpgtest.Usage{InputTokens: 1_000_000, OutputTokens: 1_000_000, CacheReadInputTokens: 2_000_000, CacheCreationInputTokens: 500_000}}
	})
	if _, err := b.session(t, "acme", "user-1").Run(ctx(t), "spend"); err != nil {
		t.Fatal(err)
	}
	cfg := b.cfg
	cfg.Model = "claude-fable-5"
	fable, err := agentpg.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := fable.NewSession(ctx(t), "acme", "user-2", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Run(ctx(t), "spend"); err != nil {
		t.Fatal(err)
	}
	days, err := b.agent.TenantUsage(ctx(t), "acme", time.Now(), time.Now())
	if err != nil || len(days) != 2 {
		t.Fatalf("TenantUsage = %+v, %v", days, err)
	}
	byModel := map[string]agentpg.DailyUsage{days[0].Model: days[0], days[1].Model: days[1]}
	if d := byModel["claude-sonnet-5-5"]; !d.Priced || d.Cost != 1+2+1+2 {
		t.Errorf("claude-sonnet-5-5 = %+v, want $6 at the configured price", d)
	}
	if d := byModel["claude-fable-5"]; d.Priced || d.Cost != 0 || d.Requests != 1 {
		t.Errorf("claude-fable-5 = %+v, want no price", d)
	}
	for _, bad := range []agentpg.ModelPrice{{Input: -1}, {Output: math.NaN()}, {CacheWrite: math.Inf(1)}} {
		cfg := b.cfg
		cfg.Prices = map[string]agentpg.ModelPrice{"claude-x": bad}
		if _, err := agentpg.New(cfg); err == nil || !strings.Contains(err.Error(), "Config.Prices") {
			t.Errorf("New with price %+v = %v, want an error naming Config.Prices", bad, err)
		}
	}
	if _, err := b.agent.TenantUsage(ctx(t), "acme", time.Now(), time.Now().AddDate(0, 0, -1)); !errors.Is(err, agentpg.ErrInvalidArgument) {
		t.Errorf("TenantUsage with to before from = %v, want ErrInvalidArgument", err)
	}
}

// With the audit log on, a change of a tenant's limits is recorded in
// that tenant's chain, with the limits set.
func TestSetTenantLimitsAudited(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *agentpg.Config) { c.Audit = agentpg.AuditConfig{Enabled: true} })
	b.setLimits(t, "acme", agentpg.TenantLimits{RequestsPerMinute: 7})
	if err := b.agent.AuditLog().Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	entries := auditEntries(t, b.agent, "acme")
	if len(entries) != 1 || entries[0].Action != audit.ActionLimitsSet || !entries[0].Success ||
		!strings.Contains(entries[0].Input, `"RequestsPerMinute":7`) {
		t.Fatalf("audit entries = %+v", entries)
	}
	if entries := auditEntries(t, b.agent, "globex"); len(entries) != 0 {
		t.Errorf("another tenant's audit entries = %+v", entries)
	}
}

// Erasing a tenant erases its limits, their counters and its usage, and
// nothing of another tenant's.
func TestEraseTenantErasesLimitsAndUsage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.model.SetResponder(agentpgtest.Echo)
	limits := agentpg.TenantLimits{RequestsPerMinute: 100, TokensPerDay: 1 << 30}
	for _, tenant := range []string{"acme", "globex"} {
		b.setLimits(t, tenant, limits)
		if _, err := b.session(t, tenant, "user-1").Run(ctx(t), "hi"); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.agent.EraseTenant(ctx(t), "acme"); err != nil {
		t.Fatal(err)
	}
	for tenant, want := range map[string]int{"acme": 0, "globex": 1} {
		got, err := b.agent.GetTenantLimits(ctx(t), tenant)
		if err != nil || (got == limits) != (want == 1) {
			t.Errorf("%s's limits after erasing acme = %+v, %v", tenant, got, err)
		}
		days, err := b.agent.TenantUsage(ctx(t), tenant, time.Now(), time.Now())
		if err != nil || len(days) != want {
			t.Errorf("%s's usage after erasing acme = %+v, %v", tenant, days, err)
		}
		var requests, counts int
		err = b.db.QueryRow(ctx(t), `SELECT (SELECT count(*) FROM agentpg.model_requests WHERE tenant_id = $1),
			(SELECT count(*) FROM agentpg.model_request_counts WHERE tenant_id = $1)`, tenant).Scan(&requests, &counts)
		if err != nil || requests != want || counts != want {
			t.Errorf("%s keeps %d admitted calls and %d counts after erasing acme (%v), want %d", tenant, requests, counts, err, want)
		}
	}
}
