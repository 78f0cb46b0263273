package redact

import (
	"math"
	"strings"
)

// A byteClass is a set of bytes.
type byteClass [256]bool

// newClass returns the class of the bytes in chars and in the ranges given
// as pairs in ranges ("az09" is a-z and 0-9).
func newClass(chars, ranges string) *byteClass {
	var c byteClass
	for i := 0; i < len(chars); i++ {
		c[chars[i]] = true
	}
	for i := 0; i+1 < len(ranges); i += 2 {
		for b := int(ranges[i]); b <= int(ranges[i+1]); b++ {
			c[b] = true
		}
	}
	return &c
}

var alnum = newClass("", "azAZ09")

// runs calls f with the bounds of each maximal run of bytes of class c in
// text. Detectors look at such runs only, which keeps their regular
// expressions off the prose around them.
func runs(text string, c *byteClass, f func(start, end int)) {
	for i := 0; i < len(text); {
		if !c[text[i]] {
			i++
			continue
		}
		start := i
		for i < len(text) && c[text[i]] {
			i++
		}
		f(start, i)
	}
}

// isolated reports whether text[start:end] stands on its own: it is not
// glued to a letter, a digit or an underscore, nor joined by '-' or '.'
// to more of the same token (as a part of a date, a version or a UUID
// would be), nor the end of a path (/orders/123). A '.' ending a sentence
// does not join, nor does a '/' after (10.0.0.0/8).
func isolated(text string, start, end int) bool {
	if start > 0 {
		b := text[start-1]
		if isWordByte(b) || b == '/' || ((b == '-' || b == '.') && start > 1 && alnum[text[start-2]]) {
			return false
		}
	}
	if end < len(text) {
		b := text[end]
		if isWordByte(b) || ((b == '-' || b == '.') && end+1 < len(text) && alnum[text[end+1]]) {
			return false
		}
	}
	return true
}

func isWordByte(b byte) bool { return alnum[b] || b == '_' }

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

// digitCount returns the number of ASCII digits in s.
func digitCount(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			n++
		}
	}
	return n
}

// digits returns the ASCII digits of s.
func digits(s string) string { return keep(s, isDigit) }

// nonDigits returns the bytes of s that are not ASCII digits.
func nonDigits(s string) string { return keep(s, func(b byte) bool { return !isDigit(b) }) }

// keep returns the bytes of s for which f is true.
func keep(s string, f func(byte) bool) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if f(s[i]) {
			b = append(b, s[i])
		}
	}
	return string(b)
}

// sameBytes reports whether s is one byte repeated.
func sameBytes(s string) bool {
	return s != "" && strings.Count(s, s[:1]) == len(s)
}

// Words that make a nearby token likely to be of a kind.
var (
	phoneWords   = wordSet("phone phones telephone tel mobile cell cellphone call fax whatsapp sms")
	ssnWords     = wordSet("ssn ssns social")
	versionWords = wordSet("version ver v release build firmware fw rev revision")
	secretWords  = wordSet("key keys apikey secret secrets password passwd pwd passphrase token tokens " +
		"auth authorization bearer credential credentials")
	awsWords = wordSet("aws secret")
)

func wordSet(words string) map[string]bool {
	set := map[string]bool{}
	for _, w := range strings.Fields(words) {
		set[w] = true
	}
	return set
}

// lookbackBytes bounds how far before a token its context words are
// sought; context never crosses a line.
const lookbackBytes = 64

// wordBefore returns the bounds of the word (letters, digits, '_' and '-')
// that ends nearest before pos on the same line and not before limit,
// skipping other characters; ok is false if there is none.
func wordBefore(text string, pos, limit int) (start, end int, ok bool) {
	i := pos
	for i > limit && !isWordByte(text[i-1]) && text[i-1] != '-' {
		if text[i-1] == '\n' {
			return 0, 0, false
		}
		i--
	}
	end = i
	for i > limit && (isWordByte(text[i-1]) || text[i-1] == '-') {
		i--
	}
	return i, end, i < end
}

// keywordBefore looks at up to n words before pos (on the same line,
// within lookbackBytes) for one that hasWord of set, and returns its
// bounds.
func keywordBefore(text string, pos, n int, set map[string]bool) (start, end int, ok bool) {
	limit := max(0, pos-lookbackBytes)
	for range n {
		start, end, ok = wordBefore(text, pos, limit)
		if !ok {
			return 0, 0, false
		}
		if hasWord(text[start:end], set) {
			return start, end, true
		}
		pos = start
	}
	return 0, 0, false
}

func isUpper(b byte) bool { return 'A' <= b && b <= 'Z' }
func isLower(b byte) bool { return 'a' <= b && b <= 'z' }

// hasWord reports whether s has a word of set, in any case, reading
// words as letterWord does: "X-Api-Key", "AWS_SECRET_ACCESS_KEY" and
// "apiKey2" all have the word "key".
func hasWord(s string, set map[string]bool) bool {
	for i := 0; i < len(s); {
		if n := letterWord(s[i:]); n > 0 {
			if set[strings.ToLower(s[i:i+n])] {
				return true
			}
			i += n
		} else {
			i++
		}
	}
	return false
}

// identifierLike reports whether s reads as a name made of words, as code
// identifiers, file names and host names do (getUserById2,
// strings.HasPrefix, API_KEY_V2, api.example.com). Of the words of s (as
// letterWord reads them), one of three letters or more with a vowel is
// wordy; s is identifier-like when most of its letters are in wordy words
// and other words are no more than wordy ones. Random tokens are so only
// by chance.
func identifierLike(s string) bool {
	letters, wordyLetters, wordy, other := 0, 0, 0, 0
	for i := 0; i < len(s); {
		n := letterWord(s[i:])
		if n == 0 {
			i++
			continue
		}
		vowel := false
		for _, c := range []byte(s[i : i+n]) {
			vowel = vowel || strings.IndexByte("aeiouy", c|0x20) >= 0
		}
		letters += n
		if n >= 3 && vowel {
			wordyLetters += n
			wordy++
		} else {
			other++
		}
		i += n
	}
	return letters > 0 && wordyLetters*10 >= letters*6 && other <= wordy
}

// letterWord returns the length of the word of letters s starts with, 0
// if s does not start with a letter. Words end at non-letters and at
// camelCase humps: small letters, a capital and small letters, or
// capitals not followed by a small letter, the capital before one
// starting the next word (getHTTPServer is get, HTTP, Server), but for a
// plural s (IDs, URLs).
func letterWord(s string) int {
	n := 0
	for n < len(s) && isUpper(s[n]) {
		n++
	}
	if n > 1 && n < len(s) && isLower(s[n]) {
		if s[n] == 's' && (n+1 == len(s) || !isLower(s[n+1])) {
			return n + 1 // IDs
		}
		return n - 1 // HTTPServer: HTTP
	}
	if n > 1 {
		return n
	}
	for n < len(s) && isLower(s[n]) {
		n++
	}
	return n
}

// entropy returns the Shannon entropy of s, in bits per byte.
func entropy(s string) float64 {
	var counts [256]int
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	h := 0.0
	for _, n := range counts {
		if n > 0 {
			p := float64(n) / float64(len(s))
			h -= p * math.Log2(p)
		}
	}
	return h
}
