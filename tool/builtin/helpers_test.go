package builtin

import (
	"errors"
	"strings"
	"testing"
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
