package agentpg_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
)

// bundle is what most tests need: an agent on a database of the test's own,
// talking to a scripted model server through the real SDK client.
type bundle struct {
	agent *agentpg.Agent
	model *agentpgtest.Server
	db    *pgxpool.Pool
	cfg   agentpg.Config
}

// setup returns a bundle; configure, if given, adjusts the Config.
func setup(t *testing.T, configure ...func(*agentpg.Config)) *bundle {
	t.Helper()
	return setupOn(t, agentpgtest.DB(t), configure...)
}

// setupOn returns a bundle whose agent uses db.
func setupOn(t *testing.T, db *pgxpool.Pool, configure ...func(*agentpg.Config)) *bundle {
	t.Helper()
	model := agentpgtest.NewServer(t)
	cfg := agentpg.Config{
		DB:           db,
		Client:       model.Client(),
		Model:        "claude-sonnet-5-5",
		SystemPrompt: "You are a test agent.",
	}
	for _, c := range configure {
		c(&cfg)
	}
	agent, err := agentpg.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &bundle{agent: agent, model: model, db: db, cfg: cfg}
}

// another returns a second agent on the same database and model, as a second
// process would have; configure, if given, adjusts its Config.
func (b *bundle) another(t *testing.T, configure ...func(*agentpg.Config)) *agentpg.Agent {
	t.Helper()
	cfg := b.cfg
	for _, c := range configure {
		c(&cfg)
	}
	agent, err := agentpg.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return agent
}

func (b *bundle) session(t *testing.T, tenantID, identifier string) *agentpg.Session {
	t.Helper()
	sess, err := b.agent.NewSession(ctx(t), tenantID, identifier, nil)
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	return sess
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// conversation returns the roles and texts of the session's stored
// messages.
func conversation(t *testing.T, sess *agentpg.Session) (roles, texts []string) {
	t.Helper()
	msgsPage, err := sess.Messages(ctx(t), agentpg.ListOptions{Limit: agentpg.MaxPageSize})
	msgs := msgsPage.Items
	if err != nil {
		t.Fatalf("Messages: %v", err)
	}
	for _, m := range msgs {
		roles = append(roles, m.Role)
		texts = append(texts, m.Text())
	}
	return roles, texts
}

// runStatuses returns the status of each of the session's runs.
func runStatuses(t *testing.T, sess *agentpg.Session) []string {
	t.Helper()
	runsPage, err := sess.Runs(ctx(t), agentpg.ListOptions{Limit: agentpg.MaxPageSize})
	runs := runsPage.Items
	if err != nil {
		t.Fatalf("Runs: %v", err)
	}
	var statuses []string
	for _, r := range runs {
		statuses = append(statuses, r.Status)
	}
	return statuses
}
