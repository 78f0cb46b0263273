package redact

import (
	"encoding/base64"
	"encoding/json"
	"regexp"
	"strings"
)

// findSecrets finds credentials: PEM private keys, URL passwords, assigned
// passwords, and tokens.
func findSecrets(text string, add addFunc) {
	findPEMKeys(text, add)
	findURLPasswords(text, add)
	findPasswords(text, add)
	runs(text, tokenClass, func(start, end int) {
		if end-start >= 16 {
			findTokens(text, start, end, add)
		}
	})
}

var (
	// pemBegin and pemEnd are the first and last lines of a PEM private
	// key (RSA, EC, DSA, OPENSSH, ENCRYPTED, PGP ...).
	pemBegin = regexp.MustCompile(`-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----`)
	pemEnd   = regexp.MustCompile(`-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----`)
	// pemBody is the bytes between them: base64, headers such as
	// Proc-Type: 4,ENCRYPTED, and line breaks, escaped (\n) as in JSON
	// or not.
	pemBody = newClass("+/=:, \t\r\n\\-", "azAZ09")
)

// maxPEMBody bounds the length of a key's body, four times that of an
// 8192-bit RSA key, so that a BEGIN line without an END costs little.
const maxPEMBody = 32 << 10

// findPEMKeys finds PEM private keys, from their BEGIN line to their END
// line, or to the end of their base64 lines when the END line is missing
// (a truncated paste is still a leak).
func findPEMKeys(text string, add addFunc) {
	for _, m := range pemBegin.FindAllStringIndex(text, -1) {
		body := m[1]
		for body < len(text) && body-m[1] < maxPEMBody && pemBody[text[body]] && !strings.HasPrefix(text[body:], "-----") {
			body++
		}
		if e := pemEnd.FindStringIndex(text[body:min(len(text), body+64)]); e != nil && e[0] == 0 {
			add(KindSecret, rankPEM, m[0], body+e[1])
			continue
		}
		add(KindSecret, rankPEM, m[0], m[1]+len(strings.TrimRight(text[m[1]:body], " \t\r\n")))
	}
}

// findURLPasswords finds the passwords of URLs such as
// postgres://app:s3cret@db/app (scheme://user:password@host), except
// placeholders.
func findURLPasswords(text string, add addFunc) {
	for i := strings.Index(text, "://"); i >= 0; {
		rest := text[i+3:]
		if n := strings.IndexAny(rest, "/?#@ \t\r\n\"'<>"); i > 0 && alnum[text[i-1]] && n > 0 && rest[n] == '@' {
			if c := strings.IndexByte(rest[:n], ':'); c >= 0 && !placeholder(rest[c+1:n]) {
				add(KindSecret, rankURLPassword, i+3+c+1, i+3+n)
			}
		}
		next := strings.Index(rest, "://")
		if next < 0 {
			break
		}
		i += 3 + next
	}
}

// passwordAssignment is a password given in text, from its keyword:
// password: x, PASSWORD=x, "password": "x", my password is x.
var passwordAssignment = regexp.MustCompile(`^(?i:password|passwd|pwd|passphrase)["']?` +
	`(?:[ \t]*(?::=|=>|[:=])[ \t]*|[ \t]+is[ \t]+)` +
	"(?:\"([^\"\\n]{1,200})\"|'([^'\\n]{1,200})'|([^\\s\"'`,;&)}\\]]{1,200}))")

// findPasswords finds the values assigned to a password keyword that
// look like passwords: six characters or more, with a digit, a symbol or
// a capital after the first letter, and not a placeholder or a reference
// to code (os.Getenv, ${DB_PASSWORD}, DB_PASSWORD, ****).
func findPasswords(text string, add addFunc) {
	for i := 0; i+3 <= len(text); i++ {
		if text[i]|0x20 != 'p' || !hasPrefixFold(text[i:], "pass") && !hasPrefixFold(text[i:], "pwd") {
			continue
		}
		m := passwordAssignment.FindStringSubmatchIndex(text[i:min(len(text), i+256)])
		if m == nil {
			continue
		}
		for g := 2; g < len(m); g += 2 {
			if m[g] < 0 {
				continue
			}
			start, end := i+m[g], i+m[g+1]
			if g == 6 { // unquoted: a sentence's punctuation is not part of it
				end = start + len(strings.TrimRight(text[start:end], ".,:;!?"))
			}
			if passwordLike(text[start:end]) {
				add(KindSecret, rankPassword, start, end)
			}
		}
		i += m[1] - 1
	}
}

