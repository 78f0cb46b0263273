package agentpg

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
)

// retryable reports whether the error of one attempt of a model call may
// go away if the call is tried again (see RetryConfig). The caller checks
// its context first: a call whose context ended is never retried.
func retryable(err error) bool {
	var apiErr *APIError
	if !errors.As(err, &apiErr) {
		// No answer from the API: the connection failed, or the stream
		// ended before the answer was complete.
		return true
	}
	if apiErr.StatusCode >= 400 {
		if header(apiErr, "x-should-retry") == "false" {
			return false
		}
		switch code := apiErr.StatusCode; {
		case code == http.StatusRequestTimeout, code == http.StatusConflict,
			code == http.StatusTooManyRequests, code >= 500:
			return true
		}
		return false
	}
	// An error event in a stream that began with status 200.
	switch apiErr.Type {
	case "overloaded_error", "api_error", "rate_limit_error", "timeout_error":
		return true
	}
	return false
}

// backoff returns the wait before retry n of a call (1 for the first
// retry) that failed with err: the wait the API asked for in its
// retry-after-ms or retry-after header if it did, a random wait (full
// jitter) up to InitialBackoff·2ⁿ⁻¹ otherwise; at most MaxBackoff either
// way.
func (c RetryConfig) backoff(n int, err error) time.Duration {
	if d, ok := retryAfter(err); ok {
		return min(d, c.MaxBackoff)
	}
	ceiling := c.InitialBackoff
	for i := 1; i < n && ceiling < c.MaxBackoff; i++ {
		if ceiling > c.MaxBackoff/2 {
			ceiling = c.MaxBackoff
			break
		}
		ceiling *= 2
	}
	ceiling = min(ceiling, c.MaxBackoff)
	if ceiling <= 0 {
		return 0
	}
	return rand.N(ceiling)
}

// retryAfter returns the wait the API asked for with the error err
// answered: its retry-after-ms header (milliseconds), or else its
// retry-after header (seconds, or an HTTP date).
func retryAfter(err error) (time.Duration, bool) {
	var apiErr *APIError
	if !errors.As(err, &apiErr) {
		return 0, false
	}
	if v := header(apiErr, "retry-after-ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms >= 0 {
			return time.Duration(ms * float64(time.Millisecond)), true
		}
	}
	v := header(apiErr, "retry-after")
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 {
		return time.Duration(s * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(t)), true
	}
	return 0, false
}

// header returns a header of the HTTP response that carried an API error.
func header(apiErr *APIError, name string) string {
	if apiErr.err == nil || apiErr.err.Response == nil {
		return ""
	}
	return apiErr.err.Response.Header.Get(name)
}

// sleep waits for d, or until ctx ends, which it reports with the context's
// cause.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// addUsage adds the token counts of v to u: those AgentPG counts (see
// Usage).
func addUsage(u *anthropic.Usage, v anthropic.Usage) {
	u.InputTokens += v.InputTokens
	u.OutputTokens += v.OutputTokens
	u.CacheReadInputTokens += v.CacheReadInputTokens
	u.CacheCreationInputTokens += v.CacheCreationInputTokens
}
