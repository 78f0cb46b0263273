package agentpg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/agentpg/agentpg/audit"
	"github.com/agentpg/agentpg/internal/store"
	"github.com/agentpg/agentpg/tool"
)

// GetRun returns the tenant's run. A run of another tenant, or a malformed
// id, is ErrRunNotFound.
func (a *Agent) GetRun(ctx context.Context, tenantID, runID string) (*RunInfo, error) {
	run, err := a.storedRun(ctx, tenantID, runID)
	if err != nil {
		return nil, err
	}
	info := runInfo(run)
	return &info, nil
}

// RunFilter selects runs for ListRuns.
type RunFilter struct {
	// Status keeps the runs in this status, such as RunAwaitingApproval or
	// RunRunning (with RunInfo.Stuck for those no process holds); "" keeps
	// all.
	Status string
}

// ListRuns returns a page of the tenant's runs, oldest first.
func (a *Agent) ListRuns(ctx context.Context, tenantID string, filter RunFilter, opts ListOptions) (Page[RunInfo], error) {
	if err := validateTenant(tenantID); err != nil {
		return Page[RunInfo]{}, err
	}
	limit, err := opts.limit()
	if err != nil {
		return Page[RunInfo]{}, err
	}
	after, err := parseIDCursor(opts.After)
	if err != nil {
		return Page[RunInfo]{}, err
	}
	var status *string
	if filter.Status != "" {
		status = &filter.Status
	}
	rows, err := a.store.ListTenantRuns(ctx, tenantID, status, after, limit)
	if err != nil {
		return Page[RunInfo]{}, fmt.Errorf("agentpg: listing runs: %w", err)
	}
	runs, _ := convertAll(rows, func(r store.Run) (RunInfo, error) { return runInfo(r), nil })
	return pageOf(runs, limit, func(r RunInfo) string { return r.ID }), nil
}

// CancelRun cancels the tenant's run. A queued run, one awaiting approval,
// or one whose process went away is cancelled at once; a running one stops
// at its next step boundary (after the step it is in is stored, before the
// next model call or tool), and its caller gets an error matching
// ErrRunCancelled. Cancelling a run that ended is ErrRunFinished.
func (a *Agent) CancelRun(ctx context.Context, tenantID, runID string) error {
	if err := validateRunKeys(tenantID, runID); err != nil {
		return err
	}
	_, err := a.store.CancelRun(ctx, tenantID, runID, "cancelled by CancelRun", a.runJob())
	a.record(ctx, audit.Entry{TenantID: tenantID, RunID: runID, Action: audit.ActionRunCancel, Success: err == nil})
	return runStoreError(err, "cancelling the run")
}

// ResumeRun continues the tenant's run here, in this process, from its
// last committed step, and returns its Result like Session.Run: a run
// interrupted by a crash (RunInfo.Stuck), one whose approvals are all
// decided, or a queued one. A resumed run never runs a tool call again
// whose result is stored; a call a crash interrupted is run again only if
// its tool is idempotent (tool.IdempotentTool), and is otherwise reported
// to the model as interrupted, its effect unknown.
//
// For a run that ended, ResumeRun returns what WaitRun returns. It fails
// with ErrApprovalPending while calls wait for a decision, with
// ErrSessionBusy while a process runs the session, and with a *LimitError,
// leaving the run as it was, while its tenant's limits refuse its next
// model call.
func (a *Agent) ResumeRun(ctx context.Context, tenantID, runID string) (*Result, error) {
	stored, answer, err := a.runResult(ctx, tenantID, runID)
	if err != nil {
		return nil, err
	}
	if ended(stored.Status) {
		return a.endedResult(ctx, tenantID, stored, answer)
	}
	return a.resumeRun(ctx, tenantID, stored.SessionID, runID, nil)
}

