package tool

import "unicode/utf8"

// maxEchoBytes bounds how much of a model-supplied value is echoed back in an
// error message.
const maxEchoBytes = 64

// truncate shortens s to at most n bytes without splitting a UTF-8 sequence,
// marking a cut with "…".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return prefix(s, n) + "…"
}

// prefix returns the longest prefix of s that is at most n bytes long and
// does not end inside a UTF-8 sequence.
func prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
