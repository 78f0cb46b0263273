package agentpg

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// PostgreSQL stores neither NUL characters nor invalid UTF-8, in text or
// in jsonb. Text AgentPG did not write itself (the model's answers, tools'
// inputs and outputs, error messages) is made storable before it is, each
// offending byte sequence replaced by U+FFFD.

// storableText returns s with NUL characters and invalid UTF-8 replaced by
// U+FFFD, and how many replacements were made.
func storableText(s string) (string, int) {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s, 0
	}
	var b strings.Builder
	replaced := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == 0 || (r == utf8.RuneError && size == 1) {
			b.WriteRune(utf8.RuneError)
			replaced++
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String(), replaced
}

// nulEscape is JSON's escape of the NUL character, which jsonb refuses, and
// replacementEscape the escape of U+FFFD, of the same length.
const nulEscape, replacementEscape = `\u0000`, `\ufffd`

// storableJSON returns the JSON text data, modified in place where
// possible, with invalid UTF-8 and \u0000 escapes replaced by U+FFFD, and
// how many replacements were made.
func storableJSON(data []byte) ([]byte, int) {
	replaced := 0
	if !utf8.Valid(data) {
		for i := 0; i < len(data); {
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				replaced++
			}
			i += size
		}
		data = bytes.ToValidUTF8(data, []byte(string(utf8.RuneError)))
	}
	// In JSON text a backslash appears only in strings, where it starts an
	// escape: skipping the escaped character finds every real \u0000.
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		if bytes.HasPrefix(data[i:], []byte(nulEscape)) {
			copy(data[i:], replacementEscape)
			replaced++
		}
		i++
	}
	return data, replaced
}
