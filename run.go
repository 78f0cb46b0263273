package agentpg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/agentpg/agentpg/internal/store"
	"github.com/agentpg/agentpg/tool"
)

// RunOptions tune one run.
type RunOptions struct {
	// NoWait makes the run fail at once with ErrSessionBusy when another
	// run holds the session, instead of waiting for it.
	NoWait bool
	// OnEvent, if set, receives the answer's text and thinking deltas as
	// they stream in, and each tool call and result. It runs on the run's
	// goroutine: keep it quick.
	OnEvent func(Event)
}

// Result is the outcome of a run.
type Result struct {
	RunID string
	// Text is the final answer's text.
	Text string
	// StopReason is why the model stopped: "end_turn", "stop_sequence",
	// "max_tokens" (the answer was cut at MaxTokens) or "pause_turn" (the
	// model paused; run again to let it go on).
	StopReason string
	// Usage sums the usage of every model call of the run.
	Usage Usage
	// Iterations is the number of model calls the run made.
	Iterations int
	// Response is the model's final response, as the SDK returned it.
	Response *anthropic.Message
}

// Run sends prompt as the user's next message and returns the model's
// answer, once it and the run are stored. It waits while another run holds
// the session, until ctx ends.
//
// What the run commits survives a crash: the prompt and the run row before
// the model is called, the answer and the run's completion after. A failed
// run is recorded with its reason; its messages stay stored but are left out
// of the conversation, so the session stays usable.
func (s *Session) Run(ctx context.Context, prompt string) (*Result, error) {
	return s.RunWithOptions(ctx, prompt, RunOptions{})
}

// RunWithOptions is Run with options: streaming deltas, or failing fast on a
// busy session.
func (s *Session) RunWithOptions(ctx context.Context, prompt string, opts RunOptions) (*Result, error) {
	return s.run(ctx, prompt, opts, nil)
}

// run runs prompt; parentRunID is the calling run of a nested agent.
func (s *Session) run(ctx context.Context, prompt string, opts RunOptions, parentRunID *string) (*Result, error) {
	a := s.agent
	if err := validateText("prompt", prompt, a.cfg.MaxPromptBytes); err != nil {
		return nil, err
	}
	leave, err := a.gates.enter(ctx, s.ID, opts.NoWait)
	if err != nil {
		return nil, err
	}
	defer leave()

	begun, err := s.begin(ctx, opts.NoWait, parentRunID)
	if err != nil {
		return nil, err
	}
	r := &run{
		session: s,
		lease:   begun.Lease,
		opts:    opts,
		log:     a.cfg.Logger.With("tenant_id", s.TenantID, "session_id", s.ID, "run_id", begun.Lease.RunID),
	}
	return r.execute(ctx, begun, prompt)
}

// begin takes the session's lease and records the run, reading what the
// conversation gained since the cached copy in the same round trip. While
// another process's run holds the lease, it polls with backoff until ctx
// ends, or fails at once with noWait.
func (s *Session) begin(ctx context.Context, noWait bool, parentRunID *string) (store.Begun, error) {
	s.cache.mu.Lock()
	params := store.BeginRunParams{
		TenantID:    s.TenantID,
		SessionID:   s.ID,
		RunID:       newID(),
		Model:       s.model(),
		LeaseTTL:    s.agent.cfg.LeaseTTL,
		ParentRunID: parentRunID,
		CachedGen:   s.cache.conv.gen,
		CachedSeq:   s.cache.lastSeq,
	}
	s.cache.mu.Unlock()
	var begun store.Begun
	_, err := waitForLease(ctx, noWait, func() (store.Lease, error) {
		var err error
		begun, err = s.agent.store.BeginRun(ctx, params)
		return begun.Lease, err
	})
	return begun, err
}

// waitForLease calls acquire until it gets the lease, polling with backoff
// while another process holds it, until ctx ends; with noWait it fails at
// once with ErrSessionBusy.
func waitForLease(ctx context.Context, noWait bool, acquire func() (store.Lease, error)) (store.Lease, error) {
	backoff := 20 * time.Millisecond
	for {
		lease, err := acquire()
		switch {
		case err == nil:
			return lease, nil
		case errors.Is(err, store.ErrNotFound):
			return lease, fmt.Errorf("agentpg: %w", ErrSessionNotFound)
		case !errors.Is(err, store.ErrBusy):
			return lease, fmt.Errorf("agentpg: taking the session: %w", err)
		case noWait:
			return lease, fmt.Errorf("agentpg: %w", ErrSessionBusy)
		}
		select {
		case <-time.After(backoff):
			backoff = min(2*backoff, time.Second)
		case <-ctx.Done():
			return lease, busyErr(ctx)
		}
	}
}

