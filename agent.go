package agentpg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/jackc/pgx/v5"

	"github.com/agentpg/agentpg/audit"
	"github.com/agentpg/agentpg/internal/store"
	"github.com/agentpg/agentpg/tool"
)

// Agent runs Claude conversations whose sessions, messages and runs live in
// PostgreSQL. It is safe for concurrent use; create one per configuration
// and share it.
type Agent struct {
	cfg      Config
	store    *store.Store
	executor *tool.Executor
	gates    gates
	// notes wakes the goroutines waiting for a session's lease or a run's
	// progress.
	notes *notifier
	cache *lru.Cache[string, *cachedConversation]
	audit *audit.Log
	// announcer spreads the announcements of enqueued runs.
	announcer *announcer

	hookMu     sync.RWMutex
	before     []func(ctx context.Context, messages []any) error
	after      []func(ctx context.Context, response any) error
	toolCall   []func(ctx context.Context, name string, input json.RawMessage, output string, err error) error
	beforeTool []func(ctx context.Context, call ToolCallRequest) error

	beforeCompaction []func(ctx context.Context, e *CompactionEvent) error
	afterCompaction  []func(ctx context.Context, e *CompactionEvent) error

	unknownModels sync.Map // models warned about, see warnUnknownModel
}

// New validates cfg, after applying opts and defaults, and returns an Agent.
// It does not touch the database; call Migrate once to create the tables.
func New(cfg Config, opts ...Option) (*Agent, error) {
	for _, opt := range opts {
		opt(&cfg)
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	st, err := store.New(cfg.DB, cfg.Schema)
	if err == nil {
		st, err = st.WithKeys(cfg.Keys)
	}
	if err != nil {
		return nil, fmt.Errorf("agentpg: %w", err)
	}
	registry, err := tool.NewRegistry(cfg.Tools...)
	if err != nil {
		return nil, fmt.Errorf("agentpg: Config.Tools: %w", err)
	}
	cache, err := lru.New[string, *cachedConversation](cfg.ConversationCacheSize)
	if err != nil {
		return nil, fmt.Errorf("agentpg: Config.ConversationCacheSize: %w", err)
	}
	auditLog, err := audit.New(cfg.DB, audit.Options{Schema: cfg.Schema, Redact: cfg.Audit.Redact, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("agentpg: Config.Audit: %w", err)
	}
	a := &Agent{cfg: cfg, store: st, executor: tool.NewExecutor(registry), cache: cache, audit: auditLog, notes: &notifier{}}
	a.announcer = &announcer{interval: announceInterval, announce: a.announceRuns}
	a.warnUnknownModel(cfg.Model)
	return a, nil
}

// Executor returns the executor that runs the agent's tools, for setting
// its limits (timeouts, parallelism, output size) or registering more
// tools through its Registry.
func (a *Agent) Executor() *tool.Executor { return a.executor }

// Migrate creates or upgrades AgentPG's tables in the configured schema. It
// is idempotent, and safe to call from several processes at once.
func (a *Agent) Migrate(ctx context.Context) error {
	return a.migrate(ctx, a.store)
}

// MigrateTx is Migrate in the caller's transaction, so that AgentPG's
// tables appear, or not, with the caller's own schema changes. Concurrent
// migrations wait for the transaction to end.
//
// On a database River has never been migrated in, River's last migrations
// cannot run in the same transaction as its first (PostgreSQL does not let a
// transaction use an enum value it added): MigrateTx then leaves River's
// tables at version 5, and a later Migrate, outside a transaction,
// completes them before a Worker starts.
func (a *Agent) MigrateTx(ctx context.Context, tx pgx.Tx) error {
	if tx == nil {
		return fmt.Errorf("agentpg: %w: MigrateTx needs a transaction", ErrInvalidArgument)
	}
	return a.migrate(ctx, a.store.WithDB(tx))
}

func (a *Agent) migrate(ctx context.Context, st *store.Store) error {
	if _, err := st.Migrate(ctx); err != nil {
		return fmt.Errorf("agentpg: migrating schema %s: %w", a.cfg.Schema, err)
	}
	return nil
}

// OnBeforeMessage registers a hook that runs before each model call with the
// messages about to be sent, each a Message value, to inspect, not to
// change. An error from it stops the run before the model is called; the
// prompt of the rejected run is not kept, and Run returns an error wrapping
// both ErrHookRejected and the hook's error. Hooks run in registration
// order with a context derived from the caller's.
func (a *Agent) OnBeforeMessage(hook func(ctx context.Context, messages []any) error) {
	a.hookMu.Lock()
	defer a.hookMu.Unlock()
	a.before = append(a.before, hook)
}

// OnAfterMessage registers a hook that runs after each model response, with
// the response as an *anthropic.Message. An error from it stops the run
// before the response is stored; Run returns an error wrapping both
// ErrHookRejected and the hook's error.
func (a *Agent) OnAfterMessage(hook func(ctx context.Context, response any) error) {
	a.hookMu.Lock()
	defer a.hookMu.Unlock()
	a.after = append(a.after, hook)
}

// OnToolCall registers a hook that runs after each tool call with the
// call's input, its output and its error (nil on success), for auditing.
// The context carries the caller's values. The call's result is stored
// before the hook runs; an error from the hook stops the run, and Run
// returns an error wrapping both ErrHookRejected and the hook's error.
func (a *Agent) OnToolCall(hook func(ctx context.Context, name string, input json.RawMessage, output string, err error) error) {
	a.hookMu.Lock()
	defer a.hookMu.Unlock()
	a.toolCall = append(a.toolCall, hook)
}

// ToolCallRequest is a tool call the model asked for, as OnBeforeToolCall
// hooks see it.
type ToolCallRequest struct {
	TenantID  string
	SessionID string
	RunID     string
	// ToolUseID is the id of the model's tool_use block.
	ToolUseID string
	// Name is the tool's name; Input the model's input, already validated
	// against the tool's schema.
	Name  string
	Input json.RawMessage
}

// OnBeforeToolCall registers a hook that runs before each tool call whose
// input is valid, on the run's goroutine, in the order of the model's
// calls. Returning an error denies the call: the tool does not run, and the
// model receives an error tool_result saying the call was denied and why
// (the error's text, so keep it fit for the model to read). The run goes on;
// OnToolCall hooks see the denial as an error wrapping ErrToolCallDenied.
func (a *Agent) OnBeforeToolCall(hook func(ctx context.Context, call ToolCallRequest) error) {
	a.hookMu.Lock()
	defer a.hookMu.Unlock()
	a.beforeTool = append(a.beforeTool, hook)
}

// SessionOptions are the optional settings of a new session; nil means
// defaults.
type SessionOptions struct {
	// Metadata is stored with the session, as JSON.
	Metadata map[string]any
	// ParentID makes the session a child of another session of the same
	// tenant.
	ParentID string
	// Model, SystemPrompt and MaxTokens override the Agent's for this
	// session when set.
	Model        string
	SystemPrompt string
	MaxTokens    int64
}

// sessionOverrides is how SessionOptions' overrides are stored.
type sessionOverrides struct {
	Model        string `json:"model,omitempty"`
	SystemPrompt string `json:"system_prompt,omitempty"`
	MaxTokens    int64  `json:"max_tokens,omitempty"`
}

// NewSession creates a session for the tenant. The identifier, such as a
// user id, names the session within the tenant: a tenant cannot have two
// sessions with one identifier (ErrSessionExists), while two tenants can.
func (a *Agent) NewSession(ctx context.Context, tenantID, identifier string, opts *SessionOptions) (*Session, error) {
	return a.newSession(ctx, a.store, tenantID, identifier, opts)
}

// NewSessionTx is NewSession in the caller's transaction: the session
// exists once the transaction commits, and not at all if it rolls back (a
// run on the returned Session then fails with ErrSessionNotFound).
func (a *Agent) NewSessionTx(ctx context.Context, tx pgx.Tx, tenantID, identifier string, opts *SessionOptions) (*Session, error) {
	if tx == nil {
		return nil, fmt.Errorf("agentpg: %w: NewSessionTx needs a transaction", ErrInvalidArgument)
	}
	return a.newSession(ctx, a.store.WithDB(tx), tenantID, identifier, opts)
}

func (a *Agent) newSession(ctx context.Context, st *store.Store, tenantID, identifier string, opts *SessionOptions) (*Session, error) {
	if err := validateTenant(tenantID); err != nil {
		return nil, err
	}
	if err := validateIdentifier(identifier); err != nil {
		return nil, err
	}
	if opts == nil {
		opts = &SessionOptions{}
	}
	if opts.MaxTokens < 0 {
		return nil, fmt.Errorf("agentpg: %w: SessionOptions.MaxTokens must not be negative", ErrInvalidArgument)
	}
	metadata, err := json.Marshal(opts.Metadata)
	if err != nil {
		return nil, fmt.Errorf("agentpg: %w: SessionOptions.Metadata: %v", ErrInvalidArgument, err)
	}
	if err := validateJSONValue("SessionOptions.Metadata", metadata, MaxMetadataBytes); err != nil {
		return nil, err
	}
	overrides, err := json.Marshal(sessionOverrides{Model: opts.Model, SystemPrompt: opts.SystemPrompt, MaxTokens: opts.MaxTokens})
	if err != nil {
		return nil, err
	}
	params := store.CreateSessionParams{
		ID:         newID(),
		TenantID:   tenantID,
		Identifier: identifier,
		Metadata:   metadata,
		Overrides:  overrides,
	}
	if opts.ParentID != "" {
		if !validID(opts.ParentID) {
			return nil, fmt.Errorf("agentpg: parent session: %w", ErrSessionNotFound)
		}
		params.ParentID = &opts.ParentID
	}
	row, err := st.CreateSession(ctx, params)
	switch {
	case errors.Is(err, store.ErrConflict):
		return nil, fmt.Errorf("agentpg: tenant session %q: %w", identifier, ErrSessionExists)
	case errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("agentpg: parent session: %w", ErrSessionNotFound)
	case err != nil:
		return nil, fmt.Errorf("agentpg: creating session: %w", err)
	}
	return a.session(row)
}

// LoadSession returns the tenant's session with that id. A session of
// another tenant, or a malformed id, is ErrSessionNotFound.
func (a *Agent) LoadSession(ctx context.Context, tenantID, sessionID string) (*Session, error) {
	if err := validateTenant(tenantID); err != nil {
		return nil, err
	}
	if err := validateSessionID(sessionID); err != nil {
		return nil, err
	}
	return a.loaded(a.store.GetSession(ctx, tenantID, sessionID))
}

// LoadSessionByIdentifier returns the tenant's session with that
// identifier, or ErrSessionNotFound.
func (a *Agent) LoadSessionByIdentifier(ctx context.Context, tenantID, identifier string) (*Session, error) {
	if err := validateTenant(tenantID); err != nil {
		return nil, err
	}
	if err := validateIdentifier(identifier); err != nil {
		return nil, err
	}
	return a.loaded(a.store.GetSessionByIdentifier(ctx, tenantID, identifier))
}

// ListSessions returns a page of the tenant's sessions, most recently
// active first.
func (a *Agent) ListSessions(ctx context.Context, tenantID string, opts ListOptions) (Page[*Session], error) {
	if err := validateTenant(tenantID); err != nil {
		return Page[*Session]{}, err
	}
	limit, err := opts.limit()
	if err != nil {
		return Page[*Session]{}, err
	}
	var after *store.SessionCursor
	if opts.After != "" {
		at, id, err := splitCursor(opts.After)
		if err != nil {
			return Page[*Session]{}, err
		}
		updatedAt, err := parseTimeCursor(at)
		if err != nil {
			return Page[*Session]{}, badCursor(opts.After)
		}
		after = &store.SessionCursor{UpdatedAt: updatedAt, ID: *id}
	}
	rows, err := a.store.ListSessions(ctx, tenantID, after, limit)
	if err != nil {
		return Page[*Session]{}, fmt.Errorf("agentpg: listing sessions: %w", err)
	}
	sessions, err := convertAll(rows, a.session)
	if err != nil {
		return Page[*Session]{}, err
	}
	return pageOf(sessions, limit, func(s *Session) string {
		return pairCursor(timeCursor(s.UpdatedAt), s.ID)
	}), nil
}

// DeleteSession deletes the tenant's session with all its messages and
// runs. It returns ErrSessionBusy while a run holds the session.
func (a *Agent) DeleteSession(ctx context.Context, tenantID, sessionID string) error {
	if err := validateTenant(tenantID); err != nil {
		return err
	}
	if err := validateSessionID(sessionID); err != nil {
		return err
	}
	err := a.store.DeleteSession(ctx, tenantID, sessionID)
	a.record(ctx, audit.Entry{TenantID: tenantID, SessionID: sessionID, Action: audit.ActionSessionDelete, Success: err == nil})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("agentpg: %w", ErrSessionNotFound)
	case errors.Is(err, store.ErrBusy):
		return fmt.Errorf("agentpg: %w", ErrSessionBusy)
	case err != nil:
		return fmt.Errorf("agentpg: deleting session: %w", err)
	}
	return nil
}

func (a *Agent) loaded(row *store.Session, err error) (*Session, error) {
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("agentpg: %w", ErrSessionNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("agentpg: loading session: %w", err)
	}
	return a.session(row)
}

func (a *Agent) session(row *store.Session) (*Session, error) {
	sess := &Session{
		ID:         row.ID,
		TenantID:   row.TenantID,
		Identifier: row.Identifier,
		CreatedAt:  row.CreatedAt,
		UpdatedAt:  row.UpdatedAt,
		agent:      a,
		depth:      row.Depth,
		cache:      a.cachedConversation(row.ID),
		endUser:    row.Identifier,
	}
	if row.ParentID != nil {
		sess.ParentID = *row.ParentID
	}
	if err := json.Unmarshal(row.Metadata, &sess.Metadata); err != nil {
		return nil, fmt.Errorf("agentpg: session %s metadata: %w", row.ID, err)
	}
	if err := json.Unmarshal(row.Overrides, &sess.overrides); err != nil {
		return nil, fmt.Errorf("agentpg: session %s overrides: %w", row.ID, err)
	}
	if sess.overrides.Model != "" {
		a.warnUnknownModel(sess.overrides.Model)
	}
	return sess, nil
}

// newID returns a time-ordered UUID (version 7), which keeps indexes
// compact.
func newID() string { return uuid.Must(uuid.NewV7()).String() }

func validID(id string) bool {
	_, err := uuid.Parse(id)
	return err == nil && len(id) == 36
}

// leaseRenewal is how often a run renews its lease.
func (a *Agent) leaseRenewal() time.Duration { return a.cfg.LeaseTTL / 3 }

// cachedConversation returns the cached conversation of the session,
// adding an empty one if it has none.
func (a *Agent) cachedConversation(sessionID string) *cachedConversation {
	if c, ok := a.cache.Get(sessionID); ok {
		return c
	}
	fresh := &cachedConversation{}
	if c, ok, _ := a.cache.PeekOrAdd(sessionID, fresh); ok {
		return c
	}
	return fresh
}
