package agentpg

import (
	"context"
	"fmt"

	"github.com/agentpg/agentpg/tool"
)

// beforeMessage runs the OnBeforeMessage hooks on the messages about to be
// sent.
func (a *Agent) beforeMessage(ctx context.Context, history []Message) error {
	a.hookMu.RLock()
	hooks := a.before
	a.hookMu.RUnlock()
	if len(hooks) == 0 {
		return nil
	}
	messages := make([]any, len(history))
	for i, m := range history {
		messages[i] = m
	}
	for _, hook := range hooks {
		if err := hook(ctx, messages); err != nil {
			return fmt.Errorf("%w: OnBeforeMessage: %w", ErrHookRejected, err)
		}
	}
	return nil
}

// afterMessage runs the OnAfterMessage hooks on a response.
func (a *Agent) afterMessage(ctx context.Context, response any) error {
	a.hookMu.RLock()
	hooks := a.after
	a.hookMu.RUnlock()
	for _, hook := range hooks {
		if err := hook(ctx, response); err != nil {
			return fmt.Errorf("%w: OnAfterMessage: %w", ErrHookRejected, err)
		}
	}
	return nil
}

// beforeToolCall asks the OnBeforeToolCall hooks whether the run r may make
// call. A call whose input fails validation is not asked about: the
// executor refuses it.
func (a *Agent) beforeToolCall(ctx context.Context, r *run, call tool.Call) error {
	a.hookMu.RLock()
	hooks := a.beforeTool
	a.hookMu.RUnlock()
	if len(hooks) == 0 || a.executor.Registry().Validate(call.Name, call.Input) != nil {
		return nil
	}
	request := ToolCallRequest{
		TenantID: r.session.TenantID, SessionID: r.session.ID, RunID: r.lease.RunID,
		ToolUseID: call.ID, Name: call.Name, Input: call.Input,
	}
	for _, hook := range hooks {
		if err := hook(ctx, request); err != nil {
			return err
		}
	}
	return nil
}

// afterToolCalls runs the OnToolCall hooks on each result, in call order.
func (a *Agent) afterToolCalls(ctx context.Context, results []tool.Result) error {
	a.hookMu.RLock()
	hooks := a.toolCall
	a.hookMu.RUnlock()
	for _, res := range results {
		for _, hook := range hooks {
			if err := hook(ctx, res.Name, res.Input, res.Output, res.Err); err != nil {
				return fmt.Errorf("%w: OnToolCall %q: %w", ErrHookRejected, res.Name, err)
			}
		}
	}
	return nil
}

// beforeCompactionHooks runs the OnBeforeCompaction hooks on a planned
// compaction.
func (a *Agent) beforeCompactionHooks(ctx context.Context, e *CompactionEvent) error {
	a.hookMu.RLock()
	hooks := a.beforeCompaction
	a.hookMu.RUnlock()
	for _, hook := range hooks {
		if err := hook(ctx, e); err != nil {
			return fmt.Errorf("%w: OnBeforeCompaction: %w", ErrHookRejected, err)
		}
	}
	return nil
}

// afterCompactionHooks runs the OnAfterCompaction hooks on a stored
// compaction, logging their errors.
func (a *Agent) afterCompactionHooks(ctx context.Context, e *CompactionEvent) {
	a.hookMu.RLock()
	hooks := a.afterCompaction
	a.hookMu.RUnlock()
	for _, hook := range hooks {
		if err := hook(ctx, e); err != nil {
			a.cfg.Logger.WarnContext(ctx, "OnAfterCompaction hook", "session_id", e.SessionID, "error", err)
		}
	}
}
