package builtin

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/agentpg/agentpg/tool"
)

// Defaults of CommandConfig.
const (
	DefaultCommandTimeout = 10 * time.Second
	DefaultMaxOutputBytes = 64 << 10
)

// DefaultArgPattern is the pattern arguments must match when an Action sets
// none. It lets through words, options and relative paths, and nothing a
// program could take for a location outside the working directory:
//
//   - Only letters, digits and . _ , + = @ - / are allowed: no shell
//     metacharacter, whitespace or quote, no '~' (a home directory), and no
//     ':', which URLs (file:///etc/passwd) and remote locations need (the
//     host:path of tar, rsync and scp, which tar also reads in
//     127.0.0.1:archive.tar).
//   - '/' must follow a letter, digit, '.' or '_', so it cannot start an
//     absolute path: not at the start (/etc/passwd), nor after another '/'
//     (a//etc), nor after a separator that starts a value, such as '='
//     (--file=/etc/passwd), '@' (curl's --data=@/etc/passwd), ',' or '+'.
//   - '@' cannot start an argument: curl reads the file named after it.
//   - An option (an argument starting with '-', refused unless AllowFlags
//     is set) has no '/' at all, as its value may be attached to it:
//     -o/etc/passwd, -xf/etc/archive.tar.
//
// Whatever the pattern, arguments with control characters or a path element
// ending in '..' are refused too (see Action.ArgPattern). An action that
// needs URLs or absolute paths sets its own ArgPattern, matching only the
// ones it needs.
const DefaultArgPattern = `-[A-Za-z0-9._,+=@-]*|` +
	`(?:[A-Za-z0-9._,+=]|[A-Za-z0-9._]/)(?:[A-Za-z0-9._,+=@-]|[A-Za-z0-9._]/)*`

// defaultArgRule says, for the model, what DefaultArgPattern allows.
const defaultArgRule = "allows only letters, digits and . _ , + = @ - /, " +
	"with '/' only after a letter, digit, '.' or '_' and never in an option, and no '@' at the start"

// waitDelay bounds how long output is collected after the process exits or
// is killed, in case a process that escaped the kill holds the pipes.
const waitDelay = time.Second

// actionName is what an action may be called.
var actionName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// CommandConfig configures NewCommand.
type CommandConfig struct {
	// Actions maps the names the model may call to what they run. At least
	// one is required; nothing else can be run.
	Actions map[string]Action
	// Timeout bounds each run; every process the command started is killed
	// when it expires (see Command). Zero means DefaultCommandTimeout.
	Timeout time.Duration
	// MaxOutputBytes bounds the combined stdout and stderr returned; the
	// rest is dropped and the output is marked as truncated. Zero means
	// DefaultMaxOutputBytes. The output is returned as text: if it looks
	// binary, a description replaces it, and invalid UTF-8 is replaced with
	// U+FFFD, with a note.
	MaxOutputBytes int
	// Dir is the absolute working directory of the commands. Empty means
	// the agent's own working directory.
	Dir string
	// Env is the complete environment of the commands, as KEY=value
	// entries. Nothing is inherited: empty means an empty environment, so
	// set for example "PATH=/usr/bin:/bin" if a program needs it.
	Env []string
}

// Action is one program the model may run.
type Action struct {
	// Description tells the model what the action does.
	Description string
	// Path is the absolute path of the executable. It is run directly,
	// never through a shell.
	Path string
	// FixedArgs come first on the command line; the model cannot change
	// them.
	FixedArgs []string
	// MaxArgs is how many arguments the model may append. Zero allows none.
	MaxArgs int
	// ArgPattern is a regular expression each argument must match in
	// full. Empty means DefaultArgPattern. Whatever the pattern, arguments
	// with control characters (such as NUL or newline) are refused, and so
	// are arguments with a path element ending in '..', where elements are
	// separated by anything but letters, digits, '.' and '_': "..",
	// "../x", "--file=../x", "@../x", "host:../x", "-C.." and "-o../x" are
	// all refused.
	ArgPattern string
	// AllowFlags allows arguments starting with '-'. Without it they are
	// refused, so the model cannot inject options such as --output=FILE.
	AllowFlags bool
}

// Command is the run_command tool: it runs one of the configured actions
// with the model's arguments, without a shell, in a scrubbed environment,
// under a timeout, and returns the combined output.
//
// On Linux, nothing a command starts outlives it: when it exits or times
// out, every process it started is killed, even one that called setsid(2).
// Each run gets a cgroup v2 of its own, killed through cgroup.kill, when the
// agent may create one under its own cgroup (as root, or in a delegated
// cgroup; Linux 5.14 or later). Otherwise the command runs in a session of
// its own, and every process in that session or its process group, and
// every descendant of one, is killed; a process that both called setsid(2)
// and lost its parent before the kill is then missed. On other Unix
// systems, only the command's process group is killed, and only on timeout.
type Command struct {
	actions     map[string]action
	names       []string
	description string
	timeout     time.Duration
	maxOutput   int
	dir         string
	env         []string
}

