// Package agentpg runs stateful Claude agents whose conversations, tool
// calls and runs live in PostgreSQL, so that an agent survives restarts,
// scales across processes, keeps tenants apart and can be audited.
//
// # Model
//
// An [Agent] holds the configuration: a pgx pool, an anthropic-sdk-go
// client, the model, a system prompt and tools. Create it once with [New],
// call [Agent.Migrate] once to create the tables, and share it.
//
// A [Session] is one conversation of one tenant. Every lookup is scoped by
// tenant: a session of another tenant is [ErrSessionNotFound]. The
// identifier given to [Agent.NewSession], such as a user id, names the
// session within its tenant.
//
// [Session.Run] sends a prompt and returns the answer. Each run is durable:
//
//   - one round trip takes the session's lease, records the run and reads
//     what the conversation gained since the session last read it, before
//     the model is called;
//   - the conversation is sent to the model, streamed, with no
//     transaction open;
//   - one statement stores the prompt, the answer and its usage and
//     completes the run, and is flushed to disk before Run returns (the
//     first commit is not: a crash of PostgreSQL that loses it fails the
//     run at this one; see docs/performance.md).
//
// A failed run (an API error, a cut stream, a hook's refusal, a crash) is
// recorded with its reason and its messages are left out of the
// conversation, so the session stays valid and usable.
//
// # One writer per session
//
// A run holds a lease on its session: a fencing token on the session row,
// renewed while the run lasts. Every write of the run is conditional on the
// token in the same statement, so a run whose lease was taken over cannot
// write. Concurrent runs on one session take turns, or fail at once with
// [ErrSessionBusy] when [RunOptions].NoWait is set. A process that dies
// holding a lease blocks the session for at most [Config].LeaseTTL.
//
// # Hooks
//
// [Agent.OnBeforeMessage] sees the messages about to be sent and may stop
// the run; [Agent.OnAfterMessage] sees each response. Hooks receive a
// context derived from the caller's, so values such as a user id set by the
// caller are visible.
//
// # Tools
//
// Tools (package tool) are offered with Config.Tools or WithTools. Their
// inputs are validated against their schemas before they run; the calls of
// one response run in parallel through [Agent.Executor], each under a
// timeout, and every call is recorded in the tool_executions ledger in the
// same statement as the tool_result message that answers it.
// [Agent.OnToolCall] sees each call. [Agent.AsTool] offers an agent to
// others, running each call in a child session.
//
// # Bounded cost
//
// Before each model call, when the request would pass a fraction of the
// model's context window (85% by default), the conversation is compacted
// (package compaction): old tool outputs pruned, an older span summarized,
// never separating a tool_use from its tool_result. What is removed moves to
// the message_archive table in the same statement that writes the summary.
//
// # Audit
//
// [Agent.AuditLog] is a tamper-evident audit log (package audit): entries
// hash-chained per tenant, written in the background, verified with
// Verify. With [Config].Audit.Enabled the Agent records there its tool
// calls, denials, approvals, session deletions and run cancellations; a
// turn waits for no audit write. [Agent.Close] writes what is buffered.
//
// # Testing
//
// Package agentpgtest provides a scripted Claude server that speaks the
// Messages API over real HTTP, for the real SDK client, and a helper giving
// each test a database of its own.
package agentpg
