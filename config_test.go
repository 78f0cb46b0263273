package agentpg_test

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/tool"
)

// A model the context-window table does not know is logged once, unless
// Config.ContextWindow gives its window.
func TestUnknownModelIsLoggedOnce(t *testing.T) {
	t.Parallel()
	db := agentpgtest.DB(t)
	client := agentpgtest.NewServer(t).Client()
	var logs strings.Builder
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	a, err := agentpg.New(agentpg.Config{DB: db, Client: client, Model: "claude-unknown-9", Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"one", "two"} {
		if _, err := a.NewSession(ctx(t), "acme", id, &agentpg.SessionOptions{Model: "claude-other-1"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := agentpg.New(agentpg.Config{DB: db, Client: client, Model: "claude-sonnet-5-5", Logger: logger}); err != nil {
		t.Fatal(err)
	}
	if _, err := agentpg.New(agentpg.Config{DB: db, Client: client, Model: "claude-set-1", ContextWindow: 50_000, Logger: logger}); err != nil {
		t.Fatal(err)
	}
	got := logs.String()
	if strings.Count(got, "model=claude-unknown-9") != 1 || strings.Count(got, "model=claude-other-1") != 1 ||
		strings.Count(got, "level=WARN") != 2 || !strings.Contains(got, "Config.ContextWindow") {
		t.Fatalf("logs:\n%s", got)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	db := agentpgtest.DB(t)
	client := agentpgtest.NewServer(t).Client()
	valid := agentpg.Config{DB: db, Client: client, Model: "claude-sonnet-5-5"}
	cases := map[string]struct {
		change func(*agentpg.Config)
		want   string
	}{
		"no DB":             {func(c *agentpg.Config) { c.DB = nil }, "Config.DB is required"},
		"no client":         {func(c *agentpg.Config) { c.Client = nil }, "Config.Client is required"},
		"no model":          {func(c *agentpg.Config) { c.Model = " " }, "Config.Model is required"},
		"bad schema":        {func(c *agentpg.Config) { c.Schema = `x"; DROP TABLE y; --` }, "Config.Schema"},
		"negative tokens":   {func(c *agentpg.Config) { c.MaxTokens = -1 }, "Config.MaxTokens must be positive"},
		"small budget":      {func(c *agentpg.Config) { c.Thinking = &agentpg.ThinkingConfig{BudgetTokens: 100} }, "Config.Thinking.BudgetTokens"},
		"budget over max":   {func(c *agentpg.Config) { c.Thinking = &agentpg.ThinkingConfig{BudgetTokens: 5000} }, "below MaxTokens (4096)"},
		"short lease":       {func(c *agentpg.Config) { c.LeaseTTL = time.Millisecond }, "Config.LeaseTTL"},
		"negative prompt":   {func(c *agentpg.Config) { c.MaxPromptBytes = -5 }, "Config.MaxPromptBytes"},
		"zero pool":         {func(c *agentpg.Config) { c.DB = &pgxpool.Pool{} }, "Config.DB is not a pool from pgxpool.New"},
		"typed nil tool":    {func(c *agentpg.Config) { c.Tools = []tool.Tool{(*rawTool)(nil)} }, "nil tool (*agentpg_test.rawTool)"},
		"negative attempts": {func(c *agentpg.Config) { c.Retry.MaxAttempts = -1 }, "Config.Retry.MaxAttempts must be positive, got -1"},
		"negative backoff":  {func(c *agentpg.Config) { c.Retry.InitialBackoff = -time.Second }, "Config.Retry.InitialBackoff must be positive"},
		"backoff over max": {func(c *agentpg.Config) {
			c.Retry = agentpg.RetryConfig{InitialBackoff: time.Second, MaxBackoff: time.Millisecond}
		}, "Config.Retry.MaxBackoff must be at least Retry.InitialBackoff (1s), got 1ms"},
		"negative budget": {func(c *agentpg.Config) { c.Retry.MaxElapsed = -time.Minute }, "Config.Retry.MaxElapsed must be positive"},
	}
	for name, tc := range cases {
		cfg := valid
		tc.change(&cfg)
		_, err := agentpg.New(cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to name %q", name, err, tc.want)
		}
	}
	// Every problem is reported at once.
	_, err := agentpg.New(agentpg.Config{})
	for _, field := range []string{"DB", "Client", "Model"} {
		if err == nil || !strings.Contains(err.Error(), "Config."+field) {
			t.Errorf("empty config: err = %v, want it to name %s", err, field)
		}
	}
	if _, err := agentpg.New(valid); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}

// Several processes migrating one schema at once take turns; the result is
// the same as one migration, and migrating again changes nothing.
func TestMigrateConcurrentlyAndIdempotently(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *agentpg.Config) { c.Schema = "agentpg_custom" })
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- b.another(t).Migrate(ctx(t))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	}
	if err := b.agent.Migrate(ctx(t)); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	var applied, distinct int
	err := b.db.QueryRow(ctx(t), `SELECT count(*), count(DISTINCT version) FROM agentpg_custom.schema_migrations`).Scan(&applied, &distinct)
	if err != nil || applied != distinct || applied == 0 {
		t.Fatalf("schema_migrations: %d rows, %d versions, %v", applied, distinct, err)
	}
	// The custom schema is fully usable.
	sess := b.session(t, "acme", "user-1")
	if _, err := sess.Run(ctx(t), "hello"); err != nil {
		t.Fatal(err)
	}
	var inCustom int
	if err := b.db.QueryRow(ctx(t), `SELECT count(*) FROM agentpg_custom.messages`).Scan(&inCustom); err != nil || inCustom != 2 {
		t.Fatalf("messages in custom schema: %d, %v", inCustom, err)
	}
}
