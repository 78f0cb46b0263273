package agentpg

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/agentpg/agentpg/agentpgtest"
)

// A zero RetryConfig gets the defaults; setting one backoff alone adjusts
// the other's default so that the config stays valid.
func TestRetryConfigDefaults(t *testing.T) {
	t.Parallel()
	cases := map[string]struct{ in, want RetryConfig }{
		"zero": {RetryConfig{}, RetryConfig{
			MaxAttempts: DefaultRetryMaxAttempts, InitialBackoff: DefaultRetryInitialBackoff,
			MaxBackoff: DefaultRetryMaxBackoff, MaxElapsed: DefaultRetryMaxElapsed,
		}},
		"off": {RetryConfig{MaxAttempts: 1}, RetryConfig{
			MaxAttempts: 1, InitialBackoff: DefaultRetryInitialBackoff,
			MaxBackoff: DefaultRetryMaxBackoff, MaxElapsed: DefaultRetryMaxElapsed,
		}},
		"short max": {RetryConfig{MaxBackoff: time.Millisecond}, RetryConfig{
			MaxAttempts: DefaultRetryMaxAttempts, InitialBackoff: time.Millisecond,
			MaxBackoff: time.Millisecond, MaxElapsed: DefaultRetryMaxElapsed,
		}},
		"long initial": {RetryConfig{InitialBackoff: time.Minute}, RetryConfig{
			MaxAttempts: DefaultRetryMaxAttempts, InitialBackoff: time.Minute,
			MaxBackoff: time.Minute, MaxElapsed: DefaultRetryMaxElapsed,
		}},
	}
	for name, tc := range cases {
		if got := (Config{Retry: tc.in}).withDefaults().Retry; got != tc.want {
			t.Errorf("%s: %+v, want %+v", name, got, tc.want)
		}
	}
}

// apiErr returns an API error of status and type, answered with headers.
func apiErr(status int, typ string, headers ...string) *APIError {
	h := http.Header{}
	for i := 0; i+1 < len(headers); i += 2 {
		h.Set(headers[i], headers[i+1])
	}
	return &APIError{StatusCode: status, Type: typ, err: &anthropic.Error{StatusCode: status, Response: &http.Response{StatusCode: status, Header: h}}}
}

func TestRetryableErrors(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		err  error
		want bool
	}{
		"400":               {apiErr(400, "invalid_request_error"), false},
		"401":               {apiErr(401, "authentication_error"), false},
		"403":               {apiErr(403, "permission_error"), false},
		"404":               {apiErr(404, "not_found_error"), false},
		"413":               {apiErr(413, "request_too_large"), false},
		"408":               {apiErr(408, ""), true},
		"409":               {apiErr(409, ""), true},
		"429":               {apiErr(429, "rate_limit_error"), true},
		"500":               {apiErr(500, "api_error"), true},
		"503":               {apiErr(503, ""), true},
		"529":               {apiErr(529, "overloaded_error"), true},
		"529 told not to":   {apiErr(529, "overloaded_error", "x-should-retry", "false"), false},
		"400 told to retry": {apiErr(400, "invalid_request_error", "x-should-retry", "true"), false},
		"stream overloaded": {apiErr(200, "overloaded_error"), true},
		"stream api_error":  {apiErr(200, "api_error"), true},
		"stream invalid":    {apiErr(200, "invalid_request_error"), false},
		"cut stream":        {fmt.Errorf("%w: %w", ErrIncompleteResponse, io.ErrUnexpectedEOF), true},
		"connection reset":  {fmt.Errorf("calling the model: %w", &net.OpError{Op: "read", Err: syscall.ECONNRESET}), true},
		"in a RetryError":   {&RetryError{Attempts: 2, Last: apiErr(529, "overloaded_error")}, true},
	}
	for name, tc := range cases {
		if got := retryable(tc.err); got != tc.want {
			t.Errorf("%s: retryable(%v) = %v, want %v", name, tc.err, got, tc.want)
		}
	}
}