type action struct {
	Action
	pattern *regexp.Regexp
}

var _ tool.TimeoutTool = (*Command)(nil)

// NewCommand checks cfg and returns the run_command tool.
func NewCommand(cfg CommandConfig) (*Command, error) {
	if len(cfg.Actions) == 0 {
		return nil, fmt.Errorf("%w: at least one action is required", ErrInvalidConfig)
	}
	if cfg.Timeout < 0 || cfg.MaxOutputBytes < 0 {
		return nil, fmt.Errorf("%w: Timeout and MaxOutputBytes must not be negative", ErrInvalidConfig)
	}
	if err := checkDir(cfg.Dir); err != nil {
		return nil, err
	}
	for i, kv := range cfg.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" || strings.ContainsRune(kv, 0) {
			// The value may be a secret: don't repeat it.
			return nil, fmt.Errorf("%w: Env entry %d is not KEY=value", ErrInvalidConfig, i)
		}
	}
	c := &Command{
		actions:   make(map[string]action, len(cfg.Actions)),
		names:     slices.Sorted(maps.Keys(cfg.Actions)),
		timeout:   cmp.Or(cfg.Timeout, DefaultCommandTimeout),
		maxOutput: cmp.Or(cfg.MaxOutputBytes, DefaultMaxOutputBytes),
		dir:       cfg.Dir,
		env:       append([]string{}, cfg.Env...), // never nil: a nil Env inherits ours
	}
	var desc strings.Builder
	desc.WriteString("Runs one of a fixed set of programs directly (no shell) and returns its combined output. Actions:")
	for _, name := range c.names {
		a, err := newAction(name, cfg.Actions[name])
		if err != nil {
			return nil, err
		}
		c.actions[name] = a
		fmt.Fprintf(&desc, "\n- %s: %s (at most %d arguments)", name, cmp.Or(a.Description, a.Path), a.MaxArgs)
	}
	c.description = desc.String()
	return c, nil
}

func checkDir(dir string) error {
	if dir == "" {
		return nil
	}
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("%w: Dir %q is not absolute", ErrInvalidConfig, dir)
	}
	info, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("%w: Dir: %w", ErrInvalidConfig, err)
	}
	if !info.IsDir() {
		return fmt.Errorf("%w: Dir %q is not a directory", ErrInvalidConfig, dir)
	}
	return nil
}

func newAction(name string, a Action) (action, error) {
	if !actionName.MatchString(name) {
		return action{}, fmt.Errorf("%w: action name %q must match %s", ErrInvalidConfig, name, actionName)
	}
	if !filepath.IsAbs(a.Path) || filepath.Clean(a.Path) != a.Path {
		return action{}, fmt.Errorf("%w: action %q: Path %q is not a clean absolute path", ErrInvalidConfig, name, a.Path)
	}
	info, err := os.Stat(a.Path)
	if err != nil {
		return action{}, fmt.Errorf("%w: action %q: %w", ErrInvalidConfig, name, err)
	}
	if !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
		return action{}, fmt.Errorf("%w: action %q: %s is not an executable file", ErrInvalidConfig, name, a.Path)
	}
	if a.MaxArgs < 0 {
		return action{}, fmt.Errorf("%w: action %q: MaxArgs must not be negative", ErrInvalidConfig, name)
	}
	pattern, err := regexp.Compile(`^(?:` + cmp.Or(a.ArgPattern, DefaultArgPattern) + `)$`)
	if err != nil {
		return action{}, fmt.Errorf("%w: action %q: ArgPattern: %w", ErrInvalidConfig, name, err)
	}
	a.FixedArgs = slices.Clone(a.FixedArgs)
	return action{Action: a, pattern: pattern}, nil
}

// Name returns "run_command".
func (c *Command) Name() string { return "run_command" }

// Description tells the model what the tool does and lists the actions.
func (c *Command) Description() string { return c.description }

// InputSchema describes {"action": string, "args": [string]}.
func (c *Command) InputSchema() tool.ToolSchema {
	names := make([]any, len(c.names))
	maxArgs := 0
	for i, name := range c.names {
		names[i] = name
		maxArgs = max(maxArgs, c.actions[name].MaxArgs)
	}
	no := false
	return tool.ToolSchema{
		Type: "object",
		Properties: map[string]tool.PropertyDef{
			"action": {Type: "string", Description: "The action to run.", Enum: names},
			"args": {
				Type:        "array",
				Description: "Arguments appended to the action's command line.",
				Items:       &tool.PropertyDef{Type: "string"},
				MaxItems:    &maxArgs,
			},
		},
		Required:             []string{"action"},
		AdditionalProperties: &no,
	}
}

