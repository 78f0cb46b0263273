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
// that ends nearest before pos on the same line and within lookbackBytes,
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
// within lookbackBytes) for one with a part in set, splitting words at
// '_', '-' and camelCase humps, case-insensitively: "X-Api-Key",
// "AWS_SECRET_ACCESS_KEY" and "apiKey" all have the part "key". It
// returns the bounds of that word.
func keywordBefore(text string, pos, n int, set map[string]bool) (start, end int, ok bool) {
	limit := max(0, pos-lookbackBytes)
	for range n {
		start, end, ok = wordBefore(text, pos, limit)
		if !ok {
			return 0, 0, false
		}
		for _, part := range wordParts(text[start:end]) {
			if set[strings.ToLower(part)] {
				return start, end, true
			}
		}
		pos = start
	}
	return 0, 0, false
}

// wordParts splits an identifier at '_', '-', '.' and camelCase humps:
// "getHTTPServer_v2" is get, HTTP, Server, v2.
func wordParts(w string) []string {
	var parts []string
	start := 0
	flush := func(end int) {
		if end > start {
			parts = append(parts, w[start:end])
		}
	}
	for i := 0; i < len(w); i++ {
		switch c := w[i]; {
		case c == '_' || c == '-' || c == '.':
			flush(i)
			start = i + 1
		case i > start && isUpper(c) && (isLower(w[i-1]) || i+1 < len(w) && isLower(w[i+1]) && isUpper(w[i-1])):
			flush(i)
			start = i
		}
	}
	flush(len(w))
	return parts
}

func isUpper(b byte) bool { return 'A' <= b && b <= 'Z' }
func isLower(b byte) bool { return 'a' <= b && b <= 'z' }

// identifierLike reports whether s reads as a name made of words, as code
// identifiers, file names and host names do (getUserById2,
// user_profile_cache_2024, api.example.com): most of its letters are in
// runs of at least three small letters with a vowel, which may follow a
// capital, and almost a third of its letters are vowels. Random tokens
// are both only by chance.
func identifierLike(s string) bool {
	letters, wordy, vowels := 0, 0, 0
	for i := 0; i < len(s); {
		if !isLower(s[i]) && !isUpper(s[i]) {
			i++
			continue
		}
		start, before := i, vowels
		if isUpper(s[i]) {
			vowels += isVowel(s[i])
			i++
		}
		lower := i
		for i < len(s) && isLower(s[i]) {
			vowels += isVowel(s[i])
			i++
		}
		letters += i - start
		if i-lower >= 3 && vowels > before {
			wordy += i - start
		}
	}
	return letters > 0 && wordy*10 >= letters*6 && vowels*10 >= letters*3
}

// isVowel returns 1 for a vowel (y included), 0 for another byte.
func isVowel(b byte) int {
	if strings.IndexByte("aeiouy", b|0x20) >= 0 {
		return 1
	}
	return 0
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
