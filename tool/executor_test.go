package tool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

func newTestExecutor(t *testing.T, tools ...Tool) *Executor {
	t.Helper()
	reg, err := NewRegistry(tools...)
	if err != nil {
		t.Fatal(err)
	}
	return NewExecutor(reg)
}

// sleeper returns a tool that sleeps for d, or until its context ends.
func sleeper(name string, d time.Duration) *fakeTool {
	return &fakeTool{name: name, exec: func(ctx context.Context, _ json.RawMessage) (string, error) {
		select {
		case <-time.After(d):
			return name + " done", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}}
}

// stubborn returns a tool that ignores its context and blocks until the test
// ends.
func stubborn(t *testing.T, name string) *fakeTool {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	return &fakeTool{name: name, exec: func(context.Context, json.RawMessage) (string, error) {
		<-release
		return "too late", nil
	}}
}

func calls(names ...string) []Call {
	cs := make([]Call, len(names))
	for i, name := range names {
		cs[i] = Call{ID: fmt.Sprintf("toolu_%d", i), Name: name, Input: json.RawMessage(`{}`)}
	}
	return cs
}

func TestExecuteRunsCallsInParallel(t *testing.T) {
	t.Parallel()

	const sleep = 200 * time.Millisecond
	exec := newTestExecutor(t, sleeper("a", sleep), sleeper("b", sleep), sleeper("c", sleep), sleeper("d", sleep))

	start := time.Now()
	results := exec.Execute(t.Context(), calls("a", "b", "c", "d"))
	if elapsed := time.Since(start); elapsed >= 600*time.Millisecond {
		t.Errorf("4 calls sleeping %s took %s; they did not run in parallel", sleep, elapsed)
	}
	for i, res := range results {
		want := calls("a", "b", "c", "d")[i]
		if res.ID != want.ID || res.Name != want.Name {
			t.Errorf("results[%d] is for call %s/%s, want %s/%s", i, res.ID, res.Name, want.ID, want.Name)
		}
		if res.IsError || res.Output != want.Name+" done" {
			t.Errorf("results[%d] = %q (IsError %v, Err %v)", i, res.Output, res.IsError, res.Err)
		}
		if res.StartedAt.IsZero() || res.FinishedAt.Before(res.StartedAt.Add(sleep)) {
			t.Errorf("results[%d] ran from %s to %s, want at least %s", i, res.StartedAt, res.FinishedAt, sleep)
		}
	}
}

func TestExecuteMaxParallel(t *testing.T) {
	t.Parallel()

	const sleep = 50 * time.Millisecond
	var running, peak atomic.Int32
	tool := &fakeTool{name: "t", exec: func(context.Context, json.RawMessage) (string, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(sleep)
		return "", nil
	}}
	exec := newTestExecutor(t, tool)
	exec.SetMaxParallel(1)

	start := time.Now()
	exec.Execute(t.Context(), calls("t", "t", "t", "t"))
	if elapsed := time.Since(start); elapsed < 4*sleep {
		t.Errorf("4 serial calls sleeping %s took only %s", sleep, elapsed)
	}
	if p := peak.Load(); p != 1 {
		t.Errorf("%d calls ran at once, want 1", p)
	}
}

func TestExecuteTimeout(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name           string
		tool           *fakeTool
		defaultTimeout time.Duration
		wantOutput     string
	}{
		{
			name:           "default timeout",
			tool:           stubborn(t, "slow"),
			defaultTimeout: 50 * time.Millisecond,
			wantOutput:     `tool "slow" timed out after 50ms`,
		},
		{
			name:           "tool timeout overrides default",
			tool:           &fakeTool{name: "slow", timeout: 30 * time.Millisecond, exec: stubborn(t, "slow").exec},
			defaultTimeout: time.Hour,
			wantOutput:     `tool "slow" timed out after 30ms`,
		},
		{
			name:           "tool returning its context's error",
			tool:           &fakeTool{name: "slow", timeout: 30 * time.Millisecond, exec: sleeper("slow", time.Hour).exec},
			defaultTimeout: time.Hour,
			wantOutput:     `tool "slow" timed out after 30ms`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			exec := newTestExecutor(t, tt.tool)
			exec.SetDefaultTimeout(tt.defaultTimeout)

			start := time.Now()
			res := exec.Execute(t.Context(), calls("slow"))[0]
			if elapsed := time.Since(start); elapsed > time.Second {
				t.Errorf("timed-out call returned after %s", elapsed)
			}
			if !res.IsError || !errors.Is(res.Err, ErrToolTimeout) {
				t.Errorf("IsError = %v, Err = %v; want ErrToolTimeout", res.IsError, res.Err)
			}
			if res.Output != tt.wantOutput {
				t.Errorf("Output = %q, want %q", res.Output, tt.wantOutput)
			}
		})
	}
}

