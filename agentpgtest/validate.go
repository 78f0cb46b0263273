package agentpgtest

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// maxBreakpoints is how many cache_control markers a request may carry.
const maxBreakpoints = 4

// toolName is the pattern tool names must match.
var toolName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// errToolsRequired rejects tool blocks in a request that defines no tools.
var errToolsRequired = errors.New("Requests which include `tool_use` or `tool_result` blocks must define tools.")

// validate returns the first problem found in the request, checking what
// the API checks and, stricter than the API, what would be a defect of an
// agent: consecutive messages of one role and a final assistant message.
// count_tokens requests have no max_tokens to check.
func (w *wireRequest) validate(countTokens bool) error {
	return cmp.Or(
		w.validateParams(countTokens),
		validateTools(w.Tools),
		validateSystem(w.System),
		validateMessages(w.Messages, len(w.Tools) > 0),
	)
}

// validateParams checks the request's scalar parameters and its cache
// breakpoints.
func (w *wireRequest) validateParams(countTokens bool) error {
	thinking := w.Thinking.Type == "enabled"
	switch {
	case w.Model == "":
		return errors.New("model: Field required")
	case !countTokens && w.MaxTokens < 1:
		return errors.New("max_tokens: Input should be greater than or equal to 1")
	case thinking && w.Thinking.BudgetTokens < 1024:
		return errors.New("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
	case thinking && !countTokens && w.Thinking.BudgetTokens >= w.MaxTokens:
		return errors.New("`max_tokens` must be greater than `thinking.budget_tokens`")
	}
	if n := w.breakpoints(); n > maxBreakpoints {
		return fmt.Errorf("A maximum of %d blocks with cache_control may be provided. Found %d.", maxBreakpoints, n)
	}
	return nil
}

// validateTools checks the tools' names.
func validateTools(tools []tool) error {
	seen := make(map[string]bool)
	for i, t := range tools {
		if !toolName.MatchString(t.Name) {
			return fmt.Errorf("tools.%d.name: String should match pattern '%s'", i, toolName)
		}
		if seen[t.Name] {
			return fmt.Errorf("tools: Tool names must be unique. Found %q twice.", t.Name)
		}
		seen[t.Name] = true
	}
	return nil
}

// validateSystem checks the system prompt's blocks.
func validateSystem(system []ContentBlock) error {
	for i, b := range system {
		if err := validateText(fmt.Sprintf("system.%d", i), b); err != nil {
			return err
		}
	}
	return nil
}

// validateText rejects a text block at path without visible text.
func validateText(path string, b ContentBlock) error {
	if b.Type == "text" && strings.TrimSpace(b.Text) == "" {
		return fmt.Errorf("%s.text: text content blocks must contain non-whitespace text", path)
	}
	return nil
}

// validateMessages checks the conversation: alternating roles starting and
// ending with the user, no empty content, thinking blocks signed and sent
// back by the assistant, and every tool_use answered by a tool_result in the
// next message, which starts with its tool results.
func validateMessages(msgs []Message, haveTools bool) error {
	if len(msgs) == 0 {
		return errors.New("messages: at least one message is required")
	}
	// pending holds the tool_use ids of the previous message.
	var pending []string
	seen := make(map[string]bool) // every tool_use id so far
	for i, m := range msgs {
		switch {
		case m.Role != "user" && m.Role != "assistant":
			return fmt.Errorf("messages.%d.role: Input should be 'user' or 'assistant'", i)
		case i == 0 && m.Role != "user":
			return errors.New(`messages.0.role: the first message must use the "user" role`)
		case i > 0 && m.Role == msgs[i-1].Role:
			return fmt.Errorf(`messages.%d: roles must alternate between "user" and "assistant", but found multiple %q roles in a row`, i, m.Role)
		case len(m.Content) == 0:
			return fmt.Errorf("messages.%d.content: messages must have non-empty content", i)
		}
		var uses []string
		answered := make(map[string]bool)
		for j, b := range m.Content {
			path := fmt.Sprintf("messages.%d.content.%d", i, j)
			if err := validateText(path, b); err != nil {
				return err
			}
			switch b.Type {
			case "thinking", "redacted_thinking":
				if m.Role != "assistant" {
					return fmt.Errorf("%s: %s blocks may only appear in assistant messages", path, b.Type)
				}
				if b.Type == "thinking" && b.Signature == "" {
					return fmt.Errorf("%s.signature: Field required", path)
				}
			case "tool_use":
				switch {
				case m.Role != "assistant":
					return fmt.Errorf("%s: tool_use blocks may only appear in assistant messages", path)
				case !haveTools:
					return errToolsRequired
				case seen[b.ID]:
					return fmt.Errorf("%s: `tool_use` ids must be unique, found %q again", path, b.ID)
				}
				seen[b.ID] = true
				uses = append(uses, b.ID)
			case "tool_result":
				switch {
				case m.Role != "user":
					return fmt.Errorf("%s: tool_result blocks may only appear in user messages", path)
				case !haveTools:
					return errToolsRequired
				case j > len(answered): // a block before this one is not a tool result
					return fmt.Errorf("%s: tool_result blocks must come before any other content of the message", path)
				case !slices.Contains(pending, b.ToolUseID):
					return fmt.Errorf("%s: unexpected `tool_use_id` found in `tool_result` blocks: %s. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.", path, b.ToolUseID)
				case answered[b.ToolUseID]:
					return fmt.Errorf("%s: duplicate `tool_result` for `tool_use_id` %s", path, b.ToolUseID)
				}
				answered[b.ToolUseID] = true
			}
		}
		if err := unanswered(i-1, pending, answered); err != nil {
			return err
		}
		pending = uses
	}
	if err := unanswered(len(msgs)-1, pending, nil); err != nil {
		return err
	}
	if msgs[len(msgs)-1].Role != "user" {
		return errors.New(`messages: the final message must use the "user" role`)
	}
	return nil
}

// unanswered rejects the tool_use ids of message i that are not answered.
func unanswered(i int, ids []string, answered map[string]bool) error {
	for _, id := range ids {
		if !answered[id] {
			return fmt.Errorf("messages.%d: `tool_use` ids were found without `tool_result` blocks immediately after: %s. Each `tool_use` block must have a corresponding `tool_result` block in the next message.", i, id)
		}
	}
	return nil
}
