package builtin

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// checkRefused fails t unless err wraps want and mentions msg, and the
// refused call returned no output.
func checkRefused(t *testing.T, out string, err, want error, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("not refused; output: %q", out)
	}
	if !errors.Is(err, want) {
		t.Errorf("error %q does not wrap %q", err, want)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("error %q does not mention %q", err, msg)
	}
	if out != "" {
		t.Errorf("refused call returned output %q", out)
	}
}

// checkStorable fails t unless s, returned by a tool, is valid UTF-8 without
// NUL bytes, which PostgreSQL can store as text or jsonb.
func checkStorable(t *testing.T, what, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Errorf("%s is not valid UTF-8: %q", what, s)
	}
	if strings.Contains(s, "\x00") {
		t.Errorf("%s contains a NUL byte: %q", what, s)
	}
}

// mustDo fails t at once if err is not nil.
func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