func TestExecuteTimeoutCancelsToolContext(t *testing.T) {
	t.Parallel()

	cancelled := make(chan struct{})
	tool := &fakeTool{name: "t", timeout: 20 * time.Millisecond, exec: func(ctx context.Context, _ json.RawMessage) (string, error) {
		<-ctx.Done()
		close(cancelled)
		return "", nil
	}}
	newTestExecutor(t, tool).Execute(t.Context(), calls("t"))
	select {
	case <-cancelled:
	case <-time.After(time.Second):
		t.Fatal("the timed-out tool's context was not cancelled")
	}
}

func TestExecuteParentCancellation(t *testing.T) {
	t.Parallel()

	exec := newTestExecutor(t, stubborn(t, "stuck"), sleeper("sleepy", time.Hour))
	exec.SetMaxParallel(2) // the third call waits for a slot
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)

	start := time.Now()
	results := exec.Execute(ctx, calls("stuck", "sleepy", "sleepy"))
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("cancelled batch returned after %s", elapsed)
	}
	for i, res := range results {
		if !res.IsError || !errors.Is(res.Err, context.Canceled) {
			t.Errorf("results[%d]: IsError = %v, Err = %v; want context.Canceled", i, res.IsError, res.Err)
		}
		if errors.Is(res.Err, ErrToolTimeout) {
			t.Errorf("results[%d] reports a timeout: %v", i, res.Err)
		}
		if want := fmt.Sprintf("tool %q interrupted: context canceled", res.Name); res.Output != want {
			t.Errorf("results[%d].Output = %q, want %q", i, res.Output, want)
		}
	}
}

func TestExecuteRecoversPanic(t *testing.T) {
	t.Parallel()

	tool := &fakeTool{name: "boom", exec: func(context.Context, json.RawMessage) (string, error) {
		panic("kaboom")
	}}
	res := newTestExecutor(t, tool).Execute(t.Context(), calls("boom"))[0]
	if !res.IsError || !errors.Is(res.Err, ErrToolPanic) {
		t.Errorf("IsError = %v, Err = %v; want ErrToolPanic", res.IsError, res.Err)
	}
	if want := `tool "boom" panicked: kaboom`; res.Output != want {
		t.Errorf("Output = %q, want %q", res.Output, want)
	}
}

func TestExecuteToolError(t *testing.T) {
	t.Parallel()

	errNotFound := errors.New("file not found")
	tool := &fakeTool{name: "read", exec: func(context.Context, json.RawMessage) (string, error) {
		return "partial", fmt.Errorf("reading /x: %w", errNotFound)
	}}
	res := newTestExecutor(t, tool).Execute(t.Context(), calls("read"))[0]
	if !res.IsError || !errors.Is(res.Err, errNotFound) {
		t.Errorf("IsError = %v, Err = %v; want the tool's error", res.IsError, res.Err)
	}
	if res.Output != "reading /x: file not found" {
		t.Errorf("Output = %q, want the tool's error message", res.Output)
	}
}

func TestExecuteUnknownTool(t *testing.T) {
	t.Parallel()

	res := newTestExecutor(t, &fakeTool{name: "read"}, &fakeTool{name: "write"}).Execute(t.Context(), calls("delete"))[0]
	if !res.IsError || !errors.Is(res.Err, ErrUnknownTool) {
		t.Errorf("IsError = %v, Err = %v; want ErrUnknownTool", res.IsError, res.Err)
	}
	if want := `unknown tool "delete"; available tools: read, write`; !strings.Contains(res.Output, want) {
		t.Errorf("Output = %q, want it to contain %q", res.Output, want)
	}
}

