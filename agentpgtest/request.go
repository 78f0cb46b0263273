package agentpgtest

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/anthropics/anthropic-sdk-go/v2"
)

// Request is a request the server received, as recorded by
// [Server.Requests]. The fields decoded from the body are zero when the
// server refused the request before reading its body, or could not decode
// it.
type Request struct {
	// ID is the request-id the server answered with, such as "req_000001".
	ID string
	// Path is the URL path, such as "/v1/messages".
	Path string
	// Header holds the request headers, with the values of x-api-key and
	// Authorization replaced by "***".
	Header http.Header
	// Body is the request body as sent.
	Body []byte
	// Params is Body decoded by the SDK, on a best-effort basis.
	Params anthropic.MessageNewParams

	// Stream reports whether the request asked for a streamed reply.
	Stream bool
	// Model and MaxTokens are the requested model and max_tokens.
	Model     string
	MaxTokens int64
	// System is the text of the system prompt, its blocks joined by newlines.
	System string
	// Messages are the request's messages.
	Messages []Message
	// ToolNames are the names of the tools the request offers, in order.
	ToolNames []string
	// Thinking reports whether extended thinking is on ("enabled" or
	// "adaptive"); ThinkingBudget is its budget_tokens.
	Thinking       bool
	ThinkingBudget int64
	// CacheBreakpoints counts the cache_control markers in the request,
	// the top-level one included.
	CacheBreakpoints int

	// Rejected reports whether the server refused the request instead of
	// answering it with a scripted reply: an unknown path, a missing header
	// or an invalid body. RejectReason is the error message it answered with.
	Rejected     bool
	RejectReason string
}

// Message is a message of a request. Content given as a string is decoded
// as one text block.
type Message struct {
	Role    string         `json:"role"`
	Content []ContentBlock `json:"content"`
}

// ContentBlock is a content block of a request, with the fields of the
// block types agents use most. Raw holds the block as sent, for any other.
type ContentBlock struct {
	// Type is the block's type, such as "text" or "tool_result".
	Type string `json:"type"`
	// Text is the text of a text block.
	Text string `json:"text"`
	// Thinking and Signature belong to a thinking block.
	Thinking  string `json:"thinking"`
	Signature string `json:"signature"`
	// Data is the encrypted reasoning of a redacted_thinking block.
	Data string `json:"data"`
	// ID, Name and Input belong to a tool_use block.
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
	// ToolUseID, IsError and Content belong to a tool_result block; Content
	// is a string or an array of blocks.
	ToolUseID string          `json:"tool_use_id"`
	IsError   bool            `json:"is_error"`
	Content   json.RawMessage `json:"content"`
	// CacheControl reports whether the block is a cache breakpoint.
	CacheControl bool `json:"-"`
	// Raw is the block's JSON as sent.
	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes a block of a request.
func (b *ContentBlock) UnmarshalJSON(data []byte) error {
	type plain ContentBlock
	var block struct {
		plain
		CacheControl json.RawMessage `json:"cache_control"`
	}
	if err := json.Unmarshal(data, &block); err != nil {
		return err
	}
	*b = ContentBlock(block.plain)
	b.CacheControl = isSet(block.CacheControl)
	b.Raw = slices.Clone(data)
	return nil
}

// UnmarshalJSON decodes a message of a request.
func (m *Message) UnmarshalJSON(data []byte) error {
	var msg struct {
		Role    string  `json:"role"`
		Content content `json:"content"`
	}
	err := json.Unmarshal(data, &msg)
	*m = Message{Role: msg.Role, Content: msg.Content}
	return err
}

// content is the content of a message, a tool result or the system prompt:
// an array of blocks, or a string, shorthand for one text block.
type content []ContentBlock

// UnmarshalJSON decodes content given either way.
func (c *content) UnmarshalJSON(data []byte) error {
	if !isSet(data) {
		return nil
	}
	var text string
	if json.Unmarshal(data, &text) == nil {
		raw, err := json.Marshal(map[string]string{"type": "text", "text": text})
		*c = content{{Type: "text", Text: text, Raw: raw}}
		return err
	}
	return json.Unmarshal(data, (*[]ContentBlock)(c))
}

// isSet reports whether a JSON value is present and not null.
func isSet(data json.RawMessage) bool {
	return len(data) > 0 && string(data) != "null"
}

// LastUserText returns the text of the request's last user message: the
// text of its text blocks and tool results, joined by newlines.
func (r Request) LastUserText() string {
	var texts []string
	for _, m := range slices.Backward(r.Messages) {
		if m.Role != "user" {
			continue
		}
		for _, b := range m.Content {
			switch b.Type {
			case "text":
				texts = append(texts, b.Text)
			case "tool_result":
				var results content
				json.Unmarshal(b.Content, &results) // content that does not decode has no text
				for _, rb := range results {
					if rb.Type == "text" {
						texts = append(texts, rb.Text)
					}
				}
			}
		}
		break
	}
	return strings.Join(texts, "\n")
}

// Echo is the default responder: it answers "echo: " followed by the
// request's [Request.LastUserText], cut to 200 characters.
func Echo(req Request) Reply {
	text := []rune(req.LastUserText())
	return Text("echo: " + string(text[:min(len(text), 200)]))
}

// wireRequest is the body of a /v1/messages or /v1/messages/count_tokens
// request, decoded for checking.
type wireRequest struct {
	Model     string    `json:"model"`
	MaxTokens int64     `json:"max_tokens"`
	Stream    bool      `json:"stream"`
	System    content   `json:"system"`
	Messages  []Message `json:"messages"`
	Tools     []tool    `json:"tools"`
	Thinking  struct {
		Type         string `json:"type"`
		BudgetTokens int64  `json:"budget_tokens"`
	} `json:"thinking"`
	CacheControl json.RawMessage `json:"cache_control"`
}

// tool is a tool definition of a request.
type tool struct {
	Name         string          `json:"name"`
	CacheControl json.RawMessage `json:"cache_control"`
	raw          json.RawMessage
}

// UnmarshalJSON decodes a tool definition, keeping it as sent.
func (t *tool) UnmarshalJSON(data []byte) error {
	type plain tool
	t.raw = slices.Clone(data)
	return json.Unmarshal(data, (*plain)(t))
}

// describe sets the fields of req that the body determines.
func (w *wireRequest) describe(req *Request) {
	json.Unmarshal(req.Body, &req.Params) // best effort, as documented
	req.Stream = w.Stream
	req.Model = w.Model
	req.MaxTokens = w.MaxTokens
	var system []string
	for _, b := range w.System {
		system = append(system, b.Text)
	}
	req.System = strings.Join(system, "\n")
	req.Messages = w.Messages
	for _, t := range w.Tools {
		req.ToolNames = append(req.ToolNames, t.Name)
	}
	req.Thinking = w.Thinking.Type == "enabled" || w.Thinking.Type == "adaptive"
	req.ThinkingBudget = w.Thinking.BudgetTokens
	req.CacheBreakpoints = w.breakpoints()
}

// redact returns a copy of h with the credentials hidden.
func redact(h http.Header) http.Header {
	h = h.Clone()
	for _, name := range []string{"X-Api-Key", "Authorization"} {
		if h.Get(name) != "" {
			h.Set(name, "***")
		}
	}
	return h
}
