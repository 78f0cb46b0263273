package agentpg_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
)

// fastRetries retries with the default attempts and budget, but tiny
// backoffs, which also cap the server's retry-after.
func fastRetries(c *agentpg.Config) {
	c.Retry = agentpg.RetryConfig{InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
}

// noRetries turns retries off, for tests of what a failed model call
// leaves behind.
func noRetries(c *agentpg.Config) {
	c.Retry = agentpg.RetryConfig{MaxAttempts: 1}
}

// partial is a reply whose stream is cut after two text deltas; its
// message_start reports input tokens (and 1 output token), as the API's
// does.
func partial(inputTokens int64) agentpgtest.Reply {
	return agentpgtest.Reply{
		Content:  []agentpgtest.Block{agentpgtest.TextBlock("a partial answer that never ends")},
		Usage:    &agentpgtest.Usage{InputTokens: inputTokens, OutputTokens: 50},
		CutAfter: 5, // message_start, ping, content_block_start, two deltas
	}
}

// A model call that fails with an error the API may not repeat is retried
// in the same run: one run, one iteration, the answer stored once, and the
// retry sends the same request.
func TestRetryTransientErrors(t *testing.T) {
	t.Parallel()
	cases := map[string]agentpgtest.Reply{
		"overloaded":   agentpgtest.Overloaded(),
		"rate limited": agentpgtest.RateLimited(),
		"server error": agentpgtest.APIError(500, "api_error", ""),
		"unavailable":  agentpgtest.APIError(503, "", ""),
	}
	for name, failure := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, fastRetries)
			sess := b.session(t, "acme", "user-1")
			answer := agentpgtest.Usage{InputTokens: 42, CacheReadInputTokens: 7, OutputTokens: 3}
			b.model.Push(failure, agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("the answer")}, Usage: &answer})

			res, err := sess.Run(ctx(t), "question")
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if res.Text != "the answer" || res.Iterations != 1 {
				t.Fatalf("result %q after %d iterations", res.Text, res.Iterations)
			}
			// The failure reported no usage: the run's is the answer's.
			want := agentpg.Usage{InputTokens: 42, CacheReadInputTokens: 7, OutputTokens: 3}
			if res.Usage != want {
				t.Fatalf("usage %+v, want %+v", res.Usage, want)
			}
			reqs := b.model.Requests()
			if len(reqs) != 2 || string(reqs[0].Body) != string(reqs[1].Body) {
				t.Fatalf("%d requests; the retry must send the same request", len(reqs))
			}
			if _, texts := conversation(t, sess); !slices.Equal(texts, []string{"question", "the answer"}) {
				t.Fatalf("stored %q", texts)
			}
			runs, err := sess.Runs(ctx(t), agentpg.ListOptions{})
			if err != nil || len(runs.Items) != 1 {
				t.Fatalf("runs %+v, %v", runs, err)
			}
			if r := runs.Items[0]; r.Status != "completed" || r.Usage != want || r.Iterations != 1 {
				t.Fatalf("stored run %+v", r)
			}
		})
	}
}

