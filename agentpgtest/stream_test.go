package agentpgtest_test

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/agentpg/agentpg/agentpgtest"
)

// stream sends a streaming request and returns the events received, the
// message they accumulate into, and the stream's error.
func stream(t *testing.T, client *anthropic.Client, params anthropic.MessageNewParams) ([]anthropic.MessageStreamEventUnion, anthropic.Message, error) {
	t.Helper()
	s := client.Messages.NewStreaming(t.Context(), params)
	defer s.Close()
	var events []anthropic.MessageStreamEventUnion
	var msg anthropic.Message
	for s.Next() {
		events = append(events, s.Current())
		if err := msg.Accumulate(s.Current()); err != nil {
			t.Fatalf("Accumulate: %v", err)
		}
	}
	return events, msg, s.Err()
}

// deltas counts the content_block_delta events of type typ.
func deltas(events []anthropic.MessageStreamEventUnion, typ string) int {
	n := 0
	for _, e := range events {
		if e.Type == "content_block_delta" && e.Delta.Type == typ {
			n++
		}
	}
	return n
}

func TestStreamText(t *testing.T) {
	t.Parallel()
	srv := agentpgtest.NewServer(t)
	const want = "The quick brown fox jumps over the lazy dog."
	srv.Push(agentpgtest.Text(want))

	events, msg, err := stream(t, srv.Client(), ask("Hi"))
	if err != nil {
		t.Fatal(err)
	}
	if n := deltas(events, "text_delta"); n < 2 {
		t.Errorf("got %d text deltas, want several", n)
	}
	if first, last := events[0].Type, events[len(events)-1].Type; first != "message_start" || last != "message_stop" {
		t.Errorf("events run from %s to %s, want message_start to message_stop", first, last)
	}
	if len(msg.Content) != 1 || msg.Content[0].Text != want {
		t.Errorf("accumulated content = %+v, want %q", msg.Content, want)
	}
	if msg.StopReason != anthropic.StopReasonEndTurn || msg.Usage.OutputTokens != 11 || msg.Usage.InputTokens < 1 {
		t.Errorf("stop_reason = %q, usage = %d in, %d out; want end_turn, 11 out", msg.StopReason, msg.Usage.InputTokens, msg.Usage.OutputTokens)
	}
	if !srv.Requests()[0].Stream {
		t.Error("request not recorded as streaming")
	}
}

// TestStreamThinking streams thinking blocks and sends them back in the next
// request, as an agent using extended thinking with tools must.
func TestStreamThinking(t *testing.T) {
	t.Parallel()
	srv := agentpgtest.NewServer(t)
	const thinking, signature = "The user wants the answer to everything.", "sig_EqQBCkYIBxgCKkA"
	srv.Push(agentpgtest.Blocks(
		agentpgtest.Thinking(thinking, signature),
		agentpgtest.RedactedThinking("EmwKAhgBEgy3va3pzix"),
		agentpgtest.TextBlock("42"),
	))
	client := srv.Client()
	params := ask("What is the answer?")
	params.MaxTokens = 2048
	params.Thinking = anthropic.ThinkingConfigParamOfEnabled(1024)

	events, msg, err := stream(t, client, params)
	if err != nil {
		t.Fatal(err)
	}
	if n := deltas(events, "thinking_delta"); n < 2 {
		t.Errorf("got %d thinking deltas, want several", n)
	}
	if n := deltas(events, "signature_delta"); n != 1 {
		t.Errorf("got %d signature deltas, want 1", n)
	}
	if len(msg.Content) != 3 {
		t.Fatalf("accumulated %d blocks, want 3", len(msg.Content))
	}
	if b := msg.Content[0]; b.Type != "thinking" || b.Thinking != thinking || b.Signature != signature {
		t.Errorf("thinking block = %q %q %q", b.Type, b.Thinking, b.Signature)
	}
	if b := msg.Content[1]; b.Type != "redacted_thinking" || b.Data != "EmwKAhgBEgy3va3pzix" {
		t.Errorf("redacted_thinking block = %q %q", b.Type, b.Data)
	}
	if b := msg.Content[2]; b.Type != "text" || b.Text != "42" {
		t.Errorf("text block = %q %q", b.Type, b.Text)
	}

	params.Messages = append(params.Messages, msg.ToParam(), anthropic.NewUserMessage(anthropic.NewTextBlock("Why?")))
	if _, err := client.Messages.New(t.Context(), params); err != nil {
		t.Fatal(err)
	}
	req := srv.Requests()[1]
	if !req.Thinking || req.ThinkingBudget != 1024 {
		t.Errorf("thinking = %t, budget %d; want on, 1024", req.Thinking, req.ThinkingBudget)
	}
	sent := req.Messages[1].Content
	if sent[0].Thinking != thinking || sent[0].Signature != signature || sent[1].Data != "EmwKAhgBEgy3va3pzix" {
		t.Errorf("thinking sent back as %+v", sent[:2])
	}
}

