package agentpg

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/agentpg/agentpg/audit"
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
	// Response is the model's final response, as the SDK returned it (nil
	// for a Result read back from storage, as WaitRun's).
	Response *anthropic.Message
	// PendingApprovals are the tool calls a run awaiting approval waits for
	// (StopReason StopAwaitingApproval); decide them with
	// Agent.DecideToolCall.
	PendingApprovals []PendingToolCall
}

// StopAwaitingApproval is the StopReason of a run that paused because
// tool calls need a person's approval (Config.ApprovalRequired).
const StopAwaitingApproval = "awaiting_approval"

// PendingToolCall is a tool call waiting for approval.
type PendingToolCall struct {
	ToolUseID string
	Name      string
	Input     json.RawMessage
}

// Run sends prompt as the user's next message and returns the model's
// answer, once it and the run are stored. It waits while another run holds
// the session, or runs enqueued earlier have not run yet, until ctx ends;
// waiters of every process are served in arrival order.
//
// What the run commits survives a crash: the run row before the model is
// called, the prompt with the run's first step, each step (an answer
// calling tools, the tools' results) before the next begins, the answer
// and the run's completion last. A failed run is recorded with its
// reason; its messages stay stored but are left out of the conversation,
// so the session stays usable. A run its tenant's limits refuse (see
// TenantLimits) returns a *LimitError.
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
		events:  newEventWriter(a, s.TenantID, begun.Lease.RunID),
	}
	return r.execute(ctx, begun, prompt)
}

// begin takes the session's lease and records the run, reading what the
// conversation gained since the cached copy in the same round trip. While
// another run holds the lease, it waits its turn among the session's
// waiters of every process, in arrival order, woken when the lease is
// released, until ctx ends; with noWait it fails at once.
func (s *Session) begin(ctx context.Context, noWait bool, parentRunID *string) (begun store.Begun, err error) {
	a := s.agent
	s.cache.mu.Lock()
	params := store.BeginRunParams{
		TenantID:    s.TenantID,
		SessionID:   s.ID,
		RunID:       newID(),
		Model:       s.model(),
		LeaseTTL:    a.cfg.LeaseTTL,
		ParentRunID: parentRunID,
		CachedGen:   s.cache.conv.gen,
		CachedSeq:   s.cache.lastSeq,
	}
	s.cache.mu.Unlock()
	var wake <-chan struct{}
	defer func() {
		if wake == nil {
			return
		}
		s.leave(ctx, params.Ticket, err == nil)
	}()
	for {
		begun, err = a.store.BeginRun(ctx, params)
		if refused := limitError(err, s.TenantID, s.ID); refused != nil {
			return begun, fmt.Errorf("agentpg: %w", refused)
		}
		if retry, err := leaseError(err, noWait); !retry {
			return begun, err
		}
		if wake == nil {
			var unregister func()
			wake, unregister = a.notes.register(a, sessionReleased, s.ID)
			defer unregister()
		}
		if err := a.waitTurn(ctx, s.TenantID, s.ID, &params.Ticket, wake); err != nil {
			if ctx.Err() != nil {
				return begun, busyErr(ctx)
			}
			return begun, fmt.Errorf("agentpg: waiting for the session: %w", err)
		}
	}
}

// leave gives up the caller's ticket among the session's waiters, unless
// its run began, which gave the ticket up.
func (s *Session) leave(ctx context.Context, ticket *int64, began bool) {
	if ticket == nil || began {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.agent.store.DropTicket(ctx, s.TenantID, *ticket); err != nil {
		s.agent.cfg.Logger.WarnContext(ctx, "leaving the session's waiters", "session_id", s.ID, "error", err)
	}
}

// leaseError maps the error of an attempt to take a session's lease, and
// says whether to wait and try again: only for a busy session, unless
// noWait.
func leaseError(err error, noWait bool) (retry bool, mapped error) {
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, store.ErrNotFound):
		return false, fmt.Errorf("agentpg: %w", ErrSessionNotFound)
	case errors.Is(err, store.ErrApprovalPending):
		return false, fmt.Errorf("agentpg: %w: a run of the session waits for approvals", ErrApprovalPending)
	case !errors.Is(err, store.ErrBusy):
		return false, fmt.Errorf("agentpg: taking the session: %w", err)
	case noWait:
		return false, fmt.Errorf("agentpg: %w", ErrSessionBusy)
	}
	return true, nil
}

