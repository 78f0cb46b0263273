package agentpgtest_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/agentpg/agentpg/agentpgtest"
)

const model = anthropic.ModelClaudeSonnet4_5

// ask returns the params of a request with one user message saying text.
func ask(text string) anthropic.MessageNewParams {
	return anthropic.MessageNewParams{
		Model:     model,
		MaxTokens: 1024,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(text))},
	}
}

func TestText(t *testing.T) {
	t.Parallel()
	srv := agentpgtest.NewServer(t)
	srv.Push(agentpgtest.Text("Hello, world."))

	msg, err := srv.Client().Messages.New(t.Context(), ask("Hi"))
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.Content) != 1 || msg.Content[0].Text != "Hello, world." {
		t.Errorf("content = %+v, want one text block %q", msg.Content, "Hello, world.")
	}
	if msg.StopReason != anthropic.StopReasonEndTurn || msg.Model != model || msg.Role != "assistant" {
		t.Errorf("stop_reason, model, role = %q, %q, %q", msg.StopReason, msg.Model, msg.Role)
	}
	if msg.Usage.InputTokens < 1 || msg.Usage.OutputTokens != 4 { // 13 characters
		t.Errorf("usage = %d in, %d out; want > 0 in, 4 out", msg.Usage.InputTokens, msg.Usage.OutputTokens)
	}

	reqs := srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests, want 1", len(reqs))
	}
	req := reqs[0]
	if req.Path != "/v1/messages" || req.Stream || req.Model != string(model) || req.MaxTokens != 1024 {
		t.Errorf("request = %s stream=%t model=%q max_tokens=%d", req.Path, req.Stream, req.Model, req.MaxTokens)
	}
	if got := req.LastUserText(); got != "Hi" {
		t.Errorf("LastUserText() = %q, want %q", got, "Hi")
	}
	if got := req.Params.Messages[0].OfUser.Content[0].OfText.Text; got != "Hi" {
		t.Errorf("Params text = %q, want %q", got, "Hi")
	}
	if got := req.Header.Get("X-Api-Key"); got != "***" {
		t.Errorf("x-api-key recorded as %q, want it redacted", got)
	}
	if srv.Pending() != 0 {
		t.Errorf("Pending() = %d, want 0", srv.Pending())
	}
}

func TestEchoAndResponder(t *testing.T) {
	t.Parallel()
	srv := agentpgtest.NewServer(t)
	client := srv.Client()

	msg, err := client.Messages.New(t.Context(), ask("ping"))
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.Content[0].Text; got != "echo: ping" {
		t.Errorf("default reply = %q, want %q", got, "echo: ping")
	}

	srv.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
		return agentpgtest.Text(fmt.Sprintf("%d messages", len(req.Messages)))
	})
	msg, err = client.Messages.New(t.Context(), ask("ping"))
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.Content[0].Text; got != "1 messages" {
		t.Errorf("responder reply = %q, want %q", got, "1 messages")
	}
}

// TestKeepRequests: a server told not to keep requests still answers and
// numbers them, and keeps them again once told to.
func TestKeepRequests(t *testing.T) {
	t.Parallel()
	srv := agentpgtest.NewServer(t)
	client := srv.Client()
	srv.KeepRequests(false)
	for _, text := range []string{"one", "two"} {
		msg, err := client.Messages.New(t.Context(), ask(text))
		if err != nil {
			t.Fatal(err)
		}
		if got := msg.Content[0].Text; got != "echo: "+text {
			t.Errorf("reply = %q, want %q", got, "echo: "+text)
		}
	}
	if got := srv.Requests(); len(got) != 0 {
		t.Fatalf("Requests() = %d requests while not keeping them, want none", len(got))
	}
	srv.KeepRequests(true)
	if _, err := client.Messages.New(t.Context(), ask("three")); err != nil {
		t.Fatal(err)
	}
	got := srv.Requests()
	if len(got) != 1 || got[0].ID != "req_000003" || got[0].Messages[0].Content[0].Text != "three" {
		t.Fatalf("Requests() = %+v, want the third request alone, numbered req_000003", got)
	}
}

