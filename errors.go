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
	// ErrRunNotFound: the tenant has no run with that id. A run of another
	// tenant is not found either.
	ErrRunNotFound = errors.New("run not found")
	// ErrRunFinished: the run has already ended; it cannot be cancelled or
	// resumed.
	ErrRunFinished = errors.New("run already finished")
	// ErrRunCancelled: the run was cancelled by CancelRun.
	ErrRunCancelled = errors.New("run cancelled")
	// ErrRunInterrupted: the run's process went away in the middle of it,
	// and it could not be resumed.
	ErrRunInterrupted = errors.New("run interrupted")
	// ErrApprovalPending: tool calls of the run wait for DecideToolCall, so
	// it cannot be resumed yet; a session with such a run takes no new run
	// until they are decided or the run is cancelled.
	ErrApprovalPending = errors.New("tool calls await approval")
	// ErrNotPending: DecideToolCall on a call that does not wait for a
	// decision, such as one decided already.
	ErrNotPending = errors.New("tool call not awaiting approval")
	// ErrInvalidResponse: the model's answer broke the API's rules (such as
	// two tool calls with one id); nothing of it was executed.
	ErrInvalidResponse = errors.New("invalid model response")
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

// Failure classes: why a run failed, stored with it so that any process can
// tell (RunInfo.ErrorClass), and matched by the RunError of a stored run
// with errors.Is.
var failureClasses = []struct {
	class string
	err   error
}{
	{"cancelled", ErrRunCancelled},
	{"interrupted", ErrRunInterrupted},
	{"lease_lost", ErrLeaseLost},
	{"panic", ErrCallbackPanic},
	{"hook_rejected", ErrHookRejected},
	{"max_iterations", ErrMaxIterations},
	{"max_tokens", ErrMaxTokens},
	{"refused", ErrRefused},
	{"empty_response", ErrEmptyResponse},
	{"incomplete_response", ErrIncompleteResponse},
	{"invalid_response", ErrInvalidResponse},
	{"context_window", ErrContextWindowExceeded},
	{"no_tools", ErrNoTools},
	{"rate_limited", ErrRateLimited},
	{"overloaded", ErrOverloaded},
	{"limit", ErrLimitExceeded},
}

// failureClass names the class of a run's failure: one of failureClasses,
// "api_error" for another error of the API, or "error".
func failureClass(err error) string {
	for _, c := range failureClasses {
		if errors.Is(err, c.err) {
			return c.class
		}
	}
	if _, ok := errors.AsType[*APIError](err); ok {
		return "api_error"
	}
	return "error"
}

// RunError is the error of a run that ended without an answer, as stored:
// what WaitRun and ResumeRun return for a failed or cancelled run, from any
// process. errors.Is matches the sentinel of its Class, such as
// ErrMaxIterations or ErrRunCancelled.
type RunError struct {
	RunID  string
	Status string // "failed" or "cancelled"
	Class  string // see RunInfo.ErrorClass
	Reason string // the error the run failed with, as text
}

// Error says which run failed, and why.
func (e *RunError) Error() string {
	return fmt.Sprintf("agentpg: run %s %s: %s", e.RunID, e.Status, e.Reason)
}

// Is matches the sentinel error of the failure's class.
func (e *RunError) Is(target error) bool {
	for _, c := range failureClasses {
		if c.class == e.Class {
			return target == c.err
		}
	}
	return false
}
