package redact

import (
	"regexp"
	"strconv"
	"strings"
)

// addFunc records a candidate finding.
type addFunc func(kind string, rank, start, end int)

// numericClass is the bytes numbers are written with.
var numericClass = newClass(" ()+.-", "09")

// findNumbers finds card numbers, SSNs, IPv4 addresses and phone numbers
// in the runs of digits and separators of text.
func findNumbers(text string, add addFunc) {
	runs(text, numericClass, func(start, end int) {
		if digitCount(text[start:end]) < 4 {
			return
		}
		groups := digitGroups(text, start, end)
		for i := range groups {
			findGrouped(text, groups, i, add)
		}
		findPhones(text, start, end, add)
	})
}

// A group is a run of digits. sep is the one byte between it and the next
// group, or 0 when the next group is not one byte away.
type group struct {
	start, end int
	sep        byte
}

// digitGroups splits text[start:end] into its runs of digits.
func digitGroups(text string, start, end int) []group {
	var groups []group
	for i := start; i < end; {
		if !isDigit(text[i]) {
			i++
			continue
		}
		g := group{start: i}
		for i < end && isDigit(text[i]) {
			i++
		}
		g.end = i
		if i+1 < end && isDigit(text[i+1]) {
			g.sep = text[i]
		}
		groups = append(groups, g)
	}
	return groups
}

// findGrouped finds the numbers written as digit groups that start at
// groups[i]: cards, SSNs and IPv4 addresses.
func findGrouped(text string, groups []group, i int, add addFunc) {
	for n := min(5, len(groups)-i); n >= 1; n-- {
		w := groups[i : i+n]
		start, end := w[0].start, w[n-1].end
		sep, ok := commonSep(w)
		if !ok || !isolated(text, start, end) {
			continue
		}
		var buf [5]int
		sizes := buf[:n]
		for k, g := range w {
			sizes[k] = g.end - g.start
		}
		switch {
		case (sep == 0 || sep == ' ' || sep == '-') && cardLayout(sizes) && validCard(digits(text[start:end])):
			add(KindCard, rankCard, start, end)
		case ssnLayout(text, start, sep, sizes) && validSSN(digits(text[start:end])):
			add(KindSSN, rankSSN, start, end)
		case sep == '.' && n == 4 && validIPv4(text[start:end]) && !versionBefore(text, start):
			add(KindIP, rankIP, start, end)
		}
	}
}

// commonSep returns the separator that joins every group of w, 0 for a
// single group; ok is false if the groups are not joined by one separator.
func commonSep(w []group) (sep byte, ok bool) {
	if len(w) == 1 {
		return 0, true
	}
	sep = w[0].sep
	for _, g := range w[:len(w)-1] {
		if g.sep == 0 || g.sep != sep {
			return 0, false
		}
	}
	return sep, true
}

// cardLayout reports whether digit groups of these sizes are laid out as
// card numbers are printed: 13 to 19 digits in one group, 4-4-4-4
// (optionally with a last group of 1 to 3), or 4-6-4 and 4-6-5 (Diners,
// Amex).
func cardLayout(sizes []int) bool {
	switch len(sizes) {
	case 1:
		return 13 <= sizes[0] && sizes[0] <= 19
	case 3:
		return sizes[0] == 4 && sizes[1] == 6 && (sizes[2] == 4 || sizes[2] == 5)
	case 4, 5:
		for _, s := range sizes[:4] {
			if s != 4 {
				return false
			}
		}
		return len(sizes) == 4 || sizes[4] <= 3
	}
	return false
}

// cardRanges are the issuer prefixes of the card networks, with the
// lengths they issue.
var cardRanges = []struct {
	lo, hi     string // an inclusive range of prefixes of one length
	minL, maxL int
}{
	{"4", "4", 13, 13},       // Visa
	{"4", "4", 16, 16},       // Visa
	{"4", "4", 19, 19},       // Visa
	{"51", "55", 16, 16},     // Mastercard
	{"2221", "2720", 16, 16}, // Mastercard 2-series
	{"34", "34", 15, 15},     // Amex
	{"37", "37", 15, 15},     // Amex
	{"6011", "6011", 16, 19}, // Discover
	{"644", "649", 16, 19},   // Discover
	{"65", "65", 16, 19},     // Discover
	{"3528", "3589", 16, 19}, // JCB
	{"300", "305", 14, 19},   // Diners Club
	{"36", "36", 14, 19},     // Diners Club
	{"38", "39", 16, 19},     // Diners Club
	{"62", "62", 16, 19},     // UnionPay
	{"50", "50", 13, 19},     // Maestro
	{"56", "58", 13, 19},     // Maestro
	{"6304", "6304", 13, 19}, // Maestro
	{"6759", "6759", 13, 19}, // Maestro UK
	{"6761", "6763", 13, 19}, // Maestro
	{"2200", "2204", 16, 16}, // Mir
}

// validCard reports whether d, all digits, is a card number: a known
// network's prefix and length, and a valid Luhn check digit.
func validCard(d string) bool {
	known := false
	for _, r := range cardRanges {
		if r.minL <= len(d) && len(d) <= r.maxL && r.lo <= d[:len(r.lo)] && d[:len(r.hi)] <= r.hi {
			known = true
			break
		}
	}
	return known && luhn(d)
}