// Timeout returns the configured timeout plus the time allowed for
// collecting output after a kill.
func (c *Command) Timeout() time.Duration { return c.timeout + waitDelay }

// Execute runs the action named in input after checking its arguments. A
// command that fails or times out returns an error that includes its output.
// The output is returned as text: see CommandConfig.MaxOutputBytes.
func (c *Command) Execute(ctx context.Context, input json.RawMessage) (string, error) {
	return storableResult(c.execute(ctx, input))
}

func (c *Command) execute(ctx context.Context, input json.RawMessage) (string, error) {
	var in struct {
		Action string   `json:"action"`
		Args   []string `json:"args"`
	}
	if err := decodeInput(input, &in); err != nil {
		return "", err
	}
	a, ok := c.actions[in.Action]
	if !ok {
		return "", fmt.Errorf("%w: %q (allowed: %s)", ErrActionNotAllowed, in.Action, strings.Join(c.names, ", "))
	}
	if err := a.checkArgs(in.Args); err != nil {
		return "", fmt.Errorf("action %q: %w", in.Action, err)
	}
	return c.run(ctx, in.Action, a, in.Args)
}

func (a action) checkArgs(args []string) error {
	if len(args) > a.MaxArgs {
		return fmt.Errorf("%w: %d given, at most %d allowed", ErrArgumentNotAllowed, len(args), a.MaxArgs)
	}
	for i, arg := range args {
		if reason := a.refusal(arg); reason != "" {
			return fmt.Errorf("%w: argument %d (%q) %s", ErrArgumentNotAllowed, i+1, arg, reason)
		}
	}
	return nil
}

// refusal says why arg is refused, or returns "" if it is allowed.
func (a action) refusal(arg string) string {
	switch {
	case strings.ContainsFunc(arg, unicode.IsControl):
		return "contains a control character"
	case strings.HasPrefix(arg, "-") && !a.AllowFlags:
		return "is an option; this action accepts none"
	case slices.ContainsFunc(pathElements(arg), func(e string) bool { return strings.HasSuffix(e, "..") }):
		return "has a path element ending in '..'"
	case !a.pattern.MatchString(arg):
		if a.ArgPattern == "" {
			return "is refused by the default pattern, which " + defaultArgRule
		}
		return "does not match " + a.ArgPattern
	}
	return ""
}

// pathElements splits arg at every character that can separate a path from
// what comes before or after it in an argument: anything but letters, digits,
// '.' and '_'. An option letter stays with what follows it, so the elements
// of "-C.." are "C..", which ends in "..".
func pathElements(arg string) []string {
	return strings.FieldsFunc(arg, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '.' && r != '_'
	})
}

func (c *Command) run(ctx context.Context, name string, a action, args []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	out := &cappedBuffer{limit: c.maxOutput}
	err := runTree(func() *exec.Cmd {
		cmd := exec.CommandContext(ctx, a.Path, slices.Concat(a.FixedArgs, args)...)
		cmd.Dir = c.dir
		cmd.Env = c.env
		cmd.Stdout, cmd.Stderr = out, out
		cmd.WaitDelay = waitDelay
		return cmd
	})
	switch {
	case ctx.Err() != nil:
		err = fmt.Errorf("action %q was stopped (timeout %s): %w", name, c.timeout, ctx.Err())
	case err != nil:
		err = fmt.Errorf("action %q failed: %w", name, err)
	default:
		return out.String(), nil
	}
	if out.buf.Len() > 0 {
		err = fmt.Errorf("%w; output:\n%s", err, out)
	}
	return "", err
}

// cappedBuffer keeps the first limit bytes written to it and counts the rest.
type cappedBuffer struct {
	buf     bytes.Buffer
	limit   int
	dropped int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	n := min(len(p), b.limit-b.buf.Len())
	b.buf.Write(p[:n])
	b.dropped += len(p) - n
	return len(p), nil
}

// String returns the output kept as text (see asText), followed by a note if
// some was dropped.
func (b *cappedBuffer) String() string {
	kept, dropped := b.buf.Bytes(), b.dropped
	if dropped > 0 {
		// The limit may fall inside a character: drop its first bytes too
		// rather than have them taken for invalid UTF-8.
		whole := trimPartialRune(kept)
		kept, dropped = whole, dropped+len(kept)-len(whole)
	}
	out := asText("the output", kept)
	if dropped == 0 {
		return out
	}
	return fmt.Sprintf("%s\n[output truncated: %d more bytes]", out, dropped)
}