// Without retry-after, each wait is random (full jitter) below
// InitialBackoff·2ⁿ⁻¹, at most MaxBackoff.
func TestRetryBackoffJitter(t *testing.T) {
	t.Parallel()
	c := RetryConfig{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	for n, ceiling := range map[int]time.Duration{
		1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond,
		4: 800 * time.Millisecond, 5: time.Second, 100: time.Second,
	} {
		var longest time.Duration
		for range 2000 {
			d := c.backoff(n, apiErr(529, "overloaded_error"))
			if d < 0 || d > ceiling {
				t.Fatalf("retry %d: waits %s, want at most %s", n, d, ceiling)
			}
			longest = max(longest, d)
		}
		if longest < ceiling/2 {
			t.Errorf("retry %d: the longest of 2000 waits is %s: no jitter up to %s?", n, longest, ceiling)
		}
	}
	huge := RetryConfig{InitialBackoff: time.Hour, MaxBackoff: 1 << 62}
	if d := huge.backoff(1000, io.ErrUnexpectedEOF); d < 0 || d > huge.MaxBackoff {
		t.Fatalf("overflowing backoff: %s", d)
	}
}

// The API's retry-after-ms, else retry-after (seconds or an HTTP date),
// sets the wait, cut to MaxBackoff.
func TestRetryBackoffHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	c := RetryConfig{InitialBackoff: time.Millisecond, MaxBackoff: 30 * time.Second}
	cases := map[string]struct {
		err      error
		min, max time.Duration
	}{
		"retry-after-ms":           {apiErr(429, "", "retry-after-ms", "250"), 250 * time.Millisecond, 250 * time.Millisecond},
		"ms before seconds":        {apiErr(429, "", "retry-after-ms", "1500.5", "retry-after", "2"), 1500500 * time.Microsecond, 1500500 * time.Microsecond},
		"retry-after seconds":      {apiErr(529, "", "retry-after", "2"), 2 * time.Second, 2 * time.Second},
		"retry-after date":         {apiErr(503, "", "retry-after", time.Now().Add(10*time.Second).UTC().Format(http.TimeFormat)), 8 * time.Second, 10 * time.Second},
		"capped":                   {apiErr(429, "", "retry-after", "3600"), 30 * time.Second, 30 * time.Second},
		"past date":                {apiErr(429, "", "retry-after", "Mon, 02 Jan 2006 15:04:05 GMT"), 0, 0},
		"invalid falls to jitter":  {apiErr(429, "", "retry-after", "soon"), 0, time.Millisecond},
		"negative falls to jitter": {apiErr(429, "", "retry-after-ms", "-5"), 0, time.Millisecond},
	}
	for name, tc := range cases {
		if d := c.backoff(1, tc.err); d < tc.min || d > tc.max {
			t.Errorf("%s: waits %s, want %s to %s", name, d, tc.min, tc.max)
		}
	}
}

