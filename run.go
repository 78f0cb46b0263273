package agentpg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

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
	if strings.TrimSpace(prompt) == "" {
		return nil, fmt.Errorf("agentpg: %w: prompt is empty", ErrInvalidArgument)
	}
	if len(prompt) > a.cfg.MaxPromptBytes {
		return nil, fmt.Errorf("agentpg: %w: prompt is %d bytes, over the limit of %d", ErrInvalidArgument, len(prompt), a.cfg.MaxPromptBytes)
	}
	if !utf8.ValidString(prompt) {
		return nil, fmt.Errorf("agentpg: %w: prompt is not valid UTF-8", ErrInvalidArgument)
	}
	_, promptRow, err := newMessage("user", []anthropic.ContentBlockParamUnion{anthropic.NewTextBlock(prompt)}, nil)
	if err != nil {
		return nil, fmt.Errorf("agentpg: %w", err)
	}

	leave, err := a.gates.enter(ctx, s.ID, opts.NoWait)
	if err != nil {
		return nil, err
	}
	defer leave()

	lease, err := s.begin(ctx, promptRow, opts.NoWait, parentRunID)
	if err != nil {
		return nil, err
	}
	r := &run{
		session: s,
		lease:   lease,
		opts:    opts,
		log:     a.cfg.Logger.With("tenant_id", s.TenantID, "session_id", s.ID, "run_id", lease.RunID),
	}
	return r.execute(ctx)
}

// begin takes the session's lease, records the run and stores the prompt.
// While another process's run holds the lease, it polls with backoff until
// ctx ends, or fails at once with noWait.
func (s *Session) begin(ctx context.Context, prompt store.NewMessage, noWait bool, parentRunID *string) (store.Lease, error) {
	params := store.BeginRunParams{
		TenantID:    s.TenantID,
		SessionID:   s.ID,
		RunID:       newID(),
		Model:       s.model(),
		LeaseTTL:    s.agent.cfg.LeaseTTL,
		Prompt:      prompt,
		ParentRunID: parentRunID,
	}
	return waitForLease(ctx, noWait, func() (store.Lease, error) {
		return s.agent.store.BeginRun(ctx, params)
	})
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
	usage   Usage
	calls   int
}

func (r *run) execute(ctx context.Context) (*Result, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := r.keepLease(ctx, cancel)
	defer stop()
	ctx = withRun(ctx, r)
	r.log.DebugContext(ctx, "run started")
	a := r.session.agent

	conv, err := r.session.readHistory(ctx, r.lease)
	if err != nil {
		return nil, r.fail(ctx, err, false)
	}
	for {
		if r.calls == a.cfg.MaxIterations {
			return nil, r.fail(ctx, fmt.Errorf("%w (%d)", ErrMaxIterations, r.calls), false)
		}
		conv = r.maybeCompact(ctx, conv)
		if err := a.beforeMessage(ctx, conv.messages); err != nil {
			// Only a refused prompt is dropped; a refusal later in a tool
			// loop keeps the run's record.
			return nil, r.fail(ctx, err, r.calls == 0)
		}
		resp, err := a.callModel(ctx, r.session.request(conv), r.opts.OnEvent)
		if err != nil {
			return nil, r.fail(ctx, err, false)
		}
		r.calls++
		stepUsage := usageOf(resp.Usage)
		r.usage.add(stepUsage)
		if err := a.afterMessage(ctx, resp); err != nil {
			return nil, r.fail(ctx, err, false)
		}
		if resp.StopReason == anthropic.StopReasonToolUse && a.executor.Registry().Len() > 0 {
			if conv.messages, err = r.toolStep(ctx, conv.messages, resp, stepUsage); err != nil {
				return nil, r.fail(ctx, err, false)
			}
			continue
		}
		return r.finish(ctx, conv, resp, stepUsage)
	}
}

// finish stores the final answer and completes the run, or fails it when
// the response cannot end a run.
func (r *run) finish(ctx context.Context, conv conversation, resp *anthropic.Message, usage Usage) (*Result, error) {
	result := &Result{
		RunID:      r.lease.RunID,
		Text:       responseText(resp),
		StopReason: string(resp.StopReason),
		Usage:      r.usage,
		Iterations: r.calls,
		Response:   resp,
	}
	if err := checkStop(resp); err != nil {
		return result, r.fail(ctx, err, false)
	}
	answer, seq, err := r.save(ctx, "assistant", assistantContent(resp), &usage, nil, true, result.StopReason)
	if err != nil {
		return nil, r.fail(ctx, err, false)
	}
	conv.messages = append(conv.messages, answer)
	r.session.remember(conv, seq)
	r.log.DebugContext(ctx, "run completed", "stop_reason", result.StopReason, "iterations", r.calls,
		"input_tokens", r.usage.InputTokens, "output_tokens", r.usage.OutputTokens)
	return result, nil
}

