package agentpg_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
)

// After a failed model call the session holds no partial answer and the next
// run sends a valid conversation without the failed exchange. Retries are
// off here, so that each failure fails its run; TestRetryBudgetSpent fails
// runs after retries.
func TestModelFailuresLeaveSessionUsable(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		reply agentpgtest.Reply
		want  error
	}{
		"overloaded":   {agentpgtest.Overloaded(), agentpg.ErrOverloaded},
		"rate limited": {agentpgtest.RateLimited(), agentpg.ErrRateLimited},
		"cut stream": {agentpgtest.Reply{
			Content:  []agentpgtest.Block{agentpgtest.TextBlock(strings.Repeat("partial answer ", 20))},
			CutAfter: 6,
		}, agentpg.ErrIncompleteResponse},
		"error mid-stream": {agentpgtest.Reply{
			Content:     []agentpgtest.Block{agentpgtest.TextBlock(strings.Repeat("partial answer ", 20))},
			StreamError: "overloaded_error",
		}, agentpg.ErrOverloaded},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, noRetries)
			sess := b.session(t, "acme", "user-1")
			b.model.Push(agentpgtest.Text("first answer"), tc.reply, agentpgtest.Text("recovered"))
			if _, err := sess.Run(ctx(t), "first"); err != nil {
				t.Fatal(err)
			}

			var deltas strings.Builder
			_, err := sess.RunWithOptions(ctx(t), "doomed", agentpg.RunOptions{OnEvent: func(e agentpg.Event) { deltas.WriteString(e.Text) }})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}

			if _, err := sess.Run(ctx(t), "again"); err != nil {
				t.Fatalf("run after failure: %v", err)
			}
			roles, texts := conversation(t, sess)
			// The failed prompt is kept for the record; its partial answer is
			// not stored at all.
			wantTexts := []string{"first", "first answer", "doomed", "again", "recovered"}
			if !slices.Equal(texts, wantTexts) {
				t.Fatalf("stored %q %q, want texts %q", roles, texts, wantTexts)
			}
			if got := runStatuses(t, sess); !slices.Equal(got, []string{"completed", "failed", "completed"}) {
				t.Fatalf("run statuses %q", got)
			}
			last := b.model.Requests()[len(b.model.Requests())-1]
			var sent []string
			for _, m := range last.Messages {
				sent = append(sent, m.Content[0].Text)
			}
			if !slices.Equal(sent, []string{"first", "first answer", "again"}) {
				t.Fatalf("after the failure the model got %q", sent)
			}
		})
	}
}

func TestAPIErrorsAreTypedAndCarryNoKey(t *testing.T) {
	t.Parallel()
	const key = "sk-ant-api03-very-secret-key"
	b := setup(t, noRetries, func(c *agentpg.Config) {
		model := agentpgtest.NewServer(t)
		c.Client = model.Client(option.WithAPIKey(key))
		model.Push(agentpgtest.Overloaded())
	})
	sess := b.session(t, "acme", "user-1")
	_, err := sess.Run(ctx(t), "hello")
	var apiErr *agentpg.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 529 || apiErr.Type != "overloaded_error" || apiErr.RequestID == "" {
		t.Fatalf("err = %#v", err)
	}
	var sdkErr *anthropic.Error
	if !errors.As(err, &sdkErr) || sdkErr.StatusCode != 529 {
		t.Fatalf("the SDK's error is not reachable: %v", err)
	}
	if strings.Contains(err.Error(), key) || strings.Contains(err.Error(), "very-secret") {
		t.Fatalf("error leaks the API key: %v", err)
	}
	runsPage, _ := sess.Runs(ctx(t), agentpg.ListOptions{Limit: agentpg.MaxPageSize})
	runs := runsPage.Items
	if len(runs) != 1 || strings.Contains(runs[0].Error, key) || !strings.Contains(runs[0].Error, "529") {
		t.Fatalf("stored failure reason: %+v", runs)
	}
}

type ctxKey string

var errPII = errors.New("PII detected - request blocked")

