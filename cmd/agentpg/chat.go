package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/tool"
)

// chatHelp describes chat, for its usage.
const chatHelp = `Talk in a stored session: each line read from stdin is a prompt, whose answer
streams to stdout as it arrives. The session, named by --session, is continued
if the tenant has it and created otherwise; without --session, chat starts a
new one. Lines starting with a slash are commands:

  /history  show the session's stored messages (the first page of them)
  /quit     leave (as does the end of the input)

A line over the limit of a prompt (1 MiB) is not sent: chat says so and goes on
with the next, as it does after a turn that failed. The exit status is 0 when
every turn succeeded, 1 when one failed or was not sent, or chat could not
start, and 2 for a mistake in the command line.

When another run holds the session, chat says so and waits for it: at most the
lease TTL (1m) if the process of that run stopped. A session whose runs called
tools that chat cannot run (those of the application that made it) can be
continued: chat offers those tools to the model as unavailable.

chat does not migrate: run "agentpg migrate" first.`

// chatCmd returns "agentpg chat".
func (c *cli) chatCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "chat",
		Short: "talk in a stored session, line by line from stdin",
		Long:  chatHelp + "\n\n" + claudeHelp,
	}
	identifier := cmd.Flags().String("session", "", "`identifier` of the session to continue or create (default: a new chat-... session)")
	model := c.modelFlag(cmd)
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagTenant}, func(ctx context.Context) error {
		tenant, err := c.tenantOr("default")
		if err != nil {
			return err
		}
		return c.chat(ctx, tenant, cmp.Or(*identifier, newIdentifier("chat")), *model)
	})
}