// The server's retry-after is waited for.
func TestRetryHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	const retryAfter = 200 * time.Millisecond
	b := setup(t, func(c *agentpg.Config) {
		c.Retry = agentpg.RetryConfig{InitialBackoff: time.Millisecond, MaxBackoff: 10 * time.Second}
	})
	var mu sync.Mutex
	var at []time.Time
	b.model.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
		mu.Lock()
		defer mu.Unlock()
		at = append(at, time.Now())
		if len(at) == 1 {
			return agentpgtest.Reply{Status: 429, ErrorType: "rate_limit_error", RetryAfter: retryAfter}
		}
		return agentpgtest.Text("after waiting")
	})
	sess := b.session(t, "acme", "user-1")
	res, err := sess.Run(ctx(t), "question")
	if err != nil || res.Text != "after waiting" {
		t.Fatalf("%v, %v", res, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(at) != 2 {
		t.Fatalf("%d requests", len(at))
	}
	// A generous lower bound: the retry came after the wait asked for, not
	// after the 1ms backoff.
	if waited := at[1].Sub(at[0]); waited < retryAfter*9/10 {
		t.Fatalf("retried after %s, the server asked for %s", waited, retryAfter)
	}
}

// MaxBackoff cuts a server's long retry-after short.
func TestRetryAfterCappedByMaxBackoff(t *testing.T) {
	t.Parallel()
	b := setup(t, fastRetries)
	b.model.Push(agentpgtest.Reply{Status: 529, ErrorType: "overloaded_error", RetryAfter: time.Hour}, agentpgtest.Text("soon"))
	sess := b.session(t, "acme", "user-1")
	c, cancel := context.WithTimeout(ctx(t), 30*time.Second)
	defer cancel()
	if res, err := sess.Run(c, "question"); err != nil || res.Text != "soon" {
		t.Fatalf("%v, %v", res, err)
	}
}

// A stream that is cut, or that ends with an error event, before the
// answer is complete is retried: the stored answer is the whole second
// one, nothing of the partial one is stored or returned, and OnEvent is
// told to drop the deltas it got before the retry.
func TestRetryIncompleteStreams(t *testing.T) {
	t.Parallel()
	cases := map[string]agentpgtest.Reply{
		"cut stream": partial(100),
		"error event": {
			Content:     []agentpgtest.Block{agentpgtest.TextBlock("a partial answer that never ends")},
			StreamError: "overloaded_error",
		},
		"api_error event": {
			Content:     []agentpgtest.Block{agentpgtest.TextBlock("a partial answer that never ends")},
			StreamError: "api_error",
		},
	}
	for name, failure := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, fastRetries)
			sess := b.session(t, "acme", "user-1")
			b.model.Push(failure, agentpgtest.Text("the complete answer"))

			var events []agentpg.Event
			res, err := sess.RunWithOptions(ctx(t), "question", agentpg.RunOptions{OnEvent: func(e agentpg.Event) { events = append(events, e) }})
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if res.Text != "the complete answer" || res.Iterations != 1 || len(b.model.Requests()) != 2 {
				t.Fatalf("result %q after %d iterations, %d requests", res.Text, res.Iterations, len(b.model.Requests()))
			}
			msgs, err := sess.Messages(ctx(t), agentpg.ListOptions{Limit: agentpg.MaxPageSize})
			if err != nil {
				t.Fatal(err)
			}
			var texts []string
			for _, m := range msgs.Items {
				texts = append(texts, m.Text())
			}
			if !slices.Equal(texts, []string{"question", "the complete answer"}) {
				t.Fatalf("stored %q", texts)
			}
			retry := slices.IndexFunc(events, func(e agentpg.Event) bool { return e.Kind == agentpg.EventRetry })
			if retry < 0 || events[retry].Text == "" {
				t.Fatalf("no EventRetry saying why: %+v", events)
			}
			var dropped, kept strings.Builder
			for i, e := range events {
				if e.Kind != agentpg.EventText {
					continue
				}
				if i < retry {
					dropped.WriteString(e.Text)
				} else {
					kept.WriteString(e.Text)
				}
			}
			if !strings.HasPrefix("a partial answer that never ends", dropped.String()) || dropped.Len() == 0 || kept.String() != "the complete answer" {
				t.Fatalf("deltas %q before the retry, %q after", dropped.String(), kept.String())
			}
		})
	}
}