func TestStreamToolUse(t *testing.T) {
	t.Parallel()
	srv := agentpgtest.NewServer(t)
	input := map[string]any{"city": "Paris", "days": 3, "units": []string{"celsius"}}
	srv.Push(agentpgtest.Blocks(
		agentpgtest.TextBlock("Checking."),
		agentpgtest.ToolUse("toolu_01", "get_weather", input),
	))

	events, msg, err := stream(t, srv.Client(), ask("Weather?"))
	if err != nil {
		t.Fatal(err)
	}
	if n := deltas(events, "input_json_delta"); n < 2 {
		t.Errorf("got %d input_json deltas, want several", n)
	}
	want, _ := json.Marshal(input)
	if b := msg.Content[1]; b.Type != "tool_use" || b.ID != "toolu_01" || b.Name != "get_weather" || string(b.Input) != string(want) {
		t.Errorf("tool_use block = %q %q %q %s, want input %s", b.Type, b.ID, b.Name, b.Input, want)
	}
	if msg.StopReason != anthropic.StopReasonToolUse {
		t.Errorf("stop_reason = %q, want tool_use", msg.StopReason)
	}
}

// TestStreamCut shows what the SDK reports when the connection drops
// mid-stream: the events before the cut arrive, then Next returns false and
// Err returns io.ErrUnexpectedEOF itself (not an *anthropic.Error), which the
// chunked body reader reports for a body cut before its last chunk. The SDK
// does not retry, and the message accumulated so far has no stop_reason.
func TestStreamCut(t *testing.T) {
	t.Parallel()
	srv := agentpgtest.NewServer(t)
	cut := agentpgtest.Text("This reply never finishes.")
	cut.CutAfter = 4 // message_start, ping, content_block_start, one delta
	srv.Push(cut)

	events, msg, err := stream(t, srv.Client(), ask("Hi"))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("stream error = %v, want io.ErrUnexpectedEOF", err)
	}
	if len(events) != 3 { // the SDK skips ping
		t.Errorf("got %d events before the cut, want 3", len(events))
	}
	if got := msg.Content[0].Text; msg.StopReason != "" || got == "" || !strings.HasPrefix(cut.Content[0].Text, got) {
		t.Errorf("accumulated stop_reason %q, text %q; want none and a prefix of the reply", msg.StopReason, got)
	}
}

// TestStreamCutAfterStop shows that the SDK reports io.ErrUnexpectedEOF
// even when the connection drops after message_stop, with the message
// complete.
func TestStreamCutAfterStop(t *testing.T) {
	t.Parallel()
	srv := agentpgtest.NewServer(t)
	cut := agentpgtest.Text("Complete, but the connection drops.")
	cut.CutAfter = 100 // more than the stream has
	srv.Push(cut)

	events, msg, err := stream(t, srv.Client(), ask("Hi"))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("stream error = %v, want io.ErrUnexpectedEOF", err)
	}
	if last := events[len(events)-1].Type; last != "message_stop" || msg.StopReason != anthropic.StopReasonEndTurn || msg.Content[0].Text != cut.Content[0].Text {
		t.Errorf("last event %s, stop_reason %q, text %q; want the complete message", last, msg.StopReason, msg.Content[0].Text)
	}
}

// TestStreamError checks that an error event mid-stream ends the stream
// with an *anthropic.Error of the event's type.
func TestStreamError(t *testing.T) {
	t.Parallel()
	srv := agentpgtest.NewServer(t)
	failing := agentpgtest.Text("This reply is interrupted.")
	failing.StreamError = "overloaded_error"
	srv.Push(failing)

	events, msg, err := stream(t, srv.Client(), ask("Hi"))
	var apiErr *anthropic.Error
	if !errors.As(err, &apiErr) || apiErr.Type() != anthropic.ErrorTypeOverloadedError {
		t.Fatalf("stream error = %v, want an overloaded_error", err)
	}
	if apiErr.RequestID != srv.Requests()[0].ID {
		t.Errorf("RequestID = %q, want %q", apiErr.RequestID, srv.Requests()[0].ID)
	}
	if len(events) != 3 || msg.Content[0].Text == "" {
		t.Errorf("got %d events and text %q before the error, want 3 and some text", len(events), msg.Content[0].Text)
	}
}
