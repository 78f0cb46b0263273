package main

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// unsafeRune reports whether r must not reach a terminal as it is: a C0
// control character (escape sequences start with ESC), DEL, a C1 control
// character (U+009B is CSI), a bidirectional embedding, override or
// isolate (U+202A–U+202E, U+2066–U+2069), which reorder what is shown, or
// a line or paragraph separator (U+2028, U+2029).
func unsafeRune(r rune) bool {
	return r < 0x20 || 0x7f <= r && r <= 0x9f ||
		0x202a <= r && r <= 0x202e || 0x2066 <= r && r <= 0x2069 ||
		r == 0x2028 || r == 0x2029
}

// escapeText returns s, text of one or more lines from the database or the
// model, fit for a terminal: every unsafe rune but newline and tab, and
// every byte that is not UTF-8, is replaced by its escape in Go's syntax,
// such as \x1b or \u202e.
func escapeText(s string) string { return escape(s, true) }

// escapeLine returns s, text from the database or the model shown on one
// line or in a table cell, fit for a terminal: like escapeText, and with
// newlines and tabs escaped too.
func escapeLine(s string) string { return escape(s, false) }

// escape escapes s for escapeText, with keepLines, or escapeLine.
func escape(s string, keepLines bool) string {
	if !strings.ContainsFunc(s, unsafeRune) && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !unsafeRune(r), keepLines && (r == '\n' || r == '\t'):
			b.WriteString(s[i : i+size])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < utf8.RuneSelf:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += size
	}
	return b.String()
}

// escapeJSON escapes, in out, JSON from encoding/json, the unsafe runes
// that encoding/json leaves as they are: DEL, C1 control characters and the
// bidirectional controls. (It escapes the C0 control characters, U+2028 and
// U+2029 itself, and replaces bytes that are not UTF-8.) Those runes can
// only stand in strings, where \u escapes mean the same.
func escapeJSON(out []byte) []byte {
	if !bytes.ContainsFunc(out, unsafeRune) {
		return out
	}
	var b bytes.Buffer
	for _, r := range string(out) {
		if unsafeRune(r) && r >= 0x7f {
			fmt.Fprintf(&b, `\u%04x`, r)
		} else {
			b.WriteRune(r)
		}
	}
	return b.Bytes()
}

// quote returns s escaped by escapeLine, in double quotes.
func quote(s string) string {
	return `"` + escapeLine(s) + `"`
}
