// Package audit is a tamper-evident audit log in PostgreSQL: who did what,
// when, per tenant.
//
// Entries are recorded without waiting for the database (Log.Record
// buffers them; a background goroutine writes them in batches) and
// listed, verified and erased per tenant. An Agent has one
// (agentpg.Agent.AuditLog), which with agentpg.Config.Audit.Enabled also
// records the Agent's own actions: tool calls, denials, approvals,
// session deletions and run cancellations.
//
// # The chain
//
// Each tenant's entries form a hash chain in the audit_log table,
// numbered by seq from 1 without gaps. Writers of every process append to a
// tenant's chain one at a time, holding its head (a row of audit_heads, its
// last seq and hash) locked. Each entry stores:
//
//	content_hash = SHA-256( str(user_id) str(session_id) str(run_id)
//	                        str(actor) str(input) str(detail) )
//	hash         = SHA-256( prev_hash str(tenant_id) int(seq)
//	                        int(occurred_at in Unix microseconds)
//	                        str(action) str(tool) bool(success)
//	                        content_hash )
//
// where str(s) is the byte length of s as a big-endian uint32 followed by
// s in UTF-8, int(n) a big-endian int64, bool(b) one byte (1 or 0), and
// prev_hash the previous entry's hash (32 zero bytes for seq 1).
// docs/security.md has a short script that checks a chain with these
// rules alone.
//
// Log.Verify walks a tenant's chain and reports the first entry that was
// updated, deleted, reordered or inserted outside the Log as a
// *ChainError (ErrChainBroken). A trigger refuses UPDATE, DELETE and
// TRUNCATE on the table to everyone, the Log included, but for erasure.
//
// # Erasure
//
// Log.Erase (one user's entries) and Log.EraseTenant blank the content
// columns of entries (user_id, session_id, run_id, actor, input, detail),
// keeping their content_hash, seq and hash, mark them erased, and append a
// tombstone entry (Action ActionErasure) that counts them. The trigger lets
// exactly that through, in a transaction that set agentpg.audit_erasure
// to 'on'. The envelope (tenant, seq, time, action, tool, success) stays,
// and so does the chain: Verify skips the content of erased entries but
// checks that each was erased by a tombstone that accounts for it.
package audit
