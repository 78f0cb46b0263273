package agentpgtest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Reply is what the server answers to one /v1/messages request: a message
// made of Content, or, when Status is set to anything but 200, an API error.
type Reply struct {
	// Content is the message's content, in order.
	Content []Block
	// StopReason defaults to "tool_use" when Content holds a tool_use block,
	// and to "end_turn" otherwise.
	StopReason string
	// Usage, when set, replaces the usage the server computes (see the
	// package documentation).
	Usage *Usage

	// Status, when neither 0 nor 200, makes the server answer with an API
	// error of that HTTP status, such as 529, 429, 500 or 400.
	Status int
	// ErrorType is the error's type, such as "overloaded_error". It defaults
	// to the API's type for Status.
	ErrorType string
	// ErrorMessage is the error's message. It defaults to a message typical
	// of ErrorType.
	ErrorMessage string
	// RetryAfter, when positive, sets the retry-after-ms and retry-after
	// headers of an error, which the SDK waits for before retrying.
	RetryAfter time.Duration

	// Delay is how long the server waits before answering. The wait ends
	// early, dropping the connection, when the client gives up on the request
	// or the server is closed.
	Delay time.Duration
	// CutAfter, when positive, makes a streamed reply stop after this many
	// server-sent events, counting ping, and close the connection without
	// ending the response, as a network failure would. The SDK's stream then
	// ends with Err() returning io.ErrUnexpectedEOF, even when the cut comes
	// after message_stop. Ignored unless the request streams.
	CutAfter int
	// StreamError, when set, is the type of an error event, such as
	// "overloaded_error", that a streamed reply sends after its first
	// content delta, ending the stream there. Ignored unless the request
	// streams.
	StreamError string
}

// Usage is the token usage reported with a reply.
type Usage struct {
	InputTokens              int64 `json:"input_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
}

// Block is a content block of a Reply. Build one with [TextBlock],
// [Thinking], [RedactedThinking] or [ToolUse].
type Block struct {
	// Type is "text", "thinking", "redacted_thinking" or "tool_use".
	Type string
	// Text is the text of a text block.
	Text string
	// Thinking and Signature are the reasoning of a thinking block and the
	// signature that lets it be sent back.
	Thinking, Signature string
	// Data is the encrypted reasoning of a redacted_thinking block.
	Data string
	// ID and Name are the id of a tool_use block and the tool it calls.
	ID, Name string
	// Input is the JSON object a tool_use block passes to the tool. Empty
	// means {}. Input that is not valid JSON is streamed as it is, as from a
	// model cut off mid-call, and answered as {} in a response that does
	// not stream.
	Input json.RawMessage
}

// MarshalJSON encodes b as the API sends it.
func (b Block) MarshalJSON() ([]byte, error) {
	switch b.Type {
	case "text":
		return marshal(struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}{b.Type, b.Text})
	case "thinking":
		return marshal(struct {
			Type      string `json:"type"`
			Thinking  string `json:"thinking"`
			Signature string `json:"signature"`
		}{b.Type, b.Thinking, b.Signature})
	case "redacted_thinking":
		return marshal(struct {
			Type string `json:"type"`
			Data string `json:"data"`
		}{b.Type, b.Data})
	case "tool_use":
		return marshal(struct {
			Type  string          `json:"type"`
			ID    string          `json:"id"`
			Name  string          `json:"name"`
			Input json.RawMessage `json:"input"`
		}{b.Type, b.ID, b.Name, validOrEmpty(b.input())})
	}
	return nil, fmt.Errorf("agentpgtest: unknown block type %q", b.Type)
}

// input returns the input of a tool_use block, {} when it has none.
func (b Block) input() json.RawMessage {
	if len(b.Input) == 0 {
		return json.RawMessage(`{}`)
	}
	return b.Input
}

// validOrEmpty returns input, or {} when it is not valid JSON.
func validOrEmpty(input json.RawMessage) json.RawMessage {
	if !json.Valid(input) {
		return json.RawMessage(`{}`)
	}
	return input
}

// TextBlock returns a text block.
func TextBlock(text string) Block {
	return Block{Type: "text", Text: text}
}

// Thinking returns a thinking block carrying signature.
func Thinking(thinking, signature string) Block {
	return Block{Type: "thinking", Thinking: thinking, Signature: signature}
}

// RedactedThinking returns a redacted_thinking block.
func RedactedThinking(data string) Block {
	return Block{Type: "redacted_thinking", Data: data}
}

// ToolUse returns a tool_use block calling the tool name with input, which
// is marshaled to JSON unless it is a json.RawMessage already. It panics if
// input cannot be marshaled, a mistake in the test script.
func ToolUse(id, name string, input any) Block {
	raw, ok := input.(json.RawMessage)
	if !ok && input != nil {
		var err error
		if raw, err = marshal(input); err != nil {
			panic(fmt.Sprintf("agentpgtest: ToolUse %s input: %v", name, err))
		}
	}
	return Block{Type: "tool_use", ID: id, Name: name, Input: raw}
}

// Blocks returns a reply made of blocks.
func Blocks(blocks ...Block) Reply {
	return Reply{Content: blocks}
}

// Text returns a reply made of one text block.
func Text(text string) Reply {
	return Blocks(TextBlock(text))
}

// APIError returns a reply that is an API error of the given HTTP status,
// type and message. Empty errType and message take the defaults described
// at [Reply].
func APIError(status int, errType, message string) Reply {
	return Reply{Status: status, ErrorType: errType, ErrorMessage: message}
}

// Overloaded returns a 529 overloaded_error reply.
func Overloaded() Reply {
	return APIError(529, "overloaded_error", "")
}

// RateLimited returns a 429 rate_limit_error reply.
func RateLimited() Reply {
	return APIError(http.StatusTooManyRequests, "rate_limit_error", "")
}

// isError reports whether r is an API error rather than a message.
func (r Reply) isError() bool {
	return r.Status != 0 && r.Status != http.StatusOK
}

// apiError returns the error r answers with.
func (r Reply) apiError() *apiError {
	typ := cmp.Or(r.ErrorType, errorTypeOf(r.Status))
	return &apiError{r.Status, errorInfo{typ, cmp.Or(r.ErrorMessage, messageOf(typ))}}
}

// stopReason returns the stop reason r reports.
func (r Reply) stopReason() string {
	if r.StopReason != "" {
		return r.StopReason
	}
	for _, b := range r.Content {
		if b.Type == "tool_use" {
			return "tool_use"
		}
	}
	return "end_turn"
}
