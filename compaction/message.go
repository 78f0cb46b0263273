package compaction

import (
	"errors"
	"fmt"
	"slices"

	"github.com/anthropics/anthropic-sdk-go/v2"
)

// Errors callers branch on with errors.Is.
var (
	// ErrInvalidHistory: the history given to PlanCompaction is not a valid
	// conversation: it does not start with a user message, its roles do not
	// alternate, a tool_use is not answered by a tool_result in the next
	// message, or a tool_result answers no tool_use of the previous message.
	ErrInvalidHistory = errors.New("compaction: invalid history")
	// ErrNothingToCompact: no message can be pruned or summarized without
	// breaking an invariant; the plan returned with it leaves the history
	// as it is.
	ErrNothingToCompact = errors.New("compaction: nothing to compact")
)

// Message is one message of a conversation as stored, in the Messages API's
// content format.
type Message struct {
	// ID identifies the message; a pruned version keeps it.
	ID string
	// Seq is the position of the message in its conversation.
	Seq int64
	// Role is "user" or "assistant".
	Role string
	// Content is the message's content, as sent to the Messages API.
	Content []anthropic.ContentBlockParamUnion
	// Tokens, when positive, is the known token count of the message (from
	// the API's usage); otherwise the count is estimated by EstimateTokens.
	Tokens int
}

// tokens returns the known or estimated token count of m.
func (m Message) tokens() int {
	if m.Tokens > 0 {
		return m.Tokens
	}
	return EstimateTokens(m.Content)
}

// startsTurn reports whether m is a fresh user turn, a user message that
// answers no tool call. The history may be cut right before such a message
// without separating a tool_use from its tool_result.
func (m Message) startsTurn() bool {
	if m.Role != "user" {
		return false
	}
	for _, b := range m.Content {
		if b.OfToolResult != nil {
			return false
		}
	}
	return true
}

// validateHistory returns an error wrapping ErrInvalidHistory unless the
// history starts with a user message, alternates roles, and pairs every
// tool_use with one tool_result in the next message.
func validateHistory(history []Message) error {
	var pending []string // the tool calls of the previous message not yet answered
	for i, m := range history {
		invalid := func(format string, args ...any) error {
			return fmt.Errorf("%w: message %d (%s): %s", ErrInvalidHistory, i, m.ID, fmt.Sprintf(format, args...))
		}
		want := "user"
		if i%2 == 1 {
			want = "assistant"
		}
		if m.Role != want {
			return invalid("role %q, want %q", m.Role, want)
		}
		if m.Role == "assistant" {
			for _, b := range m.Content {
				if u := b.OfToolUse; u != nil {
					pending = append(pending, u.ID)
				}
			}
			continue
		}
		for _, b := range m.Content {
			if r := b.OfToolResult; r != nil {
				j := slices.Index(pending, r.ToolUseID)
				if j < 0 {
					return invalid("tool_result %s answers no tool_use of the previous message", r.ToolUseID)
				}
				pending = slices.Delete(pending, j, j+1)
			}
		}
		if len(pending) > 0 {
			return invalid("tool_use %s of the previous message is not answered", pending[0])
		}
	}
	if len(pending) > 0 {
		return fmt.Errorf("%w: tool_use %s of the last message is not answered", ErrInvalidHistory, pending[0])
	}
	return nil
}