func TestRetryErrorWrapsTheLastError(t *testing.T) {
	t.Parallel()
	last := apiErr(529, "overloaded_error")
	var err error = fmt.Errorf("agentpg: run r1: %w", &RetryError{Attempts: 4, Last: last})
	var apiErr *APIError
	var retryErr *RetryError
	if !errors.Is(err, ErrOverloaded) || !errors.As(err, &apiErr) || apiErr != last || !errors.As(err, &retryErr) || retryErr.Attempts != 4 {
		t.Fatalf("%v does not unwrap to its last error", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "after 4 attempts: anthropic API: 529") {
		t.Fatalf("message %q", msg)
	}
	if msg := (&RetryError{Attempts: 1, Last: io.ErrUnexpectedEOF}).Error(); !strings.Contains(msg, "after 1 attempt: unexpected EOF") {
		t.Fatalf("message %q", msg)
	}
}

// retryAgent returns an agent, without a database, that calls model with
// tiny backoffs.
func retryAgent(model *agentpgtest.Server) *Agent {
	cfg := Config{
		Client: model.Client(),
		Model:  "claude-sonnet-5-5",
		Retry:  RetryConfig{InitialBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond},
	}
	return &Agent{cfg: cfg.withDefaults()}
}

func hello() modelRequest {
	return modelRequest{
		params:   anthropic.MessageNewParams{Model: "claude-sonnet-5-5", MaxTokens: 1024},
		messages: []byte(`{"content":[{"text":"hello","type":"text"}],"role":"user"}`),
	}
}

// cutReply is a reply whose stream is cut after its first text delta; its
// message_start reports usage, as the API's does.
func cutReply(input int64) agentpgtest.Reply {
	return agentpgtest.Reply{
		Content:  []agentpgtest.Block{agentpgtest.TextBlock("a partial answer that never ends")},
		Usage:    &agentpgtest.Usage{InputTokens: input, OutputTokens: 50},
		CutAfter: 5, // message_start, ping, content_block_start, two deltas
	}
}

// A retried call's answer carries its own usage, and spent() adds the
// failed attempts' usage to it. A call that gives up returns the usage of
// every attempt, and no partial answer.
func TestRetryCallModelCountsEveryAttempt(t *testing.T) {
	t.Parallel()
	t.Run("success", func(t *testing.T) {
		t.Parallel()
		model := agentpgtest.NewServer(t)
		model.Push(cutReply(1000), agentpgtest.Reply{
			Content: []agentpgtest.Block{agentpgtest.TextBlock("the complete answer")},
			Usage:   &agentpgtest.Usage{InputTokens: 1000, CacheReadInputTokens: 20, OutputTokens: 7},
		})
		var events []Event
		resp, err := retryAgent(model).callModel(t.Context(), hello(), func(e Event) { events = append(events, e) })
		if err != nil {
			t.Fatal(err)
		}
		if got := responseText(resp.Message); got != "the complete answer" {
			t.Fatalf("answer %q", got)
		}
		if u := resp.Usage; u.InputTokens != 1000 || u.CacheReadInputTokens != 20 || u.OutputTokens != 7 {
			t.Fatalf("the answer's usage is %+v, want the API's for it", u)
		}
		// The cut attempt's message_start reported 1000 input tokens and 1
		// output token.
		if u := resp.spent(); u.InputTokens != 2000 || u.CacheReadInputTokens != 20 || u.OutputTokens != 8 {
			t.Fatalf("spent %+v, want both attempts' usage", u)
		}
		if resp.attempts != 2 || len(model.Requests()) != 2 {
			t.Fatalf("%d attempts, %d requests", resp.attempts, len(model.Requests()))
		}
		last := slices.IndexFunc(events, func(e Event) bool { return e.Kind == EventRetry })
		if last < 0 || !strings.Contains(events[last].Text, ErrIncompleteResponse.Error()) {
			t.Fatalf("no EventRetry saying why: %+v", events)
		}
		var before, after strings.Builder
		for i, e := range events {
			if e.Kind == EventText && i < last {
				before.WriteString(e.Text)
			} else if e.Kind == EventText {
				after.WriteString(e.Text)
			}
		}
		if before.Len() == 0 || after.String() != "the complete answer" {
			t.Fatalf("deltas %q before the retry, %q after", before.String(), after.String())
		}
	})
	t.Run("gave up", func(t *testing.T) {
		t.Parallel()
		model := agentpgtest.NewServer(t)
		model.Push(cutReply(100), agentpgtest.Overloaded(), cutReply(200), cutReply(300))
		resp, err := retryAgent(model).callModel(t.Context(), hello(), nil)
		var retryErr *RetryError
		if !errors.As(err, &retryErr) || retryErr.Attempts != 4 || !errors.Is(err, ErrIncompleteResponse) {
			t.Fatalf("err = %v, want a RetryError after 4 attempts wrapping ErrIncompleteResponse", err)
		}
		if resp == nil || len(resp.Content) != 0 {
			t.Fatalf("response %+v, want one carrying usage only", resp)
		}
		if u := resp.spent(); u.InputTokens != 600 || u.OutputTokens != 3 || resp.Usage.InputTokens != 600 {
			t.Fatalf("usage %+v, spent %+v, want every attempt's", resp.Usage, u)
		}
	})
	t.Run("refused every time", func(t *testing.T) {
		t.Parallel()
		model := agentpgtest.NewServer(t)
		model.Push(agentpgtest.Overloaded(), agentpgtest.Overloaded(), agentpgtest.Overloaded(), agentpgtest.Overloaded())
		resp, err := retryAgent(model).callModel(t.Context(), hello(), nil)
		if !errors.Is(err, ErrOverloaded) || resp != nil {
			t.Fatalf("%+v, %v: want no response, ErrOverloaded", resp, err)
		}
	})
}
