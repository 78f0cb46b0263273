package agentpg

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/internal/store"
	"github.com/agentpg/agentpg/keys"
	"github.com/agentpg/agentpg/tool"
)

// sdkBody returns what the SDK sends for params and messages as a
// streaming call: its encoding of the parameters with the messages in
// them, and "stream".
func sdkBody(t *testing.T, params anthropic.MessageNewParams, messages []Message) []byte {
	t.Helper()
	params.Messages = messageParams(messages)
	encoded, err := json.Marshal(params)
	if err != nil {
		t.Fatal(err)
	}
	body := decodeObject(t, encoded)
	body["stream"] = true
	if encoded, err = json.Marshal(body); err != nil {
		t.Fatal(err)
	}
	return encoded
}

// decodeObject decodes a JSON object, its numbers as they are written.
func decodeObject(t *testing.T, data []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v map[string]any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("%v in %s", err, data)
	}
	return v
}

// sameJSON fails the test unless got and want are the same JSON object.
func sameJSON(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !reflect.DeepEqual(decodeObject(t, got), decodeObject(t, want)) {
		t.Errorf("%s:\n got %s\nwant %s", what, got, want)
	}
}

// TestRequestBody: the body assembled from the conversation's encoding
// means what the SDK's encoding of the same request means, for messages
// a run added (whose stored content is their encoding) and messages read
// from rows, with content of every kind a run stores; encoded at once,
// one message at a time as turns add them, and after a message was
// dropped.
func TestRequestBody(t *testing.T) {
	r := &run{}
	add := func(role string, content ...anthropic.ContentBlockParamUnion) {
		if err := r.add(role, content, nil); err != nil {
			t.Fatal(err)
		}
	}
	input := json.RawMessage(`{"city":"Zürich <&>","n":12345678901234567890,"nested":{"list":[1,2.5,"x"]}}`)
	thinking := anthropic.NewThinkingBlock("sig==", "Let me think about <b> & \"quotes\".")
	add("user", anthropic.NewTextBlock("Hello, 世界 <script>&amp;</script>"))
	add("assistant", thinking, anthropic.NewRedactedThinkingBlock("opaque=="),
		anthropic.NewTextBlock("Calling the tool."), anthropic.NewToolUseBlock("toolu_1", input, "weather"))
	add("user", anthropic.NewToolResultBlock("toolu_1", "sunny\x00 and \xff warm", false),
		anthropic.NewToolResultBlock("toolu_2", "failed: timeout", true))
	add("assistant", anthropic.NewTextBlock("It is sunny."))
	if r.conv.wired != len(r.conv.messages) {
		t.Fatalf("%d of %d added messages encoded as they were added", r.conv.wired, len(r.conv.messages))
	}
	var rows []store.Message
	for i, m := range r.conv.messages {
		rows = append(rows, store.Message{ID: newID(), Seq: int64(i + 1), Role: m.Role, Content: r.pending[i].Content})
	}
	read, err := conversation{}.extended(rows)
	if err != nil {
		t.Fatal(err)
	}
	params := anthropic.MessageNewParams{
		Model: "claude-sonnet-5-5", MaxTokens: 2048,
		System:       []anthropic.TextBlockParam{{Text: "Be brief."}, {Text: "Summary.", CacheControl: anthropic.NewCacheControlEphemeralParam()}},
		Tools:        []anthropic.ToolUnionParam{toolParam(weatherFunc(t))},
		Thinking:     anthropic.ThinkingConfigParamOfEnabled(1024),
		CacheControl: anthropic.NewCacheControlEphemeralParam(),
	}
	check := func(what string, c *conversation) {
		t.Helper()
		messages, err := c.encodedMessages()
		if err != nil {
			t.Fatal(err)
		}
		body, err := modelRequest{params: params, messages: messages}.body()
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, what, body, sdkBody(t, params, c.messages))
	}
	check("added by a run", &r.conv)
	for _, tt := range []struct {
		name     string
		messages []Message
	}{{"read from rows", read.messages}, {"none", nil}} {
		check(tt.name, &conversation{messages: tt.messages})
		turns := &conversation{}
		for i, m := range tt.messages {
			turns.messages = append(turns.messages, m)
			check(fmt.Sprintf("%s, turn by turn, %d messages", tt.name, i+1), turns)
		}
	}
	r = &run{conv: conversation{messages: read.messages[:2:2]}}
	add("user", anthropic.NewTextBlock("refused"))
	check("before a drop", &r.conv)
	r.drop()
	check("after a drop", &r.conv)
	add("user", anthropic.NewTextBlock("accepted"))
	check("after a drop and a new message", &r.conv)
}