func notLetter(r rune) bool { return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') }

// hasPrefixFold reports whether s starts with prefix, a lowercase ASCII
// word, in any case.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// codeReference is a name in code: os.Getenv, cfg.DBPassword, DB_PASSWORD.
var codeReference = regexp.MustCompile(`^(?:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+|[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)$`)

// passwordLike reports whether v, a value given as a password, is one,
// not code: a call or an index (os.Getenv(...), settings["password"]), a
// reference (cfg.DBPassword, DB_PASSWORD, GetSSLPassword), or a value
// with spaces around it ("password=" + password + ...).
func passwordLike(v string) bool {
	if len(v) < 6 || placeholder(v) || strings.ContainsAny(v, "([") || codeReference.MatchString(v) ||
		strings.TrimSpace(v) != v || identifierLike(v) && !strings.ContainsFunc(v, notLetter) {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; !isLower(c) && (i > 0 || !isUpper(c)) {
			return true // a digit, a symbol, or a capital after the first letter
		}
	}
	return false
}

// placeholder reports whether v stands for a secret rather than being
// one: ****, xxxxxx, <password>, ${PASSWORD}, $PASSWORD, %s, [REDACTED...],
// an escape sequence (\n), or a word such as "password" or "secret".
func placeholder(v string) bool {
	if v == "" || strings.IndexByte("$<{%[*#\\", v[0]) >= 0 || sameBytes(strings.ToLower(v)) {
		return true
	}
	switch strings.ToLower(v) {
	case "password", "passwd", "pass", "pwd", "secret", "required", "optional", "string",
		"null", "none", "nil", "true", "false", "undefined", "empty", "hidden", "redacted":
		return true
	}
	return false
}

// tokenClass is the bytes API keys and tokens are written with.
var tokenClass = newClass("+/_.~-", "azAZ09")

// tokenFormat is the API keys and tokens whose format tells what they
// are: Anthropic (sk-ant-) and OpenAI (sk-, sk-proj-) keys, AWS access key
// ids, GitHub tokens, Stripe secret and restricted keys, Google API keys,
// Slack tokens, and JWTs.
var tokenFormat = regexp.MustCompile(`sk-[A-Za-z0-9_-]{20,}` +
	`|(?:AKIA|ASIA)[A-Z0-9]{16}` +
	`|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}` +
	`|[rs]k_(?:live|test)_[A-Za-z0-9]{10,}` +
	`|AIza[A-Za-z0-9_-]{35}` +
	`|xox[abeprs]-[A-Za-z0-9-]{10,}` +
	`|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*`)

// findTokens finds the tokens in text[start:end], a run of token bytes: of
// a known format, or random-looking and near a word such as "token".
func findTokens(text string, start, end int, add addFunc) {
	if hasTokenPrefix(text[start:end]) {
		findKnownTokens(text, start, end, add)
	}
	if strings.IndexByte("/~.", text[start]) >= 0 {
		return // a path
	}
	token := strings.TrimRight(text[start:end], ".-~") // a full stop, a dash
	end = start + len(token)
	for end < len(text) && text[end] == '=' && end-start-len(token) < 2 {
		end++ // base64 padding
	}
	if len(token) == 40 && awsSecretLike(token) {
		if _, _, ok := keywordBefore(text, start, 4, awsWords); ok {
			add(KindSecret, rankAWSSecret, start, end)
			return
		}
	}
	if len(token) < 16 || !randomLike(token) {
		return
	}
	ws, we, ok := keywordBefore(text, start, 4, secretWords)
	if !ok || notSecret(text, ws, we) || strings.HasPrefix(token, "pk_") {
		return
	}
	if hexOnly(token) && !assigned(text[we:start]) {
		return // a hash or a commit id, unless assigned to the keyword
	}
	add(KindSecret, rankKeyedToken, start, end)
}

// tokenPrefixes are the beginnings of the matches of tokenFormat: a run
// holding none is not searched.
var tokenPrefixes = []string{"sk-", "AKIA", "ASIA", "gh", "k_live_", "k_test_", "AIza", "xox", "eyJ"}

func hasTokenPrefix(run string) bool {
	for _, p := range tokenPrefixes {
		if strings.Contains(run, p) {
			return true
		}
	}
	return false
}

// findKnownTokens finds the tokens of a known format in text[start:end].
func findKnownTokens(text string, start, end int, add addFunc) {
	for _, m := range tokenFormat.FindAllStringIndex(text[start:end], -1) {
		s, e := start+m[0], start+m[1]
		if (s == 0 || !alnum[text[s-1]]) && (e == len(text) || !alnum[text[e]]) && knownToken(text[s:e]) {
			add(KindSecret, rankToken, s, e)
		}
	}
}

// knownToken reports whether m, a match of tokenFormat, is a token rather
// than a name that happens to start the same way.
func knownToken(m string) bool {
	switch {
	case strings.HasPrefix(m, "eyJ"):
		return jwtHeader(m[:strings.IndexByte(m, '.')])
	case strings.HasPrefix(m, "sk-"):
		return strings.ContainsAny(m, "0123456789") && !identifierLike(m[3:])
	}
	return true
}

// jwtHeader reports whether s, base64url, is a JOSE header: a JSON object
// with "alg" or "typ".
func jwtHeader(s string) bool {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return false
	}
	var header map[string]any
	if json.Unmarshal(b, &header) != nil {
		return false
	}
	_, alg := header["alg"]
	_, typ := header["typ"]
	return alg || typ
}