func TestBeforeMessageHookBlocksTurn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var sawUser []string
	b.agent.OnBeforeMessage(func(ctx context.Context, messages []any) error {
		sawUser = append(sawUser, ctx.Value(ctxKey("user_id")).(string))
		for _, m := range messages {
			if strings.Contains(m.(agentpg.Message).Text(), "SSN") {
				return errPII
			}
		}
		return nil
	})
	sess := b.session(t, "acme", "user-1")
	callCtx := context.WithValue(ctx(t), ctxKey("user_id"), "u-42")

	_, err := sess.Run(callCtx, "my SSN is 123-45-6789")
	if !errors.Is(err, errPII) || !errors.Is(err, agentpg.ErrHookRejected) {
		t.Fatalf("err = %v, want the hook's error", err)
	}
	if n := len(b.model.Requests()); n != 0 {
		t.Fatalf("model was called %d times", n)
	}
	msgsPage, err := sess.Messages(ctx(t), agentpg.ListOptions{Limit: agentpg.MaxPageSize})
	msgs := msgsPage.Items
	if err != nil || len(msgs) != 0 {
		t.Fatalf("the rejected prompt was kept: %v %v", msgs, err)
	}
	if got := runStatuses(t, sess); !slices.Equal(got, []string{"failed"}) {
		t.Fatalf("run statuses %q", got)
	}

	if _, err := sess.Run(callCtx, "what's the weather?"); err != nil {
		t.Fatalf("next run: %v", err)
	}
	if !slices.Equal(sawUser, []string{"u-42", "u-42"}) {
		t.Fatalf("hook saw user ids %q", sawUser)
	}
	if roles, _ := conversation(t, sess); !slices.Equal(roles, []string{"user", "assistant"}) {
		t.Fatalf("stored %q", roles)
	}
}

func TestAfterMessageHook(t *testing.T) {
	t.Parallel()
	b := setup(t)
	errBadAnswer := errors.New("answer rejected")
	b.agent.OnAfterMessage(func(ctx context.Context, response any) error {
		if strings.Contains(response.(*anthropic.Message).Content[0].Text, "forbidden") {
			return errBadAnswer
		}
		return nil
	})
	sess := b.session(t, "acme", "user-1")
	b.model.Push(agentpgtest.Text("a forbidden answer"), agentpgtest.Text("a fine answer"))
	if _, err := sess.Run(ctx(t), "q1"); !errors.Is(err, errBadAnswer) {
		t.Fatalf("err = %v", err)
	}
	res, err := sess.Run(ctx(t), "q2")
	if err != nil || res.Text != "a fine answer" {
		t.Fatalf("%v %v", res, err)
	}
	if _, texts := conversation(t, sess); slices.Contains(texts, "a forbidden answer") {
		t.Fatalf("the rejected answer was stored: %q", texts)
	}
}

func TestStopReasons(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		reply      agentpgtest.Reply
		wantErr    error
		wantStored bool // the exchange is part of the conversation afterwards
	}{
		"max_tokens with text": {agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("cut sh")}, StopReason: "max_tokens"}, nil, true},
		"max_tokens mid tool call": {agentpgtest.Reply{Content: []agentpgtest.Block{
			agentpgtest.TextBlock("let me"), agentpgtest.ToolUse("toolu_1", "search", map[string]any{}),
		}, StopReason: "max_tokens"}, agentpg.ErrMaxTokens, false},
		"refusal":        {agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("I can't")}, StopReason: "refusal"}, agentpg.ErrRefused, false},
		"pause_turn":     {agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("working")}, StopReason: "pause_turn"}, nil, true},
		"tool_use":       {agentpgtest.Blocks(agentpgtest.ToolUse("toolu_1", "search", map[string]any{"q": "x"})), agentpg.ErrNoTools, false},
		"context window": {agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("...")}, StopReason: "model_context_window_exceeded"}, agentpg.ErrContextWindowExceeded, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			sess := b.session(t, "acme", "user-1")
			b.model.Push(tc.reply, agentpgtest.Text("next"))
			res, err := sess.Run(ctx(t), "go")
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil && res.StopReason != tc.reply.StopReason {
				t.Fatalf("stop reason %q", res.StopReason)
			}
			if _, err := sess.Run(ctx(t), "and then"); err != nil {
				t.Fatalf("next run: %v", err)
			}
			last := b.model.Requests()[1]
			if got := len(last.Messages) == 3; got != tc.wantStored {
				t.Fatalf("next request has %d messages; exchange kept = %v, want %v", len(last.Messages), got, tc.wantStored)
			}
		})
	}
}

