package agentpg

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"time"
)

// errNoTurn: the run's turn did not come in time, or the Worker is handing
// its runs back.
var errNoTurn = errors.New("no turn")

// sessionTurns lets the jobs a Worker holds for one session try their runs
// one at a time, the earliest run first, so that a job whose session is
// busy here waits in memory, at no cost to the database, for the run ahead
// of it to end, rather than trying to take the session's lease and
// failing. Across processes, the lease and the run order in the database
// decide, as they always do.
type sessionTurns struct {
	mu    sync.Mutex
	lines map[string][]turnWaiter // by session: those waiting for the turn, by run id
}

// turnWaiter is a job waiting for its session's turn.
type turnWaiter struct {
	runID string
	turn  chan struct{} // receives once the turn is the waiter's
}

// take waits for the session's turn of the run, at most d, and returns the
// func that gives the turn up, to the earliest run waiting for it. It
// returns errNoTurn when d passes, or stop is closed, first.
func (t *sessionTurns) take(sessionID, runID string, d time.Duration, stop <-chan struct{}) (release func(), err error) {
	release = func() { t.pass(sessionID) }
	t.mu.Lock()
	waiting, held := t.lines[sessionID]
	if !held {
		if t.lines == nil {
			t.lines = make(map[string][]turnWaiter)
		}
		t.lines[sessionID] = nil
		t.mu.Unlock()
		return release, nil
	}
	me := turnWaiter{runID: runID, turn: make(chan struct{}, 1)}
	i, _ := slices.BinarySearchFunc(waiting, runID, func(w turnWaiter, id string) int { return strings.Compare(w.runID, id) })
	t.lines[sessionID] = slices.Insert(waiting, i, me)
	t.mu.Unlock()

	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-me.turn:
		return release, nil
	case <-timer.C:
	case <-stop:
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	line := t.lines[sessionID]
	if i := slices.IndexFunc(line, func(w turnWaiter) bool { return w.turn == me.turn }); i >= 0 {
		t.lines[sessionID] = slices.Delete(line, i, i+1)
		return nil, errNoTurn
	}
	// The turn came meanwhile: pass it on.
	t.passLocked(sessionID)
	return nil, errNoTurn
}

// pass gives the session's turn to the earliest run waiting for it, if
// any.
func (t *sessionTurns) pass(sessionID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.passLocked(sessionID)
}

func (t *sessionTurns) passLocked(sessionID string) {
	waiting := t.lines[sessionID]
	if len(waiting) == 0 {
		delete(t.lines, sessionID)
		return
	}
	t.lines[sessionID] = waiting[1:]
	waiting[0].turn <- struct{}{}
}
