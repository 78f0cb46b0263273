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
