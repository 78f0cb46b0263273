package agentpg

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/agentpg/agentpg/internal/store"
)

// Message is one stored message of a conversation, in the Messages API's
// content format. OnBeforeMessage hooks receive Message values.
type Message struct {
	ID        string
	RunID     string
	Seq       int64
	Role      string // "user" or "assistant"
	Content   []anthropic.ContentBlockParamUnion
	Usage     *Usage // the response's usage, for assistant messages
	CreatedAt time.Time
}

// Text returns the message's text blocks joined by newlines.
func (m Message) Text() string {
	var b strings.Builder
	for _, block := range m.Content {
		if t := block.OfText; t != nil {
			if b.Len() > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(t.Text)
		}
	}
	return b.String()
}

// param returns the message as a Messages API parameter.
func (m Message) param() anthropic.MessageParam {
	if m.Role == "assistant" {
		return anthropic.NewAssistantMessage(m.Content...)
	}
	return anthropic.NewUserMessage(m.Content...)
}

// Usage is token usage as counted by the Anthropic API.
type Usage struct {
	InputTokens              int64 `json:"input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
}

func usageOf(u anthropic.Usage) Usage {
	return Usage{
		InputTokens:              u.InputTokens,
		OutputTokens:             u.OutputTokens,
		CacheReadInputTokens:     u.CacheReadInputTokens,
		CacheCreationInputTokens: u.CacheCreationInputTokens,
	}
}

func (u *Usage) add(v Usage) {
	u.InputTokens += v.InputTokens
	u.OutputTokens += v.OutputTokens
	u.CacheReadInputTokens += v.CacheReadInputTokens
	u.CacheCreationInputTokens += v.CacheCreationInputTokens
}

func (u Usage) store() store.Usage {
	return store.Usage{
		InputTokens:      u.InputTokens,
		OutputTokens:     u.OutputTokens,
		CacheReadTokens:  u.CacheReadInputTokens,
		CacheWriteTokens: u.CacheCreationInputTokens,
	}
}

// newMessage prepares a message for storing. Text PostgreSQL cannot store
// (NUL characters, invalid UTF-8) is replaced by U+FFFD, in the row and in
// the message alike, so that what is sent is what is stored.
func newMessage(role string, content []anthropic.ContentBlockParamUnion, usage *Usage) (Message, store.NewMessage, error) {
	msg := Message{ID: newID(), Role: role, Content: content, Usage: usage}
	row := store.NewMessage{ID: msg.ID, Role: role}
	var err error
	if row.Content, err = json.Marshal(content); err != nil {
		return msg, row, fmt.Errorf("encoding %s message: %w", role, err)
	}
	var replaced int
	if row.Content, replaced = storableJSON(row.Content); replaced > 0 {
		msg.Content = nil
		if err := json.Unmarshal(row.Content, &msg.Content); err != nil {
			return msg, row, fmt.Errorf("encoding %s message: %w", role, err)
		}
	}
	if usage != nil {
		if row.Usage, err = json.Marshal(usage); err != nil {
			return msg, row, fmt.Errorf("encoding usage: %w", err)
		}
	}
	return msg, row, nil
}

// messageFromRow decodes a stored message.
func messageFromRow(row store.Message) (Message, error) {
	msg := Message{ID: row.ID, Seq: row.Seq, Role: row.Role, CreatedAt: row.CreatedAt}
	if row.RunID != nil {
		msg.RunID = *row.RunID
	}
	if err := json.Unmarshal(row.Content, &msg.Content); err != nil {
		return msg, fmt.Errorf("decoding message %s: %w", row.ID, err)
	}
	if len(row.Usage) > 0 {
		msg.Usage = new(Usage)
		if err := json.Unmarshal(row.Usage, msg.Usage); err != nil {
			return msg, fmt.Errorf("decoding usage of message %s: %w", row.ID, err)
		}
	}
	return msg, nil
}

// assistantContent converts a response's content into parameters, keeping
// thinking blocks and their signatures unchanged.
func assistantContent(resp *anthropic.Message) []anthropic.ContentBlockParamUnion {
	content := make([]anthropic.ContentBlockParamUnion, 0, len(resp.Content))
	for _, block := range resp.Content {
		content = append(content, block.ToParam())
	}
	return content
}

// responseText joins the text blocks of a response.
func responseText(resp *anthropic.Message) string {
	var b strings.Builder
	for _, block := range resp.Content {
		if block.Type == "text" {
			b.WriteString(block.Text)
		}
	}
	return b.String()
}

// hasToolUse reports whether the message asks for tools.
func hasToolUse(m Message) bool {
	for _, block := range m.Content {
		if block.OfToolUse != nil {
			return true
		}
	}
	return false
}