// run is one run in progress.
type run struct {
	session *Session
	lease   store.Lease
	opts    RunOptions
	log     *slog.Logger
	// conv is what the model is sent next. Its last messages may be
	// pending: made by the run but not stored yet (they have no seq).
	conv    conversation
	pending []store.NewMessage
	usage   Usage // of every model call of the run
	calls   int   // model calls made
	// unsaved and unsavedCalls are the usage and model calls not yet
	// added to the stored run.
	unsaved      Usage
	unsavedCalls int
}

// execute runs the model, and the tools it asks for, until a final answer.
// The prompt is stored with the run's first step: nothing of it reaches a
// table, or the API, before the OnBeforeMessage hooks accept it. A panic
// on the run's goroutine (in a hook or in OnEvent) fails the run, releases
// the session and is returned as an error wrapping ErrCallbackPanic.
func (r *run) execute(ctx context.Context, begun store.Begun, prompt string) (res *Result, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := r.keepLease(ctx, cancel)
	defer stop()
	ctx = withRun(ctx, r)
	defer func() {
		if p := recover(); p != nil {
			r.log.ErrorContext(ctx, "run panicked", "panic", p, "stack", string(debug.Stack()))
			res, err = nil, r.fail(ctx, fmt.Errorf("%w: %v", ErrCallbackPanic, p))
		}
	}()
	r.log.DebugContext(ctx, "run started")
	a := r.session.agent

	if r.conv, err = r.session.conversationSince(begun); err != nil {
		return nil, r.fail(ctx, err)
	}
	if err := r.add("user", []anthropic.ContentBlockParamUnion{anthropic.NewTextBlock(prompt)}, nil); err != nil {
		return nil, r.fail(ctx, err)
	}
	for {
		if err := a.beforeMessage(ctx, r.conv.messages); err != nil {
			r.drop() // a refused prompt is not kept
			return nil, r.fail(ctx, err)
		}
		r.conv = r.maybeCompact(ctx, r.conv)
		resp, err := a.callModel(ctx, r.session.request(r.conv), r.opts.OnEvent)
		if resp != nil {
			r.used(resp.Usage) // failed calls cost tokens too
		}
		if err != nil {
			return nil, r.fail(ctx, err)
		}
		if err := a.afterMessage(ctx, resp.Message); err != nil {
			return nil, r.fail(ctx, err)
		}
		if resp.StopReason != anthropic.StopReasonToolUse || a.executor.Registry().Len() == 0 {
			return r.finish(ctx, resp)
		}
		if r.calls >= a.cfg.MaxIterations {
			r.keepForAudit(resp)
			return nil, r.fail(ctx, fmt.Errorf("%w (%d)", ErrMaxIterations, r.calls))
		}
		if err := r.toolStep(ctx, resp); err != nil {
			return nil, r.fail(ctx, err)
		}
	}
}

// finish stores the final answer and completes the run, or fails it when
// the response cannot end a run.
func (r *run) finish(ctx context.Context, resp *response) (*Result, error) {
	result := &Result{
		RunID:      r.lease.RunID,
		Text:       responseText(resp.Message),
		StopReason: string(resp.StopReason),
		Usage:      r.usage,
		Iterations: r.calls,
		Response:   resp.Message,
	}
	if err := checkStop(resp.Message); err != nil {
		r.keepForAudit(resp)
		return result, r.fail(ctx, err)
	}
	usage := usageOf(resp.Usage)
	if err := r.add("assistant", assistantContent(resp.Message), &usage); err != nil {
		return nil, r.fail(ctx, err)
	}
	if err := r.commit(ctx, store.StepParams{Finish: true, StopReason: result.StopReason}); err != nil {
		return nil, r.fail(ctx, err)
	}
	r.session.remember(r.conv)
	r.log.DebugContext(ctx, "run completed", "stop_reason", result.StopReason, "iterations", r.calls,
		"input_tokens", r.usage.InputTokens, "output_tokens", r.usage.OutputTokens)
	return result, nil
}

