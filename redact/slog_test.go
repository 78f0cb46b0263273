package redact_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/agentpg/agentpg/redact"
)

// jsonLogger returns a logger that redacts into a JSON handler writing to
// the returned buffer.
func jsonLogger() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(redact.NewHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))), &buf
}

// logged decodes the one JSON record in buf.
func logged(t *testing.T, buf *bytes.Buffer) map[string]any {
	t.Helper()
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("decoding %q: %v", buf, err)
	}
	return rec
}

type customer struct {
	Name  string
	Email string
}

type account struct{ iban string }

func (a account) String() string { return "account " + a.iban }

type secretValue struct{ token string }

func (s secretValue) LogValue() slog.Value { return slog.StringValue(s.token) }

func TestHandlerRedactsRecords(t *testing.T) {
	t.Parallel()
	logger, buf := jsonLogger()
	logger.Info("mail from bob@example.com",
		"phone", "+44 20 7946 0958",
		"token", "7f3kQ9zLmP2xR8vNc4Tb", // a secret only after its key
		"err", fmt.Errorf("charging 4111 1111 1111 1111: %w", errors.New("declined")),
		"account", account{"GB82 WEST 1234 5698 7654 32"},
		"card", int64(4111111111111111),
		"body", []byte("ssn 123-45-6789"),
		"customer", customer{Name: "Ada", Email: "ada@example.com"},
		"auth", secretValue{"sk-ant-api03-PtYgjmUhBel31iEl2hpChYgCfrL1spNxnyVmihA_AA"},
		slog.Group("request", "ip", "203.0.113.9", "path", "/v1/items"),
		"count", 3, "ok", true, "elapsed", time.Second, "version", "1.2.3.4 on 2026-12-01",
	)
	rec := logged(t, buf)
	want := map[string]any{
		"msg":      "mail from [REDACTED:email]",
		"phone":    "[REDACTED:phone]",
		"token":    "[REDACTED:secret]",
		"err":      "charging [REDACTED:card]: declined",
		"account":  "account [REDACTED:iban]",
		"card":     "[REDACTED:card]",
		"body":     "ssn [REDACTED:ssn]",
		"customer": `{"Name":"Ada","Email":"[REDACTED:email]"}`,
		"auth":     "[REDACTED:secret]",
		"request":  map[string]any{"ip": "[REDACTED:ip]", "path": "/v1/items"},
		"count":    3.0, "ok": true, "elapsed": 1e9, "version": "1.2.3.4 on 2026-12-01",
	}
	for k, v := range want {
		if fmt.Sprint(rec[k]) != fmt.Sprint(v) {
			t.Errorf("%s = %#v, want %#v", k, rec[k], v)
		}
	}
	for _, leak := range []string{"bob@", "7946", "7f3kQ9", "4111", "GB82", "123-45", "ada@", "sk-ant", "203.0.113"} {
		if strings.Contains(buf.String(), leak) {
			t.Errorf("the log holds %q: %s", leak, buf)
		}
	}
}

// user's String leaves out its email address, which a JSON handler would
// show.
type user struct{ Name, Email string }

func (u user) String() string { return "user " + u.Name }

func TestHandlerStringerFields(t *testing.T) {
	t.Parallel()
	logger, buf := jsonLogger()
	logger.Info("login", "user", user{Name: "Ada", Email: "ada@example.com"}, "other", user{Name: "Bob"})
	rec := logged(t, buf)
	if rec["user"] != "user Ada" {
		t.Errorf("user = %#v, want its String", rec["user"])
	}
	if o, ok := rec["other"].(map[string]any); !ok || o["Name"] != "Bob" {
		t.Errorf("other = %#v, want the object as logged", rec["other"])
	}
}

// A clean value keeps its type; the key given as context redacts nothing
// of itself.
func TestHandlerKeepsCleanValues(t *testing.T) {
	t.Parallel()
	logger, buf := jsonLogger()
	logger.Info("run finished", "customer", customer{Name: "Ada"}, "err", errors.New("timeout"), "password_set", true,
		"key", "session-cache", "tenant_id", "acme")
	rec := logged(t, buf)
	if c, ok := rec["customer"].(map[string]any); !ok || c["Name"] != "Ada" {
		t.Errorf("customer = %#v, want the object as logged", rec["customer"])
	}
	if rec["err"] != "timeout" || rec["password_set"] != true || rec["key"] != "session-cache" || rec["msg"] != "run finished" {
		t.Errorf("record = %v", rec)
	}
}

func TestHandlerWithAttrsAndGroups(t *testing.T) {
	t.Parallel()
	logger, buf := jsonLogger()
	logger.With("user", "bob@example.com").WithGroup("db").With("password", "hunter22").
		Info("connected", "url", "postgres://app:s3cr3tPw9@db.internal/app")
	rec := logged(t, buf)
	db, _ := rec["db"].(map[string]any)
	if rec["user"] != "[REDACTED:email]" || db["password"] != "[REDACTED:secret]" ||
		db["url"] != "postgres://app:[REDACTED:secret]@db.internal/app" {
		t.Errorf("record = %v", rec)
	}
}

func TestHandlerLevels(t *testing.T) {
	t.Parallel()
	logger, buf := jsonLogger()
	if logger.Enabled(context.Background(), slog.LevelDebug) {
		t.Error("debug enabled through a handler at info")
	}
	logger.Debug("bob@example.com")
	if buf.Len() != 0 {
		t.Errorf("a debug record was written: %s", buf)
	}
}