// TestToolConversation runs a valid multi-turn tool conversation, with a
// responder answering the tool result.
func TestToolConversation(t *testing.T) {
	t.Parallel()
	srv := agentpgtest.NewServer(t)
	srv.Push(agentpgtest.Blocks(
		agentpgtest.TextBlock("Let me look."),
		agentpgtest.ToolUse("toolu_1", "get_weather", map[string]any{"city": "Paris"}),
		agentpgtest.ToolUse("toolu_2", "get_weather", map[string]any{"city": "Rome"}),
	))
	srv.SetResponder(func(req agentpgtest.Request) agentpgtest.Reply {
		return agentpgtest.Text("Weather: " + req.LastUserText())
	})
	client := srv.Client()
	params := ask("Weather in Paris and Rome?")
	params.Tools = []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{
		Name:        "get_weather",
		InputSchema: anthropic.ToolInputSchemaParam{Properties: map[string]any{"city": map[string]any{"type": "string"}}},
	}}}

	msg, err := client.Messages.New(t.Context(), params)
	if err != nil {
		t.Fatal(err)
	}
	if msg.StopReason != anthropic.StopReasonToolUse {
		t.Errorf("stop_reason = %q, want tool_use", msg.StopReason)
	}
	var results []anthropic.ContentBlockParamUnion
	for _, b := range msg.Content {
		if b.Type == "tool_use" {
			results = append(results, anthropic.NewToolResultBlock(b.ID, "sunny in "+string(b.Input), false))
		}
	}
	params.Messages = append(params.Messages, msg.ToParam(), anthropic.NewUserMessage(results...))

	msg, err = client.Messages.New(t.Context(), params)
	if err != nil {
		t.Fatal(err)
	}
	want := `Weather: sunny in {"city":"Paris"}` + "\n" + `sunny in {"city":"Rome"}`
	if got := msg.Content[0].Text; got != want {
		t.Errorf("final reply = %q, want %q", got, want)
	}
	if rejected := srv.Rejected(); len(rejected) != 0 {
		t.Errorf("rejected: %s", rejected[0].RejectReason)
	}
	if got := srv.Requests()[1].ToolNames; !slices.Equal(got, []string{"get_weather"}) {
		t.Errorf("ToolNames = %q", got)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		reply  agentpgtest.Reply
		status int
		typ    anthropic.ErrorType
	}{
		{agentpgtest.Overloaded(), 529, anthropic.ErrorTypeOverloadedError},
		{agentpgtest.RateLimited(), 429, anthropic.ErrorTypeRateLimitError},
		{agentpgtest.Reply{Status: 500}, 500, anthropic.ErrorTypeAPIError},
		{agentpgtest.APIError(400, "invalid_request_error", "prompt is too long"), 400, anthropic.ErrorTypeInvalidRequestError},
	} {
		t.Run(string(tt.typ), func(t *testing.T) {
			t.Parallel()
			srv := agentpgtest.NewServer(t)
			srv.Push(tt.reply)

			_, err := srv.Client().Messages.New(t.Context(), ask("Hi"))
			var apiErr *anthropic.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("error = %v, want an *anthropic.Error", err)
			}
			if apiErr.StatusCode != tt.status || apiErr.Type() != tt.typ || apiErr.Message == "" {
				t.Errorf("error = %d %q %q, want %d %q", apiErr.StatusCode, apiErr.Type(), apiErr.Message, tt.status, tt.typ)
			}
			if want := srv.Requests()[0].ID; apiErr.RequestID != want {
				t.Errorf("RequestID = %q, want %q", apiErr.RequestID, want)
			}
		})
	}
}

// TestRetryAfter checks that the SDK, told to retry after 10ms, succeeds on
// its third try well before its own backoff (0.5s, then 1s) would let it.
func TestRetryAfter(t *testing.T) {
	t.Parallel()
	srv := agentpgtest.NewServer(t)
	overloaded := agentpgtest.Overloaded()
	overloaded.RetryAfter = 10 * time.Millisecond
	srv.Push(overloaded, overloaded, agentpgtest.Text("third time lucky"))

	start := time.Now()
	msg, err := srv.Client(option.WithMaxRetries(2)).Messages.New(t.Context(), ask("Hi"))
	if err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed > 400*time.Millisecond {
		t.Errorf("took %v, want the 10ms retry-after honoured", elapsed)
	}
	if got := msg.Content[0].Text; got != "third time lucky" {
		t.Errorf("reply = %q", got)
	}
	if n := len(srv.Requests()); n != 3 {
		t.Errorf("got %d requests, want 3", n)
	}
}

func TestDelay(t *testing.T) {
	t.Parallel()
	srv := agentpgtest.NewServer(t)
	slow := agentpgtest.Text("slow")
	slow.Delay = 50 * time.Millisecond
	srv.Push(slow)

	start := time.Now()
	if _, err := srv.Client().Messages.New(t.Context(), ask("Hi")); err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed < slow.Delay {
		t.Errorf("answered after %v, want at least %v", elapsed, slow.Delay)
	}
}

