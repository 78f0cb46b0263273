package tool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// Executor defaults.
const (
	DefaultTimeout        = 30 * time.Second
	DefaultMaxParallel    = 8
	DefaultMaxOutputBytes = 64 << 10
)

// Errors wrapped in Result.Err. Use errors.Is to test for them.
var (
	// ErrToolTimeout means the tool did not finish within its timeout.
	ErrToolTimeout = errors.New("timed out")
	// ErrToolPanic means the tool panicked.
	ErrToolPanic = errors.New("panicked")
)

// Call is one tool_use block requested by the model.
type Call struct {
	// ID is the tool_use ID, echoed in the matching tool_result.
	ID string
	// Name is the name of the tool to run.
	Name string
	// Input is the JSON object the model passed to the tool.
	Input json.RawMessage
}

// Result is the outcome of one Call.
type Result struct {
	Call
	// Output is the content of the tool_result: the tool's output, or a
	// description of the failure when IsError is set. It is capped at the
	// Executor's MaxOutputBytes.
	Output string
	// IsError reports whether the call failed. It is set exactly when Err
	// is non-nil.
	IsError bool
	// Err is why the call failed: a *ValidationError, the tool's own error,
	// or an error wrapping ErrUnknownTool, ErrToolTimeout, ErrToolPanic or the
	// context's error.
	Err error
	// StartedAt is when the call began running, after waiting for a slot.
	StartedAt time.Time
	// FinishedAt is when its result was ready.
	FinishedAt time.Time
}

// Executor runs the tool calls of a model turn: it validates each input
// against its tool's schema, runs the calls in parallel, each under a timeout,
// and turns every failure, including panics, into an error Result. An
// Executor is safe for concurrent use, and its setters may be called while
// it runs.
type Executor struct {
	reg *Registry

	defaultTimeout atomic.Int64 // time.Duration
	maxParallel    atomic.Int64
	maxOutputBytes atomic.Int64
}

// NewExecutor returns an Executor running the tools of reg with the default
// settings.
func NewExecutor(reg *Registry) *Executor {
	e := &Executor{reg: reg}
	e.SetDefaultTimeout(0)
	e.SetMaxParallel(0)
	e.SetMaxOutputBytes(0)
	return e
}

// SetDefaultTimeout sets the timeout of tools that do not implement
// TimeoutTool or whose Timeout is not positive. A non-positive d restores
// DefaultTimeout.
func (e *Executor) SetDefaultTimeout(d time.Duration) {
	if d <= 0 {
		d = DefaultTimeout
	}
	e.defaultTimeout.Store(int64(d))
}

// SetMaxParallel sets how many calls of a batch may run at once. A
// non-positive n restores DefaultMaxParallel.
func (e *Executor) SetMaxParallel(n int) {
	if n <= 0 {
		n = DefaultMaxParallel
	}
	e.maxParallel.Store(int64(n))
}

// SetMaxOutputBytes sets the size above which an output is truncated. A
// non-positive n restores DefaultMaxOutputBytes.
func (e *Executor) SetMaxOutputBytes(n int) {
	if n <= 0 {
		n = DefaultMaxOutputBytes
	}
	e.maxOutputBytes.Store(int64(n))
}

// Registry returns the registry the Executor runs tools from.
func (e *Executor) Registry() *Registry {
	return e.reg
}

// Execute runs calls in parallel and returns their results in call order. It
// returns once every call has a result; a call that outlives its timeout or
// ctx is abandoned, with its context cancelled.
func (e *Executor) Execute(ctx context.Context, calls []Call) []Result {
	results := make([]Result, len(calls))
	slots := semaphore.NewWeighted(e.maxParallel.Load())
	var wg sync.WaitGroup
	for i, call := range calls {
		wg.Go(func() {
			if err := slots.Acquire(ctx, 1); err != nil {
				results[i] = e.result(call, time.Now(), "", interrupted(call.Name, err))
				return
			}
			defer slots.Release(1)
			results[i] = e.run(ctx, call)
		})
	}
	wg.Wait()
	return results
}

// run validates and executes one call.
func (e *Executor) run(ctx context.Context, call Call) Result {
	start := time.Now()
	t, err := e.reg.validate(call.Name, call.Input)
	if err != nil {
		return e.result(call, start, "", err)
	}
	output, err := invoke(ctx, t, call.Input, e.timeout(t))
	return e.result(call, start, output, err)
}

// timeout returns the timeout t runs under.
func (e *Executor) timeout(t Tool) time.Duration {
	if tt, ok := t.(TimeoutTool); ok {
		if d := tt.Timeout(); d > 0 {
			return d
		}
	}
	return time.Duration(e.defaultTimeout.Load())
}

// result builds the Result of call, reporting err, if any, as its output.
func (e *Executor) result(call Call, start time.Time, output string, err error) Result {
	if err != nil {
		output = err.Error()
	}
	return Result{
		Call:       call,
		Output:     capOutput(output, int(e.maxOutputBytes.Load())),
		IsError:    err != nil,
		Err:        err,
		StartedAt:  start,
		FinishedAt: time.Now(),
	}
}

// invoke runs t.Execute under timeout. It returns as soon as the tool
// finishes, the timeout expires or ctx is done, whichever comes first; in the
// latter cases the tool's goroutine is left to finish on its own with its
// context cancelled.
func invoke(ctx context.Context, t Tool, input json.RawMessage, timeout time.Duration) (string, error) {
	name := t.Name()
	callCtx, cancel := context.WithTimeoutCause(ctx, timeout, ErrToolTimeout)
	defer cancel()

	type outcome struct {
		output string
		err    error
	}
	done := make(chan outcome, 1) // buffered: an abandoned tool must not block
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- outcome{err: fmt.Errorf("tool %q %w: %v", name, ErrToolPanic, r)}
			}
		}()
		output, err := t.Execute(callCtx, input)
		done <- outcome{output, err}
	}()

	select {
	case o := <-done:
		if o.err != nil && callCtx.Err() != nil {
			// The tool gave up because its context ended; say why.
			return "", stopped(callCtx, name, timeout)
		}
		return o.output, o.err
	case <-callCtx.Done():
		return "", stopped(callCtx, name, timeout)
	}
}

// stopped explains why callCtx ended: either its timeout expired or the
// batch's context ended first.
func stopped(callCtx context.Context, name string, timeout time.Duration) error {
	if errors.Is(context.Cause(callCtx), ErrToolTimeout) {
		return fmt.Errorf("tool %q %w after %s", name, ErrToolTimeout, timeout)
	}
	return interrupted(name, callCtx.Err())
}

// interrupted reports a call stopped because the batch's context ended.
func interrupted(name string, err error) error {
	return fmt.Errorf("tool %q interrupted: %w", truncate(name, maxEchoBytes), err)
}

// capOutput truncates output to at most n bytes on a UTF-8 boundary, noting
// the cut so the model knows it is not seeing everything.
func capOutput(output string, n int) string {
	if len(output) <= n {
		return output
	}
	shown := prefix(output, n)
	return fmt.Sprintf("%s\n[output truncated: %d bytes total, %d shown]", shown, len(output), len(shown))
}
