package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/agentpg/agentpg"
)

// maxShownBytes is how much of a text, a tool's input or a tool's output
// the text output shows; --json shows everything.
const maxShownBytes = 2000

// transcript is a page of a session's messages, with their runs and the
// runs' tool calls, as sessions show and chat's /history print it.
type transcript struct {
	Messages []messageView `json:"messages"`
	// Next is the cursor of the following page, "" for the last.
	Next string `json:"next"`
	// Runs are the runs of Messages, oldest first.
	Runs []runView `json:"runs"`
}

// messageView is a stored message.
type messageView struct {
	ID        string    `json:"id"`
	RunID     string    `json:"run_id"`
	Seq       int64     `json:"seq"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
	// RunFailed is set for the messages of a failed run, which are not
	// sent to the model.
	RunFailed bool           `json:"run_failed"`
	Usage     *agentpg.Usage `json:"usage"`
	Content   []blockView    `json:"content"`
}

// blockView is a content block of a message. Type is "text" (with Text),
// "thinking" (with Text), "redacted_thinking", "tool_use" (with ID, Name
// and Input), "tool_result" (with ToolUseID, Name when known, IsError and
// Output, the text of its content) or another type of the Messages API,
// shown by its type only.
type blockView struct {
	Type      string          `json:"type"`
	Text      string          `json:"text,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	ToolUseID string          `json:"tool_use_id,omitempty"`
	IsError   *bool           `json:"is_error,omitempty"`
	Output    *string         `json:"output,omitempty"`
	// call is the tool call of a tool_result in the ledger, if found.
	call *agentpg.ToolCall
}

// runView is a run, with its tool calls from the ledger.
type runView struct {
	ID          string        `json:"id"`
	ParentRunID string        `json:"parent_run_id,omitempty"`
	Status      string        `json:"status"`
	Model       string        `json:"model"`
	StopReason  string        `json:"stop_reason"`
	Error       string        `json:"error"`
	Iterations  int           `json:"iterations"`
	Usage       agentpg.Usage `json:"usage"`
	StartedAt   time.Time     `json:"started_at"`
	FinishedAt  *time.Time    `json:"finished_at"`
	ToolCalls   []toolCall    `json:"tool_calls"`
}

// toolCall is a row of the tool ledger.
type toolCall struct {
	ToolUseID  string          `json:"tool_use_id"`
	Name       string          `json:"name"`
	Input      json.RawMessage `json:"input"`
	Output     string          `json:"output"`
	IsError    bool            `json:"is_error"`
	StartedAt  time.Time       `json:"started_at"`
	FinishedAt time.Time       `json:"finished_at"`
}

// loadTranscript reads the page of the session's messages that opts
// selects, their runs and the runs' tool ledgers.
func loadTranscript(ctx context.Context, session *agentpg.Session, opts agentpg.ListOptions) (*transcript, error) {
	page, err := session.Messages(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("listing the messages: %w", err)
	}
	runIDs := make(map[string]bool)
	for _, m := range page.Items {
		if m.RunID != "" {
			runIDs[m.RunID] = true
		}
	}
	runs, err := runsOf(ctx, session, runIDs)
	if err != nil {
		return nil, err
	}

	t := &transcript{Messages: []messageView{}, Next: page.Next, Runs: []runView{}}
	failed := make(map[string]bool)
	calls := make(map[string]*agentpg.ToolCall)
	for _, r := range runs {
		ledger, err := session.ToolCalls(ctx, r.ID)
		if err != nil {
			return nil, fmt.Errorf("reading the tool calls of run %s: %w", r.ID, err)
		}
		rv := newRunView(r, ledger)
		for i, call := range ledger {
			calls[call.ToolUseID] = &ledger[i]
		}
		failed[r.ID] = r.Status == "failed"
		t.Runs = append(t.Runs, rv)
	}
	names := make(map[string]string) // of the tool_use blocks, by id
	for _, m := range page.Items {
		mv := messageView{ID: m.ID, RunID: m.RunID, Seq: m.Seq, Role: m.Role, CreatedAt: m.CreatedAt,
			RunFailed: failed[m.RunID], Usage: m.Usage, Content: []blockView{}}
		for _, b := range m.Content {
			bv := newBlockView(b)
			switch bv.Type {
			case "tool_use":
				names[bv.ID] = bv.Name
			case "tool_result":
				bv.call = calls[bv.ToolUseID]
				bv.Name = names[bv.ToolUseID]
				if bv.call != nil {
					bv.Name = bv.call.Name
				}
			}
			mv.Content = append(mv.Content, bv)
		}
		t.Messages = append(t.Messages, mv)
	}
	return t, nil
}

