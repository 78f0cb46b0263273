package agentpg_test

import (
	"errors"
	"testing"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
)

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.session(t, "tenant-a", "user-1")
	// Identifiers are unique per tenant, not globally.
	other := b.session(t, "tenant-b", "user-1")
	if a.ID == other.ID {
		t.Fatal("two tenants share a session")
	}
	if _, err := b.agent.NewSession(ctx(t), "tenant-a", "user-1", nil); !errors.Is(err, agentpg.ErrSessionExists) {
		t.Fatalf("duplicate identifier: err = %v, want ErrSessionExists", err)
	}

	b.model.Push(agentpgtest.Text("secret of tenant a"))
	if _, err := a.Run(ctx(t), "remember: the code is 1234"); err != nil {
		t.Fatal(err)
	}

	for name, load := range map[string]func() (*agentpg.Session, error){
		"by id":            func() (*agentpg.Session, error) { return b.agent.LoadSession(ctx(t), "tenant-b", a.ID) },
		"by id, no tenant": func() (*agentpg.Session, error) { return b.agent.LoadSession(ctx(t), "tenant-c", a.ID) },
		"malformed id":     func() (*agentpg.Session, error) { return b.agent.LoadSession(ctx(t), "tenant-a", "1' OR '1'='1") },
		"by identifier":    func() (*agentpg.Session, error) { return b.agent.LoadSessionByIdentifier(ctx(t), "tenant-c", "user-1") },
		"identifier as sql": func() (*agentpg.Session, error) {
			return b.agent.LoadSessionByIdentifier(ctx(t), "x' OR 1=1 --", "user-1")
		},
	} {
		if sess, err := load(); !errors.Is(err, agentpg.ErrSessionNotFound) {
			t.Errorf("%s: got %v, %v; want ErrSessionNotFound", name, sess, err)
		}
	}
	got, err := b.agent.LoadSessionByIdentifier(ctx(t), "tenant-b", "user-1")
	if err != nil || got.ID != other.ID || got.TenantID != "tenant-b" {
		t.Fatalf("tenant-b's own session: %+v, %v", got, err)
	}
	if err := b.agent.DeleteSession(ctx(t), "tenant-b", a.ID); !errors.Is(err, agentpg.ErrSessionNotFound) {
		t.Fatalf("cross-tenant delete: %v", err)
	}
	// A child session cannot hang under another tenant's session.
	if _, err := b.agent.NewSession(ctx(t), "tenant-b", "child", &agentpg.SessionOptions{ParentID: a.ID}); !errors.Is(err, agentpg.ErrSessionNotFound) {
		t.Fatalf("cross-tenant parent: %v", err)
	}
	listPage, err := b.agent.ListSessions(ctx(t), "tenant-b", agentpg.ListOptions{})
	list := listPage.Items
	if err != nil || len(list) != 1 || list[0].ID != other.ID {
		t.Fatalf("tenant-b lists %v, %v", list, err)
	}
	// Tenant a's conversation is where it was.
	if roles, _ := conversation(t, a); len(roles) != 2 {
		t.Fatalf("tenant a has %d messages", len(roles))
	}
	if roles, _ := conversation(t, other); len(roles) != 0 {
		t.Fatalf("tenant b sees %d messages", len(roles))
	}
}

func TestSessionOptionsAndDelete(t *testing.T) {
	t.Parallel()
	b := setup(t)
	parent := b.session(t, "acme", "parent")
	child, err := b.agent.NewSession(ctx(t), "acme", "child", &agentpg.SessionOptions{
		ParentID:     parent.ID,
		Metadata:     map[string]any{"channel": "web"},
		SystemPrompt: "You are the child.",
		Model:        "claude-haiku-4-5",
	})
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := b.agent.LoadSession(ctx(t), "acme", child.ID)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.ParentID != parent.ID || loaded.Metadata["channel"] != "web" {
		t.Fatalf("loaded %+v", loaded)
	}
	if _, err := loaded.Run(ctx(t), "hello"); err != nil {
		t.Fatal(err)
	}
	req := b.model.Requests()[0]
	if req.System != "You are the child." || req.Model != "claude-haiku-4-5" {
		t.Fatalf("overrides not sent: system %q model %q", req.System, req.Model)
	}

	if err := b.agent.DeleteSession(ctx(t), "acme", child.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.agent.LoadSession(ctx(t), "acme", child.ID); !errors.Is(err, agentpg.ErrSessionNotFound) {
		t.Fatalf("deleted session loads: %v", err)
	}
	if _, err := loaded.Run(ctx(t), "still there?"); !errors.Is(err, agentpg.ErrSessionNotFound) {
		t.Fatalf("run on a deleted session: %v", err)
	}
}

func TestInvalidArguments(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *agentpg.Config) { c.MaxPromptBytes = 1000 })
	sess := b.session(t, "acme", "user-1")
	for name, prompt := range map[string]string{
		"empty":     "",
		"blank":     " \n\t ",
		"oversized": string(make([]byte, 1001)),
		"not utf-8": "\xff\xfe",
	} {
		if _, err := sess.Run(ctx(t), prompt); !errors.Is(err, agentpg.ErrInvalidArgument) {
			t.Errorf("%s prompt: err = %v, want ErrInvalidArgument", name, err)
		}
	}
	if _, err := b.agent.NewSession(ctx(t), "", "x", nil); !errors.Is(err, agentpg.ErrInvalidArgument) {
		t.Errorf("empty tenant: %v", err)
	}
	if _, err := b.agent.NewSession(ctx(t), "acme", " ", nil); !errors.Is(err, agentpg.ErrInvalidArgument) {
		t.Errorf("blank identifier: %v", err)
	}
	if roles, _ := conversation(t, sess); len(roles) != 0 || len(b.model.Requests()) != 0 {
		t.Fatalf("refused prompts left %d messages and %d model requests", len(roles), len(b.model.Requests()))
	}
}

// A session created in the caller's transaction exists once it commits,
// and not at all after a rollback; MigrateTx migrates in it too.
func TestNewSessionTxAndMigrateTx(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *agentpg.Config) { c.Schema = "agentpg_tx" })
	tx, err := b.db.Begin(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.agent.MigrateTx(ctx(t), tx); err != nil {
		t.Fatal(err)
	}
	sess, err := b.agent.NewSessionTx(ctx(t), tx, "acme", "kept", nil)
	if err != nil {
		t.Fatal(err)
	}
	var visible bool
	if err := b.db.QueryRow(ctx(t), `SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'agentpg_tx')`).Scan(&visible); err != nil || visible {
		t.Fatalf("the uncommitted migration is visible outside its transaction: %v, %v", visible, err)
	}
	if err := tx.Commit(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Run(ctx(t), "hello"); err != nil {
		t.Fatal(err)
	}

	tx, err = b.db.Begin(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	rolledBack, err := b.agent.NewSessionTx(ctx(t), tx, "acme", "gone", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := rolledBack.Run(ctx(t), "hello"); !errors.Is(err, agentpg.ErrSessionNotFound) {
		t.Fatalf("run on a rolled-back session: %v, want ErrSessionNotFound", err)
	}
	if _, err := b.agent.NewSessionTx(ctx(t), nil, "acme", "x", nil); !errors.Is(err, agentpg.ErrInvalidArgument) {
		t.Fatalf("nil transaction: %v", err)
	}
	if err := b.agent.MigrateTx(ctx(t), nil); !errors.Is(err, agentpg.ErrInvalidArgument) {
		t.Fatalf("nil transaction: %v", err)
	}
}