func TestDelayCancelled(t *testing.T) {
	t.Parallel()
	srv := agentpgtest.NewServer(t)
	stuck := agentpgtest.Text("too late")
	stuck.Delay = time.Minute
	srv.Push(stuck)

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := srv.Client().Messages.New(ctx, ask("Hi"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v, want context.DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("cancelled request returned after %v", elapsed)
	}
}

// TestCloseEndsDelay checks that Close does not wait for a delayed reply.
func TestCloseEndsDelay(t *testing.T) {
	t.Parallel()
	srv := agentpgtest.NewServer(t)
	stuck := agentpgtest.Text("too late")
	stuck.Delay = time.Minute
	srv.Push(stuck)

	done := make(chan error)
	go func() {
		_, err := srv.Client().Messages.New(context.Background(), ask("Hi"))
		done <- err
	}()
	for len(srv.Requests()) == 0 {
		time.Sleep(time.Millisecond)
	}
	srv.Close()
	if err := <-done; err == nil {
		t.Error("request answered by a closed server")
	}
}

func TestCountTokens(t *testing.T) {
	t.Parallel()
	srv := agentpgtest.NewServer(t)
	client := srv.Client()
	params := ask("How many tokens is this?")

	count, err := client.Messages.CountTokens(t.Context(), anthropic.MessageCountTokensParams{
		Model:    params.Model,
		Messages: params.Messages,
	})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := client.Messages.New(t.Context(), params)
	if err != nil {
		t.Fatal(err)
	}
	if count.InputTokens < 1 || count.InputTokens != msg.Usage.InputTokens {
		t.Errorf("count_tokens = %d, messages input_tokens = %d; want equal and positive", count.InputTokens, msg.Usage.InputTokens)
	}
	if srv.Requests()[0].Path != "/v1/messages/count_tokens" {
		t.Errorf("path = %q", srv.Requests()[0].Path)
	}

	_, err = client.Messages.CountTokens(t.Context(), anthropic.MessageCountTokensParams{Model: model})
	var apiErr *anthropic.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest {
		t.Errorf("count_tokens without messages: error = %v, want a 400", err)
	}
}

// cachedText returns a text block that is a cache breakpoint.
func cachedText(text string) anthropic.ContentBlockParamUnion {
	return anthropic.ContentBlockParamUnion{OfText: &anthropic.TextBlockParam{
		Text:         text,
		CacheControl: anthropic.NewCacheControlEphemeralParam(),
	}}
}

// TestPromptCaching follows an agent that caches its system prompt and
// moves a second breakpoint to the last message of each request.
func TestPromptCaching(t *testing.T) {
	t.Parallel()
	srv := agentpgtest.NewServer(t)
	client := srv.Client()
	params := anthropic.MessageNewParams{
		Model:     model,
		MaxTokens: 1024,
		System: []anthropic.TextBlockParam{{
			Text:         "You are a helpful assistant. Here is the manual: " + strings.Repeat("lorem ipsum ", 40),
			CacheControl: anthropic.NewCacheControlEphemeralParam(),
		}},
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(cachedText("Summarize the manual."))},
	}

	first, err := client.Messages.New(t.Context(), params)
	if err != nil {
		t.Fatal(err)
	}
	if u := first.Usage; u.CacheCreationInputTokens < 100 || u.CacheReadInputTokens != 0 {
		t.Errorf("first usage: %d in, %d written, %d read; want the prompt written", u.InputTokens, u.CacheCreationInputTokens, u.CacheReadInputTokens)
	}

	params.Messages = []anthropic.MessageParam{
		anthropic.NewUserMessage(anthropic.NewTextBlock("Summarize the manual.")),
		first.ToParam(),
		anthropic.NewUserMessage(cachedText("Shorter, please.")),
	}
	second, err := client.Messages.New(t.Context(), params)
	if err != nil {
		t.Fatal(err)
	}
	if u := second.Usage; u.CacheReadInputTokens != first.Usage.CacheCreationInputTokens || u.CacheCreationInputTokens < 1 {
		t.Errorf("second usage: %d in, %d written, %d read; want the first prompt's %d tokens read and the new turn written",
			u.InputTokens, u.CacheCreationInputTokens, u.CacheReadInputTokens, first.Usage.CacheCreationInputTokens)
	}

	third, err := client.Messages.New(t.Context(), params)
	if err != nil {
		t.Fatal(err)
	}
	cached := first.Usage.CacheCreationInputTokens + second.Usage.CacheCreationInputTokens
	if u := third.Usage; u.CacheReadInputTokens != cached || u.CacheCreationInputTokens != 0 {
		t.Errorf("third usage: %d in, %d written, %d read; want all %d tokens read", u.InputTokens, u.CacheCreationInputTokens, u.CacheReadInputTokens, cached)
	}
	if got := srv.Requests()[2].CacheBreakpoints; got != 2 {
		t.Errorf("CacheBreakpoints = %d, want 2", got)
	}
}

// TestConcurrentRequests checks that concurrent requests are each recorded
// once, and each answered.
func TestConcurrentRequests(t *testing.T) {
	t.Parallel()
	srv := agentpgtest.NewServer(t)
	client := srv.Client()
	const n = 16
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			text := fmt.Sprintf("request %d", i)
			msg, err := client.Messages.New(t.Context(), ask(text))
			if err != nil {
				t.Error(err)
				return
			}
			if got := msg.Content[0].Text; got != "echo: "+text {
				t.Errorf("reply = %q, want %q", got, "echo: "+text)
			}
		})
	}
	wg.Wait()

	seen := make(map[string]int)
	ids := make(map[string]bool)
	for _, req := range srv.Requests() {
		seen[req.LastUserText()]++
		ids[req.ID] = true
	}
	if len(seen) != n || len(ids) != n {
		t.Fatalf("recorded %d distinct texts and %d ids, want %d", len(seen), len(ids), n)
	}
	for text, count := range seen {
		if count != 1 {
			t.Errorf("%q recorded %d times", text, count)
		}
	}
}