// runsOf returns the session's runs of ids, oldest first. There is no
// looking a run up by its id: it pages through the session's runs, from
// the oldest, until it has them all.
func runsOf(ctx context.Context, session *agentpg.Session, ids map[string]bool) ([]agentpg.RunInfo, error) {
	var runs []agentpg.RunInfo
	opts := agentpg.ListOptions{Limit: agentpg.MaxPageSize}
	for len(runs) < len(ids) {
		page, err := session.Runs(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("listing the runs: %w", err)
		}
		for _, r := range page.Items {
			if ids[r.ID] {
				runs = append(runs, r)
			}
		}
		if page.Next == "" {
			break
		}
		opts.After = page.Next
	}
	return runs, nil
}

// newRunView returns the view of run r with its ledger.
func newRunView(r agentpg.RunInfo, ledger []agentpg.ToolCall) runView {
	rv := runView{ID: r.ID, ParentRunID: r.ParentRunID, Status: r.Status, Model: r.Model, StopReason: r.StopReason,
		Error: r.Error, Iterations: r.Iterations, Usage: r.Usage, StartedAt: r.StartedAt, ToolCalls: []toolCall{}}
	if !r.FinishedAt.IsZero() {
		rv.FinishedAt = &r.FinishedAt
	}
	for _, c := range ledger {
		rv.ToolCalls = append(rv.ToolCalls, toolCall{c.ToolUseID, c.Name, c.Input, c.Output, c.IsError, c.StartedAt, c.FinishedAt})
	}
	return rv
}

// newBlockView returns the view of a stored content block.
func newBlockView(b anthropic.ContentBlockParamUnion) blockView {
	switch {
	case b.OfText != nil:
		return blockView{Type: "text", Text: b.OfText.Text}
	case b.OfThinking != nil:
		return blockView{Type: "thinking", Text: b.OfThinking.Thinking}
	case b.OfRedactedThinking != nil:
		return blockView{Type: "redacted_thinking"}
	case b.OfToolUse != nil:
		input, err := json.Marshal(b.OfToolUse.Input)
		if err != nil || len(input) == 0 || string(input) == "null" {
			input = []byte("{}")
		}
		return blockView{Type: "tool_use", ID: b.OfToolUse.ID, Name: b.OfToolUse.Name, Input: input}
	case b.OfToolResult != nil:
		var texts []string
		for _, c := range b.OfToolResult.Content {
			if c.OfText != nil {
				texts = append(texts, c.OfText.Text)
			} else if typ := c.GetType(); typ != nil {
				texts = append(texts, "("+*typ+")")
			}
		}
		output, isError := strings.Join(texts, "\n"), b.OfToolResult.IsError.Value
		return blockView{Type: "tool_result", ToolUseID: b.OfToolResult.ToolUseID, IsError: &isError, Output: &output}
	}
	if typ := b.GetType(); typ != nil {
		return blockView{Type: *typ}
	}
	return blockView{Type: "unknown"}
}