// waitForLease calls acquire until it gets the lease, polling with backoff
// while another process holds it, until ctx ends; with noWait it fails at
// once with ErrSessionBusy.
func waitForLease(ctx context.Context, noWait bool, acquire func() (store.Lease, error)) (store.Lease, error) {
	backoff := newBackoff()
	for {
		lease, err := acquire()
		if retry, err := leaseError(err, noWait); !retry {
			return lease, err
		}
		if backoff.wait(ctx) != nil {
			return lease, busyErr(ctx)
		}
	}
}

// backoff waits between polls: 20 ms, doubling up to a second.
type backoff struct{ next time.Duration }

func newBackoff() *backoff { return &backoff{next: 20 * time.Millisecond} }

// wait waits for the next poll, or returns ctx's cause when it ends first.
func (b *backoff) wait(ctx context.Context) error {
	select {
	case <-time.After(b.next):
		b.next = min(2*b.next, time.Second)
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// run is one run in progress.
type run struct {
	session *Session
	lease   store.Lease
	opts    RunOptions
	log     *slog.Logger
	// async is set for an enqueued run: refused by its tenant's limits
	// mid-way, it goes back to the queue rather than failing.
	async bool
	// chain, for a run the job executing its session's enqueued runs
	// resumed, tells the job what comes after the run.
	chain *chainLink
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
	// events stores what the run emits, for Agent.RunEvents, with its steps;
	// refusedEvents are those of a step a limit refused, for the next.
	events        *eventWriter
	refusedEvents []store.NewEvent
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
	if err := r.start(ctx, begun, prompt); err != nil {
		return nil, r.fail(ctx, err)
	}
	for {
		if err := a.beforeMessage(ctx, r.conv.messages); err != nil {
			r.drop() // a refused prompt is not kept
			return nil, r.fail(ctx, err)
		}
		r.conv = r.maybeCompact(ctx, r.conv)
		req, err := r.session.request(&r.conv)
		if err != nil {
			return nil, r.fail(ctx, err)
		}
		resp, err := a.callModel(ctx, req, r.emit)
		if resp != nil {
			r.used(resp.spent()) // failed calls and attempts cost tokens too
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
		paused, err := r.toolStep(ctx, resp)
		if requeued, ok := errors.AsType[requeuedError](err); ok {
			return nil, fmt.Errorf("agentpg: run %s: %w", r.lease.RunID, requeued.LimitError)
		}
		if err != nil {
			return nil, r.fail(ctx, err)
		}
		if paused != nil {
			return paused, nil
		}
	}
}

// start readies the run for its next model call: a new run adds its
// prompt, a queued one its stored prompt, and a resumed one finishes the
// tool step it was in, if any.
func (r *run) start(ctx context.Context, begun store.Begun, prompt string) error {
	switch {
	case prompt != "":
		return r.add("user", []anthropic.ContentBlockParamUnion{anthropic.NewTextBlock(prompt)}, nil)
	case len(begun.Prompt) > 0:
		var content []anthropic.ContentBlockParamUnion
		if err := json.Unmarshal(begun.Prompt, &content); err != nil {
			return fmt.Errorf("decoding the queued prompt: %w", err)
		}
		return r.add("user", content, nil)
	}
	stored, _ := r.conv.split()
	if len(stored) == 0 || stored[len(stored)-1].RunID != r.lease.RunID {
		return fmt.Errorf("%w before its first step: its prompt was not stored", ErrRunInterrupted)
	}
	switch last := stored[len(stored)-1]; {
	case last.Role == "user":
		return nil // tool results: the model is next
	case hasToolUse(last):
		return r.resumeTools(ctx, last)
	default:
		return fmt.Errorf("%w: its last answer ends no step", ErrRunInterrupted)
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
	if err := r.commit(ctx, store.StepParams{Status: store.RunCompleted, StopReason: result.StopReason}); err != nil {
		return nil, r.fail(ctx, err)
	}
	r.session.remember(r.conv)
	r.log.DebugContext(ctx, "run completed", "stop_reason", result.StopReason, "iterations", r.calls,
		"input_tokens", r.usage.InputTokens, "output_tokens", r.usage.OutputTokens)
	return result, nil
}

// plannedCall is a tool call of a step with what is to become of it: a
// result known without running it (denied, interrupted, completed before),
// a ledger status to wait in, or neither: it runs.
type plannedCall struct {
	call   tool.Call
	result *tool.Result
	status string // the ledger status it waits in, for a call that does not run yet
}

// toolStep stores the response asking for tools with the ledger rows of
// its calls, then runs them and stores their results as the next user
// message. When a call needs approval, nothing runs: the run pauses,
// releasing the session, and toolStep returns the paused run's Result.
func (r *run) toolStep(ctx context.Context, resp *response) (*Result, error) {
	a := r.session.agent
	usage := usageOf(resp.Usage)
	if err := r.add("assistant", assistantContent(resp.Message), &usage); err != nil {
		return nil, err
	}
	calls, err := r.toolCalls(resp)
	if err != nil {
		return nil, err
	}
	planned := make([]plannedCall, len(calls))
	var pending []PendingToolCall
	for i, call := range calls {
		planned[i].call = call
		r.emit(Event{Kind: EventToolCall, ToolUseID: call.ID, ToolName: call.Name, Input: call.Input})
		if err := a.beforeToolCall(ctx, r, call); err != nil {
			res := deniedResult(call, err)
			planned[i].result = &res
			a.record(ctx, r.auditEntry(audit.ActionToolDenied, call, false, err.Error()))
		} else if a.needsApproval(call.Name) {
			planned[i].status = store.ToolAwaitingApproval
			pending = append(pending, PendingToolCall{ToolUseID: call.ID, Name: call.Name, Input: call.Input})
		}
	}
	if len(pending) > 0 {
		return r.pause(ctx, resp, planned, pending)
	}
	// The next model call is admitted with the step: refused, nothing of
	// it is stored and no tool runs.
	step := store.StepParams{ToolCalls: ledgerRows(planned, store.ToolStarted), AdmitNext: true}
	if err := r.commit(ctx, step); err != nil {
		if refused, ok := errors.AsType[*LimitError](err); ok && r.async {
			return nil, r.requeue(ctx, planned, refused)
		}
		return nil, err
	}
	return nil, r.completeTools(ctx, planned)
}

// requeuedError is the refusal of an enqueued run that went back to the
// queue: it did not fail.
type requeuedError struct{ *LimitError }

// requeue puts an enqueued run that its tenant's limits refused before its
// next model call back in the queue, releasing the session: the step is
// stored with its tool calls approved, to run once the run is resumed,
// which a Worker does after the refusal's RetryAfter.
func (r *run) requeue(ctx context.Context, planned []plannedCall, refused *LimitError) error {
	step := store.StepParams{ToolCalls: ledgerRows(planned, store.ToolApproved), Status: store.RunQueued}
	if err := r.commit(ctx, step); err != nil {
		return err
	}
	r.log.InfoContext(ctx, "run refused by its tenant's limits; back in the queue",
		"limit", refused.Limit, "retry_after", refused.RetryAfter)
	return requeuedError{refused}
}

// toolCalls returns the tool calls of a response, each with the input the
// model sent. Two calls with one id, in the response or earlier in the
// run, make the response invalid: their results could not be told apart.
func (r *run) toolCalls(resp *response) ([]tool.Call, error) {
	var calls []tool.Call
	ids := make(map[string]bool)
	for _, block := range resp.Content {
		if block.Type != "tool_use" {
			continue
		}
		if ids[block.ID] {
			return nil, fmt.Errorf("%w: tool_use id %q is used twice", ErrInvalidResponse, block.ID)
		}
		ids[block.ID] = true
		calls = append(calls, tool.Call{ID: block.ID, Name: block.Name, Input: resp.input(block)})
	}
	earlier := r.conv.messages[:len(r.conv.messages)-1] // the response was just added
	for _, m := range earlier {
		if m.RunID != r.lease.RunID || m.Role != "assistant" {
			continue
		}
		for _, block := range m.Content {
			if u := block.OfToolUse; u != nil && ids[u.ID] {
				return nil, fmt.Errorf("%w: tool_use id %q was used before in this run", ErrInvalidResponse, u.ID)
			}
		}
	}
	return calls, nil
}

// pause stores the step with its calls waiting for approval (the others
// approved, none started) and releases the session.
func (r *run) pause(ctx context.Context, resp *response, planned []plannedCall, pending []PendingToolCall) (*Result, error) {
	for _, p := range pending {
		r.emit(Event{Kind: EventApproval, Status: "pending", ToolUseID: p.ToolUseID, ToolName: p.Name, Input: p.Input})
	}
	rows := ledgerRows(planned, store.ToolApproved)
	if err := r.commit(ctx, store.StepParams{ToolCalls: rows, Status: store.RunAwaitingApproval, StopReason: StopAwaitingApproval}); err != nil {
		return nil, err
	}
	r.log.InfoContext(ctx, "run awaits approval", "tool_calls", len(pending))
	return &Result{
		RunID: r.lease.RunID, StopReason: StopAwaitingApproval, Usage: r.usage, Iterations: r.calls,
		Response: resp.Message, PendingApprovals: pending,
	}, nil
}

// resumeTools finishes the tool step of a resumed run, whose last stored
// message asked for tools, from the ledger: completed calls keep their
// results and never run again; a call a crash left started runs again only
// if its tool is idempotent, and is reported to the model as interrupted
// otherwise; approved calls run, denied ones answer with the note.
func (r *run) resumeTools(ctx context.Context, msg Message) error {
	a := r.session.agent
	rows, err := a.store.ListToolCalls(ctx, r.session.TenantID, nil, r.lease.RunID)
	if err != nil {
		return err
	}
	ledger := make(map[string]store.ToolCall, len(rows))
	for _, row := range rows {
		ledger[row.ToolUseID] = row
	}
	var planned, starting []plannedCall
	for _, block := range msg.Content {
		u := block.OfToolUse
		if u == nil {
			continue
		}
		row, recorded := ledger[u.ID]
		call := tool.Call{ID: u.ID, Name: u.Name, Input: row.Input}
		if !recorded {
			call.Input, _ = json.Marshal(u.Input)
		}
		p := plannedCall{call: call}
		switch {
		case row.Status == store.ToolCompleted:
			p.result = &tool.Result{Call: call, Output: row.Output, IsError: row.IsError, StartedAt: row.StartedAt, FinishedAt: row.FinishedAt}
			if row.IsError {
				p.result.Err = errors.New(row.Output)
			}
		case row.Status == store.ToolDenied:
			res := deniedResult(call, fmt.Errorf("denied by a person: %s", cmp.Or(row.DecisionNote, "no reason given")))
			p.result = &res
		case row.Status == store.ToolStarted && !a.idempotent(call.Name):
			now := time.Now()
			err := fmt.Errorf("%w: the call was interrupted by a crash and its effect is unknown; it was not run again", ErrRunInterrupted)
			p.result = &tool.Result{Call: call, Output: err.Error(), IsError: true, Err: err, StartedAt: now, FinishedAt: now}
		case row.Status != store.ToolStarted:
			starting = append(starting, p) // not started yet: record it started before it runs
		}
		planned = append(planned, p)
	}
	if len(starting) > 0 {
		if err := r.commit(ctx, store.StepParams{ToolCalls: ledgerRows(starting, store.ToolStarted)}); err != nil {
			return err
		}
	}
	return r.completeTools(ctx, planned)
}

// completeTools runs the planned calls without a result, in parallel, and
// stores every result as the next user message with the calls' ledger
// rows completed.
func (r *run) completeTools(ctx context.Context, planned []plannedCall) error {
	a := r.session.agent
	results := make([]tool.Result, len(planned))
	var runnable []tool.Call
	var at []int
	for i, p := range planned {
		if p.result != nil {
			results[i] = *p.result
		} else {
			runnable = append(runnable, p.call)
			at = append(at, i)
		}
	}
	ran := a.executor.Execute(ctx, runnable)
	r.auditToolCalls(ctx, ran)
	for i, res := range ran {
		results[at[i]] = res
	}
	if err := context.Cause(ctx); err != nil {
		return err
	}
	content := make([]anthropic.ContentBlockParamUnion, len(results))
	rows := make([]store.ToolCall, len(results))
	for i, res := range results {
		output := storableOutput(res.Output)
		content[i] = anthropic.NewToolResultBlock(res.ID, output, res.IsError)
		rows[i] = ledgerRow(res, output)
		r.emit(Event{Kind: EventToolResult, ToolUseID: res.ID, ToolName: res.Name, Text: output, IsError: res.IsError})
	}
	if err := r.add("user", content, nil); err != nil {
		return err
	}
	if err := r.commit(ctx, store.StepParams{ToolCalls: rows}); err != nil {
		return err
	}
	return a.afterToolCalls(ctx, results)
}

// ledgerRows are the ledger rows of planned calls before they run: those
// with a result completed, those waiting in their status, the others in
// status.
func ledgerRows(planned []plannedCall, status string) []store.ToolCall {
	rows := make([]store.ToolCall, len(planned))
	now := time.Now()
	for i, p := range planned {
		if p.result != nil {
			rows[i] = ledgerRow(*p.result, storableOutput(p.result.Output))
			continue
		}
		rows[i] = ledgerRow(tool.Result{Call: p.call}, "")
		rows[i].Status = cmp.Or(p.status, status)
		if rows[i].Status == store.ToolStarted {
			rows[i].StartedAt = now
		}
	}
	return rows
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
		ID: newID(), ToolUseID: id, Name: name, Input: input, Status: store.ToolCompleted,
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
	r.conv.add(msg, row.Content)
	r.pending = append(r.pending, row)
	return nil
}

// drop forgets the pending messages, and the encoding of the
// conversation if it holds them.
func (r *run) drop() {
	stored, _ := r.conv.split()
	r.conv.messages, r.pending = stored, nil
	if r.conv.wired > len(stored) {
		r.conv.wire, r.conv.wired = nil, 0
	}
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
	step.LeaseTTL, step.Model = r.session.agent.cfg.LeaseTTL, r.session.model()
	var end *Event
	if step.Status == store.RunCompleted {
		end = &Event{Status: RunCompleted, StopReason: step.StopReason, Usage: r.usage}
	}
	step.Events = r.takeEvents(ctx, end)
	if end != nil && r.chain != nil {
		step.EndChain = r.chain.endAt
	}
	committed, err := r.session.agent.store.CommitStep(ctx, r.lease, step)
	if errors.Is(err, store.ErrLeaseLost) {
		return ErrLeaseLost
	}
	if refused := limitError(err, r.session.TenantID, r.session.ID); refused != nil {
		r.refusedEvents = step.Events // the refusal rolled them back
		return refused
	}
	if err != nil {
		return fmt.Errorf("storing the run's step: %w", err)
	}
	if end != nil && r.chain != nil {
		r.chain.ended, r.chain.jobEnds = true, committed.ChainEnded
	}
	_, pending := r.conv.split()
	for i := range pending {
		pending[i].Seq = committed.FirstSeq + int64(i)
	}
	r.pending, r.unsaved, r.unsavedCalls = nil, Usage{}, 0
	if committed.CancelRequested && step.Status == "" {
		return ErrRunCancelled // at the step boundary, with the step stored
	}
	return nil
}

// emit records e in the run's events and passes it to the caller's
// OnEvent, if any.
func (r *run) emit(e Event) {
	r.events.add(e)
	if r.opts.OnEvent != nil {
		r.opts.OnEvent(e)
	}
}

// takeEvents returns the run's events not stored yet (those of a step a
// limit refused first), and end if not nil, for its next step to store. An
// error storing events on their own is logged: it never fails the run.
func (r *run) takeEvents(ctx context.Context, end *Event) []store.NewEvent {
	events, err := r.events.take(end)
	if err != nil {
		r.log.WarnContext(ctx, "storing run events", "error", err)
	}
	events = append(r.refusedEvents, events...)
	r.refusedEvents = nil
	return events
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
	failed := store.FailedRun{Reason: reason, Class: failureClass(cause), Cancelled: errors.Is(cause, ErrRunCancelled),
		Messages: r.pending, Usage: r.unsaved.store(), Iterations: r.unsavedCalls, Model: r.session.model()}
	end := Event{Status: RunFailed, Error: reason, Usage: r.usage}
	if failed.Cancelled {
		end.Status = RunCancelled
	}
	failed.Events = r.takeEvents(ctx, &end)
	if r.chain != nil {
		failed.EndChain = r.chain.endAt
	}
	jobEnds, ferr := r.session.agent.store.FailRun(cleanupCtx, r.lease, failed)
	if ferr != nil {
		r.log.ErrorContext(ctx, "recording the failed run", "error", ferr)
		err = errors.Join(err, fmt.Errorf("agentpg: recording the failed run: %w", ferr))
	} else if r.chain != nil {
		r.chain.ended, r.chain.jobEnds = true, jobEnds
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
