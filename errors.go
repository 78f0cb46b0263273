package agentpg

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/anthropics/anthropic-sdk-go/v2"
)

// Errors callers branch on with errors.Is.
var (
	// ErrSessionNotFound: the tenant has no session with that id or
	// identifier. A session of another tenant is not found either.
	ErrSessionNotFound = errors.New("session not found")
	// ErrSessionExists: the tenant already has a session with that
	// identifier.
	ErrSessionExists = errors.New("session already exists")
	// ErrSessionBusy: another run holds the session and the caller asked
	// not to wait (RunOptions.NoWait), or its context ended while waiting.
	ErrSessionBusy = errors.New("session busy")
	// ErrLeaseLost: the run's lease on its session was taken over (it had
	// expired); the run could not write and stopped.
	ErrLeaseLost = errors.New("session lease lost")
	// ErrInvalidArgument: a tenant id, identifier or prompt is empty or too
	// large.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrHookRejected: an OnBeforeMessage or OnAfterMessage hook returned an
	// error; the error also wraps the hook's own.
	ErrHookRejected = errors.New("rejected by hook")
	// ErrIncompleteResponse: the model's answer ended before it was complete
	// (a cut stream). Nothing of it was stored.
	ErrIncompleteResponse = errors.New("incomplete model response")
	// ErrEmptyResponse: the model answered with no content.
	ErrEmptyResponse = errors.New("empty model response")
	// ErrMaxTokens: the answer reached MaxTokens before any usable text, or
	// in the middle of a tool call.
	ErrMaxTokens = errors.New("response reached max_tokens")
	// ErrRefused: the model declined to answer. The exchange, the refusal
	// included, is stored with the failed run for the audit trail but left
	// out of the conversation.
	ErrRefused = errors.New("model refused the request")
	// ErrContextWindowExceeded: the conversation no longer fits the model's
	// context window.
	ErrContextWindowExceeded = errors.New("context window exceeded")
	// ErrNoTools: the model asked for a tool but the agent has none.
	ErrNoTools = errors.New("model requested a tool but no tools are configured")
	// ErrMaxIterations: the run reached Config.MaxIterations model calls
	// without a final answer.
	ErrMaxIterations = errors.New("run reached its maximum number of iterations")
	// ErrAgentDepth: an agent offered as a tool was called deeper than
	// Config.MaxAgentDepth.
	ErrAgentDepth = errors.New("nested agents too deep")
	// ErrCallbackPanic: a hook or an OnEvent callback panicked during a
	// run. The run was recorded as failed and the session released; the
	// error carries the panic's value, and the stack is logged.
	ErrCallbackPanic = errors.New("callback panicked")
	// ErrToolCallDenied: an OnBeforeToolCall hook denied a tool call. The
	// model receives it as an error tool_result; the run goes on.
	ErrToolCallDenied = errors.New("tool call denied")
	// ErrRateLimited matches an *APIError with status 429.
	ErrRateLimited = errors.New("rate limited by the Anthropic API")
	// ErrOverloaded matches an *APIError with status 529.
	ErrOverloaded = errors.New("Anthropic API overloaded")
)

// RetryError is the error of a model call that failed after it was
// retried, or whose failure could have been retried but not within
// Config.Retry.MaxElapsed or the context's deadline (see RetryConfig). It
// wraps the last attempt's error: errors.Is(err, ErrOverloaded),
// errors.Is(err, ErrIncompleteResponse) and errors.As(err, &apiErr) see
// through it. A call that was not retried because its error cannot be,
// or because retries are off, fails with that error as it is.
type RetryError struct {
	// Attempts is how many times the call was tried.
	Attempts int
	// Last is the error of the last attempt.
	Last error
}

// Error says how many attempts the call took, and how the last one failed.
func (e *RetryError) Error() string {
	attempts := "attempts"
	if e.Attempts == 1 {
		attempts = "attempt"
	}
	return fmt.Sprintf("gave up on the model call after %d %s: %v", e.Attempts, attempts, e.Last)
}

// Unwrap returns the last attempt's error.
func (e *RetryError) Unwrap() error { return e.Last }

// APIError is an error answered by the Anthropic API. errors.As also finds
// the SDK's *anthropic.Error behind it.
type APIError struct {
	StatusCode int    // HTTP status, such as 429 or 529
	Type       string // the API's error type, such as "overloaded_error"
	RequestID  string // the API's request id, for support
	Message    string // the API's explanation
	err        *anthropic.Error
}

// Error describes the error by status, type, message and request id.
func (e *APIError) Error() string {
	msg := fmt.Sprintf("anthropic API: %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Type != "" {
		msg += " (" + e.Type + ")"
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.RequestID != "" {
		msg += " [request " + e.RequestID + "]"
	}
	return msg
}

// Unwrap returns the SDK's error.
func (e *APIError) Unwrap() error { return e.err }

// Is reports whether the error matches ErrRateLimited or ErrOverloaded.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrRateLimited:
		return e.StatusCode == http.StatusTooManyRequests
	case ErrOverloaded:
		return e.StatusCode == 529 || e.Type == "overloaded_error"
	}
	return false
}

// apiError converts an SDK error into an *APIError; other errors pass as they
// are.
func apiError(err error) error {
	var sdkErr *anthropic.Error
	if !errors.As(err, &sdkErr) {
		return err
	}
	return &APIError{
		StatusCode: sdkErr.StatusCode,
		Type:       string(sdkErr.Type()),
		RequestID:  sdkErr.RequestID,
		Message:    sdkErr.Message,
		err:        sdkErr,
	}
}