// printMessages prints the messages of t, each a header line and its
// blocks, indented; text, tool inputs and tool outputs are cut at
// maxShownBytes.
func (t *transcript) printMessages(w io.Writer) {
	fmt.Fprintf(w, "Messages (%d):\n", len(t.Messages))
	for _, m := range t.Messages {
		fmt.Fprintf(w, "  #%d %s, %s", m.Seq, escapeLine(m.Role), formatTime(m.CreatedAt))
		if m.RunFailed {
			fmt.Fprint(w, "  [failed run: not sent to the model]")
		}
		fmt.Fprintln(w)
		for _, b := range m.Content {
			printBlock(w, b)
		}
	}
}

// The indentations of a block's header and of its body.
const (
	blockIndent = "    "
	bodyIndent  = "        "
)

// printBlock prints the block b of a message.
func printBlock(w io.Writer, b blockView) {
	switch b.Type {
	case "text":
		printShown(w, blockIndent, cmp.Or(b.Text, "(empty)"))
	case "thinking":
		fmt.Fprintf(w, "%sthinking:\n", blockIndent)
		printShown(w, bodyIndent, b.Text)
	case "tool_use":
		fmt.Fprintf(w, "%stool call %s (%s), input:\n", blockIndent, escapeLine(b.Name), escapeLine(b.ID))
		printShown(w, bodyIndent, string(b.Input))
	case "tool_result":
		outcome := "ok"
		if *b.IsError {
			outcome = "error"
		}
		took, output := "", *b.Output
		if b.call != nil {
			took = ", " + formatDuration(b.call.FinishedAt.Sub(b.call.StartedAt))
		}
		fmt.Fprintf(w, "%stool result of %s (%s%s), %s:\n", blockIndent, escapeLine(cmp.Or(b.Name, "?")), escapeLine(b.ToolUseID), took, outcome)
		if b.call != nil && b.call.Output != "" && b.call.Output != output {
			// Compaction pruned it from the conversation: the ledger
			// keeps what the tool answered.
			fmt.Fprintf(w, "%s(shortened in the conversation, as compaction does; from the tool ledger:)\n", bodyIndent)
			output = b.call.Output
		}
		printShown(w, bodyIndent, cmp.Or(output, "(empty)"))
	default:
		fmt.Fprintf(w, "%s(%s block)\n", blockIndent, escapeLine(strings.ReplaceAll(b.Type, "_", " ")))
	}
}

// printShown prints text, cut at maxShownBytes and escaped, each line with
// indent, and says so if it was cut.
func printShown(w io.Writer, indent, text string) {
	shown := text
	if len(text) > maxShownBytes {
		cut := maxShownBytes
		for cut > maxShownBytes-utf8.UTFMax && !utf8.RuneStart(text[cut]) { // not in the middle of a rune
			cut--
		}
		shown = text[:cut]
	}
	for line := range strings.Lines(escapeText(shown)) {
		fmt.Fprintf(w, "%s%s", indent, strings.TrimSuffix(line, "\n")+"\n")
	}
	if len(shown) < len(text) {
		fmt.Fprintf(w, "%s[cut: %d of %d bytes shown; --json shows everything]\n", indent, len(shown), len(text))
	}
}

// printRuns lists runs, a line each, with their usage in tokens.
func printRuns(w io.Writer, runs []runView) {
	fmt.Fprintf(w, "Runs (%d):\n", len(runs))
	if len(runs) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  STARTED\tSTATUS\tMODEL\tSTOP REASON\tMODEL CALLS\tTOOL CALLS\tINPUT\tOUTPUT\tCACHE READ\tCACHE WRITE\tERROR")
	for _, r := range runs {
		u := r.Usage
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n",
			formatTime(r.StartedAt), escapeLine(r.Status), escapeLine(r.Model), escapeLine(cmp.Or(r.StopReason, "-")),
			r.Iterations, len(r.ToolCalls), u.InputTokens, u.OutputTokens, u.CacheReadInputTokens, u.CacheCreationInputTokens,
			escapeLine(excerpt(r.Error, 80)))
	}
	tw.Flush()
}