// toolStep stores the response asking for tools, runs the tools, and stores
// their results, with their ledger rows, as the next user message. It
// returns the history with both messages.
func (r *run) toolStep(ctx context.Context, history []Message, resp *anthropic.Message, usage Usage) ([]Message, error) {
	a := r.session.agent
	request, _, err := r.save(ctx, "assistant", assistantContent(resp), &usage, nil, false, "")
	if err != nil {
		return nil, err
	}
	history = append(history, request)

	var calls []tool.Call
	for _, block := range resp.Content {
		if block.Type == "tool_use" {
			calls = append(calls, tool.Call{ID: block.ID, Name: block.Name, Input: block.Input})
			r.emit(Event{Kind: EventToolCall, ToolUseID: block.ID, ToolName: block.Name, Input: block.Input})
		}
	}
	results := a.executor.Execute(ctx, calls)
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	content := make([]anthropic.ContentBlockParamUnion, len(results))
	ledger := make([]store.ToolCall, len(results))
	for i, res := range results {
		output := res.Output
		if output == "" {
			output = "(no output)" // the API refuses empty text
		}
		content[i] = anthropic.NewToolResultBlock(res.ID, output, res.IsError)
		ledger[i] = store.ToolCall{
			ID: newID(), ToolUseID: res.ID, Name: res.Name, Input: ledgerInput(res.Input),
			Output: res.Output, IsError: res.IsError, StartedAt: res.StartedAt, FinishedAt: res.FinishedAt,
		}
		r.emit(Event{Kind: EventToolResult, ToolUseID: res.ID, ToolName: res.Name, Text: res.Output, IsError: res.IsError})
	}
	answers, _, err := r.save(ctx, "user", content, nil, ledger, false, "")
	if err != nil {
		return nil, err
	}
	if err := a.afterToolCalls(ctx, results); err != nil {
		return nil, err
	}
	return append(history, answers), nil
}

// save stores one message of the run, with the ledger rows it answers,
// in one statement fenced by the lease; with finish, it also completes the
// run and releases the lease. It returns the message as stored.
func (r *run) save(ctx context.Context, role string, content []anthropic.ContentBlockParamUnion, usage *Usage,
	ledger []store.ToolCall, finish bool, stopReason string) (Message, int64, error) {
	msg, row, err := newMessage(role, content, usage)
	if err != nil {
		return msg, 0, err
	}
	step := store.StepParams{
		Messages:   []store.NewMessage{row},
		ToolCalls:  ledger,
		Finish:     finish,
		StopReason: stopReason,
	}
	if usage != nil {
		step.Usage, step.Iterations = usage.store(), 1
	}
	seq, err := r.commit(ctx, step)
	if err != nil {
		return msg, 0, err
	}
	msg.RunID, msg.Seq = r.lease.RunID, seq
	return msg, seq, nil
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

// commit writes a step, fenced by the run's lease. The write survives the
// caller's cancellation: the model's work is paid for.
func (r *run) commit(ctx context.Context, step store.StepParams) (int64, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	step.LeaseTTL = r.session.agent.cfg.LeaseTTL
	seq, err := r.session.agent.store.CommitStep(ctx, r.lease, step)
	if errors.Is(err, store.ErrLeaseLost) {
		return 0, ErrLeaseLost
	}
	if err != nil {
		return 0, fmt.Errorf("storing the run's step: %w", err)
	}
	return seq, nil
}

// fail records the run as failed with cause and returns the error for the
// caller. With dropPrompt, the run's messages are deleted: a prompt refused
// by a hook is not kept.
func (r *run) fail(ctx context.Context, cause error, dropPrompt bool) error {
	if lost := context.Cause(ctx); errors.Is(lost, ErrLeaseLost) {
		cause = lost
	}
	cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err := fmt.Errorf("agentpg: run %s: %w", r.lease.RunID, cause)
	if ferr := r.session.agent.store.FailRun(cleanupCtx, r.lease, cause.Error(), dropPrompt); ferr != nil {
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