// resumeRun is ResumeRun of a run of the tenant's session sessionID, which
// it reads with the lease, in one round trip. The job executing the
// session's enqueued runs passes link, to learn what comes after the run.
func (a *Agent) resumeRun(ctx context.Context, tenantID, sessionID, runID string, link *chainLink) (*Result, error) {
	// No in-process gate: a Run of this process waiting in it for the
	// session may wait for this very run (enqueued runs come first); the
	// lease decides.
	cache := a.cachedConversation(sessionID)
	cache.mu.Lock()
	params := store.ResumeRunParams{TenantID: tenantID, SessionID: sessionID, RunID: runID, LeaseTTL: a.cfg.LeaseTTL,
		CachedGen: cache.conv.gen, CachedSeq: cache.lastSeq}
	cache.mu.Unlock()
	begun, err := a.store.ResumeRun(ctx, params)
	if refused := limitError(err, tenantID, sessionID); refused != nil {
		return nil, fmt.Errorf("agentpg: %w", refused)
	}
	if errors.Is(err, store.ErrFinished) {
		return a.WaitRun(ctx, tenantID, runID)
	}
	if err != nil {
		return nil, runStoreError(err, "resuming the run")
	}
	sess, err := a.session(begun.Session)
	if err != nil {
		// The session's row is unreadable (edited by hand): the run stays
		// as it is, and its lease expires.
		return nil, err
	}
	if link != nil {
		link.next = begun.Chain.NextRun
		if link.next == "" {
			link.endAt = &begun.Chain.Seen
		}
	}
	r := &run{
		session: sess,
		lease:   begun.Lease,
		async:   begun.Async,
		chain:   link,
		log:     a.cfg.Logger.With("tenant_id", tenantID, "session_id", sessionID, "run_id", runID),
		events:  newEventWriter(a, tenantID, runID),
	}
	r.log.InfoContext(ctx, "run resumed")
	return r.execute(ctx, begun, "")
}

// WaitRun returns the Result of the tenant's run once it has ended, or the
// error it failed with (a *RunError matching its failure's sentinel, such
// as ErrRunCancelled), from any process. A run awaiting approval returns
// its Result with StopReason StopAwaitingApproval. It reads the run and
// its answer in one statement, then again only when the run's events
// announce that it stopped (ended, or paused for approvals; one connection
// LISTENs for all of the Agent's waiters), until ctx ends; every second
// while that connection is not listening, and every runWaitPoll when it
// is, should a run end unannounced.
func (a *Agent) WaitRun(ctx context.Context, tenantID, runID string) (*Result, error) {
	if err := validateRunKeys(tenantID, runID); err != nil {
		return nil, err
	}
	wake, unregister := a.notes.register(a, runStopped, runID)
	defer unregister()
	for {
		// Listening before the read, no later end of the run is missed.
		poll := time.Second
		if a.notes.listening() {
			poll = runWaitPoll
		}
		stored, answer, err := a.runResult(ctx, tenantID, runID)
		if err != nil {
			return nil, err
		}
		if ended(stored.Status) || stored.Status == RunAwaitingApproval {
			return a.endedResult(ctx, tenantID, stored, answer)
		}
		if err := waitWakeFor(ctx, wake, poll); err != nil {
			return nil, fmt.Errorf("agentpg: waiting for run %s: %w", runID, err)
		}
	}
}

// runWaitPoll is how often WaitRun reads a run whose end would be
// announced to it: a safety net, not the means.
const runWaitPoll = 30 * time.Second

// DecideToolCall approves or denies a tool call of the tenant's run that
// awaits approval; note says who decided and why, and reaches the model
// with a denial. Deciding a call twice, or one that does not wait, is
// ErrNotPending; a call of a run that ended (cancelled) is ErrRunFinished;
// a call of another tenant's run is ErrRunNotFound. Once
// every pending call of the run is decided, ResumeRun continues it; an
// enqueued run goes back to the workers by itself.
func (a *Agent) DecideToolCall(ctx context.Context, tenantID, runID, toolUseID string, approve bool, note string) error {
	if err := validateRunKeys(tenantID, runID); err != nil {
		return err
	}
	note, _ = storableText(note)
	decided, err := a.store.DecideToolCall(ctx, tenantID, runID, toolUseID, approve, note)
	a.auditDecision(ctx, tenantID, runID, approve, note, decided, err)
	if err != nil {
		return runStoreError(err, "deciding the tool call")
	}
	a.cfg.Logger.InfoContext(ctx, "tool call decided", "tenant_id", tenantID, "run_id", runID,
		"tool_use_id", toolUseID, "approved", approve)
	if decided.Remaining == 0 {
		return a.continueAsync(ctx, tenantID, runID)
	}
	return nil
}

// continueAsync hands an enqueued run whose approvals are all decided back
// to the workers, with a new job; a run of Session.Run is left to
// ResumeRun.
func (a *Agent) continueAsync(ctx context.Context, tenantID, runID string) error {
	run, err := a.storedRun(ctx, tenantID, runID)
	if err != nil || !run.Async {
		return err
	}
	if err := a.store.RequeueRun(ctx, tenantID, runID, a.runJob()); err != nil {
		return fmt.Errorf("agentpg: handing the decided run to the workers: %w", err)
	}
	return nil
}