// toolStep stores the response asking for tools, runs the tools, and stores
// their results, with their ledger rows, as the next user message.
func (r *run) toolStep(ctx context.Context, resp *response) error {
	a := r.session.agent
	usage := usageOf(resp.Usage)
	if err := r.add("assistant", assistantContent(resp.Message), &usage); err != nil {
		return err
	}
	if err := r.commit(ctx, store.StepParams{}); err != nil {
		return err
	}
	results, err := r.runTools(ctx, resp)
	if err != nil {
		return err
	}
	content := make([]anthropic.ContentBlockParamUnion, len(results))
	ledger := make([]store.ToolCall, len(results))
	for i, res := range results {
		output := storableOutput(res.Output)
		content[i] = anthropic.NewToolResultBlock(res.ID, output, res.IsError)
		ledger[i] = ledgerRow(res, output)
		r.emit(Event{Kind: EventToolResult, ToolUseID: res.ID, ToolName: res.Name, Text: output, IsError: res.IsError})
	}
	if err := r.add("user", content, nil); err != nil {
		return err
	}
	if err := r.commit(ctx, store.StepParams{ToolCalls: ledger}); err != nil {
		return err
	}
	return a.afterToolCalls(ctx, results)
}

// runTools runs the tool calls of a response, in their order: each with
// the input the model sent, which the executor validates (a malformed one
// never runs), unless an OnBeforeToolCall hook denies it.
func (r *run) runTools(ctx context.Context, resp *response) ([]tool.Result, error) {
	a := r.session.agent
	var results []tool.Result
	var allowed []tool.Call
	var at []int // allowed[i] is the call of results[at[i]]
	for _, block := range resp.Content {
		if block.Type != "tool_use" {
			continue
		}
		call := tool.Call{ID: block.ID, Name: block.Name, Input: resp.input(block)}
		r.emit(Event{Kind: EventToolCall, ToolUseID: call.ID, ToolName: call.Name, Input: call.Input})
		if err := a.beforeToolCall(ctx, r, call); err != nil {
			results = append(results, deniedResult(call, err))
			continue
		}
		at = append(at, len(results))
		results = append(results, tool.Result{})
		allowed = append(allowed, call)
	}
	for i, res := range a.executor.Execute(ctx, allowed) {
		results[at[i]] = res
	}
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return results, nil
}

// deniedResult is the result of a call an OnBeforeToolCall hook denied.
func deniedResult(call tool.Call, reason error) tool.Result {
	now := time.Now()
	err := fmt.Errorf("%w: %w", ErrToolCallDenied, reason)
	return tool.Result{Call: call, Output: err.Error(), IsError: true, Err: err, StartedAt: now, FinishedAt: now}
}

// storableOutput returns a tool's output fit for storing, telling the model
// what had to be replaced.
func storableOutput(output string) string {
	output, replaced := storableText(output)
	if replaced > 0 {
		output += fmt.Sprintf("\n[agentpg: %d NUL characters or invalid UTF-8 sequences of this output were replaced by U+FFFD]", replaced)
	}
	if output == "" {
		output = "(no output)" // the API refuses empty text
	}
	return output
}

// ledgerRow is the ledger row of a call's result with its stored output.
func ledgerRow(res tool.Result, output string) store.ToolCall {
	id, _ := storableText(res.ID)
	name, _ := storableText(res.Name)
	input, _ := storableJSON(ledgerInput(res.Input))
	return store.ToolCall{
		ID: newID(), ToolUseID: id, Name: name, Input: input,
		Output: output, IsError: res.IsError, StartedAt: res.StartedAt, FinishedAt: res.FinishedAt,
	}
}

// add appends a message of the run to the conversation, pending until the
// next commit.
func (r *run) add(role string, content []anthropic.ContentBlockParamUnion, usage *Usage) error {
	msg, row, err := newMessage(role, content, usage)
	if err != nil {
		return err
	}
	msg.RunID = r.lease.RunID
	r.conv.messages = append(r.conv.messages, msg)
	r.pending = append(r.pending, row)
	return nil
}

// drop forgets the pending messages.
func (r *run) drop() {
	stored, _ := r.conv.split()
	r.conv.messages, r.pending = stored, nil
}

// keepForAudit adds a response that cannot continue the run to the pending
// messages, so that the failed run's record shows it.
func (r *run) keepForAudit(resp *response) {
	if len(resp.Content) > 0 {
		usage := usageOf(resp.Usage)
		if err := r.add("assistant", assistantContent(resp.Message), &usage); err != nil {
			r.log.WarnContext(context.Background(), "keeping the response for the record", "error", err)
		}
	}
}

