package agentpg

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/agentpg/agentpg/audit"
	"github.com/agentpg/agentpg/internal/store"
	"github.com/agentpg/agentpg/tool"
)

// AuditConfig configures the Agent's audit log (Agent.AuditLog), which is
// there to record into whether or not Enabled is set.
type AuditConfig struct {
	// Enabled makes the Agent record its own actions in its audit log:
	// each tool call that ran (audit.ActionToolCall: the tool, its input,
	// whether it succeeded), each call an OnBeforeToolCall hook denied
	// (ActionToolDenied), each DecideToolCall (ActionToolApprove or
	// ActionToolDeny), DeleteSession (ActionSessionDelete), CancelRun
	// (ActionRunCancel) and SetTenantLimits (ActionLimitsSet), each with
	// whether it took effect. The entries of a run carry the session's
	// identifier as UserID; those of a nested agent's run, the identifier
	// of the session that called it, so that EraseIdentifier erases them
	// with the rest of the end user's data. They are buffered
	// and written in the background: a turn waits for no audit write. An
	// entry that cannot be recorded is logged, and the Agent goes on.
	Enabled bool
	// Redact rewrites each entry's Input and Detail before it is stored
	// (audit.Options.Redact); nil means redact.Redact, which replaces
	// email addresses, card numbers, secrets and the like with
	// [REDACTED:KIND]. To store inputs as given, set a function that
	// returns its argument.
	Redact func(string) string
	// Actor, if set, names who acts from the context of a call, such as
	// the authenticated user your handler put there: the Agent sets it as
	// Entry.Actor of the entries it records.
	Actor func(ctx context.Context) string
}

// AuditLog returns the Agent's audit log, in the Agent's schema, for
// recording entries of your own, listing and verifying them. Close the
// Agent on shutdown so that none is lost.
func (a *Agent) AuditLog() *audit.Log { return a.audit }

// Close announces to the Workers the runs enqueued in the last few
// milliseconds that were not yet, writes what the Agent's audit log holds
// and closes it, or gives up when ctx ends (see audit.Log.Close). Call it
// once done with the Agent, after its Workers stopped: entries the Agent
// would record afterwards are lost (and logged).
func (a *Agent) Close(ctx context.Context) error {
	a.announcer.flush()
	if err := a.audit.Close(ctx); err != nil {
		return fmt.Errorf("agentpg: closing the audit log: %w", err)
	}
	return nil
}

// record records e in the audit log when Config.Audit.Enabled, with the
// actor of ctx. A failure is logged, not returned: auditing does not stop
// the Agent's work.
func (a *Agent) record(ctx context.Context, e audit.Entry) {
	if !a.cfg.Audit.Enabled {
		return
	}
	if a.cfg.Audit.Actor != nil {
		e.Actor = a.cfg.Audit.Actor(ctx)
	}
	if err := a.audit.Record(e); err != nil {
		a.cfg.Logger.WarnContext(ctx, "audit entry not recorded", "tenant_id", e.TenantID, "action", e.Action, "error", err)
	}
}

// actor names who acts, for the audit log: Config.Audit.Actor's answer, or
// "agentpg".
func (a *Agent) actor(ctx context.Context) string {
	if a.cfg.Audit.Actor != nil {
		if actor := a.cfg.Audit.Actor(ctx); actor != "" {
			return actor
		}
	}
	return "agentpg"
}

// auditEntry is an entry about a call of the run.
func (r *run) auditEntry(action string, call tool.Call, success bool, detail string) audit.Entry {
	return audit.Entry{
		TenantID: r.session.TenantID, UserID: r.session.endUser, SessionID: r.session.ID, RunID: r.lease.RunID,
		Action: action, Tool: call.Name, Input: r.session.agent.auditContent(string(call.Input)), Success: success,
		Detail: detail,
	}
}

// auditContent returns content (a tool's input, a decision's note) as the
// Agent's audit entries keep it: as it is, or with Config.Keys its SHA-256
// ("sha256:" and hex). The audit log is not encrypted (its chain verifies
// without keys), so with encryption at rest it holds digests, which match
// the content kept encrypted in the tool ledger, and no plaintext.
func (a *Agent) auditContent(content string) string {
	if a.cfg.Keys == nil || content == "" {
		return content
	}
	sum := sha256.Sum256([]byte(content))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// auditToolCalls records the results of the calls that ran.
func (r *run) auditToolCalls(ctx context.Context, results []tool.Result) {
	a := r.session.agent
	if !a.cfg.Audit.Enabled {
		return
	}
	for _, res := range results {
		a.record(ctx, r.auditEntry(audit.ActionToolCall, res.Call, !res.IsError, ""))
	}
}

// auditDecision records a DecideToolCall; call is the decided call, empty
// when the decision failed.
func (a *Agent) auditDecision(ctx context.Context, tenantID, runID string, approve bool, note string, call store.DecidedCall, err error) {
	action := audit.ActionToolDeny
	if approve {
		action = audit.ActionToolApprove
	}
	a.record(ctx, audit.Entry{TenantID: tenantID, SessionID: call.SessionID, RunID: runID, Action: action,
		Tool: call.Name, Input: a.auditContent(string(call.Input)), Success: err == nil, Detail: a.auditContent(note)})
}
