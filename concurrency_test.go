package agentpg_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
)

// Sixteen goroutines, on two agents as two processes would be, run one
// session at once. The runs take turns: every request the model gets is a
// valid conversation and the stored history is complete and alternating.
func TestConcurrentRunsOnOneSession(t *testing.T) {
	t.Parallel()
	b := setup(t)
	agents := []*agentpg.Agent{b.agent, b.another(t)}
	b.model.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
		return agentpgtest.Text("answer to " + req.LastUserText())
	})
	first := b.session(t, "acme", "shared")

	const runs = 16
	var wg sync.WaitGroup
	errs := make(chan error, runs)
	for i := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			agent := agents[i%2]
			sess, err := agent.LoadSession(ctx(t), "acme", first.ID)
			if err != nil {
				errs <- err
				return
			}
			prompt := fmt.Sprintf("prompt %02d", i)
			res, err := sess.Run(ctx(t), prompt)
			if err == nil && res.Text != "answer to "+prompt {
				err = fmt.Errorf("run %d got %q", i, res.Text)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}

	if rejected := b.model.Rejected(); len(rejected) > 0 {
		t.Fatalf("model rejected %d requests: %s", len(rejected), rejected[0].RejectReason)
	}
	roles, texts := conversation(t, first)
	if len(roles) != 2*runs {
		t.Fatalf("stored %d messages, want %d", len(roles), 2*runs)
	}
	var prompts []string
	for i, role := range roles {
		want := []string{"user", "assistant"}[i%2]
		if role != want {
			t.Fatalf("message %d is %s, want %s: %q", i, role, want, roles)
		}
		if role == "user" {
			prompts = append(prompts, texts[i])
			if texts[i+1] != "answer to "+texts[i] {
				t.Fatalf("answer %q follows prompt %q", texts[i+1], texts[i])
			}
		}
	}
	slices.Sort(prompts)
	if prompts[0] != "prompt 00" || prompts[runs-1] != fmt.Sprintf("prompt %02d", runs-1) || len(slices.Compact(prompts)) != runs {
		t.Fatalf("prompts stored: %q", prompts)
	}
	// Each request carried the whole conversation before it.
	for _, req := range b.model.Requests() {
		if n := len(req.Messages); n%2 != 1 {
			t.Fatalf("a request carried %d messages", n)
		}
	}
}

func TestNoWaitFailsFastOnBusySession(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sess := b.session(t, "acme", "user-1")
	b.model.Push(agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("slow")}, Delay: time.Second})

	done := make(chan error, 1)
	go func() {
		_, err := sess.Run(ctx(t), "slow question")
		done <- err
	}()
	waitFor(t, func() bool { return len(b.model.Requests()) == 1 })

	// The same process and another process both fail at once.
	other, err := b.another(t).LoadSession(ctx(t), "acme", sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*agentpg.Session{"same process": sess, "other process": other} {
		_, err := s.RunWithOptions(ctx(t), "impatient", agentpg.RunOptions{NoWait: true})
		if !errors.Is(err, agentpg.ErrSessionBusy) {
			t.Errorf("%s: err = %v, want ErrSessionBusy", name, err)
		}
	}
	if err := b.agent.DeleteSession(ctx(t), "acme", sess.ID); !errors.Is(err, agentpg.ErrSessionBusy) {
		t.Errorf("delete while running: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("slow run: %v", err)
	}
	if roles, _ := conversation(t, sess); len(roles) != 2 {
		t.Fatalf("busy runs left messages: %q", roles)
	}
}

// waitFor polls cond until it holds, failing the test after ten seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Two processes, four goroutines each, keep one session busy: waiters are
// served in arrival order across processes, so both make progress and no
// turn is overtaken by more runs than were queued ahead of it.
func TestFairTurnsAcrossProcesses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	agents := []*agentpg.Agent{b.agent, b.another(t)}
	var mu sync.Mutex
	var started []string // prompts, in the order their runs reached the model
	b.model.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
		mu.Lock()
		started = append(started, req.LastUserText())
		mu.Unlock()
		return agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("ok")}, Delay: 10 * time.Millisecond}
	})
	first := b.session(t, "acme", "shared")
	const goroutines, turns = 4, 3
	arrivals := make(map[string]int) // prompt -> how many runs had started when it arrived
	var wg sync.WaitGroup
	for p, agent := range agents {
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sess, err := agent.LoadSession(ctx(t), "acme", first.ID)
				if err != nil {
					t.Error(err)
					return
				}
				for turn := range turns {
					prompt := fmt.Sprintf("process %d goroutine %d turn %d", p, g, turn)
					mu.Lock()
					arrivals[prompt] = len(started)
					mu.Unlock()
					if _, err := sess.Run(ctx(t), prompt); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	if len(started) != len(agents)*goroutines*turns {
		t.Fatalf("%d runs reached the model, want %d", len(started), len(agents)*goroutines*turns)
	}
	// The other seven goroutines can be queued ahead of a turn. A turn takes
	// its place in the queue only after its first try, so a run or two
	// arriving meanwhile may go first; polling let one turn wait while 14
	// went first, and starved a process for good under load.
	limit := len(agents)*goroutines + 2
	for i, prompt := range started {
		if overtaken := i - arrivals[prompt]; overtaken > limit {
			t.Errorf("%q waited while %d runs went first; at most %d could be queued ahead of it", prompt, overtaken, limit)
		}
	}
}
