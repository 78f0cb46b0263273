// Package agentpgtest helps test agents: [NewServer] starts a scripted
// Claude server, and [DB] gives a test a PostgreSQL database of its own
// ([DBWithOptions] for tables in a schema of yours), cloned from a migrated
// template; call [Main] from TestMain to drop the templates once the last
// test process using them ends.
//
// The Claude server is a real HTTP server on the loopback interface that
// speaks the Messages API, so that code under test talks to it through the
// real anthropic-sdk-go client, streaming included.
//
// A test starts a server, queues the replies Claude should give, runs the
// code under test with a client of the server, and then checks what the
// code sent:
//
//	srv := agentpgtest.NewServer(t)
//	srv.Push(
//		agentpgtest.Blocks(agentpgtest.ToolUse("toolu_1", "get_weather", map[string]any{"city": "Paris"})),
//		agentpgtest.Text("It is sunny in Paris."),
//	)
//	agent := myagent.New(srv.Client()) // a *anthropic.Client
//	// ... run the agent ...
//	reqs := srv.Requests()
//	// reqs[1].Messages ends with the tool_result for toolu_1.
//
// # Replies
//
// Every accepted POST /v1/messages request takes the oldest reply queued by
// [Server.Push]. When none is left, the responder set by
// [Server.SetResponder] answers; the default, [Echo], echoes the last user
// text. A [Reply] is either a message, built from [Block]s, or an API error
// ([Overloaded], [RateLimited], [APIError]). It can also be delayed, and a
// streamed one can fail part-way: with an error event (Reply.StreamError) or
// by losing its connection (Reply.CutAfter).
//
// Streamed replies follow the API's event sequence: message_start, ping,
// then for each block content_block_start, its deltas and
// content_block_stop, then message_delta and message_stop. Text, thinking
// and tool input arrive in several deltas, so that
// [anthropic.Message.Accumulate] has work to do, and the accumulated message
// equals the scripted one.
//
// # Validation
//
// The server rejects, with a 400 invalid_request_error, the requests the API
// would reject and a few more that an agent should never send: consecutive
// messages of one role and a final assistant message (no prefill). It checks
// the model, max_tokens, role alternation, empty content, tool_use and
// tool_result pairing (each tool_use answered at the start of the next
// message, ids unique, tools defined), thinking blocks (signed, from the
// assistant), the thinking budget, at most four cache breakpoints, and tool
// names. It answers 404 to unknown paths, 401
// without an x-api-key or bearer Authorization header, and 400 without
// anthropic-version. It does not check replies: a script may call a tool the
// request does not offer. [Server.Rejected] lists the refused requests with
// the reason.
//
// # Usage
//
// Unless a reply sets its Usage, the server estimates one token per four
// bytes of the canonical JSON of the request's tools, system blocks and
// message blocks, and one output token per four characters of the reply's
// content. It simulates prompt caching: the prefix of the prompt up to the
// last cache breakpoint is reported as cache_read_input_tokens when an
// earlier request cached it, the longest such prefix counting, and the rest
// of it as cache_creation_input_tokens; the prefix ending at each breakpoint
// is cached for later requests. Unlike the API, there is no minimum cacheable
// length and the cache never expires. POST /v1/messages/count_tokens answers
// with the same input estimate, without caching.
package agentpgtest
