//go:build unix

package builtin

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// newTestCommand returns a run_command tool working in base/work, where its
// touch actions create files if they ever run.
func newTestCommand(t *testing.T, base string) *Command {
	t.Helper()
	work := filepath.Join(base, "work")
	mustDo(t, os.Mkdir(work, 0o755))
	c, err := NewCommand(CommandConfig{
		Actions: map[string]Action{
			"touch":      {Path: "/usr/bin/touch", MaxArgs: 1, Description: "Creates an empty file."},
			"echo":       {Path: "/bin/echo", MaxArgs: 3},
			"echo-flags": {Path: "/bin/echo", MaxArgs: 2, AllowFlags: true},
			"digits":     {Path: "/usr/bin/touch", MaxArgs: 1, ArgPattern: `[0-9]+`},
			"loose":      {Path: "/usr/bin/touch", MaxArgs: 2, ArgPattern: `.*`},
			"url":        {Path: "/bin/echo", MaxArgs: 1, ArgPattern: `https://[a-z0-9.]+(/[A-Za-z0-9._-]*)*`},
		},
		Dir: work,
	})
	mustDo(t, err)
	return c
}

func runCommand(c *Command, input string) (string, error) {
	return c.Execute(context.Background(), json.RawMessage(input))
}

// commandCorpus holds hostile inputs for run_command. BASE stands for the
// directory holding the tool's working directory.
var commandCorpus = []struct {
	input string
	want  error
	msg   string
}{
	// Shell metacharacters, whitespace and quotes: there is no shell, and the
	// default pattern refuses them anyway.
	{`{"action":"touch","args":["marker;id"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["marker|id"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["marker&id"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["marker&&id"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["$(id)"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["${HOME}"]}`, ErrArgumentNotAllowed, "default pattern"},
	{"{\"action\":\"touch\",\"args\":[\"`id`\"]}", ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["marker>out"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["<in"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["(marker)"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["{a,b}"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["*"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["marker?"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["!marker"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["~/marker"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["marker#"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["\"marker\""]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["'marker'"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["marker id"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["\\marker"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["marker%0aid"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["marker\u2028id"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":[""]}`, ErrArgumentNotAllowed, "default pattern"},
	// Control characters, refused whatever the pattern.
	{`{"action":"touch","args":["marker\nid"]}`, ErrArgumentNotAllowed, "control character"},
	{`{"action":"touch","args":["marker\u0000"]}`, ErrArgumentNotAllowed, "control character"},
	{`{"action":"touch","args":["marker\tid"]}`, ErrArgumentNotAllowed, "control character"},
	{`{"action":"loose","args":["marker\rid"]}`, ErrArgumentNotAllowed, "control character"},
	// Paths out of the working directory.
	{`{"action":"touch","args":["../marker"]}`, ErrArgumentNotAllowed, "element ending in '..'"},
	{`{"action":"touch","args":["sub/../../marker"]}`, ErrArgumentNotAllowed, "element ending in '..'"},
	{`{"action":"touch","args":[".."]}`, ErrArgumentNotAllowed, "element ending in '..'"},
	{`{"action":"touch","args":["BASE/marker"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"loose","args":["../marker"]}`, ErrArgumentNotAllowed, "element ending in '..'"},
	{`{"action":"loose","args":["x=../marker"]}`, ErrArgumentNotAllowed, "element ending in '..'"},
	// Other locations than the working directory: URLs, remote host:path
	// forms (tar, rsync, scp), curl's @file, home directories, and absolute
	// paths after a separator or attached to an option.
	{`{"action":"touch","args":["file:///etc/passwd"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["http://127.0.0.1/"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["x:/etc"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["127.0.0.1:archive.tar"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["host:path"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["user@host:path"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["host::module"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["C:marker"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["@/etc/passwd"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["@marker"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["a@/etc/passwd"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["x=/etc/passwd"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["x=@/etc/passwd"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["a,/etc/passwd"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["+/etc/passwd"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["a//etc/passwd"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["//etc/passwd"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["dir//"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["/"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["~"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["~root"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"touch","args":["x=~/marker"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"echo-flags","args":["--file=/etc/passwd"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"echo-flags","args":["--data=@/etc/passwd"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"echo-flags","args":["--url=file:///etc/passwd"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"echo-flags","args":["-o/etc/passwd"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"echo-flags","args":["-xf/etc/archive.tar"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"echo-flags","args":["-fsub/archive.tar"]}`, ErrArgumentNotAllowed, "default pattern"},
	{`{"action":"echo-flags","args":["-f127.0.0.1:archive.tar"]}`, ErrArgumentNotAllowed, "default pattern"},
	// '..' at the end of any element, whatever the pattern: after an option
	// letter, '@' or ',' too.
	{`{"action":"echo-flags","args":["-C.."]}`, ErrArgumentNotAllowed, "element ending in '..'"},
	{`{"action":"echo-flags","args":["-o../marker"]}`, ErrArgumentNotAllowed, "element ending in '..'"},
	{`{"action":"echo-flags","args":["--data=@../secret"]}`, ErrArgumentNotAllowed, "element ending in '..'"},
	{`{"action":"touch","args":["a,../marker"]}`, ErrArgumentNotAllowed, "element ending in '..'"},
	{`{"action":"touch","args":["sub/..."]}`, ErrArgumentNotAllowed, "element ending in '..'"},
	{`{"action":"loose","args":["@../marker"]}`, ErrArgumentNotAllowed, "element ending in '..'"},
	{`{"action":"loose","args":["x:../marker"]}`, ErrArgumentNotAllowed, "element ending in '..'"},
	{`{"action":"url","args":["https://example.com/../x"]}`, ErrArgumentNotAllowed, "element ending in '..'"},
	// Option injection.
	{`{"action":"touch","args":["--reference=/etc/passwd"]}`, ErrArgumentNotAllowed, "is an option"},
	{`{"action":"touch","args":["-rf"]}`, ErrArgumentNotAllowed, "is an option"},
	{`{"action":"touch","args":["-"]}`, ErrArgumentNotAllowed, "is an option"},
	{`{"action":"touch","args":["--"]}`, ErrArgumentNotAllowed, "is an option"},
	{`{"action":"loose","args":["-d","yesterday"]}`, ErrArgumentNotAllowed, "is an option"},
	{`{"action":"echo-flags","args":["--output=../marker"]}`, ErrArgumentNotAllowed, "element ending in '..'"},
	// Too many arguments and custom patterns.
	{`{"action":"touch","args":["marker","marker2"]}`, ErrArgumentNotAllowed, "2 given, at most 1 allowed"},
	{`{"action":"echo","args":["a","b","c","d"]}`, ErrArgumentNotAllowed, "4 given, at most 3 allowed"},
	{`{"action":"digits","args":["12a"]}`, ErrArgumentNotAllowed, "does not match [0-9]+"},
	{`{"action":"digits","args":["1;2"]}`, ErrArgumentNotAllowed, "does not match [0-9]+"},
	{`{"action":"digits","args":["1\n2"]}`, ErrArgumentNotAllowed, "control character"},
	// Actions that are not configured.
	{`{"action":"rm","args":["-rf","/"]}`, ErrActionNotAllowed, `"rm" (allowed: digits, echo, echo-flags, loose, touch, url)`},
	{`{"action":"","args":["marker"]}`, ErrActionNotAllowed, `"" (allowed:`},
	{`{"args":["marker"]}`, ErrActionNotAllowed, `"" (allowed:`},
	{`{"action":"/usr/bin/touch","args":["marker"]}`, ErrActionNotAllowed, `"/usr/bin/touch"`},
	{`{"action":"touch ","args":["marker"]}`, ErrActionNotAllowed, `"touch "`},
	{`{"action":"TOUCH","args":["marker"]}`, ErrActionNotAllowed, `"TOUCH"`},
	{`{"action":"touch;id"}`, ErrActionNotAllowed, `"touch;id"`},
	// Malformed input.
	{`{"action":"touch","args":["marker"],"shell":true}`, ErrInvalidInput, "unknown field"},
	{`{"action":"touch","args":"marker"}`, ErrInvalidInput, "cannot unmarshal"},
	{`{"action":"touch","args":[1]}`, ErrInvalidInput, "cannot unmarshal"},
	{`{"action":["touch"]}`, ErrInvalidInput, "cannot unmarshal"},
	{`touch marker`, ErrInvalidInput, "invalid character"},
}

func TestCommandCorpus(t *testing.T) {
	t.Parallel()
	for _, c := range commandCorpus {
		t.Run(c.input, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			cmd := newTestCommand(t, base)
			out, err := runCommand(cmd, strings.ReplaceAll(c.input, "BASE", base))
			checkRefused(t, out, err, c.want, c.msg)
			for _, dir := range []string{base, filepath.Join(base, "work")} {
				if names := dirNames(t, dir); len(names) > 0 && (dir != base || !slices.Equal(names, []string{"work"})) {
					t.Errorf("the refused command left %v in %s", names, dir)
				}
			}
		})
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	mustDo(t, err)
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names
}

func TestCommandRuns(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	cmd := newTestCommand(t, base)
	for input, want := range map[string]string{
		`{"action":"echo","args":["hello","a.b/c=d","x@y,w+v"]}`:         "hello a.b/c=d x@y,w+v\n",
		`{"action":"echo","args":["./sub/file.txt","dir/","_a/.b/c-d"]}`: "./sub/file.txt dir/ _a/.b/c-d\n",
		`{"action":"echo","args":["a..b","v1...v2","k=v,w"]}`:            "a..b v1...v2 k=v,w\n",
		`{"action":"echo-flags","args":["--name=value","-xvf"]}`:         "--name=value -xvf\n",
		`{"action":"url","args":["https://example.com/a/b.txt"]}`:        "https://example.com/a/b.txt\n",
		`{"action":"echo"}`:                             "\n",
		`{"action":"echo-flags","args":["-n","hi"]}`:    "hi",
		`{"action":"touch","args":["marker"]}`:          "",
		`{"action":"digits","args":["42"]}`:             "",
		`{"action":"loose","args":["with space","$x"]}`: "",
	} {
		if out, err := runCommand(cmd, input); err != nil || out != want {
			t.Errorf("%s = %q, %v; want %q", input, out, err, want)
		}
	}
	// The touch actions ran in the working directory, with arguments as is.
	if got, want := dirNames(t, filepath.Join(base, "work")), []string{"$x", "42", "marker", "with space"}; !slices.Equal(got, want) {
		t.Errorf("work holds %v, want %v", got, want)
	}
}

func TestCommandFixedArgsComeFirst(t *testing.T) {
	t.Parallel()
	c, err := NewCommand(CommandConfig{Actions: map[string]Action{
		"greet": {Path: "/bin/echo", FixedArgs: []string{"hello;", "$USER"}, MaxArgs: 1},
	}})
	mustDo(t, err)
	if out, err := runCommand(c, `{"action":"greet","args":["world"]}`); err != nil || out != "hello; $USER world\n" {
		t.Errorf("greet = %q, %v", out, err)
	}
}

func TestCommandEnvironmentIsScrubbed(t *testing.T) {
	t.Setenv("SECRET_TOKEN", "do-not-leak")
	for env, want := range map[string][]string{
		"":        nil,
		"FOO=bar": {"FOO=bar"},
	} {
		c, err := NewCommand(CommandConfig{
			Actions: map[string]Action{"env": {Path: "/usr/bin/env"}},
			Env:     strings.Fields(env),
		})
		mustDo(t, err)
		out, err := runCommand(c, `{"action":"env"}`)
		if got := strings.Fields(out); err != nil || !slices.Equal(got, want) {
			t.Errorf("Env %q: the command saw %q, %v; want %q", env, out, err, want)
		}
	}
}

func TestCommandTimeoutKillsProcessGroup(t *testing.T) {
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "marker")
	c, err := NewCommand(CommandConfig{
		Actions: map[string]Action{"hang": {
			Path: "/bin/sh",
			// A child that would create marker after a second, and a
			// parent that waits far longer.
			FixedArgs: []string{"-c", `(/bin/sleep 1; /usr/bin/touch "$0") & exec /bin/sleep 30`, marker},
		}},
		Timeout: 200 * time.Millisecond,
	})
	mustDo(t, err)
	start := time.Now()
	out, err := runCommand(c, `{"action":"hang"}`)
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("the timed-out command took %v to stop", elapsed)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "timeout 200ms") || out != "" {
		t.Errorf("got %q, %v; want a timeout error", out, err)
	}
	time.Sleep(1500 * time.Millisecond)
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the child outlived the timeout: %v", err)
	}
}

func TestCommandOutputIsCapped(t *testing.T) {
	t.Parallel()
	c, err := NewCommand(CommandConfig{
		Actions: map[string]Action{
			"text":  {Path: "/bin/sh", FixedArgs: []string{"-c", "/usr/bin/yes | /usr/bin/head -c 100000"}},
			"zeros": {Path: "/usr/bin/head", FixedArgs: []string{"-c", "100000", "/dev/zero"}},
			// 'é' is two bytes: the limit falls in the middle of one.
			"utf8": {Path: "/bin/sh", FixedArgs: []string{"-c", "/usr/bin/yes é | /usr/bin/head -c 5000"}},
		},
		MaxOutputBytes: 1000,
	})
	mustDo(t, err)
	for action, want := range map[string]string{
		"text":  strings.Repeat("y\n", 500) + "\n[output truncated: 99000 more bytes]",
		"zeros": "[the output is binary data of 1000 bytes; its content is not shown]\n[output truncated: 99000 more bytes]",
		"utf8":  strings.Repeat("é\n", 333) + "\n[output truncated: 4001 more bytes]",
	} {
		out, err := runCommand(c, `{"action":"`+action+`"}`)
		if err != nil || out != want {
			t.Errorf("%s: got %d bytes ending in %q, %v; want %d bytes ending in %q",
				action, len(out), out[max(0, len(out)-60):], err, len(want), want[max(0, len(want)-60):])
		}
	}
}

func TestCommandBinaryAndInvalidUTF8Output(t *testing.T) {
	t.Parallel()
	cmd, err := NewCommand(CommandConfig{Actions: map[string]Action{
		"binary":      {Path: "/bin/sh", FixedArgs: []string{"-c", `printf '\177ELF\002\000\000\001'`}},
		"latin1":      {Path: "/bin/sh", FixedArgs: []string{"-c", `printf 'caf\351\n'`}},
		"fail-binary": {Path: "/bin/sh", FixedArgs: []string{"-c", `printf 'oops\000\377' >&2; exit 2`}},
		"fail-latin1": {Path: "/bin/sh", FixedArgs: []string{"-c", `printf 'caf\351' >&2; exit 2`}},
	}})
	mustDo(t, err)
	for _, c := range []struct {
		action, out, err string
	}{
		{"binary", "[the output is binary data of 8 bytes; its content is not shown]", ""},
		{"latin1", "[the output is not valid UTF-8: each invalid byte sequence is shown as U+FFFD (\uFFFD)]\ncaf\uFFFD\n", ""},
		{"fail-binary", "", "action \"fail-binary\" failed: exit status 2; output:\n[the output is binary data of 6 bytes; its content is not shown]"},
		{"fail-latin1", "", "action \"fail-latin1\" failed: exit status 2; output:\n[the output is not valid UTF-8: each invalid byte sequence is shown as U+FFFD (\uFFFD)]\ncaf\uFFFD"},
	} {
		out, err := runCommand(cmd, `{"action":"`+c.action+`"}`)
		checkStorable(t, c.action+" output", out)
		var errText string
		if err != nil {
			errText = err.Error()
			checkStorable(t, c.action+" error", errText)
		}
		if out != c.out || errText != c.err {
			t.Errorf("%s = %q, %q; want %q, %q", c.action, out, errText, c.out, c.err)
		}
	}
}

func TestCommandFailureReportsOutput(t *testing.T) {
	t.Parallel()
	c, err := NewCommand(CommandConfig{Actions: map[string]Action{
		"fail": {Path: "/bin/sh", FixedArgs: []string{"-c", "echo oops >&2; exit 3"}},
	}})
	mustDo(t, err)
	out, err := runCommand(c, `{"action":"fail"}`)
	if err == nil || out != "" || err.Error() != "action \"fail\" failed: exit status 3; output:\noops\n" {
		t.Errorf("got %q, %v", out, err)
	}
}

func TestCommandSchema(t *testing.T) {
	t.Parallel()
	c := newTestCommand(t, t.TempDir())
	s := c.InputSchema()
	if got := s.Properties["action"].Enum; len(got) != 6 || got[0] != "digits" || got[5] != "url" {
		t.Errorf("action enum = %v", got)
	}
	if got := *s.Properties["args"].MaxItems; got != 3 {
		t.Errorf("args maxItems = %d, want 3", got)
	}
	if !strings.Contains(c.Description(), "- touch: Creates an empty file. (at most 1 arguments)") {
		t.Errorf("description lacks the touch action:\n%s", c.Description())
	}
}

func TestNewCommandRefusesBadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notExec := filepath.Join(dir, "script")
	mustDo(t, os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644))
	echo := map[string]Action{"echo": {Path: "/bin/echo"}}
	for _, c := range []struct {
		cfg CommandConfig
		msg string
	}{
		{CommandConfig{}, "at least one action"},
		{CommandConfig{Actions: map[string]Action{"echo": {Path: "echo"}}}, "not a clean absolute path"},
		{CommandConfig{Actions: map[string]Action{"echo": {Path: "/bin/../bin/echo"}}}, "not a clean absolute path"},
		{CommandConfig{Actions: map[string]Action{"echo": {Path: "/no/such/program"}}}, "no such file"},
		{CommandConfig{Actions: map[string]Action{"dir": {Path: "/bin"}}}, "not an executable file"},
		{CommandConfig{Actions: map[string]Action{"script": {Path: notExec}}}, "not an executable file"},
		{CommandConfig{Actions: map[string]Action{"bad name": {Path: "/bin/echo"}}}, "action name"},
		{CommandConfig{Actions: map[string]Action{"echo": {Path: "/bin/echo", MaxArgs: -1}}}, "MaxArgs"},
		{CommandConfig{Actions: map[string]Action{"echo": {Path: "/bin/echo", ArgPattern: "("}}}, "ArgPattern"},
		{CommandConfig{Actions: echo, Timeout: -1}, "negative"},
		{CommandConfig{Actions: echo, MaxOutputBytes: -1}, "negative"},
		{CommandConfig{Actions: echo, Dir: "relative"}, "not absolute"},
		{CommandConfig{Actions: echo, Dir: filepath.Join(dir, "missing")}, "no such file"},
		{CommandConfig{Actions: echo, Dir: notExec}, "not a directory"},
		{CommandConfig{Actions: echo, Env: []string{"TOKEN"}}, "Env entry 0 is not KEY=value"},
		{CommandConfig{Actions: echo, Env: []string{"=secret"}}, "Env entry 0 is not KEY=value"},
	} {
		cmd, err := NewCommand(c.cfg)
		if cmd != nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("NewCommand(%+v) = %v, %v; want an error mentioning %q", c.cfg, cmd, err, c.msg)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error %q repeats an Env value", err)
		}
	}
}
