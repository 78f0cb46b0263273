package agentpg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/agentpg/agentpg/internal/store"
)

// DefaultQueue is the River queue of enqueued runs when Config.Queue is
// empty.
const DefaultQueue = "agentpg"

// RunJobKind is the kind of the River jobs that carry enqueued runs.
const RunJobKind = "agentpg_run"

// queueName is River's rule for queue names.
var queueName = regexp.MustCompile(`^(?:[a-z0-9])+(?:[_|\-]?[a-z0-9]+)*$`)

// runJobArgs are the arguments of a River job that executes a session's
// enqueued runs, starting with RunID (see store.RunJob, whose statements
// write them): the runs are the truth, the job only points at them.
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
// it, Agent.GetRun and Agent.RunEvents follow it. A session's runs
// execute one at a time, in the order they were enqueued, after any run
// already under way, by one River job a session: the run and, when no job
// is executing the session's runs already, a job are inserted in one
// statement, which announces the job to the Workers, or, when the Agent
// announced another within the last 10 ms, a notification for all such
// runs does, at the end of those 10 ms (Workers fetch no more often).
//
// Unlike Run's, an enqueued prompt is stored (in the run's row) before the
// OnBeforeMessage hooks see it: they run in the worker, before the model
// call. A prompt they refuse fails the run and the stored prompt is
// cleared. Enqueue on a session of another tenant, or one deleted since,
// is ErrSessionNotFound.
func (s *Session) Enqueue(ctx context.Context, prompt string) (runID string, err error) {
	params, err := s.enqueueParams(prompt)
	if err != nil {
		return "", err
	}
	params.Job.Unannounced = !s.agent.announcer.inline()
	jobInserted, err := s.enqueue(ctx, s.agent.store, params)
	if err != nil {
		return "", err
	}
	if jobInserted && params.Job.Unannounced {
		s.agent.announcer.deferred()
	}
	return params.RunID, nil
}

// EnqueueTx is Enqueue in the caller's transaction: the run and its job
// exist once tx commits, and neither does if it rolls back. Workers start
// the run after the commit, which announces it. Until tx ends, the
// session's row stays locked: no run of the session can start or end, and
// no other transaction can enqueue one. Keep tx short.
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
		_, err := s.enqueue(ctx, s.agent.store.WithDB(tx), params)
		return err
	})
	if err != nil {
		return "", err
	}
	return params.RunID, nil
}

// enqueueParams validates prompt and makes the run's row and job.
func (s *Session) enqueueParams(prompt string) (store.EnqueueRunParams, error) {
	if err := validateTenant(s.TenantID); err != nil {
		return store.EnqueueRunParams{}, err
	}
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
		Job:       s.agent.runJob(),
	}, nil
}

// enqueue inserts the run, and its job if the session needs one, with st,
// and reports whether it inserted a job.
func (s *Session) enqueue(ctx context.Context, st *store.Store, params store.EnqueueRunParams) (jobInserted bool, err error) {
	a := s.agent
	jobInserted, err = st.EnqueueRun(ctx, params)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, fmt.Errorf("agentpg: %w", ErrSessionNotFound)
	case err != nil:
		return false, fmt.Errorf("agentpg: enqueueing the run: %w", err)
	}
	a.cfg.Logger.InfoContext(ctx, "run enqueued", "tenant_id", params.TenantID, "session_id", params.SessionID,
		"run_id", params.RunID, "queue", a.cfg.Queue)
	return jobInserted, nil
}

// runJob is the River job executing a session's enqueued runs, with
// River's default attempts and priority, in the Agent's queue.
func (a *Agent) runJob() store.RunJob {
	return store.RunJob{Kind: RunJobKind, Queue: a.cfg.Queue,
		MaxAttempts: river.MaxAttemptsDefault, Priority: river.PriorityDefault}
}
