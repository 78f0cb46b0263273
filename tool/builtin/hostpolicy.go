package builtin

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// hostPatterns is a checked AllowedHosts or DeniedHosts list. Each pattern is
// a canonical host, "*." followed by one (matching its subdomains), or "*"
// (matching every host).
type hostPatterns []string

func parseHostPatterns(list []string) (hostPatterns, error) {
	patterns := make(hostPatterns, 0, len(list))
	for _, p := range list {
		if p == "*" {
			patterns = append(patterns, p)
			continue
		}
		suffix, wildcard := strings.CutPrefix(p, "*.")
		host, err := canonicalHost(suffix)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", p, err)
		}
		if wildcard {
			if _, err := netip.ParseAddr(host); err == nil {
				return nil, fmt.Errorf("pattern %q: a wildcard cannot apply to an IP address", p)
			}
			host = "*." + host
		}
		patterns = append(patterns, host)
	}
	return patterns, nil
}

// match reports whether the canonical host matches one of the patterns.
func (ps hostPatterns) match(host string) bool {
	return slices.ContainsFunc(ps, func(p string) bool {
		if suffix, ok := strings.CutPrefix(p, "*"); ok {
			return strings.HasSuffix(host, suffix)
		}
		return host == p
	})
}

// canonicalHost lowercases host and drops one trailing dot, then checks that
// it is an IP address in standard notation or a DNS name of letters, digits,
// '-' and '_'. Names that resolvers would read as an IPv4 address in a legacy
// notation (2130706433, 0x7f.1, 0177.0.0.1, 127.1) are refused.
func canonicalHost(host string) (string, error) {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" {
		return "", errors.New("host is empty")
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.String(), nil
	}
	labels := strings.Split(host, ".")
	if len(host) > 253 || slices.ContainsFunc(labels, invalidLabel) {
		return "", fmt.Errorf("%q is not a valid host name", host)
	}
	if numericLabel(labels[len(labels)-1]) {
		return "", fmt.Errorf("%q looks like an IP address in non-standard notation", host)
	}
	return host, nil
}

func invalidLabel(label string) bool {
	return label == "" || len(label) > 63 || strings.ContainsFunc(label, func(r rune) bool {
		return !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-' || r == '_')
	})
}

// numericLabel reports whether label is a decimal or 0x-prefixed hex number,
// which makes the name an IPv4 address to URL parsers and resolvers.
func numericLabel(label string) bool {
	digits, hex := strings.CutPrefix(label, "0x")
	valid := "0123456789"
	if hex {
		valid += "abcdef"
	}
	return strings.Trim(digits, valid) == ""
}
