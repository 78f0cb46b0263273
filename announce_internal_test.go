package agentpg

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentpg/agentpg/agentpgtest"
)

func TestAnnouncerSendsOneLateNotificationPerInterval(t *testing.T) {
	var sent atomic.Int32
	fired := make(chan struct{}, 10)
	an := &announcer{interval: 20 * time.Millisecond, announce: func() {
		sent.Add(1)
		fired <- struct{}{}
	}}
	if !an.inline() {
		t.Fatal("the first enqueue is not announced by its own statement")
	}
	if an.inline() {
		t.Fatal("a second enqueue within the interval is announced by its own statement")
	}
	an.deferred()
	an.deferred()
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("the runs enqueued unannounced were never announced")
	}
	an.flush() // nothing pending
	if n := sent.Load(); n != 1 {
		t.Fatalf("two runs enqueued unannounced in one interval were announced %d times, want once", n)
	}
	if an.inline() {
		t.Fatal("an enqueue right after the late notification is announced by its own statement")
	}
	an.deferred()
	an.flush()
	if n := sent.Load(); n != 2 {
		t.Fatalf("flush sent %d notifications in all, want 2", n-1)
	}
}

// TestEnqueuedBurstStartsWithoutPolling enqueues runs faster than the Agent
// announces them, to a Worker that never polls: every run must still start,
// announced by fewer notifications than runs.
func TestEnqueuedBurstStartsWithoutPolling(t *testing.T) {
	db := agentpgtest.DB(t)
	agent, err := New(Config{DB: db, Client: agentpgtest.NewServer(t).Client(), Model: "claude-sonnet-5-5"})
	if err != nil {
		t.Fatal(err)
	}
	// Wider than the default, so that the burst surely falls in one
	// interval, even on a slow machine.
	agent.announcer.interval = time.Second
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	listener, err := db.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Release()
	channel := agent.cfg.Schema + ".river_insert"
	if _, err := listener.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		t.Fatal(err)
	}

	worker, err := NewWorker(agent, WorkerConfig{Concurrency: 4, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := worker.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = worker.Stop(context.Background()) })

	sessions := make([]*Session, 2)
	for i := range sessions {
		if sessions[i], err = agent.NewSession(ctx, "acme", fmt.Sprintf("burst-%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	// A first run, announced by its own statement, which the Worker
	// fetches and executes.
	first, err := sessions[0].Enqueue(ctx, "first")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := agent.WaitRun(ctx, "acme", first); err != nil {
		t.Fatal(err)
	}
	// River's leader inserts the Worker's periodic jobs once elected, and
	// announces them: wait for them, lest their announcement fetch the
	// burst's runs.
	for periodic := 0; periodic < 2; time.Sleep(10 * time.Millisecond) {
		err := db.QueryRow(ctx, "SELECT count(DISTINCT kind) FROM "+pgx.Identifier{agent.cfg.Schema}.Sanitize()+
			".river_job WHERE kind IN ('agentpg_rescue_stuck_runs', 'agentpg_apply_retention')").Scan(&periodic)
		if err != nil {
			t.Fatal(err)
		}
	}
	// Then a burst within a second of the first run's announcement.
	const burst = 10
	var ids []string
	for i := range burst {
		id, err := sessions[i%2].Enqueue(ctx, "burst")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		if _, err := agent.WaitRun(ctx, "acme", id); err != nil {
			t.Fatalf("run %s of the burst: %v (never announced?)", id, err)
		}
	}

	notifications := 0
	for {
		readCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := listener.Conn().WaitForNotification(readCtx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		notifications++
	}
	// River's periodic jobs, inserted on start, announce themselves too.
	if notifications >= burst {
		t.Errorf("%d runs enqueued within a second were announced by %d notifications (with the first run's and the Worker's own), want fewer", burst+1, notifications)
	}
}