// No transaction stays open while the model is called.
func TestNoTransactionOpenDuringModelCall(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sess := b.session(t, "acme", "user-1")
	b.model.Push(agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("slow")}, Delay: 500 * time.Millisecond})
	done := make(chan error, 1)
	go func() { _, err := sess.Run(ctx(t), "q"); done <- err }()
	waitFor(t, func() bool { return len(b.model.Requests()) == 1 })

	var open int
	err := b.db.QueryRow(ctx(t), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL`).Scan(&open)
	if err != nil {
		t.Fatal(err)
	}
	if open != 0 {
		t.Fatalf("%d transactions open during the model call", open)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A database that cannot be reached gives a clear error that carries
// neither its password nor SQL.
func TestDatabaseErrorsCarryNoSecrets(t *testing.T) {
	t.Parallel()
	const password = "hunter2-db-secret"
	pool, err := pgxpool.New(ctx(t), "postgres://root:"+password+"@127.0.0.1:1/test?connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	agent, err := agentpg.New(agentpg.Config{DB: pool, Client: agentpgtest.NewServer(t).Client(), Model: "claude-sonnet-5-5"})
	if err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func() error{
		"migrate":     func() error { return agent.Migrate(ctx(t)) },
		"new session": func() error { _, err := agent.NewSession(ctx(t), "acme", "u", nil); return err },
		"load":        func() error { _, err := agent.LoadSessionByIdentifier(ctx(t), "acme", "u"); return err },
	} {
		err := call()
		if err == nil {
			t.Fatalf("%s: no error from an unreachable database", name)
		}
		msg := err.Error()
		if strings.Contains(msg, password) || strings.Contains(msg, "SELECT") || strings.Contains(msg, "INSERT") {
			t.Errorf("%s: error leaks a secret or SQL: %v", name, msg)
		}
		if !strings.HasPrefix(msg, "agentpg: ") {
			t.Errorf("%s: error %q does not say where it comes from", name, msg)
		}
	}
}

// Logs carry the run's identifiers and never the API key, retries'
// included.
func TestLogsIdentifyRunsAndHideKeys(t *testing.T) {
	t.Parallel()
	const key = "sk-ant-api03-logged-secret"
	var logs strings.Builder
	var mu sync.Mutex
	b := setup(t, func(c *agentpg.Config) {
		model := agentpgtest.NewServer(t)
		model.Push(agentpgtest.Overloaded(), agentpgtest.Overloaded())
		c.Client = model.Client(option.WithAPIKey(key))
		c.Logger = slog.New(slog.NewJSONHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.Retry = agentpg.RetryConfig{MaxAttempts: 2, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}
	})
	sess := b.session(t, "acme", "user-1")
	_, err := sess.Run(ctx(t), "hello")
	if err == nil {
		t.Fatal("the overloaded run succeeded")
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if !strings.Contains(out, `"msg":"run failed"`) || !strings.Contains(out, `"session_id":"`+sess.ID+`"`) ||
		!strings.Contains(out, `"tenant_id":"acme"`) || !strings.Contains(out, `"run_id":"`) {
		t.Fatalf("logs lack the run's identifiers:\n%s", out)
	}
	var retry string
	for line := range strings.Lines(out) {
		if strings.Contains(line, `"msg":"retrying the model call"`) {
			retry = line
		}
	}
	for _, want := range []string{`"level":"WARN"`, `"session_id":"` + sess.ID + `"`, `"run_id":"`, `"attempt":2`, `"status":529`, `"delay":`} {
		if !strings.Contains(retry, want) {
			t.Fatalf("the retry's log line lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "logged-secret") {
		t.Fatalf("logs leak the API key:\n%s", out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *strings.Builder
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