// weatherFunc is a tool with a schema.
func weatherFunc(t *testing.T) tool.Tool {
	type in struct {
		City string `json:"city" jsonschema:"description=City name,minLength=2"`
	}
	weather, err := tool.NewFunc("weather", "Reports the weather.", func(_ context.Context, i in) (string, error) {
		return "sunny\x00 and \xff warm in " + i.City, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return weather
}

// TestRequestBodyAsSent: every request the model received during runs
// with thinking, a tool call, encryption at rest, an option setting a body
// field, and a session loaded afresh by a second Agent (its conversation
// read from rows) means what the SDK would have sent for the session's
// stored messages, decoded from their rows, up to that request.
func TestRequestBodyAsSent(t *testing.T) {
	db := agentpgtest.DB(t)
	model := agentpgtest.NewServer(t)
	model.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
		last := req.Messages[len(req.Messages)-1].Content[0]
		switch {
		case last.Type == "tool_result":
			return agentpgtest.Blocks(agentpgtest.Thinking("It worked.", "sig-2"), agentpgtest.TextBlock("Sunny <b>&</b>, 世界."))
		case last.Text == "weather?":
			return agentpgtest.Blocks(agentpgtest.Thinking("A tool, then.", "sig-1"),
				agentpgtest.ToolUse("toolu_1", "weather", map[string]any{"city": "Zürich"}))
		default:
			return agentpgtest.Echo(req)
		}
	})
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	provider, err := keys.Parse("kek-1:" + base64.StdEncoding.EncodeToString(key))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		DB: db, Client: model.Client(), Model: "claude-sonnet-5-5", SystemPrompt: "Be brief.",
		Tools: []tool.Tool{weatherFunc(t)}, Thinking: &ThinkingConfig{BudgetTokens: 1024}, Keys: provider,
		RequestOptions: []option.RequestOption{option.WithJSONSet("metadata.user_id", "u-1")},
	}
	first, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := first.NewSession(t.Context(), "acme", "body", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, prompt := range []string{"Hello <&> 世界", "weather?"} {
		if _, err := sess.Run(t.Context(), prompt); err != nil {
			t.Fatal(err)
		}
	}
	second, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sess, err = second.LoadSession(t.Context(), "acme", sess.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Run(t.Context(), "And tomorrow?"); err != nil {
		t.Fatal(err)
	}

	page, err := sess.Messages(t.Context(), ListOptions{Limit: MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	stored := page.Items
	requests := model.Requests()
	if len(requests) != 4 || len(stored) != 8 {
		t.Fatalf("%d requests and %d stored messages, want 4 and 8", len(requests), len(stored))
	}
	for i, req := range requests {
		if req.Rejected {
			t.Fatalf("request %d rejected: %s", i+1, req.RejectReason)
		}
		want := sdkBody(t, sess.params(conversation{}), stored[:len(req.Messages)])
		withOption := decodeObject(t, want)
		withOption["metadata"] = map[string]any{"user_id": "u-1"}
		if want, err = json.Marshal(withOption); err != nil {
			t.Fatal(err)
		}
		sameJSON(t, req.ID, req.Body, want)
	}
}
