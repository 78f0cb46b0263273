package builtin

import (
	"bytes"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// What the tools return is stored in PostgreSQL, as text or jsonb, which can
// hold neither NUL bytes nor invalid UTF-8. The helpers below turn what a
// file, a response or a command produced into such text, and tell the model
// when they changed it.

// textControls are the control characters text may hold: BEL, BS, TAB, LF,
// FF, CR and ESC, as file(1) has it.
const textControls = "\a\b\t\n\f\r\x1b"

// isStorable reports whether s is valid UTF-8 without NUL bytes.
func isStorable(s string) bool {
	return utf8.ValidString(s) && !strings.Contains(s, "\x00")
}

// makeStorable returns s with each NUL byte and each run of invalid UTF-8
// replaced with U+FFFD.
func makeStorable(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// looksBinary reports whether data is binary rather than text. Like git, it
// takes a NUL byte for binary; like file(1), it takes control characters
// other than textControls, and the bytes 0x80 to 0x9F where they are not part
// of UTF-8 (they are control characters in Latin-1 too), for non-text, and
// calls data binary when more than a tenth of it is non-text. Other bytes
// that are not valid UTF-8 are taken for text in another encoding.
func looksBinary(data []byte) bool {
	if bytes.IndexByte(data, 0) >= 0 {
		return true
	}
	nonText := 0
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			if data[i] < 0xa0 {
				nonText++
			}
		case unicode.IsControl(r) && !strings.ContainsRune(textControls, r):
			nonText++
		}
		i += size
	}
	return nonText*10 > len(data)
}

// asText returns data, which what (such as `file "a.txt"`) holds, as text
// for the model: unchanged if it is valid UTF-8 text; a one-line description
// if it looks binary; and otherwise with invalid UTF-8 replaced with U+FFFD,
// after a line saying so. what must be storable.
func asText(what string, data []byte) string {
	switch {
	case looksBinary(data):
		return fmt.Sprintf("[%s is binary data of %d bytes; its content is not shown]", what, len(data))
	case !utf8.Valid(data):
		return fmt.Sprintf("[%s is not valid UTF-8: each invalid byte sequence is shown as U+FFFD (\uFFFD)]\n%s",
			what, strings.ToValidUTF8(string(data), "\uFFFD"))
	}
	return string(data)
}

// trimPartialRune returns data without the incomplete UTF-8 sequence it ends
// with, if any, as left by cutting valid UTF-8 at a byte limit.
func trimPartialRune(data []byte) []byte {
	for i := len(data) - 1; i >= max(0, len(data)-utf8.UTFMax); i-- {
		if utf8.RuneStart(data[i]) {
			if utf8.FullRune(data[i:]) {
				return data
			}
			return data[:i]
		}
	}
	return data
}

// storableResult is the last step of every tool's Execute: it makes sure the
// output and the error text are storable, whatever produced them. The tools
// already turn file content, response bodies and command output into text
// with asText; this catches anything else, such as a message from a library
// quoting what a server sent.
func storableResult(out string, err error) (string, error) {
	if err != nil && !isStorable(err.Error()) {
		err = storableError{err}
	}
	return makeStorable(out), err
}

// storableError is an error whose text is made storable. It wraps the
// original error, so errors.Is and errors.As still see the sentinels.
type storableError struct{ err error }

func (e storableError) Error() string { return makeStorable(e.err.Error()) }
func (e storableError) Unwrap() error { return e.err }
