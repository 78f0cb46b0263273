// Package redact finds personal data and secrets in text and redacts them:
// email addresses, phone numbers, payment card numbers, US Social Security
// numbers, IBANs, IP addresses, and credentials such as API keys, tokens,
// passwords and private keys.
//
//	redact.Redact("Mail bob@example.com, card 4111 1111 1111 1111.")
//	// "Mail [REDACTED:email], card [REDACTED:card]."
//
// [Find] returns the findings, [Redact] replaces each by [REDACTED:KIND],
// [BlockPII] is an OnBeforeMessage hook that refuses to send a
// conversation holding them, and [NewHandler] redacts logs:
//
//	agent.OnBeforeMessage(redact.BlockPII())
//	logger := slog.New(redact.NewHandler(slog.NewJSONHandler(os.Stderr, nil)))
//
// # Kinds
//
// Each finding has one of the kinds [KindEmail], [KindPhone], [KindCard],
// [KindSSN], [KindIBAN], [KindIP] and [KindSecret], whose documentation
// says what each covers. Their names are stable.
//
// # Precision over guessing
//
// A detector flags what has the shape of its kind and passes the checks
// the kind allows: card numbers a known network's prefix and length and
// the Luhn check, IBANs their country's length and the mod-97 check, SSNs
// the ranges ever issued, IP addresses a parse. Where shape alone is
// ambiguous, the words before decide: nine bare digits are an SSN only
// after "SSN" or "social", bare digits a phone number only after "phone",
// "call" and the like, and a random-looking token a secret only after
// "key", "secret", "password", "token" and the like (not "public key").
// So these are not flagged:
//
//   - dates and times (2026-12-01, 01.12.2026, 2026-12-01T10:30:00+02:00),
//     version strings (v1.2.3, 1.2.3-rc.4), order and invoice numbers,
//     ISBNs, ZIP codes, Unix timestamps and plain numbers;
//   - numbers that fail their check (4111 1111 1111 1112);
//   - UUIDs, git commit ids and hashes in prose, identifiers made of
//     words (getUserById2), paths and URLs;
//   - a dotted quad after a word such as "version" or "release"
//     (version 1.2.3.4), and loopback, unspecified, 0/8 and 255/8
//     addresses (127.0.0.1, ::1, 0.0.0.0, 255.255.255.0); any other
//     valid dotted quad is an IP address, documentation ranges included;
//   - placeholders given as passwords (********, ${DB_PASSWORD},
//     os.Getenv(...)), and postgres://user:password@host examples;
//   - logo@2x.png, git@github.com:org/repo, C++ and Ruby scopes (a::b).
//
// The price is a few misses, listed with the rest in the corpus of
// testdata/corpus.txt: a password that is one plain word, bare phone
// digits with no word before them, lowercase IBANs, percent-encoded
// addresses. Detection is ASCII: addresses with non-ASCII characters are
// not found.
//
// # Overlaps
//
// Findings never overlap. When two detections do, the longer wins, and of
// two as long the more specific: a known token format, a PEM key or a URL
// password, then a card, an IBAN, an SSN, an email address, an IP
// address, a phone number, and last the guesses from nearby words. So
// 415-555-0100@example.com is one email address, and a 13-digit Visa
// number after "phone" is a card.
//
// # Cost
//
// Find reads the text in a few passes over runs of the bytes each kind is
// written with (digits and separators, capitals and digits, hex digits
// and colons, token characters), and runs its regular expressions (Go's,
// linear in their input) on those runs only, not on the prose between
// them. Its cost is linear in the length of the text.
//
// The package uses the standard library only. The open-source scanners
// that exist (gitleaks, trufflehog) are programs with large rule sets and
// dependencies, and cover secrets but not personal data; none is a small,
// well-kept Go library for both.
package redact
