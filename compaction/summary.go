package compaction

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/anthropics/anthropic-sdk-go/v2"
)

// SummaryInstructions is the system prompt for the model that writes a
// summary; the transcript of the messages to summarize (see [Transcript])
// is its user message.
const SummaryInstructions = `You summarize the earlier part of a conversation between a user and an AI assistant that uses tools. Your summary will replace those messages: the assistant will continue the work from it alone, and whatever it leaves out is lost.

Write the summary for the assistant, in the language of the conversation, under these headings:

1. Request: the user's first request, quoted verbatim, then how their intent has evolved since.
2. Decisions: what was decided or agreed, and why.
3. Facts: names, identifiers, file paths, values, numbers and constraints established so far, exactly as written.
4. Tool results that matter: what was found, what was changed, which errors occurred and why. Leave out raw output no longer needed.
5. Open tasks: what remains to be done, what was in progress, and the next step.

Be concise and factual: no commentary, no pleasantries, nothing that is not in the conversation. If the conversation starts with an earlier summary, carry its content forward.`

// Transcript renders msgs as plain text for a summarization request: one
// paragraph per content block, prefixed by the role, with text as is, tool
// calls with their inputs, tool results with their text, and other blocks
// (images, documents) by their type. Thinking is left out. A block longer
// than maxBytesPerBlock bytes is cut to that length and followed by "…";
// zero or less means no limit.
func Transcript(msgs []Message, maxBytesPerBlock int) string {
	var b strings.Builder
	for _, m := range msgs {
		for _, block := range m.Content {
			if block.OfThinking != nil || block.OfRedactedThinking != nil {
				continue
			}
			s := renderBlock(block)
			if t := prefix(s, maxBytesPerBlock); len(t) < len(s) {
				s = t + "…"
			}
			fmt.Fprintf(&b, "%s: %s\n\n", m.Role, s)
		}
	}
	return b.String()
}

// renderBlock renders a block, other than thinking, as text.
func renderBlock(b anthropic.ContentBlockParamUnion) string {
	switch {
	case b.OfText != nil:
		return b.OfText.Text
	case b.OfToolUse != nil:
		u := b.OfToolUse
		input, err := json.Marshal(u.Input)
		if err != nil {
			input = []byte("(input not encodable)")
		}
		return fmt.Sprintf("[tool call %s %s] %s", u.ID, u.Name, input)
	case b.OfToolResult != nil:
		r := b.OfToolResult
		kind := "result"
		if r.IsError.Value {
			kind = "error"
		}
		parts := make([]string, len(r.Content))
		for i, c := range r.Content {
			if c.OfText != nil {
				parts[i] = c.OfText.Text
			} else {
				parts[i] = typeLabel(c)
			}
		}
		return fmt.Sprintf("[tool %s %s] %s", kind, r.ToolUseID, strings.Join(parts, "\n"))
	default:
		return typeLabel(b)
	}
}

// typeLabel names a block by its type, as in "[image]".
func typeLabel(b interface{ GetType() *string }) string {
	if t := b.GetType(); t != nil {
		return "[" + *t + "]"
	}
	return "[unknown block]"
}

// FirstIntent returns the text of the first user message in msgs, the
// user's original request, truncated to at most n bytes without splitting a
// UTF-8 sequence; zero or less means no limit.
func FirstIntent(msgs []Message, n int) string {
	for _, m := range msgs {
		if m.Role != "user" {
			continue
		}
		var texts []string
		for _, b := range m.Content {
			if b.OfText != nil {
				texts = append(texts, b.OfText.Text)
			}
		}
		return prefix(strings.Join(texts, "\n"), n)
	}
	return ""
}

// prefix returns the longest prefix of s of at most n bytes that does not
// end inside a UTF-8 sequence, or s if n is zero or less.
func prefix(s string, n int) string {
	if n <= 0 || len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
