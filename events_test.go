package agentpg_test

import (
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
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
