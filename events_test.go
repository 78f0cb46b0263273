package agentpg_test

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/tool"
)

// follow returns what RunEvents yields: its events and its errors.
func follow(t *testing.T, agent *agentpg.Agent, tenantID, runID string, afterSeq int64) ([]agentpg.Event, []error) {
	t.Helper()
	var events []agentpg.Event
	var errs []error
	for e, err := range agent.RunEvents(ctx(t), tenantID, runID, afterSeq) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		events = append(events, e)
	}
	return events, errs
}

// A run the tenant does not have yields one error, and nothing else.
func TestRunEventsOfAnotherTenant(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.model.Push(agentpgtest.Text("hello"))
	res, err := b.session(t, "acme", "user-1").Run(ctx(t), "hi")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, tenant, run string
		after             int64
		want              error
	}{
		{"another tenant's run", "globex", res.RunID, 0, agentpg.ErrRunNotFound},
		{"unknown run", "acme", uuid.NewString(), 0, agentpg.ErrRunNotFound},
		{"malformed run id", "acme", "run-1'; --", 0, agentpg.ErrRunNotFound},
		{"no tenant", "", res.RunID, 0, agentpg.ErrInvalidArgument},
		{"negative seq", "acme", res.RunID, -1, agentpg.ErrInvalidArgument},
	} {
		events, errs := follow(t, b.agent, tc.tenant, tc.run, tc.after)
		if len(events) != 0 || len(errs) != 1 || !errors.Is(errs[0], tc.want) {
			t.Errorf("%s: %d events, errors %v; want one %v", tc.name, len(events), errs, tc.want)
		}
	}
	if held := b.db.Stat().AcquiredConns(); held != 0 {
		t.Errorf("%d connections held after the followers ended", held)
	}
}

// A run that finished long ago without storing its end, as one from a
// process that died at the wrong moment, or from before run events, is
// ended by its follower from the run's record.
func TestRunEventsEndsARunThatNeverStoredItsEnd(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.model.Push(agentpgtest.Text("hello"))
	res, err := b.session(t, "acme", "user-1").Run(ctx(t), "hi")
	if err != nil {
		t.Fatal(err)
	}
	// Until the run loop stores its events, the run has none.
	if _, err := b.db.Exec(ctx(t), `DELETE FROM agentpg.run_events WHERE run_id = $1`, res.RunID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.Exec(ctx(t), `UPDATE agentpg.runs SET events_ended = false, finished_at = now() - interval '1 hour' WHERE id = $1`, res.RunID); err != nil {
		t.Fatal(err)
	}
	events, errs := follow(t, b.another(t), "acme", res.RunID, 0)
	if len(errs) != 0 || len(events) == 0 {
		t.Fatalf("events %v, errors %v", events, errs)
	}
	end := events[len(events)-1]
	if end.Kind != agentpg.EventRunEnd || end.Status != "completed" || end.StopReason != res.StopReason || end.Usage != res.Usage {
		t.Fatalf("end %+v, want completed, %s, usage %+v", end, res.StopReason, res.Usage)
	}
	// It is stored: the next follower reads the same end.
	again, errs := follow(t, b.agent, "acme", res.RunID, 0)
	if len(errs) != 0 || len(again) != len(events) || again[len(again)-1].Seq != end.Seq {
		t.Fatalf("second follower: %v, %v", again, errs)
	}
}

// A run's events, followed from another process while it runs, arrive once
// each and in order, through a disconnection, and end with run_end.
func TestRunEventsFollowARun(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	b := setup(t, func(c *agentpg.Config) { c.Tools = []tool.Tool{weatherTool(t, &calls)} })
	sess := b.session(t, "acme", "user-1")
	release := make(chan struct{})
	b.model.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
		if len(req.Messages) == 1 {
			return agentpgtest.Blocks(agentpgtest.TextBlock("let me look"), agentpgtest.ToolUse("toolu_1", "weather", map[string]any{"city": "Paris"}))
		}
		<-release // the follower catches up while the run waits here
		return agentpgtest.Text("sunny, as it happens")
	})
	var streamed []agentpg.Event
	done := make(chan *agentpg.Result, 1)
	go func() {
		res, err := sess.RunWithOptions(ctx(t), "weather?", agentpg.RunOptions{OnEvent: func(e agentpg.Event) { streamed = append(streamed, e) }})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	var runID string
	waitFor(t, func() bool {
		runs, _ := b.agent.ListRuns(ctx(t), "acme", agentpg.RunFilter{}, agentpg.ListOptions{})
		if len(runs.Items) == 1 {
			runID = runs.Items[0].ID
		}
		return runID != "" && calls.Load() == 1
	})

	follower := b.another(t) // another process follows
	var got []agentpg.Event
	for e, err := range follower.RunEvents(ctx(t), "acme", runID, 0) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
		if e.Kind == agentpg.EventToolCall {
			break // disconnect halfway
		}
	}
	close(release)
	for e, err := range follower.RunEvents(ctx(t), "acme", runID, got[len(got)-1].Seq) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	res := <-done
	var kinds []string
	for i, e := range got {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d: %+v", i, e.Seq, got)
		}
		kinds = append(kinds, string(e.Kind))
	}
	want := []string{"text", "tool_call", "tool_result", "text", "run_end"}
	if strings.Join(kinds, ",") != strings.Join(want, ",") {
		t.Fatalf("events %v, want %v", kinds, want)
	}
	if got[0].Text != "let me look" || got[3].Text != "sunny, as it happens" || got[2].Text != "sunny in Paris" {
		t.Fatalf("texts %q %q %q", got[0].Text, got[2].Text, got[3].Text)
	}
	end := got[len(got)-1]
	if end.Status != agentpg.RunCompleted || end.StopReason != "end_turn" || end.Usage.OutputTokens != res.Usage.OutputTokens {
		t.Fatalf("run_end %+v, result usage %+v", end, res.Usage)
	}
	if len(streamed) < len(got)-1 {
		t.Fatalf("OnEvent saw %d events, the table %d", len(streamed), len(got))
	}
}
