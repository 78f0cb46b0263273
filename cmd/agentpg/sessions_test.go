package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/tool"
)

// weatherInput is the input of the test's tool.
type weatherInput struct {
	City string `json:"city"`
}

// longForecast is what the weather tool answers for Paris: longer than
// what sessions show prints of a tool's output.
var longForecast = strings.Repeat("sunny ", 1000)

// weatherTool is a tool that answers at length for Paris and fails for
// any other city.
func weatherTool(t *testing.T) tool.Tool {
	t.Helper()
	weather, err := tool.NewFunc("get_weather", "Tells the weather of a city.",
		func(_ context.Context, in weatherInput) (string, error) {
			if in.City != "Paris" {
				return "", errors.New("no such city: " + in.City)
			}
			return longForecast, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	return weather
}

// toolSession makes a session of tenant acme, identifier "tools", whose one
// run called the weather tool twice, once in vain, before answering. It
// returns the session.
func toolSession(t *testing.T, schema string) *agentpg.Session {
	t.Helper()
	agent, srv := testAgent(t, schema, agentpg.WithTools(weatherTool(t)))
	session, err := agent.NewSession(t.Context(), "acme", "tools", nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.Push(
		agentpgtest.Blocks(
			agentpgtest.TextBlock("Let me check."),
			agentpgtest.ToolUse("toolu_1", "get_weather", map[string]any{"city": "Paris"}),
			agentpgtest.ToolUse("toolu_2", "get_weather", map[string]any{"city": "Atlantis"}),
		),
		agentpgtest.Text("It is sunny in Paris; Atlantis I could not find."),
	)
	if _, err := session.Run(t.Context(), "What is the weather in Paris and Atlantis?"); err != nil {
		t.Fatal(err)
	}
	return session
}

func TestSessionsShowToolCalls(t *testing.T) {
	t.Parallel()
	schema := migrated(t)
	session := toolSession(t, schema)

	res := agentpgCLI(t, "sessions", "show", "--schema", schema, "--tenant", "acme", "--identifier", "tools")
	wantCode(t, res, 0)
	wantContains(t, "sessions show", res.stdout,
		"#1 user",
		"What is the weather in Paris and Atlantis?",
		"#2 assistant",
		"Let me check.",
		`tool call get_weather (toolu_1), input:`,
		`{"city":"Paris"}`,
		`tool call get_weather (toolu_2), input:`,
		"#3 user",
		"tool result of get_weather (toolu_1, ",
		"), ok:\n        sunny sunny",
		"[cut: 2000 of 6000 bytes shown; --json shows everything]",
		"tool result of get_weather (toolu_2, ",
		"), error:\n        no such city: Atlantis",
		"#4 assistant",
		"It is sunny in Paris",
		"Runs (1):",
		"claude-test",
	)
	if strings.Contains(res.stdout, "(no text)") {
		t.Errorf("sessions show leaves out tool calls:\n%s", res.stdout)
	}
	if strings.Count(res.stdout, "sunny ") > 400 {
		t.Errorf("sessions show prints the whole of a long tool output:\n%s", res.stdout)
	}

	res = agentpgCLI(t, "sessions", "show", "--json", "--schema", schema, "--tenant", "acme", "--id", session.ID)
	wantCode(t, res, 0)
	var got showJSON
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil {
		t.Fatalf("sessions show --json: %v\n%s", err, res.stdout)
	}
	if got.Session.ID != session.ID || got.Session.Identifier != "tools" || got.Session.TenantID != "acme" || got.Next != "" {
		t.Errorf("session %+v, next %q", got.Session, got.Next)
	}
	if len(got.Messages) != 4 {
		t.Fatalf("%d messages, want 4:\n%s", len(got.Messages), res.stdout)
	}
	use := got.Messages[1].Content
	if len(use) != 3 || use[1].Type != "tool_use" || use[1].ID != "toolu_1" || use[1].Name != "get_weather" || compact(t, use[1].Input) != `{"city":"Paris"}` {
		t.Errorf("assistant content %+v", use)
	}
	results := got.Messages[2].Content
	if len(results) != 2 || results[0].Type != "tool_result" || results[0].ToolUseID != "toolu_1" || results[0].Name != "get_weather" ||
		results[0].IsError == nil || *results[0].IsError || results[0].Output == nil || *results[0].Output != longForecast {
		t.Errorf("first tool result %+v", results[0])
	}
	if len(results) == 2 && (results[1].IsError == nil || !*results[1].IsError || results[1].Output == nil || !strings.Contains(*results[1].Output, "no such city")) {
		t.Errorf("second tool result %+v", results[1])
	}
	if len(got.Runs) != 1 {
		t.Fatalf("runs %+v, want 1", got.Runs)
	}
	run := got.Runs[0]
	if run.Status != "completed" || run.Model != "claude-test" || run.Iterations != 2 || len(run.ToolCalls) != 2 {
		t.Errorf("run %+v", run)
	}
	for _, call := range run.ToolCalls { // they ran in parallel: in no order
		paris := call.ToolUseID == "toolu_1"
		if call.Name != "get_weather" || call.IsError == paris || paris != (call.Output == longForecast) {
			t.Errorf("tool call %+v", call)
		}
	}
	for _, m := range got.Messages {
		if m.RunID != run.ID || m.RunFailed {
			t.Errorf("message %+v, want one of run %s, not failed", m, run.ID)
		}
	}
}

// compact returns the JSON of raw without its spaces.
func compact(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Errorf("compacting %s: %v", raw, err)
	}
	return b.String()
}

// showJSON is the output of sessions show --json, as documented.
type showJSON struct {
	Session  sessionJSON `json:"session"`
	Messages []struct {
		ID        string         `json:"id"`
		RunID     string         `json:"run_id"`
		Seq       int64          `json:"seq"`
		Role      string         `json:"role"`
		CreatedAt time.Time      `json:"created_at"`
		RunFailed bool           `json:"run_failed"`
		Usage     *agentpg.Usage `json:"usage"`
		Content   []struct {
			Type      string          `json:"type"`
			Text      string          `json:"text"`
			ID        string          `json:"id"`
			Name      string          `json:"name"`
			Input     json.RawMessage `json:"input"`
			ToolUseID string          `json:"tool_use_id"`
			IsError   *bool           `json:"is_error"`
			Output    *string         `json:"output"`
		} `json:"content"`
	} `json:"messages"`
	Next string `json:"next"`
	Runs []struct {
		ID         string `json:"id"`
		Status     string `json:"status"`
		Model      string `json:"model"`
		Iterations int    `json:"iterations"`
		ToolCalls  []struct {
			ToolUseID string          `json:"tool_use_id"`
			Name      string          `json:"name"`
			Input     json.RawMessage `json:"input"`
			Output    string          `json:"output"`
			IsError   bool            `json:"is_error"`
		} `json:"tool_calls"`
	} `json:"runs"`
}

// sessionJSON is a session in the output of sessions list and show
// --json, as documented.
type sessionJSON struct {
	ID         string         `json:"id"`
	TenantID   string         `json:"tenant_id"`
	Identifier string         `json:"identifier"`
	ParentID   string         `json:"parent_id"`
	Metadata   map[string]any `json:"metadata"`
	CreatedAt  time.Time      `json:"created_at"`
	UpdatedAt  time.Time      `json:"updated_at"`
}

var afterCursor = regexp.MustCompile(`--after (\S+)`)

// TestSessionsPaging pages through the messages of a session and through
// the sessions of a tenant.
func TestSessionsPaging(t *testing.T) {
	t.Parallel()
	schema := migrated(t)
	res := invocation{stdin: "one\ntwo\nthree\n"}.run(t, "chat", "--schema", schema, "--tenant", "acme", "--session", "s1")
	wantCode(t, res, 0)
	res = invocation{stdin: "hi\n"}.run(t, "chat", "--schema", schema, "--tenant", "acme", "--session", "s2")
	wantCode(t, res, 0)

	show := func(args ...string) result {
		return agentpgCLI(t, append([]string{"sessions", "show", "--schema", schema, "--tenant", "acme", "--identifier", "s1"}, args...)...)
	}
	res = show("--limit", "4")
	wantCode(t, res, 0)
	wantContains(t, "the first page", res.stdout, "Messages (4):", "#1 user", "#4 assistant", "More messages follow: run again with --after ")
	m := afterCursor.FindStringSubmatch(res.stdout)
	if m == nil {
		t.Fatalf("no cursor:\n%s", res.stdout)
	}
	res = show("--limit", "4", "--after", m[1])
	wantCode(t, res, 0)
	wantContains(t, "the second page", res.stdout, "Messages (2):", "#5 user", "three", "#6 assistant", "Runs (1):")
	if strings.Contains(res.stdout, "#4") || strings.Contains(res.stdout, "More messages") {
		t.Errorf("the second page:\n%s", res.stdout)
	}

	res = show("--json", "--limit", "4")
	wantCode(t, res, 0)
	var page showJSON
	if err := json.Unmarshal([]byte(res.stdout), &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Messages) != 4 || page.Next == "" || len(page.Runs) != 2 {
		t.Errorf("the first page as JSON: %d messages, next %q, %d runs", len(page.Messages), page.Next, len(page.Runs))
	}
	res = show("--json", "--after", page.Next)
	wantCode(t, res, 0)
	page = showJSON{}
	if err := json.Unmarshal([]byte(res.stdout), &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Messages) != 2 || page.Messages[0].Seq != 5 || page.Next != "" {
		t.Errorf("the second page as JSON: %+v", page)
	}

	res = show("--after", "not-a-cursor")
	wantCode(t, res, 2)
	wantContains(t, "stderr", res.stderr, "not a cursor")

	// The sessions, most recently active first.
	list := func(args ...string) result {
		return agentpgCLI(t, append([]string{"sessions", "list", "--schema", schema, "--tenant", "acme"}, args...)...)
	}
	res = list("--limit", "1")
	wantCode(t, res, 0)
	wantContains(t, "the first page", res.stdout, "IDENTIFIER", "s2", "More sessions follow: run again with --after ")
	m = afterCursor.FindStringSubmatch(res.stdout)
	if m == nil {
		t.Fatalf("no cursor:\n%s", res.stdout)
	}
	res = list("--limit", "1", "--after", m[1])
	wantCode(t, res, 0)
	wantContains(t, "the second page", res.stdout, "s1")
	if strings.Contains(res.stdout, "s2") || strings.Contains(res.stdout, "More sessions") {
		t.Errorf("the second page:\n%s", res.stdout)
	}

	res = list("--json")
	wantCode(t, res, 0)
	var sessions struct {
		Sessions []sessionJSON `json:"sessions"`
		Next     string        `json:"next"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &sessions); err != nil {
		t.Fatal(err)
	}
	if len(sessions.Sessions) != 2 || sessions.Sessions[0].Identifier != "s2" || sessions.Sessions[1].TenantID != "acme" || sessions.Next != "" {
		t.Errorf("sessions list --json: %+v", sessions)
	}
	res = agentpgCLI(t, "sessions", "list", "--json", "--schema", schema, "--tenant", "nobody")
	wantCode(t, res, 0)
	if want := "{\n  \"sessions\": [],\n  \"next\": \"\"\n}\n"; res.stdout != want {
		t.Errorf("sessions list --json of a tenant without sessions = %q, want %q", res.stdout, want)
	}
}

// TestPrintShown checks that long texts are cut at a rune's start, and
// escaped.
func TestPrintShown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		text, want string
	}{
		{"short\nand sweet", "  short\n  and sweet\n"},
		{strings.Repeat("日", 1000), "  " + strings.Repeat("日", 666) + "\n  [cut: 1998 of 3000 bytes shown; --json shows everything]\n"},
		{"\xff" + strings.Repeat("日", 1000), `  \xff` + strings.Repeat("日", 666) + "\n  [cut: 1999 of 3001 bytes shown; --json shows everything]\n"},
	} {
		var b strings.Builder
		printShown(&b, "  ", tc.text)
		if b.String() != tc.want {
			t.Errorf("printShown(%.20q...) = %.80q..., want %.80q...", tc.text, b.String(), tc.want)
		}
	}
}