// A call that fails on every attempt fails the run with a RetryError that
// says how many attempts it took and wraps the last error; the run counts
// the tokens of the attempts that reported usage, and the session stays
// usable.
func TestRetryBudgetSpent(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		replies []agentpgtest.Reply
		want    error
		usage   agentpg.Usage // of the failed run
	}{
		"overloaded": {
			[]agentpgtest.Reply{agentpgtest.Overloaded(), agentpgtest.Overloaded(), agentpgtest.Overloaded(), agentpgtest.Overloaded()},
			agentpg.ErrOverloaded, agentpg.Usage{},
		},
		"cut streams": {
			[]agentpgtest.Reply{partial(100), agentpgtest.Overloaded(), partial(200), agentpgtest.Overloaded()},
			agentpg.ErrOverloaded, agentpg.Usage{InputTokens: 300, OutputTokens: 2},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, fastRetries)
			sess := b.session(t, "acme", "user-1")
			b.model.Push(tc.replies...)

			_, err := sess.Run(ctx(t), "doomed")
			var retryErr *agentpg.RetryError
			if !errors.Is(err, tc.want) || !errors.As(err, &retryErr) || retryErr.Attempts != 4 ||
				!strings.Contains(err.Error(), "after 4 attempts") {
				t.Fatalf("err = %v, want a RetryError after 4 attempts matching %v", err, tc.want)
			}
			var apiErr *agentpg.APIError
			if !errors.As(err, &apiErr) || apiErr.StatusCode != 529 {
				t.Fatalf("the last API error is not reachable: %v", err)
			}
			if n := len(b.model.Requests()); n != 4 || b.model.Pending() != 0 {
				t.Fatalf("%d requests, %d replies left", n, b.model.Pending())
			}
			runs, err := sess.Runs(ctx(t), agentpg.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if r := runs.Items[0]; r.Status != "failed" || r.Usage != tc.usage || !strings.Contains(r.Error, "after 4 attempts") {
				t.Fatalf("failed run %+v, want usage %+v", r, tc.usage)
			}

			b.model.Push(agentpgtest.Text("back again"))
			if res, err := sess.Run(ctx(t), "again"); err != nil || res.Text != "back again" {
				t.Fatalf("run after the failure: %v, %v", res, err)
			}
			if _, texts := conversation(t, sess); !slices.Equal(texts, []string{"doomed", "again", "back again"}) {
				t.Fatalf("stored %q", texts)
			}
			if last := b.model.Requests()[4]; len(last.Messages) != 1 {
				t.Fatalf("the failed run leaked into the conversation: %d messages sent", len(last.Messages))
			}
		})
	}
}

// A retry that could not start within Retry.MaxElapsed is not waited for.
func TestRetryWithinMaxElapsed(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *agentpg.Config) {
		c.Retry = agentpg.RetryConfig{InitialBackoff: time.Millisecond, MaxBackoff: time.Minute, MaxElapsed: 50 * time.Millisecond}
	})
	b.model.Push(agentpgtest.Reply{Status: 529, ErrorType: "overloaded_error", RetryAfter: 30 * time.Second}, agentpgtest.Text("too late"))
	sess := b.session(t, "acme", "user-1")
	start := time.Now()
	_, err := sess.Run(ctx(t), "question")
	var retryErr *agentpg.RetryError
	if !errors.As(err, &retryErr) || retryErr.Attempts != 1 || !errors.Is(err, agentpg.ErrOverloaded) {
		t.Fatalf("err = %v, want a RetryError after 1 attempt", err)
	}
	if n := len(b.model.Requests()); n != 1 {
		t.Fatalf("%d requests", n)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("the run waited %s for a retry past its budget", took)
	}
}

// Errors the API would answer again are not retried.
func TestRetryNotForClientErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, fastRetries)
	sess := b.session(t, "acme", "user-1")
	for _, status := range []int{400, 401, 403, 404, 413} {
		before := len(b.model.Requests())
		b.model.Push(agentpgtest.APIError(status, "", ""))
		_, err := sess.Run(ctx(t), "question")
		var apiErr *agentpg.APIError
		var retryErr *agentpg.RetryError
		if !errors.As(err, &apiErr) || apiErr.StatusCode != status || errors.As(err, &retryErr) {
			t.Fatalf("%d: err = %v, want the API error as it is", status, err)
		}
		if n := len(b.model.Requests()) - before; n != 1 {
			t.Fatalf("%d: %d requests", status, n)
		}
	}
	// Neither is an error event the API would send again.
	b.model.Push(agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("partial")}, StreamError: "invalid_request_error"})
	before := len(b.model.Requests())
	if _, err := sess.Run(ctx(t), "question"); err == nil || len(b.model.Requests())-before != 1 {
		t.Fatalf("err = %v after %d requests", err, len(b.model.Requests())-before)
	}
}

