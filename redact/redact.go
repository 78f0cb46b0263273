package redact

import (
	"cmp"
	"slices"
	"strings"
)

// The kinds of [Finding]. They are stable: they appear in redacted text as
// [REDACTED:KIND] and in the errors of [BlockPII].
const (
	// KindEmail is an email address: bob@example.com.
	KindEmail = "email"
	// KindPhone is a telephone number: international (+44 20 7946 0958),
	// North American ((415) 555-0100, 415-555-0100), national of 10 or 11
	// digits with a trunk 0 (020 7946 0958), or 7 to 15 digits after a
	// word such as "phone" or "call".
	KindPhone = "phone"
	// KindCard is a payment card number of a known network (Visa,
	// Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro, Mir) and
	// of a length that network issues, whose Luhn check digit is right,
	// written whole or in the groups cards print (4-4-4-4, 4-6-5).
	KindCard = "card"
	// KindSSN is a US Social Security number: 123-45-6789, or 123 45 6789 or
	// 123456789 after "SSN" or "social".
	KindSSN = "ssn"
	// KindIBAN is an international bank account number whose length fits
	// its country and whose mod-97 check holds.
	KindIBAN = "iban"
	// KindIP is an IPv4 or IPv6 address, except loopback, unspecified,
	// 0/8 and 255/8 (netmask) addresses and a dotted quad after a word
	// such as "version".
	KindIP = "ip"
	// KindSecret is a credential: an API key or token of a known format
	// (Anthropic, OpenAI, AWS, GitHub, Stripe, Google, Slack, JWT), a PEM
	// private key, the password of a URL, a password assigned in text, or
	// a random-looking token near a word such as "key", "secret",
	// "password" or "token".
	KindSecret = "secret"
)

// Kinds returns every kind, in a fixed order.
func Kinds() []string {
	return []string{KindEmail, KindPhone, KindCard, KindSSN, KindIBAN, KindIP, KindSecret}
}

// A Finding is a piece of sensitive text: text[Start:End] is of the kind
// Kind. Start and End are byte offsets.
type Finding struct {
	Kind       string
	Start, End int
}

// A candidate is a finding of one detector before overlaps are resolved.
// Detectors with a lower rank are more specific.
type candidate struct {
	Finding
	rank int
}

// The ranks of the detectors, most specific first.
const (
	rankPEM = iota
	rankURLPassword
	rankToken
	rankCard
	rankIBAN
	rankSSN
	rankEmail
	rankIP
	rankPhone
	rankAWSSecret
	rankPassword
	rankKeyedToken
)

// Find returns the sensitive pieces of text, sorted by Start and never
// overlapping.
//
// When detections overlap, the longer one wins, and of two as long the
// more specific detector's (a known token format before a card number, a
// card before an IBAN, an SSN, an email, an IP address, a phone number,
// and those before the guesses from nearby words).
func Find(text string) []Finding {
	var found []candidate
	add := func(kind string, rank, start, end int) {
		found = append(found, candidate{Finding{kind, start, end}, rank})
	}
	findNumbers(text, add)
	findIBANs(text, add)
	findIPv6(text, add)
	findEmails(text, add)
	findSecrets(text, add)
	return resolve(found)
}

// resolve keeps, of overlapping candidates, the longest and then the most
// specific one, and returns the kept findings sorted by Start.
func resolve(found []candidate) []Finding {
	slices.SortFunc(found, func(a, b candidate) int { return cmp.Compare(a.Start, b.Start) })
	var kept []Finding
	// Candidates that overlap, directly or through others, form a cluster;
	// each cluster is resolved on its own.
	for len(found) > 0 {
		n, end := 1, found[0].End
		for n < len(found) && found[n].Start < end {
			end = max(end, found[n].End)
			n++
		}
		kept = resolveCluster(kept, found[:n])
		found = found[n:]
	}
	return kept
}

// resolveCluster appends to kept the winners of a cluster of overlapping
// candidates, sorted by Start.
func resolveCluster(kept []Finding, cluster []candidate) []Finding {
	if len(cluster) == 1 {
		return append(kept, cluster[0].Finding)
	}
	slices.SortStableFunc(cluster, func(a, b candidate) int {
		return cmp.Or(cmp.Compare(b.End-b.Start, a.End-a.Start), cmp.Compare(a.rank, b.rank))
	})
	from := len(kept)
	for _, c := range cluster {
		if !slices.ContainsFunc(kept[from:], func(k Finding) bool { return c.Start < k.End && k.Start < c.End }) {
			kept = append(kept, c.Finding)
		}
	}
	slices.SortFunc(kept[from:], func(a, b Finding) int { return cmp.Compare(a.Start, b.Start) })
	return kept
}

// Redact returns text with each finding of [Find] replaced by
// [REDACTED:KIND], such as [REDACTED:email].
func Redact(text string) string {
	return redactFrom(text, 0)
}

// redactFrom returns text[from:] redacted, reading it with text[:from]
// before it as context: "token: " + value finds more than value alone.
func redactFrom(text string, from int) string {
	findings := Find(text)
	for len(findings) > 0 && findings[0].End <= from {
		findings = findings[1:]
	}
	if len(findings) == 0 {
		return text[from:]
	}
	var b strings.Builder
	b.Grow(len(text) - from)
	last := from
	for _, f := range findings {
		b.WriteString(text[last:max(f.Start, from)])
		b.WriteString("[REDACTED:")
		b.WriteString(f.Kind)
		b.WriteByte(']')
		last = f.End
	}
	b.WriteString(text[last:])
	return b.String()
}
