package agentpg

import (
	"context"
	"sync"
	"time"
)

// announceInterval is how often, at most, an Agent announces the runs it
// enqueues to the Workers (a NOTIFY on River's insert channel, which makes
// them fetch). It is the Workers' fetch cooldown: a Worker fetches no more
// often, so announcing every run of a burst would only cost each enqueue
// a notification (taken under PostgreSQL's database-wide NOTIFY lock until
// its commit is flushed) and each listening connection a wake-up. River's
// own client limits its insert notifications the same way.
const announceInterval = 10 * time.Millisecond

// announcer decides which of an Agent's enqueues announce their runs: the
// first in each announceInterval does, in its own statement; a run enqueued
// after it, within the interval, is announced once the interval ends, by
// one notification for all such runs, sent after their commits. No run
// waits for a Worker's poll.
type announcer struct {
	interval time.Duration
	// announce sends the deferred notification.
	announce func()

	mu   sync.Mutex
	last time.Time   // when the last notification was sent or queued
	late *time.Timer // the deferred notification, while one is pending
}

// inline reports whether the run about to be enqueued is to be announced
// by its own statement; if not, deferred must be called once the run is
// committed.
func (an *announcer) inline() bool {
	now := time.Now()
	an.mu.Lock()
	defer an.mu.Unlock()
	if now.Sub(an.last) < an.interval {
		return false
	}
	an.last = now
	return true
}

// deferred schedules one notification at the end of the current interval
// for a run committed unannounced, unless one is pending, which will be
// sent after that commit and so announces it too.
func (an *announcer) deferred() {
	an.mu.Lock()
	defer an.mu.Unlock()
	if an.late != nil {
		return
	}
	an.late = time.AfterFunc(an.interval-time.Since(an.last), func() {
		an.mu.Lock()
		an.late = nil
		an.last = time.Now()
		an.mu.Unlock()
		an.announce()
	})
}

// flush sends a pending notification now.
func (an *announcer) flush() {
	an.mu.Lock()
	pending := an.late != nil && an.late.Stop()
	an.late = nil
	an.mu.Unlock()
	if pending {
		an.announce()
	}
}

// announceRuns notifies the Workers of the Agent's queue that runs were
// enqueued: the deferred notification of an announcer. A failure is
// logged; the Workers' poll finds the runs then.
func (a *Agent) announceRuns() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.store.AnnounceJobs(ctx, a.cfg.Queue); err != nil {
		a.cfg.Logger.WarnContext(ctx, "announcing enqueued runs; the workers' poll will find them", "queue", a.cfg.Queue, "error", err)
	}
}
