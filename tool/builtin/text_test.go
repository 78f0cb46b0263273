package builtin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

func TestLooksBinary(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		data   string
		binary bool
	}{
		{"", false},
		{"plain text\n", false},
		{"tabs\tand\r\nCRLF, a bell\a, a form feed\f", false},
		{"\x1b[31mred\x1b[0m and a backspace\b", false},
		{"UTF-8: caf\u00e9, \u65e5\u672c, \U0001F600", false},
		{"Latin-1: caf\xe9 cr\xe8me br\xfbl\xe9e", false},
		{"\xe9\n", false},
		{"a NUL\x00 in text", true},
		{"h\x00i\x00", true}, // UTF-16
		{"\x7fELF\x02\x01\x01", true},
		{"\x01\x02\x03 mostly text after some control bytes", false},
		{"\x01\x02\x03\x04\x05 text after control bytes", true},
		{"\x8f\x90\x81\x9d\x80 C1 bytes that are not UTF-8 text", true},
		{"\x89\xc3\xbe\xf1\x1a\x93\xd7\x84\x12\xae\x9b\x05", true}, // random, no NUL
	} {
		if got := looksBinary([]byte(c.data)); got != c.binary {
			t.Errorf("looksBinary(%q) = %v, want %v", c.data, got, c.binary)
		}
	}
}

// errTest is a sentinel that must survive the guard in Execute.
var errTest = errors.New("test error")

func TestExecuteReturnsOnlyStorableText(t *testing.T) {
	t.Parallel()
	tl := funcTool{run: func(context.Context, json.RawMessage) (string, error) {
		return "out\x00put\xff", fmt.Errorf("%w: bad\x00\xfe text", errTest)
	}}
	out, err := tl.Execute(context.Background(), nil)
	checkStorable(t, "output", out)
	if err == nil {
		t.Fatal("the error was dropped")
	}
	checkStorable(t, "error", err.Error())
	if !errors.Is(err, errTest) {
		t.Errorf("error %q no longer wraps %q", err, errTest)
	}
	if want := "test error: bad\uFFFD\uFFFD text"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}
