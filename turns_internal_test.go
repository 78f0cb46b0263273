package agentpg

import (
	"errors"
	"testing"
	"time"
)

// waiting returns how many jobs wait for the session's turn.
func (t *sessionTurns) waiting(sessionID string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.lines[sessionID])
}

// TestSessionTurnsGoInRunOrder checks that the jobs of one session take
// its turn one at a time, the earliest run first whatever the order they
// came in, while another session's job is not held up, and that nothing
// is left once all are done.
func TestSessionTurnsGoInRunOrder(t *testing.T) {
	var turns sessionTurns
	release, err := turns.take("s1", "run-2", time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := turns.take("s2", "run-9", time.Minute, nil)
	if err != nil {
		t.Fatalf("another session's job: %v", err)
	}
	got := make(chan string, 2)
	for i, run := range []string{"run-4", "run-3"} {
		go func() {
			next, err := turns.take("s1", run, time.Minute, nil)
			if err != nil {
				got <- err.Error()
				return
			}
			got <- run
			next()
		}()
		for turns.waiting("s1") <= i && len(got) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	select {
	case run := <-got:
		t.Fatalf("%s took the turn while run-2 held it", run)
	default:
	}
	release()
	if first, second := <-got, <-got; first != "run-3" || second != "run-4" {
		t.Fatalf("turns went to %s then %s, want run-3 then run-4", first, second)
	}
	other()
	if n := len(turns.lines); n != 0 {
		t.Fatalf("%d sessions left in the lines once every job is done", n)
	}
}

// TestSessionTurnsGiveUp checks that a job stops waiting when its time is
// up or when it is stopped, leaving its place, and that a turn given to a
// job that gave up meanwhile is passed on.
func TestSessionTurnsGiveUp(t *testing.T) {
	var turns sessionTurns
	release, err := turns.take("s", "run-1", time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := turns.take("s", "run-2", time.Millisecond, nil); !errors.Is(err, errNoTurn) {
		t.Fatalf("waiting past its time: %v, want errNoTurn", err)
	}
	stop := make(chan struct{})
	close(stop)
	if _, err := turns.take("s", "run-3", time.Minute, stop); !errors.Is(err, errNoTurn) {
		t.Fatalf("stopped: %v, want errNoTurn", err)
	}
	if n := turns.waiting("s"); n != 0 {
		t.Fatalf("%d jobs still wait after giving up", n)
	}
	// A turn passed to a job as it gives up goes on to the next one.
	turns.mu.Lock()
	gaveUp := turnWaiter{runID: "run-4", turn: make(chan struct{}, 1)}
	next := turnWaiter{runID: "run-5", turn: make(chan struct{}, 1)}
	turns.lines["s"] = []turnWaiter{gaveUp, next}
	turns.mu.Unlock()
	release() // to run-4
	turns.mu.Lock()
	turns.passLocked("s") // what take does when run-4's turn came as it gave up
	turns.mu.Unlock()
	select {
	case <-next.turn:
	default:
		t.Fatal("the turn of a job that gave up was not passed on")
	}
}