// A run whose context ends is not retried, neither during an attempt nor
// while waiting for the next.
func TestRetryStopsWhenContextEnds(t *testing.T) {
	t.Parallel()
	cases := map[string]agentpgtest.Reply{
		"during the call": {Content: []agentpgtest.Block{agentpgtest.TextBlock("slow")}, Delay: time.Minute},
		"during the wait": {Status: 529, ErrorType: "overloaded_error", RetryAfter: 10 * time.Second},
	}
	for name, reply := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(c *agentpg.Config) {
				c.Retry = agentpg.RetryConfig{InitialBackoff: time.Millisecond, MaxBackoff: time.Minute, MaxElapsed: time.Hour}
			})
			b.model.Push(reply)
			sess := b.session(t, "acme", "user-1")
			c, cancel := context.WithCancel(ctx(t))
			done := make(chan error, 1)
			go func() { _, err := sess.Run(c, "question"); done <- err }()
			waitFor(t, func() bool { return len(b.model.Requests()) == 1 })
			time.Sleep(20 * time.Millisecond) // into the call's delay, or the wait
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			if n := len(b.model.Requests()); n != 1 {
				t.Fatalf("%d requests", n)
			}
		})
	}
}

// AgentPG's calls do not let the SDK retry, whatever the client or
// Config.RequestOptions say: retries of both would multiply.
func TestRetrySDKRetriesOff(t *testing.T) {
	t.Parallel()
	model := agentpgtest.NewServer(t)
	b := setup(t, func(c *agentpg.Config) {
		c.Client = model.Client(option.WithMaxRetries(5))
		c.RequestOptions = []option.RequestOption{option.WithMaxRetries(3)}
		c.Retry = agentpg.RetryConfig{MaxAttempts: 2, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}
	})
	model.Push(agentpgtest.Overloaded(), agentpgtest.Overloaded(), agentpgtest.Text("not reached"))
	sess := b.session(t, "acme", "user-1")
	if _, err := sess.Run(ctx(t), "question"); !errors.Is(err, agentpg.ErrOverloaded) {
		t.Fatalf("err = %v", err)
	}
	if n := len(model.Requests()); n != 2 {
		t.Fatalf("%d requests for 2 attempts", n)
	}
}

// The tokens of a retried call's failed attempts count in its run's usage,
// while the stored answer keeps its own usage, from which the next turn's
// context size is estimated.
func TestRetryCountsFailedAttemptsOfSuccessfulRuns(t *testing.T) {
	t.Parallel()
	b := setup(t, fastRetries)
	sess := b.session(t, "acme", "user-1")
	answer := agentpgtest.Usage{InputTokens: 1000, OutputTokens: 7}
	b.model.Push(partial(1000), agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("whole")}, Usage: &answer})
	res, err := sess.Run(ctx(t), "question")
	if err != nil {
		t.Fatal(err)
	}
	// The cut attempt's message_start reported 1000 input tokens and 1
	// output token.
	want := agentpg.Usage{InputTokens: 2000, OutputTokens: 8}
	if res.Usage != want || res.Iterations != 1 {
		t.Fatalf("usage %+v after %d iterations, want %+v after 1", res.Usage, res.Iterations, want)
	}
	runs, err := sess.Runs(ctx(t), agentpg.ListOptions{})
	if err != nil || runs.Items[0].Usage != want {
		t.Fatalf("stored run %+v, %v", runs.Items, err)
	}
	msgs, err := sess.Messages(ctx(t), agentpg.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if u := msgs.Items[1].Usage; u == nil || *u != (agentpg.Usage{InputTokens: 1000, OutputTokens: 7}) {
		t.Fatalf("the stored answer's usage is %+v, want its own", u)
	}
}
