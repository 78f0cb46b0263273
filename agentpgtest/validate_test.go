package agentpgtest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/agentpg/agentpg/agentpgtest"
)

// Pieces of raw request bodies.
const tools = `"tools":[{"name":"f","input_schema":{"type":"object"}}]`

func body(fields string, messages ...string) string {
	if fields != "" {
		fields += ","
	}
	return fmt.Sprintf(`{"model":"m","max_tokens":2048,%s"messages":[%s]}`, fields, strings.Join(messages, ","))
}

func user(content ...string) string      { return message("user", content) }
func assistant(content ...string) string { return message("assistant", content) }

func message(role string, content []string) string {
	return fmt.Sprintf(`{"role":%q,"content":[%s]}`, role, strings.Join(content, ","))
}

func text(s string) string { return fmt.Sprintf(`{"type":"text","text":%q}`, s) }
func toolUse(id string) string {
	return fmt.Sprintf(`{"type":"tool_use","id":%q,"name":"f","input":{}}`, id)
}
func result(id string) string {
	return fmt.Sprintf(`{"type":"tool_result","tool_use_id":%q,"content":"ok"}`, id)
}
func cached(block string) string {
	return strings.TrimSuffix(block, "}") + `,"cache_control":{"type":"ephemeral"}}`
}

// post sends data as the SDK would, with header changed by edit, and
// returns the response status and error.
func post(t *testing.T, srv *agentpgtest.Server, method, path, data string, edit func(http.Header)) (status int, errType, message string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL()+path, strings.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Api-Key", "sk-test")
	req.Header.Set("Anthropic-Version", "2023-06-01")
	if edit != nil {
		edit(req.Header)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		Error struct{ Type, Message string }
	}
	json.Unmarshal(raw, &e)
	return res.StatusCode, e.Error.Type, e.Error.Message
}

func TestValidation(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, body, want string
	}{
		{"invalid JSON", `{"model":`, "invalid request body"},
		{"no model", `{"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`, "model: Field required"},
		{"no max_tokens", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, "max_tokens: Input should be greater than or equal to 1"},
		{"no messages", body(""), "messages: at least one message is required"},
		{"unknown role", body("", message("system", []string{text("hi")})), "messages.0.role: Input should be 'user' or 'assistant'"},
		{"first message from assistant", body("", assistant(text("hi")), user(text("hi"))), `the first message must use the "user" role`},
		{"two user messages in a row", body("", user(text("a")), user(text("b"))), `messages.1: roles must alternate`},
		{"two assistant messages in a row", body("", user(text("a")), assistant(text("b")), assistant(text("c")), user(text("d"))), `multiple "assistant" roles in a row`},
		{"final assistant message", body("", user(text("a")), assistant(text("b"))), `the final message must use the "user" role`},
		{"empty string content", body("", `{"role":"user","content":""}`), "messages.0.content.0.text: text content blocks must contain non-whitespace text"},
		{"empty content array", body("", user()), "messages.0.content: messages must have non-empty content"},
		{"whitespace text block", body("", user(text(" \n\t"))), "messages.0.content.0.text: text content blocks must contain non-whitespace text"},
		{"whitespace system", `{"model":"m","max_tokens":10,"system":[{"type":"text","text":" "}],"messages":[{"role":"user","content":"hi"}]}`, "system.0.text: text content blocks must contain non-whitespace text"},
		{"tool_use without tool_result", body(tools, user(text("a")), assistant(toolUse("t1"), toolUse("t2")), user(result("t1"))), "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: t2"},
		{"tool_use last", body(tools, user(text("a")), assistant(toolUse("t1"))), "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: t1"},
		{"tool_result without tool_use", body(tools, user(result("t9"))), "messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: t9"},
		{"tool_result not right after its tool_use", body(tools, user(text("a")), assistant(toolUse("t1")), user(result("t1")), assistant(text("b")), user(result("t1"))), "messages.4.content.0: unexpected `tool_use_id`"},
		{"tool_result after text", body(tools, user(text("a")), assistant(toolUse("t1")), user(text("b"), result("t1"))), "messages.2.content.1: tool_result blocks must come before any other content"},
		{"duplicate tool_result", body(tools, user(text("a")), assistant(toolUse("t1")), user(result("t1"), result("t1"))), "messages.2.content.1: duplicate `tool_result`"},
		{"duplicate tool_use id", body(tools, user(text("a")), assistant(toolUse("t1"), toolUse("t1")), user(result("t1"))), "messages.1.content.1: `tool_use` ids must be unique"},
		{"tool_use id reused later", body(tools, user(text("a")), assistant(toolUse("t1")), user(result("t1")), assistant(toolUse("t1")), user(result("t1"))), "messages.3.content.0: `tool_use` ids must be unique"},
		{"tool_use from user", body(tools, user(toolUse("t1"))), "messages.0.content.0: tool_use blocks may only appear in assistant messages"},
		{"tool_result from assistant", body(tools, user(text("a")), assistant(result("t1")), user(text("b"))), "messages.1.content.0: tool_result blocks may only appear in user messages"},
		{"tool blocks without tools", body("", user(text("a")), assistant(toolUse("t1")), user(result("t1"))), "must define tools"},
		{"thinking without signature", body("", user(text("a")), assistant(`{"type":"thinking","thinking":"hmm"}`, text("b")), user(text("c"))), "messages.1.content.0.signature: Field required"},
		{"thinking from user", body("", user(`{"type":"thinking","thinking":"hmm","signature":"s"}`)), "messages.0.content.0: thinking blocks may only appear in assistant messages"},
		{"redacted_thinking from user", body("", user(`{"type":"redacted_thinking","data":"d"}`)), "messages.0.content.0: redacted_thinking blocks may only appear in assistant messages"},
		{"thinking budget too small", body(`"thinking":{"type":"enabled","budget_tokens":1000}`, user(text("a"))), "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"},
		{"thinking budget not below max_tokens", body(`"thinking":{"type":"enabled","budget_tokens":2048}`, user(text("a"))), "`max_tokens` must be greater than `thinking.budget_tokens`"},
		{"five cache breakpoints", body(`"cache_control":{"type":"ephemeral"}`, user(cached(text("a")), cached(text("b")), cached(text("c")), cached(text("d")))), "A maximum of 4 blocks with cache_control may be provided. Found 5."},
		{"bad tool name", body(`"tools":[{"name":"get weather","input_schema":{"type":"object"}}]`, user(text("a"))), "tools.0.name: String should match pattern"},
		{"tool name too long", body(`"tools":[{"name":"`+strings.Repeat("a", 65)+`","input_schema":{"type":"object"}}]`, user(text("a"))), "tools.0.name: String should match pattern"},
		{"duplicate tool names", body(`"tools":[{"name":"f","input_schema":{}},{"name":"f","input_schema":{}}]`, user(text("a"))), "tools: Tool names must be unique"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := agentpgtest.NewServer(t)
			srv.Push(agentpgtest.Text("never sent"))

			status, typ, msg := post(t, srv, http.MethodPost, "/v1/messages", tt.body, nil)
			if status != http.StatusBadRequest || typ != "invalid_request_error" || !strings.Contains(msg, tt.want) {
				t.Errorf("got %d %s %q, want 400 invalid_request_error containing %q", status, typ, msg, tt.want)
			}
			rejected := srv.Rejected()
			if len(rejected) != 1 || rejected[0].RejectReason != msg {
				t.Errorf("Rejected() = %+v, want the request with reason %q", rejected, msg)
			}
			if srv.Pending() != 1 {
				t.Error("a rejected request took a reply")
			}
			// count_tokens has no max_tokens: it accepts the bodies rejected
			// for theirs, and rejects the others.
			status, _, msg = post(t, srv, http.MethodPost, "/v1/messages/count_tokens", tt.body, nil)
			if (status == http.StatusOK) != strings.Contains(tt.want, "max_tokens") {
				t.Errorf("count_tokens: got %d %q", status, msg)
			}
		})
	}
}

