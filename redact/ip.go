package redact

import (
	"net/netip"
	"strings"
)

// ipv6Class is the bytes IPv6 addresses are written with, an IPv4 tail
// included (::ffff:192.0.2.1).
var ipv6Class = newClass(":.", "afAF09")

// findIPv6 finds IPv6 addresses other than loopback (::1) and unspecified
// (::). An address must hold a digit (not C++ or Ruby scopes such as
// Abc::Def) and two groups or more, unless a prefix length follows (not
// PostgreSQL casts such as $1::), and not be eight groups of two digits
// (a MAC address in EUI-64 form).
func findIPv6(text string, add addFunc) {
	runs(text, ipv6Class, func(start, end int) {
		if end-start < 3 || strings.Count(text[start:end], ":") < 2 {
			return
		}
		for end-start > 1 && (text[end-1] == '.' || text[end-1] == ':' && text[end-2] != ':') {
			end-- // a sentence's full stop, a trailing colon
		}
		s := text[start:end]
		if !strings.ContainsAny(s, "0123456789") || !isolated(text, start, end) {
			return
		}
		groups := strings.FieldsFunc(s, func(r rune) bool { return r == ':' })
		if len(groups) < 2 && (end == len(text) || text[end] != '/') || macLike(groups) {
			return
		}
		addr, err := netip.ParseAddr(s)
		if err == nil && addr.Is6() && !addr.IsLoopback() && !addr.IsUnspecified() {
			add(KindIP, rankIP, start, end)
		}
	})
}

// macLike reports whether groups are eight of two hex digits each.
func macLike(groups []string) bool {
	if len(groups) != 8 {
		return false
	}
	for _, g := range groups {
		if len(g) != 2 {
			return false
		}
	}
	return true
}