// chat runs the interactive conversation in the tenant's session named
// identifier, which it creates if need be. It returns an error if a turn
// failed.
func (c *cli) chat(ctx context.Context, tenant, identifier, model string) error {
	agent, cfg, _, release, err := c.modelAgent(ctx, false, agentpg.Config{Model: model})
	if err != nil {
		return err
	}
	defer release()
	session, err := agent.LoadSessionByIdentifier(ctx, tenant, identifier)
	opened := "Continuing"
	if errors.Is(err, agentpg.ErrSessionNotFound) {
		session, err = agent.NewSession(ctx, tenant, identifier, nil)
		opened = "Created"
	}
	if err != nil {
		return err
	}
	if err := c.offerUsedTools(ctx, agent, session); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s session %s of tenant %s.\n", opened, escapeLine(identifier), quote(tenant))
	fmt.Fprintln(c.stdout, "Type a message; /history shows the stored messages, /quit leaves.")

	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends scanLines
	maxPrompt := cmp.Or(cfg.MaxPromptBytes, agentpg.DefaultMaxPromptBytes)
	lines, readErr := scanLines(ctx, c.stdin, maxPrompt)
	prompt := ""
	if isTerminal(c.stdin) {
		prompt = "you: "
	}
	var turns, failed int
	for quit := false; !quit; {
		fmt.Fprint(c.stdout, prompt)
		var line inputLine
		var ok bool
		select {
		case <-ctx.Done():
			return ctx.Err()
		case line, ok = <-lines:
		}
		if !ok {
			if err := readErr(); err != nil {
				return fmt.Errorf("reading the input: %w", err)
			}
			break
		}
		switch text := strings.TrimSpace(line.text); {
		case line.size > maxPrompt:
			turns++
			failed++
			fmt.Fprintf(c.stderr, "agentpg: line of %d bytes is over the limit of %s; not sent\n", line.size, formatBytes(maxPrompt))
		case text == "":
		case text == "/quit":
			quit = true
		case text == "/history":
			if err := c.printHistory(ctx, session); err != nil {
				return err
			}
		case strings.HasPrefix(text, "/"):
			fmt.Fprintf(c.stderr, "unknown command %s: try /history or /quit\n", escapeLine(text))
		default:
			// A failed run is stored as such and leaves the session
			// usable: say why and go on, unless agentpg is stopping.
			turns++
			if err := c.ask(ctx, session, text, leaseTTL(cfg)); err != nil {
				if ctx.Err() != nil {
					return err
				}
				c.printError(err)
				failed++
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %s failed", failed, count(turns, "turn"))
	}
	return nil
}

// ask runs prompt in the session, writing the answer's text to c.stdout,
// escaped, as it streams in. It first tries not to wait for the session:
// when another run holds it, it says so, and that it waits at most
// leaseTTL for a run whose process stopped, then waits.
func (c *cli) ask(ctx context.Context, session *agentpg.Session, prompt string, leaseTTL time.Duration) error {
	answering := false
	opts := agentpg.RunOptions{
		NoWait: true,
		OnEvent: func(e agentpg.Event) {
			if e.Kind != agentpg.EventText {
				return
			}
			if !answering {
				fmt.Fprint(c.stdout, "agent: ")
				answering = true
			}
			io.WriteString(c.stdout, escapeText(e.Text))
		},
	}
	_, err := session.RunWithOptions(ctx, prompt, opts)
	if errors.Is(err, agentpg.ErrSessionBusy) && ctx.Err() == nil {
		fmt.Fprintf(c.stderr, "Session %s is held by another run: waiting for it to end; a run whose process stopped holds it at most %v (the lease TTL).\n",
			escapeLine(session.Identifier), leaseTTL)
		opts.NoWait = false
		_, err = session.RunWithOptions(ctx, prompt, opts)
	}
	if answering {
		fmt.Fprintln(c.stdout)
	}
	return err
}

// newIdentifier returns a fresh session identifier, such as "demo-k3j5x2ab".
func newIdentifier(prefix string) string {
	return prefix + "-" + strings.ToLower(rand.Text()[:8])
}

// leaseTTL returns the lease TTL of an Agent with cfg.
func leaseTTL(cfg agentpg.Config) time.Duration {
	return cmp.Or(cfg.LeaseTTL, agentpg.DefaultLeaseTTL)
}

// offerUsedTools offers the model, as unavailable, the tools that the
// session's messages call. The Messages API refuses a conversation with
// tool_use or tool_result blocks unless the request defines tools, and
// chat cannot run the tools of the application that made the session.
func (c *cli) offerUsedTools(ctx context.Context, agent *agentpg.Agent, session *agentpg.Session) error {
	names, err := toolNames(ctx, session)
	if err != nil {
		return err
	}
	registry := agent.Executor().Registry()
	for _, name := range names {
		if err := registry.Register(unavailableTool(name)); err != nil {
			return fmt.Errorf("offering the tool %s as unavailable: %w", escapeLine(name), err)
		}
	}
	if len(names) > 0 {
		fmt.Fprintf(c.stderr, "This session used tools that chat cannot run (%s): they are offered to the model as unavailable.\n",
			escapeLine(strings.Join(names, ", ")))
	}
	return nil
}

// toolNames returns the names of the tools that the session's messages
// call, in the order of their first call. It reads the messages a page at
// a time.
func toolNames(ctx context.Context, session *agentpg.Session) ([]string, error) {
	var names []string
	opts := agentpg.ListOptions{Limit: agentpg.MaxPageSize}
	for {
		page, err := session.Messages(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("reading the session's messages: %w", err)
		}
		for _, m := range page.Items {
			for _, b := range m.Content {
				if b.OfToolUse != nil && !slices.Contains(names, b.OfToolUse.Name) {
					names = append(names, b.OfToolUse.Name)
				}
			}
		}
		if page.Next == "" {
			return names, nil
		}
		opts.After = page.Next
	}
}

// unavailableTool returns a stand-in for the tool name, which a session
// used and chat cannot run: it tells the model so, and fails if called.
func unavailableTool(name string) tool.Tool { return unavailable(name) }

// unavailable is a tool that chat offers by name only.
type unavailable string

// Name returns the tool's name.
func (u unavailable) Name() string { return string(u) }

// Description tells the model not to call the tool.
func (u unavailable) Description() string {
	return "Not available in this chat: this conversation called " + string(u) +
		" earlier, but agentpg chat cannot run it. Do not call it; answer without it."
}

// InputSchema accepts any object.
func (u unavailable) InputSchema() tool.ToolSchema { return tool.ToolSchema{Type: "object"} }

// Execute fails: the tool is not available.
func (u unavailable) Execute(context.Context, json.RawMessage) (string, error) {
	return "", fmt.Errorf("%s is not available in agentpg chat: answer without it", string(u))
}

// printHistory prints the first page of the session's stored messages and
// how to see the next.
func (c *cli) printHistory(ctx context.Context, session *agentpg.Session) error {
	t, err := loadTranscript(ctx, session, agentpg.ListOptions{})
	if err != nil {
		return err
	}
	t.printMessages(c.stdout)
	if t.Next != "" {
		fmt.Fprintf(c.stdout, "More messages follow: %s --after %s\n", c.showCommand(session), escapeLine(t.Next))
	}
	return nil
}

// inputLine is a line of chat's input, without its end (\n or \r\n): its
// text and size in bytes. A line over the limit of scanLines has its size
// only.
type inputLine struct {
	text string
	size int
}

// scanLines reads the lines of r in a goroutine, so that chat waiting for
// input still notices ctx ending; it keeps the text of lines of at most max
// bytes only. The channel is closed at the end of the input, or once ctx
// ends; err then returns the read error, if any.
func scanLines(ctx context.Context, r io.Reader, max int) (lines <-chan inputLine, err func() error) {
	ch := make(chan inputLine)
	var readErr error
	go func() {
		defer close(ch)
		br := bufio.NewReader(r)
		for {
			line, err := readLine(br, max)
			if err == nil || line.size > 0 {
				select {
				case ch <- line:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				if err != io.EOF {
					readErr = err
				}
				return
			}
		}
	}()
	return ch, func() error { return readErr }
}

// readLine reads the next line of br, keeping its text if it has at most
// max bytes. At the end of the input, it returns the last line, if it does
// not end with a newline, with io.EOF.
func readLine(br *bufio.Reader, max int) (inputLine, error) {
	var kept []byte
	var size int
	var last [2]byte // the line's last two bytes
	for {
		chunk, err := br.ReadSlice('\n')
		size += len(chunk)
		if room := max + 2 - len(kept); room > 0 { // the line and its end
			kept = append(kept, chunk[:min(room, len(chunk))]...)
		}
		if n := len(chunk); n >= 2 {
			last = [2]byte{chunk[n-2], chunk[n-1]}
		} else if n == 1 {
			last = [2]byte{last[1], chunk[0]}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if size > 0 && last[1] == '\n' {
			size--
			if size > 0 && last[0] == '\r' {
				size--
			}
		}
		if size > max {
			return inputLine{size: size}, err
		}
		return inputLine{string(kept[:size]), size}, err
	}
}

// isTerminal reports whether r is a terminal, where chat shows a prompt.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}