// storedRun reads the tenant's run, mapping not found.
func (a *Agent) storedRun(ctx context.Context, tenantID, runID string) (store.Run, error) {
	if err := validateRunKeys(tenantID, runID); err != nil {
		return store.Run{}, err
	}
	run, err := a.store.GetRun(ctx, tenantID, runID)
	if err != nil {
		return run, runStoreError(err, "reading the run")
	}
	return run, nil
}

// runResult reads the tenant's run with its answer (see
// store.RunResult), mapping not found.
func (a *Agent) runResult(ctx context.Context, tenantID, runID string) (store.Run, json.RawMessage, error) {
	if err := validateRunKeys(tenantID, runID); err != nil {
		return store.Run{}, nil, err
	}
	run, answer, err := a.store.RunResult(ctx, tenantID, runID)
	if err != nil {
		return run, nil, runStoreError(err, "reading the run")
	}
	return run, answer, nil
}

// endedResult is the Result of a stored run that ended or waits for
// approval, with content its last answer, or the *RunError of one that
// failed or was cancelled.
func (a *Agent) endedResult(ctx context.Context, tenantID string, run store.Run, content json.RawMessage) (*Result, error) {
	info := runInfo(run)
	if run.Status == RunFailed || run.Status == RunCancelled {
		return nil, &RunError{RunID: run.ID, Status: run.Status, Class: info.ErrorClass, Reason: info.Error}
	}
	res := &Result{RunID: run.ID, StopReason: info.StopReason, Usage: info.Usage, Iterations: info.Iterations}
	if content != nil {
		var blocks []anthropic.ContentBlockParamUnion
		if err := json.Unmarshal(content, &blocks); err != nil {
			return nil, fmt.Errorf("agentpg: decoding the run's answer: %w", err)
		}
		res.Text = Message{Content: blocks}.Text()
	}
	if run.Status == RunAwaitingApproval {
		calls, err := a.toolCalls(ctx, tenantID, nil, run.ID)
		if err != nil {
			return nil, err
		}
		for _, c := range calls {
			if c.Status == store.ToolAwaitingApproval {
				res.PendingApprovals = append(res.PendingApprovals, PendingToolCall{ToolUseID: c.ToolUseID, Name: c.Name, Input: c.Input})
			}
		}
	}
	return res, nil
}

func ended(status string) bool {
	return status == RunCompleted || status == RunFailed || status == RunCancelled
}

// validateRunKeys checks a tenant and a run id; a malformed run id is not
// found.
func validateRunKeys(tenantID, runID string) error {
	if err := validateTenant(tenantID); err != nil {
		return err
	}
	if !validID(runID) {
		return fmt.Errorf("agentpg: %w", ErrRunNotFound)
	}
	return nil
}

// runStoreError maps the store's errors about runs to ours.
func runStoreError(err error, doing string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("agentpg: %w", ErrRunNotFound)
	case errors.Is(err, store.ErrFinished):
		return fmt.Errorf("agentpg: %w", ErrRunFinished)
	case errors.Is(err, store.ErrApprovalPending):
		return fmt.Errorf("agentpg: %w", ErrApprovalPending)
	case errors.Is(err, store.ErrNotPending):
		return fmt.Errorf("agentpg: %w", ErrNotPending)
	case errors.Is(err, store.ErrBusy):
		return fmt.Errorf("agentpg: %w", ErrSessionBusy)
	}
	return fmt.Errorf("agentpg: %s: %w", doing, err)
}

// needsApproval reports whether calls of the tool wait for a person.
func (a *Agent) needsApproval(name string) bool {
	return slices.Contains(a.cfg.ApprovalRequired, name)
}

// idempotent reports whether the tool may run again after a crash left its
// call's effect unknown.
func (a *Agent) idempotent(name string) bool {
	t, ok := a.executor.Registry().Get(name)
	if !ok {
		return false
	}
	it, ok := t.(tool.IdempotentTool)
	return ok && it.Idempotent()
}

// FailStuckRuns is the rescuer of synchronous runs: it marks failed
// (ErrorClass "interrupted"), across every tenant, the runs that no process
// has held for longer than grace, since their callers are gone, and
// returns how many. Until then ResumeRun can continue such a run. Enqueued
// runs are left to the workers, which resume them. A Worker runs it
// periodically; call it yourself otherwise.
func (a *Agent) FailStuckRuns(ctx context.Context, grace time.Duration) (int, error) {
	ids, err := a.store.FailStuckRuns(ctx, grace, "interrupted: its process went away and no one resumed it")
	if err != nil {
		return 0, fmt.Errorf("agentpg: failing stuck runs: %w", err)
	}
	for _, id := range ids {
		a.cfg.Logger.WarnContext(ctx, "stuck run failed", "run_id", id)
	}
	return len(ids), nil
}
