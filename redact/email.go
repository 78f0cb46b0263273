package redact

import "strings"

var (
	// emailLocal is the bytes of the part of an address before the @ that
	// this package reads.
	emailLocal = newClass("._%+-", "azAZ09")
	// emailDomain is the bytes of a domain name.
	emailDomain = newClass(".-", "azAZ09")
)

// findEmails finds email addresses: a local part, an @ and a domain name
// of two labels or more ending in an alphabetic top-level domain. Not
// found: image names such as logo@2x.png, locations such as
// git@github.com:org/repo or module@example.com/pkg, and the user of a URL
// (scheme://user@host, whose password is a secret).
func findEmails(text string, add addFunc) {
	for at := strings.IndexByte(text, '@'); at >= 0; {
		start, end := at, at+1
		for start > 0 && emailLocal[text[start-1]] {
			start--
		}
		for end < len(text) && emailDomain[text[end]] {
			end++
		}
		for start < at && text[start] == '.' {
			start++
		}
		for end > at+1 && (text[end-1] == '.' || text[end-1] == '-') {
			end--
		}
		if validEmail(text[start:at], text[at+1:end]) && !inURL(text, start) && !location(text, end) {
			add(KindEmail, rankEmail, start, end)
		}
		next := strings.IndexByte(text[at+1:], '@')
		if next < 0 {
			break
		}
		at += 1 + next
	}
}

// validEmail reports whether local@domain is an address.
func validEmail(local, domain string) bool {
	if local == "" || len(local) > 64 || strings.HasSuffix(local, ".") || strings.Contains(local, "..") {
		return false
	}
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
	}
	tld := labels[len(labels)-1]
	for i := 0; i < len(tld); i++ {
		if !isLower(tld[i] | 0x20) {
			return false
		}
	}
	// logo@2x.png: an image's pixel density, not a domain.
	first := labels[0]
	scale := len(first) >= 2 && (first[len(first)-1]|0x20) == 'x' && digitCount(first) == len(first)-1
	return len(tld) >= 2 && !scale
}

// inURL reports whether the address starting at start is the userinfo
// of a URL: scheme://user@host, scheme://user:password@host.
func inURL(text string, start int) bool {
	wordStart := strings.LastIndexAny(text[:start], " \t\r\n\"'<>") + 1
	before := text[wordStart:start]
	return strings.HasSuffix(before, "://") || strings.HasSuffix(before, ":") && strings.Contains(before, "://")
}

// location reports whether the domain ending at end is followed by a
// path: git@github.com:org/repo (scp), module@example.com/pkg.
func location(text string, end int) bool {
	return end+1 < len(text) && (text[end] == ':' || text[end] == '/') && !isSpace(text[end+1])
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\r' || b == '\n' }
