package agentpg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"sync"
	"time"
	"weak"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/agentpg/agentpg/internal/store"
)

// DefaultQueue is the River queue of enqueued runs when Config.Queue is
// empty.
const DefaultQueue = "agentpg"

// RunJobKind is the kind of the River jobs that carry enqueued runs.
const RunJobKind = "agentpg_run"

// queueName is River's rule for queue names.
var queueName = regexp.MustCompile(`^(?:[a-z0-9])+(?:[_|\-]?[a-z0-9]+)*$`)

// runJobArgs are the arguments of a River job that executes an enqueued
// run: the run is the truth, the job only points at it.
type runJobArgs struct {
	TenantID  string `json:"tenant_id"`
	SessionID string `json:"session_id"`
	RunID     string `json:"run_id"`
}

// Kind is the River job kind, RunJobKind.
func (runJobArgs) Kind() string { return RunJobKind }

// Enqueue stores prompt as a queued run of the session, to be executed by
// a Worker (of any process on the same database and schema), and returns
// the run's id; Agent.WaitRun returns its Result, Agent.CancelRun cancels
// it, Agent.GetRun and Agent.RunEvents follow it. The run and its River
// job are inserted in one transaction. A session's runs execute one at a
// time, in the order they were enqueued, after any run already under way.
//
// Unlike Run's, an enqueued prompt is stored (in the run's row) before the
// OnBeforeMessage hooks see it: they run in the worker, before the model
// call. A prompt they refuse fails the run and the stored prompt is
// cleared. Enqueue on a session of another tenant, or one deleted since,
// is ErrSessionNotFound.
func (s *Session) Enqueue(ctx context.Context, prompt string) (runID string, err error) {
	a := s.agent
	params, err := s.enqueueParams(prompt)
	if err != nil {
		return "", err
	}
	err = pgx.BeginFunc(ctx, a.cfg.DB, func(tx pgx.Tx) error {
		return s.enqueueTx(ctx, tx, params)
	})
	if err != nil {
		return "", err
	}
	return params.RunID, nil
}

// EnqueueTx is Enqueue in the caller's transaction: the run and its job
// exist once tx commits, and neither does if it rolls back. Workers start
// the run after the commit.
func (s *Session) EnqueueTx(ctx context.Context, tx pgx.Tx, prompt string) (runID string, err error) {
	if tx == nil {
		return "", fmt.Errorf("agentpg: %w: EnqueueTx needs a transaction", ErrInvalidArgument)
	}
	params, err := s.enqueueParams(prompt)
	if err != nil {
		return "", err
	}
	// A savepoint keeps a failed insert from aborting the caller's
	// transaction.
	err = pgx.BeginFunc(ctx, tx, func(tx pgx.Tx) error {
		return s.enqueueTx(ctx, tx, params)
	})
	if err != nil {
		return "", err
	}
	return params.RunID, nil
}

// enqueueParams validates prompt and makes the run's row.
func (s *Session) enqueueParams(prompt string) (store.EnqueueRunParams, error) {
	if err := validateText("prompt", prompt, s.agent.cfg.MaxPromptBytes); err != nil {
		return store.EnqueueRunParams{}, err
	}
	content, err := json.Marshal([]anthropic.ContentBlockParamUnion{anthropic.NewTextBlock(prompt)})
	if err != nil {
		return store.EnqueueRunParams{}, fmt.Errorf("agentpg: encoding the prompt: %w", err)
	}
	content, _ = storableJSON(content)
	return store.EnqueueRunParams{
		TenantID:  s.TenantID,
		SessionID: s.ID,
		RunID:     newID(),
		Model:     s.model(),
		Prompt:    content,
	}, nil
}

// enqueueTx inserts the run and its job in tx.
func (s *Session) enqueueTx(ctx context.Context, tx pgx.Tx, params store.EnqueueRunParams) error {
	a := s.agent
	if err := validateTenant(s.TenantID); err != nil {
		return err
	}
	err := a.store.WithDB(tx).EnqueueRun(ctx, params)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("agentpg: %w", ErrSessionNotFound)
	case err != nil:
		return fmt.Errorf("agentpg: enqueueing the run: %w", err)
	}
	client, err := a.inserter()
	if err != nil {
		return err
	}
	_, err = client.InsertTx(ctx, tx, runJobArgs{TenantID: params.TenantID, SessionID: params.SessionID, RunID: params.RunID},
		&river.InsertOpts{Queue: a.cfg.Queue})
	if err != nil {
		return fmt.Errorf("agentpg: inserting the run's job: %w", err)
	}
	a.cfg.Logger.InfoContext(ctx, "run enqueued", "tenant_id", params.TenantID, "session_id", params.SessionID,
		"run_id", params.RunID, "queue", a.cfg.Queue)
	return nil
}

// insertNotifyCooldown is how often, at most, an Agent's enqueues
// announce new runs to the Workers (River's insert notification, one
// NOTIFY in the enqueue's transaction). River's default, 100 ms, would
// leave an idle Worker to find most runs by polling.
const insertNotifyCooldown = 2 * time.Millisecond

// inserters holds each Agent's insert-only River client, keyed weakly so
// that an Agent that is no longer used is collected with its entry. (The
// client does not refer to the Agent.)
var inserters sync.Map // weak.Pointer[Agent] -> func() (*river.Client[pgx.Tx], error)

// inserter returns the Agent's insert-only River client, made on first use.
func (a *Agent) inserter() (*river.Client[pgx.Tx], error) {
	key := weak.Make(a)
	// The value must not refer to a, or a would never be collected.
	db, schema, logger := a.cfg.DB, a.cfg.Schema, a.cfg.Logger
	newClient := sync.OnceValues(func() (*river.Client[pgx.Tx], error) {
		return river.NewClient(riverpgxv5.New(db), &river.Config{Schema: schema, Logger: logger,
			FetchCooldown: insertNotifyCooldown})
	})
	v, loaded := inserters.LoadOrStore(key, newClient)
	if !loaded {
		runtime.AddCleanup(a, func(k weak.Pointer[Agent]) { inserters.Delete(k) }, key)
	}
	client, err := v.(func() (*river.Client[pgx.Tx], error))()
	if err != nil {
		return nil, fmt.Errorf("agentpg: making the River client: %w", err)
	}
	return client, nil
}
