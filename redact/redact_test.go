package redact_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/agentpg/agentpg/redact"
)

// findings returns the kinds and texts Find gives for text.
func findings(text string) []string {
	var out []string
	for _, f := range redact.Find(text) {
		out = append(out, f.Kind+":"+text[f.Start:f.End])
	}
	return out
}

func TestFindResolvesOverlaps(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		// The phone number 415-555-0100 is inside the longer address.
		{"longer wins", "mail 415-555-0100@example.com now", []string{"email:415-555-0100@example.com"}},
		// A 13-digit Visa after "phone" is a phone number too, as long:
		// the card detector is the more specific.
		{"card before phone", "phone: 4222222222222", []string{"card:4222222222222"}},
		// The key is both a known format and a token after "api_key".
		{"one finding per span", "api_key=sk-ant-api03-PtYgjmUhBel31iEl2hpChYgCfrL1spNxnyVmihA_AA",
			[]string{"secret:sk-ant-api03-PtYgjmUhBel31iEl2hpChYgCfrL1spNxnyVmihA_AA"}},
		// The IPv4 tail is part of the IPv6 address.
		{"mapped address", "from ::ffff:192.0.2.1 today", []string{"ip:::ffff:192.0.2.1"}},
		{"adjacent findings", "bob@example.com,10.0.0.1", []string{"email:bob@example.com", "ip:10.0.0.1"}},
	} {
		if got := findings(tc.text); !slices.Equal(got, tc.want) {
			t.Errorf("%s: Find(%q) = %q, want %q", tc.name, tc.text, got, tc.want)
		}
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"nothing to see here, version 1.2.3 on 2026-12-01", "nothing to see here, version 1.2.3 on 2026-12-01"},
		{"bob@example.com", "[REDACTED:email]"},
		{"Call +44 20 7946 0958 or mail bob@example.com.", "Call [REDACTED:phone] or mail [REDACTED:email]."},
		{"password: hunter22\ncard 4111 1111 1111 1111", "password: [REDACTED:secret]\ncard [REDACTED:card]"},
		{"ssn=123-45-6789&ip=10.1.2.3", "ssn=[REDACTED:ssn]&ip=[REDACTED:ip]"},
	} {
		if got := redact.Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Redacting twice changes nothing more: no redaction marker, nor what is
// left around it, reads as sensitive.
func TestRedactIsIdempotent(t *testing.T) {
	t.Parallel()
	for _, c := range readCorpus(t) {
		once := redact.Redact(c.text)
		if twice := redact.Redact(once); twice != once {
			t.Errorf("corpus.txt:%d: Redact(Redact(x)) = %q, want %q", c.line, twice, once)
		}
	}
}

// Hostile inputs: invalid UTF-8, NUL bytes, long runs of what detectors
// look at, unterminated keys. Find must stay linear, in bounds and sorted.
func TestFindHostileInputs(t *testing.T) {
	t.Parallel()
	for name, text := range map[string]string{
		"invalid utf-8":    "bob@example.com\xff\xfe 4111 1111 1111 1111 \xc3",
		"nul bytes":        "bob@example.com\x00415-555-0100\x00",
		"digits":           strings.Repeat("1234 ", 50_000),
		"dotted digits":    strings.Repeat("1.", 100_000),
		"colons":           strings.Repeat("a:", 100_000),
		"ats":              strings.Repeat("a@", 100_000),
		"token":            strings.Repeat("A7b", 100_000),
		"password":         strings.Repeat("password: ", 30_000),
		"pem without end":  "-----BEGIN RSA PRIVATE KEY-----\n" + strings.Repeat("QUJD\n", 50_000),
		"pem begins":       strings.Repeat("-----BEGIN PRIVATE KEY-----", 10_000),
		"iban letters":     strings.Repeat("DE89 ", 50_000),
		"keywords":         strings.Repeat("token key secret ", 20_000),
		"url":              strings.Repeat("a://b:c@", 30_000),
		"jwt-ish":          strings.Repeat("eyJhbGciOiJIUzI1NiJ9.", 10_000),
		"single separator": "-",
	} {
		fs := redact.Find(text)
		last := 0
		for _, f := range fs {
			if f.Start < last || f.End <= f.Start || f.End > len(text) || !slices.Contains(redact.Kinds(), f.Kind) {
				t.Errorf("%s: bad finding %+v after offset %d", name, f, last)
				break
			}
			last = f.End
		}
	}
	// A token of 300,000 random-looking bytes after "token" is one
	// finding.
	long := "token: " + strings.Repeat("7f3kQ9zLmP2xR8vNc4TbWnsCGRlrwZbqcabUGJmGEp", 7_000)
	if fs := redact.Find(long); len(fs) != 1 || fs[0].Start != len("token: ") || fs[0].End != len(long) {
		t.Errorf("long token: %+v", fs)
	}
}

func FuzzFind(f *testing.F) {
	for _, seed := range []string{
		"bob@example.com", "+1 (415) 555-0100", "4111 1111 1111 1111", "123-45-6789",
		"DE89 3704 0044 0532 0130 00", "2001:db8::1", "10.0.0.1", "password: hunter22",
		"token: 7f3kQ9zLmP2xR8vNc4Tb", "-----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----",
		"postgres://a:b@c/d", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		last := 0
		for _, fd := range redact.Find(text) {
			if fd.Start < last || fd.End <= fd.Start || fd.End > len(text) || !slices.Contains(redact.Kinds(), fd.Kind) {
				t.Fatalf("bad finding %+v after offset %d in %q", fd, last, text)
			}
			last = fd.End
		}
		redact.Redact(text)
	})
}