func TestExecuteValidatesBeforeExecuting(t *testing.T) {
	t.Parallel()

	var executed atomic.Int32
	tool := &fakeTool{
		name: "read",
		schema: ToolSchema{
			Properties: map[string]PropertyDef{"path": {Type: "string"}},
			Required:   []string{"path"},
		},
		exec: func(context.Context, json.RawMessage) (string, error) {
			executed.Add(1)
			return "contents", nil
		},
	}
	exec := newTestExecutor(t, tool)

	results := exec.Execute(t.Context(), []Call{
		{ID: "1", Name: "read", Input: json.RawMessage(`{}`)},
		{ID: "2", Name: "read", Input: json.RawMessage(`{"path": 1}`)},
		{ID: "3", Name: "read", Input: json.RawMessage(`not json`)},
	})
	if n := executed.Load(); n != 0 {
		t.Fatalf("Execute was called %d times for invalid inputs", n)
	}
	for i, res := range results {
		var verr *ValidationError
		if !res.IsError || !errors.As(res.Err, &verr) {
			t.Errorf("results[%d]: IsError = %v, Err = %v; want *ValidationError", i, res.IsError, res.Err)
			continue
		}
		if res.Output != verr.Error() {
			t.Errorf("results[%d].Output = %q, want the violations %q", i, res.Output, verr)
		}
	}

	res := exec.Execute(t.Context(), []Call{{Name: "read", Input: json.RawMessage(`{"path": "/a"}`)}})[0]
	if res.IsError || res.Output != "contents" || executed.Load() != 1 {
		t.Errorf("valid call: Output = %q, Err = %v, executions = %d", res.Output, res.Err, executed.Load())
	}
}

func TestExecuteTruncatesOutput(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name       string
		output     string
		maxBytes   int // 0 keeps the default
		wantShown  int
		wantMarker string
	}{
		{"fits", "short", 0, 5, ""},
		{"exactly at cap", strings.Repeat("a", 100), 100, 100, ""},
		{"default cap", strings.Repeat("a", 100_000), 0, DefaultMaxOutputBytes, "\n[output truncated: 100000 bytes total, 65536 shown]"},
		{"cut on a rune boundary", strings.Repeat("€", 100), 100, 99, "\n[output truncated: 300 bytes total, 99 shown]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tool := &fakeTool{name: "cat", exec: func(context.Context, json.RawMessage) (string, error) {
				return tt.output, nil
			}}
			exec := newTestExecutor(t, tool)
			exec.SetMaxOutputBytes(tt.maxBytes)

			out := exec.Execute(t.Context(), calls("cat"))[0].Output
			if !utf8.ValidString(out) {
				t.Error("truncated output is not valid UTF-8")
			}
			shown, marker := out[:tt.wantShown], out[tt.wantShown:]
			if shown != tt.output[:tt.wantShown] || marker != tt.wantMarker {
				t.Errorf("output ends with %q, want %d bytes of output then %q", out[max(0, len(out)-80):], tt.wantShown, tt.wantMarker)
			}
		})
	}
}

func TestExecuteEmptyBatch(t *testing.T) {
	t.Parallel()

	if results := newTestExecutor(t).Execute(t.Context(), nil); len(results) != 0 {
		t.Errorf("Execute(nil) = %v, want no results", results)
	}
}

func TestExecutorSettersDuringExecute(t *testing.T) {
	t.Parallel()

	exec := newTestExecutor(t, sleeper("t", time.Millisecond))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { exec.Execute(t.Context(), calls("t", "t", "t")) })
	}
	for i := range 4 {
		exec.SetDefaultTimeout(time.Duration(i+1) * time.Second)
		exec.SetMaxParallel(i + 1)
		exec.SetMaxOutputBytes(i + 1)
	}
	wg.Wait()
	if exec.Registry().Len() != 1 {
		t.Errorf("Registry().Len() = %d, want 1", exec.Registry().Len())
	}
}