// awsSecretLike reports whether s, 40 bytes, reads as an AWS secret access
// key: base64 with capitals, small letters and digits.
func awsSecretLike(s string) bool {
	var upper, lower, digit bool
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case isUpper(c):
			upper = true
		case isLower(c):
			lower = true
		case isDigit(c):
			digit = true
		case c != '+' && c != '/':
			return false
		}
	}
	return upper && lower && digit
}

// uuid is a UUID, which is an identifier, never a secret here.
var uuid = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)

// randomLike reports whether token looks randomly generated: letters and
// digits, or small and capital letters, not a UUID, not a name made of
// words (getUserById2, release-2024-notes), and not repetitive.
func randomLike(token string) bool {
	var upper, lower, digit bool
	for i := 0; i < len(token); i++ {
		c := token[i]
		upper = upper || isUpper(c)
		lower = lower || isLower(c)
		digit = digit || isDigit(c)
	}
	if !(upper || lower) || !digit && !(upper && lower) {
		return false
	}
	return !uuid.MatchString(token) && !identifierLike(token) && entropy(token) >= 3
}

// hexOnly reports whether s is hexadecimal digits of one case.
func hexOnly(s string) bool {
	return strings.Trim(s, "0123456789abcdef") == "" || strings.Trim(s, "0123456789ABCDEF") == ""
}

// assignment is what goes between a keyword and the value assigned to it.
var assignment = regexp.MustCompile(`^["']?[ \t]*(?::=|=>|[:=])[ \t]*["']?$`)

func assigned(gap string) bool { return assignment.MatchString(gap) }

// notSecretWords are the parts of a keyword's word, or the word before
// it, that make what follows not a secret: a public key, the id or name
// of a key (ExternalKeyID, key_name), a password hint.
var notSecretWords = wordSet("public id ids name names hint type")

// notSecret reports whether the keyword word text[start:end] speaks of
// something that is no secret.
func notSecret(text string, start, end int) bool {
	if hasWord(text[start:end], notSecretWords) {
		return true
	}
	ps, pe, ok := wordBefore(text, start, max(0, start-lookbackBytes))
	return ok && strings.EqualFold(text[ps:pe], "public")
}