// used counts a model call and its usage.
func (r *run) used(u anthropic.Usage) {
	usage := usageOf(u)
	r.calls++
	r.unsavedCalls++
	r.usage.add(usage)
	r.unsaved.add(usage)
}

// commit writes a step with the pending messages and the unsaved usage,
// fenced by the run's lease. The write survives the caller's cancellation:
// the model's work is paid for.
func (r *run) commit(ctx context.Context, step store.StepParams) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	step.Messages, step.Usage, step.Iterations = r.pending, r.unsaved.store(), r.unsavedCalls
	step.LeaseTTL = r.session.agent.cfg.LeaseTTL
	seq, err := r.session.agent.store.CommitStep(ctx, r.lease, step)
	if errors.Is(err, store.ErrLeaseLost) {
		return ErrLeaseLost
	}
	if err != nil {
		return fmt.Errorf("storing the run's step: %w", err)
	}
	_, pending := r.conv.split()
	for i := range pending {
		pending[i].Seq = seq + int64(i)
	}
	r.pending, r.unsaved, r.unsavedCalls = nil, Usage{}, 0
	return nil
}

// emit passes e to the caller's OnEvent, if any.
func (r *run) emit(e Event) {
	if r.opts.OnEvent != nil {
		r.opts.OnEvent(e)
	}
}

// ledgerInput returns a tool input fit for a jsonb column: the model's JSON,
// or, should it not be valid JSON, the same bytes as a JSON string.
func ledgerInput(input json.RawMessage) json.RawMessage {
	if json.Valid(input) {
		return input
	}
	quoted, _ := json.Marshal(string(input))
	return quoted
}

// checkStop accepts a response that can end the run, and explains why any
// other cannot.
func checkStop(resp *anthropic.Message) error {
	switch resp.StopReason {
	case anthropic.StopReasonEndTurn, anthropic.StopReasonStopSequence, anthropic.StopReasonPauseTurn:
		if len(resp.Content) == 0 {
			return ErrEmptyResponse
		}
		return nil
	case anthropic.StopReasonMaxTokens:
		if n := len(resp.Content); n == 0 || resp.Content[n-1].Type == "tool_use" || responseText(resp) == "" {
			return ErrMaxTokens
		}
		return nil
	case anthropic.StopReasonRefusal:
		return ErrRefused
	case anthropic.StopReasonToolUse:
		for _, block := range resp.Content {
			if block.Type == "tool_use" {
				return fmt.Errorf("%w (asked for %q)", ErrNoTools, block.Name)
			}
		}
		return ErrNoTools
	case anthropic.StopReasonModelContextWindowExceeded:
		return ErrContextWindowExceeded
	default:
		return fmt.Errorf("unexpected stop reason %q", resp.StopReason)
	}
}

// fail records the run as failed with cause, with its pending messages,
// kept for the record but never in the conversation, and what it used,
// and returns the error for the caller.
func (r *run) fail(ctx context.Context, cause error) error {
	if lost := context.Cause(ctx); errors.Is(lost, ErrLeaseLost) {
		cause = lost
	}
	cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err := fmt.Errorf("agentpg: run %s: %w", r.lease.RunID, cause)
	reason, _ := storableText(cause.Error())
	failed := store.FailedRun{Reason: reason, Messages: r.pending, Usage: r.unsaved.store(), Iterations: r.unsavedCalls}
	if ferr := r.session.agent.store.FailRun(cleanupCtx, r.lease, failed); ferr != nil {
		r.log.ErrorContext(ctx, "recording the failed run", "error", ferr)
		err = errors.Join(err, fmt.Errorf("agentpg: recording the failed run: %w", ferr))
	}
	r.log.WarnContext(ctx, "run failed", "error", cause)
	return err
}

// keepLease renews the run's lease every third of its TTL until stop is
// called. Should the lease be lost, it cancels the run with ErrLeaseLost.
func (r *run) keepLease(ctx context.Context, cancel context.CancelCauseFunc) (stop func()) {
	a := r.session.agent
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		ticker := time.NewTicker(a.leaseRenewal())
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-ticker.C:
				err := a.store.RenewLease(ctx, r.lease, a.cfg.LeaseTTL)
				if errors.Is(err, store.ErrLeaseLost) {
					r.log.WarnContext(ctx, "lease lost")
					cancel(ErrLeaseLost)
					return
				}
				if err != nil && ctx.Err() == nil {
					r.log.WarnContext(ctx, "renewing lease", "error", err)
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}
