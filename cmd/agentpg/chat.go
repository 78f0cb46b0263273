package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/agentpg/agentpg"
)

// chatHelp describes chat, for its usage.
const chatHelp = `Talk in a stored session: each line read from stdin is a prompt, whose answer
streams to stdout as it arrives. The session, named by --session, is continued
if the tenant has it and created otherwise; without --session, chat starts a
new one. Lines starting with a slash are commands:

  /history  show the session's stored messages
  /quit     leave (as does the end of the input)

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
// identifier, which it creates if need be.
func (c *cli) chat(ctx context.Context, tenant, identifier, model string) error {
	agent, _, _, release, err := c.modelAgent(ctx, false, agentpg.Config{Model: model})
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
	fmt.Fprintf(c.stdout, "%s session %s of tenant %s.\n", opened, escapeLine(identifier), quote(tenant))
	fmt.Fprintln(c.stdout, "Type a message; /history shows the stored messages, /quit leaves.")

	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends scanLines
	lines, readErr := scanLines(ctx, c.stdin)
	prompt := ""
	if isTerminal(c.stdin) {
		prompt = "you: "
	}
	for {
		fmt.Fprint(c.stdout, prompt)
		var line string
		var ok bool
		select {
		case <-ctx.Done():
			return ctx.Err()
		case line, ok = <-lines:
		}
		if !ok {
			return readErr()
		}
		switch line = strings.TrimSpace(line); {
		case line == "":
		case line == "/quit":
			return nil
		case line == "/history":
			if err := c.printHistory(ctx, session); err != nil {
				return err
			}
		case strings.HasPrefix(line, "/"):
			fmt.Fprintf(c.stderr, "unknown command %s: try /history or /quit\n", escapeLine(line))
		default:
			// A failed run is stored as such and leaves the session
			// usable: say why and go on, unless agentpg is stopping.
			if err := ask(ctx, c.stdout, session, line); err != nil {
				if ctx.Err() != nil {
					return err
				}
				fmt.Fprintf(c.stderr, "agentpg: %v\n", err)
			}
		}
	}
}

// ask runs prompt in the session, writing the answer's text to w, escaped,
// as it streams in.
func ask(ctx context.Context, w io.Writer, session *agentpg.Session, prompt string) error {
	fmt.Fprint(w, "agent: ")
	_, err := session.RunWithOptions(ctx, prompt, agentpg.RunOptions{
		OnEvent: func(e agentpg.Event) {
			if e.Kind == agentpg.EventText {
				io.WriteString(w, escapeText(e.Text))
			}
		},
	})
	fmt.Fprintln(w)
	return err
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

// scanLines reads the lines of r in a goroutine, so that chat waiting for
// input still notices ctx ending. The channel is closed at the end of the
// input, or once ctx ends; err then returns the read error, if any.
func scanLines(ctx context.Context, r io.Reader) (lines <-chan string, err func() error) {
	ch := make(chan string)
	var scanErr error
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, agentpg.DefaultMaxPromptBytes+1) // room for the longest prompt and its newline
		for sc.Scan() {
			select {
			case ch <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
		scanErr = sc.Err()
	}()
	return ch, func() error { return scanErr }
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
