package main

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
)

// hostile is stored text that would take over a terminal printed as it
// is: it sets the window's title, clears the screen and, with a bidi
// override, shows "exe.txt" for "txt.exe".
const hostile = "a\x1b]0;pwned\x07\x1b[2J b\u202etxt.exe c\u2066d\u2069\u0085\x7f\u009b\r"

// hostileEscaped is hostile as the command prints it.
const hostileEscaped = `a\x1b]0;pwned\x07\x1b[2J b\u202etxt.exe c\u2066d\u2069\u0085\x7f\u009b\r`

// wantNoUnsafe checks that out, which the test names, has no rune that
// escape would escape, and no invalid UTF-8.
func wantNoUnsafe(t *testing.T, name, out string, keepLines bool) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Errorf("%s is not valid UTF-8:\n%q", name, out)
	}
	for i, r := range out {
		if unsafeRune(r) && !(keepLines && (r == '\n' || r == '\t')) {
			t.Fatalf("%s has %U at byte %d:\n%q", name, r, i, out)
		}
	}
}

func TestEscape(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, line, text string
	}{
		{"plain text, ünïcödé, 日本語 and emoji 🙂", "plain text, ünïcödé, 日本語 and emoji 🙂", "plain text, ünïcödé, 日本語 and emoji 🙂"},
		{"two\nlines\tand a tab", `two\nlines\tand a tab`, "two\nlines\tand a tab"},
		{hostile, hostileEscaped, hostileEscaped},
		{"\x00\x01\x1f", `\x00\x01\x1f`, `\x00\x01\x1f`},
		{"invalid \xff\xc3 bytes", `invalid \xff\xc3 bytes`, `invalid \xff\xc3 bytes`},
		{"replacement \uFFFD kept", "replacement \uFFFD kept", "replacement \uFFFD kept"},
		{"\u202a\u202b\u202c\u202d\u2067\u2068 \u2028\u2029", `\u202a\u202b\u202c\u202d\u2067\u2068 \u2028\u2029`, `\u202a\u202b\u202c\u202d\u2067\u2068 \u2028\u2029`},
	} {
		if got := escapeLine(tc.in); got != tc.line {
			t.Errorf("escapeLine(%q) = %q, want %q", tc.in, got, tc.line)
		}
		if got := escapeText(tc.in); got != tc.text {
			t.Errorf("escapeText(%q) = %q, want %q", tc.in, got, tc.text)
		}
	}
}

// TestEscapeJSON checks that --json output escapes what the text output
// escapes, and still decodes to the text as stored.
func TestEscapeJSON(t *testing.T) {
	t.Parallel()
	var all strings.Builder
	for r := rune(0); r < 0x2100; r++ {
		if unsafeRune(r) {
			all.WriteRune(r)
		}
	}
	in := map[string]string{"text": hostile + all.String()}
	var out strings.Builder
	if err := writeJSON(&out, in); err != nil {
		t.Fatal(err)
	}
	wantNoUnsafe(t, "the JSON", out.String(), true)
	var back map[string]string
	if err := json.Unmarshal([]byte(out.String()), &back); err != nil {
		t.Fatal(err)
	}
	if back["text"] != in["text"] {
		t.Errorf("the JSON decodes to %q, want %q", back["text"], in["text"])
	}
}

// TestStoredTextIsEscaped checks that text from the database reaches the
// terminal escaped: a session's identifier, its messages, a run's error.
func TestStoredTextIsEscaped(t *testing.T) {
	t.Parallel()
	schema := migrated(t)
	agent, srv := testAgent(t, schema)
	session, err := agent.NewSession(t.Context(), "acme", "evil\u202etxt.exe", &agentpg.SessionOptions{Metadata: map[string]any{"note": hostile}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Push(agentpgtest.Text("answer: " + hostile))
	if _, err := session.Run(t.Context(), "prompt: "+hostile); err != nil {
		t.Fatal(err)
	}
	res := invocation{stdin: "/history\n"}.run(t, "chat", "--schema", schema, "--tenant", "acme", "--session", "evil\u202etxt.exe")
	wantCode(t, res, 0)
	wantContains(t, "chat", res.stdout, `evil\u202etxt.exe`, "prompt: "+hostileEscaped, "answer: "+hostileEscaped)
	wantNoUnsafe(t, "chat", res.stdout, true)

	// The library refuses control characters in identifiers; an older
	// version, or another writer, may not have.
	conn, err := pgx.Connect(t.Context(), agentpgtest.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	if _, err := conn.Exec(t.Context(), "UPDATE "+pgx.Identifier{schema, "sessions"}.Sanitize()+" SET identifier = identifier || $1", "\x1b[2J"); err != nil {
		t.Fatal(err)
	}

	res = agentpgCLI(t, "sessions", "list", "--schema", schema, "--tenant", "acme")
	wantCode(t, res, 0)
	wantContains(t, "sessions list", res.stdout, `evil\u202etxt.exe\x1b[2J`)
	wantNoUnsafe(t, "sessions list", res.stdout, true)

	res = agentpgCLI(t, "sessions", "show", "--schema", schema, "--tenant", "acme", "--id", session.ID)
	wantCode(t, res, 0)
	wantContains(t, "sessions show", res.stdout, `evil\u202etxt.exe\x1b[2J`, "prompt: "+hostileEscaped, "answer: "+hostileEscaped,
		`{"note":"a\u001b]0;pwned\u0007\u001b[2J b\u202etxt.exe`)
	wantNoUnsafe(t, "sessions show", res.stdout, true)

	for _, args := range [][]string{{"list"}, {"show", "--id", session.ID}} {
		res = agentpgCLI(t, append([]string{"sessions", "--json", "--schema", schema, "--tenant", "acme"}, args...)...)
		wantCode(t, res, 0)
		wantNoUnsafe(t, "sessions --json", res.stdout, true)
		if !strings.Contains(res.stdout, `"identifier": "evil\u202etxt.exe\u001b[2J"`) {
			t.Errorf("sessions %s --json does not show the identifier escaped:\n%s", args[0], res.stdout)
		}
	}
	var shown showJSON
	if err := json.Unmarshal([]byte(res.stdout), &shown); err != nil {
		t.Fatal(err)
	}
	if got := shown.Messages[0].Content[0].Text; got != "prompt: "+hostile {
		t.Errorf("sessions show --json has the prompt %q, want %q", got, "prompt: "+hostile)
	}
}