// luhn reports whether the Luhn checksum of d, all digits, holds.
func luhn(d string) bool {
	sum := 0
	for i := range len(d) {
		n := int(d[len(d)-1-i] - '0')
		if i%2 == 1 {
			if n *= 2; n > 9 {
				n -= 9
			}
		}
		sum += n
	}
	return sum%10 == 0
}

// ssnLayout reports whether groups of these sizes, joined by sep and
// starting at start, are written as an SSN: 3-2-4 with dashes, or 3-2-4
// with spaces or 9 digits after a word such as "SSN".
func ssnLayout(text string, start int, sep byte, sizes []int) bool {
	dashed := len(sizes) == 3 && sizes[0] == 3 && sizes[1] == 2 && sizes[2] == 4
	switch {
	case dashed && sep == '-':
		return true
	case dashed && sep == ' ' || len(sizes) == 1 && sizes[0] == 9:
		_, _, ok := keywordBefore(text, start, 3, ssnWords)
		return ok
	}
	return false
}

// validSSN reports whether d, nine digits, is an SSN the Social Security
// Administration could issue: area not 000, 666 or 9xx, group not 00,
// serial not 0000.
func validSSN(d string) bool {
	return d[:3] != "000" && d[:3] != "666" && d[0] != '9' && d[3:5] != "00" && d[5:] != "0000"
}

// validIPv4 reports whether s, four dot-separated groups of digits, is an
// IPv4 address other than those of 0/8 (this network), 127/8 (loopback)
// and 255/8 (netmasks, broadcast). Octets with a leading zero are not
// read as addresses.
func validIPv4(s string) bool {
	octets := strings.Split(s, ".")
	for _, o := range octets {
		n, err := strconv.Atoi(o)
		if err != nil || n > 255 || len(o) > 1 && o[0] == '0' {
			return false
		}
	}
	switch octets[0] {
	case "0", "127", "255":
		return false
	}
	return true
}

// versionBefore reports whether the word just before pos is one that
// introduces a version, as in "version 1.2.3.4".
func versionBefore(text string, pos int) bool {
	_, _, ok := keywordBefore(text, pos, 1, versionWords)
	return ok
}

var (
	// intlPhone is a number in international format: +44 20 7946 0958,
	// +1 (415) 555-0100, +44 (0)20 7946 0958.
	intlPhone = regexp.MustCompile(`\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5}){1,6}`)
	// nanpPhone is a North American number: (415) 555-0100,
	// 415-555-0100, 415.555.0100, 1-415-555-0100.
	nanpPhone = regexp.MustCompile(`(?:1[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}`)
	// trunkPhone is a national number with a trunk prefix 0: 020 7946
	// 0958, 01 23 45 67 89.
	trunkPhone = regexp.MustCompile(`0\d{1,4}(?:[ .-]\d{2,4}){1,4}`)
	// dateLike is a date written with digits.
	dateLike = regexp.MustCompile(`\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}`)
)

// findPhones finds phone numbers in text[start:end], a run of digits and
// separators.
func findPhones(text string, start, end int, add addFunc) {
	run := text[start:end]
	n := digitCount(run)
	if n < 7 {
		return // too short for any phone number: skip the expressions
	}
	_, _, keyword := keywordBefore(text, start, 3, phoneWords)
	each := func(re *regexp.Regexp, ok func(m string) bool) {
		for _, m := range re.FindAllStringIndex(run, -1) {
			s, e := start+m[0], start+m[1]
			if ok(text[s:e]) && isolated(text, s, e) {
				add(KindPhone, rankPhone, s, e)
			}
		}
	}
	if strings.IndexByte(run, '+') >= 0 {
		each(intlPhone, func(m string) bool { return phoneDigits(m, 8, 15) })
	}
	if n >= 10 {
		each(nanpPhone, func(m string) bool { return nanpOK(m, keyword) })
	}
	if n >= 10 && strings.IndexByte(run, '0') >= 0 {
		each(trunkPhone, trunkOK)
	}
	if keyword {
		// After "phone", "call" and the like, any number of 7 to 15
		// digits that is not a date.
		s := start + strings.IndexAny(run, "0123456789+(")
		e := start + strings.LastIndexAny(run, "0123456789)") + 1
		if s < e && phoneDigits(text[s:e], 7, 15) && !dateLike.MatchString(text[s:e]) && isolated(text, s, e) {
			add(KindPhone, rankPhone, s, e)
		}
	}
}

// phoneDigits reports whether m has from lo to hi digits, not counting a
// trunk prefix written (0).
func phoneDigits(m string, lo, hi int) bool {
	n := digitCount(m) - strings.Count(m, "(0)")
	return lo <= n && n <= hi
}

// nanpOK reports whether m, a match of nanpPhone, is a North American
// number: area code and exchange not starting with 0 or 1, and one
// separator throughout unless the area code is in parentheses. A number
// written with spaces only counts after a word such as "phone".
func nanpOK(m string, keyword bool) bool {
	d := digits(m)
	if len(d) == 11 {
		d = d[1:]
	}
	if d[0] < '2' || d[3] < '2' {
		return false
	}
	if strings.Contains(m, "(") {
		return true
	}
	seps := nonDigits(m)
	return sameBytes(seps) && (seps[0] != ' ' || keyword)
}

// trunkOK reports whether m, a match of trunkPhone, is a phone number:
// 10 or 11 digits after a trunk 0 that is not followed by another, with
// one separator throughout.
func trunkOK(m string) bool {
	n := digitCount(m)
	return m[1] != '0' && (n == 10 || n == 11) && sameBytes(nonDigits(m))
}