// TestValidConversation checks that a request using every checked feature
// correctly is accepted.
func TestValidConversation(t *testing.T) {
	t.Parallel()
	srv := agentpgtest.NewServer(t)
	thinking := `{"type":"thinking","thinking":"hmm","signature":"sig"}`
	valid := body(`"system":"Be brief.",`+tools+`,"thinking":{"type":"enabled","budget_tokens":1024},"cache_control":{"type":"ephemeral"}`,
		`{"role":"user","content":"Weather?"}`,
		assistant(thinking, `{"type":"redacted_thinking","data":"d"}`, toolUse("t1"), toolUse("t2")),
		user(result("t1"), cached(result("t2")), text("Thanks.")),
		assistant(text("Sunny.")),
		user(cached(text("And tomorrow?"))),
	)
	if status, _, msg := post(t, srv, http.MethodPost, "/v1/messages", valid, nil); status != http.StatusOK {
		t.Fatalf("got %d %q, want 200", status, msg)
	}
	req := srv.Requests()[0]
	if req.Rejected || req.System != "Be brief." || req.CacheBreakpoints != 3 || len(req.Messages) != 5 {
		t.Errorf("recorded rejected=%t system=%q breakpoints=%d messages=%d", req.Rejected, req.System, req.CacheBreakpoints, len(req.Messages))
	}
}

func TestRejectedRequests(t *testing.T) {
	t.Parallel()
	valid := body("", user(text("hi")))
	for _, tt := range []struct {
		name, method, path string
		edit               func(http.Header)
		status             int
		errType            string
	}{
		{"unknown path", http.MethodPost, "/v1/complete", nil, 404, "not_found_error"},
		{"GET", http.MethodGet, "/v1/messages", nil, 404, "not_found_error"},
		{"no x-api-key", http.MethodPost, "/v1/messages", func(h http.Header) { h.Del("X-Api-Key") }, 401, "authentication_error"},
		{"no anthropic-version", http.MethodPost, "/v1/messages", func(h http.Header) { h.Del("Anthropic-Version") }, 400, "invalid_request_error"},
		{"bearer token", http.MethodPost, "/v1/messages", func(h http.Header) {
			h.Del("X-Api-Key")
			h.Set("Authorization", "Bearer sk-test")
		}, 200, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := agentpgtest.NewServer(t)
			status, typ, msg := post(t, srv, tt.method, tt.path, valid, tt.edit)
			if status != tt.status || typ != tt.errType {
				t.Errorf("got %d %s %q, want %d %s", status, typ, msg, tt.status, tt.errType)
			}
			req := srv.Requests()[0]
			if req.Rejected != (tt.status != 200) || req.Path != tt.path {
				t.Errorf("recorded %s rejected=%t", req.Path, req.Rejected)
			}
			if h := req.Header.Get("Authorization"); h != "" && h != "***" {
				t.Errorf("Authorization recorded as %q", h)
			}
		})
	}
}
