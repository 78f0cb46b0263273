package agentpg_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
)

// logSecrets are values that must never reach a log line: an API key, an
// AWS key id, a card number, an email address.
var logSecrets = []string{
	"sk-ant-api03-Zx8Kq2LmN4pR6sT8vW0yA2cE4gI6kM8oQ0sU2wY4aC6eG8iK0mO2qS4uW6yA8cE0gI2kM4oQ6sU8wY0aC2eG4iK6mO8qS0uW2yA4cE6gI8kM",
	"AKIAIOSFODNN7EXAMPLE",
	"4111 1111 1111 1111",
	"alice.smith@example.com",
}

// syncBuffer is a bytes.Buffer for a logger of several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logsOfFailures runs a turn whose model call fails, with an API error
// message holding the secrets, is retried and fails again, so that the run
// fails; and returns the debug log.
func logsOfFailures(t *testing.T, disable bool) string {
	t.Helper()
	logs := &syncBuffer{}
	b := setup(t, func(c *agentpg.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.DisableLogRedaction = disable
		c.Retry = agentpg.RetryConfig{MaxAttempts: 2, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}
	})
	sess := b.session(t, "acme", "user-1")
	upstream := "upstream rejected key " + strings.Join(logSecrets, ", ")
	b.model.Push(
		agentpgtest.Reply{Status: 500, ErrorMessage: upstream},
		agentpgtest.Reply{Status: 529, ErrorMessage: upstream},
	)
	if _, err := sess.Run(ctx(t), "pay"); err == nil {
		t.Fatal("the run did not fail")
	}
	return logs.String()
}

// With the default Config, no secret reaches the log, whatever fails: they
// are redacted. DisableLogRedaction shows the same turns would log them.
func TestLogsAreRedacted(t *testing.T) {
	t.Parallel()
	redacted := logsOfFailures(t, false)
	for _, secret := range logSecrets {
		if strings.Contains(redacted, secret) {
			t.Errorf("the log holds %q:\n%s", secret, redacted)
		}
	}
	if !strings.Contains(redacted, "[REDACTED:") || !strings.Contains(redacted, "run failed") {
		t.Fatalf("the log lacks the redacted failure:\n%s", redacted)
	}
	raw := logsOfFailures(t, true)
	for _, secret := range logSecrets {
		if !strings.Contains(raw, secret) {
			t.Errorf("without redaction, the log does not hold %q: the test logs too little\n%s", secret, raw)
		}
	}
}
