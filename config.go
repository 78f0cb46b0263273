package agentpg

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg/compaction"
	"github.com/agentpg/agentpg/internal/store"
	"github.com/agentpg/agentpg/keys"
	"github.com/agentpg/agentpg/redact"
	"github.com/agentpg/agentpg/tool"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultMaxTokens      = 4096
	DefaultLeaseTTL       = time.Minute
	DefaultMaxPromptBytes = 1 << 20
	DefaultMaxIterations  = 10
	DefaultMaxAgentDepth  = 3
	// DefaultConversationCacheSize is how many sessions' conversations an
	// Agent keeps in memory by default.
	DefaultConversationCacheSize = 256

	// DefaultRetryMaxAttempts is how many times a model call is tried by
	// default: once, and three retries.
	DefaultRetryMaxAttempts = 4
	// DefaultRetryInitialBackoff is the default longest wait before the
	// first retry.
	DefaultRetryInitialBackoff = 500 * time.Millisecond
	// DefaultRetryMaxBackoff is the default longest wait before any retry.
	DefaultRetryMaxBackoff = 30 * time.Second
	// DefaultRetryMaxElapsed is the default time after a model call's first
	// attempt began past which it is no longer retried.
	DefaultRetryMaxElapsed = 2 * time.Minute
)

// Config configures an Agent. DB, Client and Model are required.
type Config struct {
	// DB is the pool AgentPG keeps its tables in.
	DB *pgxpool.Pool
	// Client talks to Claude. anthropic.NewClient() reads ANTHROPIC_API_KEY
	// from the environment.
	Client *anthropic.Client
	// Model is the Claude model, such as "claude-sonnet-5-5"
	// (anthropic.ModelClaudeSonnet5_5). A model the context-window table
	// does not know is logged once; set ContextWindow for it.
	Model string
	// SystemPrompt, if set, is sent with every request, marked for prompt
	// caching.
	SystemPrompt string
	// Schema is the PostgreSQL schema of AgentPG's tables; "" means
	// "agentpg".
	Schema string
	// MaxTokens caps each response (default DefaultMaxTokens).
	MaxTokens int64
	// Thinking enables extended thinking; nil leaves it off.
	Thinking *ThinkingConfig
	// Tools are offered to the model. Their inputs are validated against
	// their schemas before they run; see Agent.Executor for limits.
	Tools []tool.Tool
	// ApprovalRequired names the tools whose calls wait for a person: a run
	// whose model calls one commits the call as awaiting approval, releases
	// its session and returns (Result.StopReason StopAwaitingApproval);
	// nothing of that step runs until Agent.DecideToolCall has decided
	// each such call and the run is resumed (Agent.ResumeRun).
	ApprovalRequired []string
	// MaxIterations caps the model calls of one run, tool loops included
	// (default DefaultMaxIterations); a run that needs more fails with
	// ErrMaxIterations.
	MaxIterations int
	// MaxAgentDepth caps how deep agents offered as tools (Agent.AsTool)
	// may nest (default DefaultMaxAgentDepth).
	MaxAgentDepth int
	// Logger receives AgentPG's logs, with tenant_id, session_id and run_id
	// attributes. Nil discards them. Every message and attribute passes
	// through redact.Redact first (email addresses, card numbers, API keys
	// and other secrets become [REDACTED:KIND]), unless
	// DisableLogRedaction.
	Logger *slog.Logger
	// DisableLogRedaction passes log records to Logger as they are, for a
	// Logger that redacts by itself, or a test that needs the raw values.
	DisableLogRedaction bool
	// LeaseTTL is how long a run's lease on its session lasts without
	// renewal (default DefaultLeaseTTL). A run renews it every third of
	// that; a process that dies holding it blocks the session at most this
	// long.
	LeaseTTL time.Duration
	// MaxPromptBytes caps a prompt's size (default DefaultMaxPromptBytes).
	MaxPromptBytes int
	// Queue is the River queue that Session.Enqueue puts runs in and
	// Workers take them from (default DefaultQueue): lower case letters
	// and digits, separated by single underscores or hyphens, at most 64
	// bytes.
	Queue string
	// ContextWindow is the model's context window in tokens; 0 looks the
	// model up with ContextWindow.
	ContextWindow int
	// ExtendedContext asks for the 1M-token context window on models that
	// offer it, sending the API's beta header for it.
	ExtendedContext bool
	// Compaction keeps long conversations within the context window.
	Compaction CompactionConfig
	// ConversationCacheSize is how many sessions' conversations the Agent
	// keeps in memory, least recently used first out (default
	// DefaultConversationCacheSize). A cached session's turn reads only the
	// messages stored since, even through a freshly loaded Session. Each
	// entry holds at most about a context window of messages.
	ConversationCacheSize int
	// Retry says how a failed model call is retried; its zero value
	// retries with the defaults. See RetryConfig.
	Retry RetryConfig
	// RetentionBatchSize is how many rows each statement of
	// ApplyRetention and of the erasures deletes at most (default
	// DefaultRetentionBatchSize), so that none holds its locks long.
	RetentionBatchSize int
	// Keys encrypts content at rest: with a provider set, every tenant's
	// message content (live and archived), prompts of queued runs, tool
	// inputs, outputs and decision notes, run event payloads, compaction
	// summaries and session metadata are stored as AES-256-GCM ciphertext
	// under the tenant's data key, itself wrapped by the provider's
	// current key-encryption key (docs/encryption.md). Nil leaves content
	// unencrypted; content already sealed then fails to read with
	// ErrNoKeys. See keys.FromEnv and Agent.RotateKeys.
	Keys keys.Provider
	// Audit configures the Agent's audit log: with Audit.Enabled, the
	// Agent records its tool calls, approvals, session deletions and run
	// cancellations there. See AuditConfig.
	Audit AuditConfig
	// RequestOptions are passed to every Messages API call, for settings
	// this Config does not name (headers, sampling parameters the model
	// accepts, a beta flag). The SDK's own retries are turned off on
	// AgentPG's calls, whatever the Client or these options say
	// (option.WithMaxRetries(0) comes last): Retry retries them instead,
	// so that the two never multiply. The Client's other uses keep its
	// settings. AgentPG gives the SDK each Messages API request's body
	// ready made (see docs/performance.md), so a body option such as
	// option.WithJSONSet applies to it only from here, not from the
	// Client's options.
	RequestOptions []option.RequestOption
	// Prices are the models' prices that Agent.TenantUsage reports costs
	// with, keyed by model name or name prefix (the longest matching key
	// wins), over DefaultPrices, list prices that may be out of date:
	// set those you pay.
	Prices map[string]ModelPrice
}

// RetryConfig says how a failed model call is retried: with exponential
// backoff and full jitter (a random wait up to InitialBackoff, doubling
// with each retry up to MaxBackoff), or after the wait the API asks for in
// its retry-after-ms or retry-after header, cut to MaxBackoff.
//
// Retried: HTTP 408, 409, 429, 500 and above (529 included), connection
// failures, a stream that ends before the answer is complete
// (ErrIncompleteResponse), and an error event in the stream of type
// overloaded_error, api_error, rate_limit_error or timeout_error. Not
// retried: any other API error (400, 401, 403, 404, 413...), one whose
// x-should-retry header is "false", and a call whose context ended. A
// partial answer is never stored nor returned; its text and thinking
// deltas were streamed to RunOptions.OnEvent, which gets an EventRetry
// before the call is tried again.
//
// A call that fails after retries, or that could not be retried within
// MaxElapsed or its context's deadline, fails with a *RetryError wrapping
// the last attempt's error, so errors.Is(err, ErrOverloaded) and the like
// still hold. Retries are not iterations: Result.Iterations and
// Config.MaxIterations count model calls, however many attempts each took.
// The tokens of every attempt count in the run's usage (see Result.Usage).
type RetryConfig struct {
	// MaxAttempts caps the attempts of one model call, the first included
	// (default DefaultRetryMaxAttempts); 1 turns retries off.
	MaxAttempts int
	// InitialBackoff is the longest wait before the first retry (default
	// DefaultRetryInitialBackoff, or MaxBackoff if that is shorter); it
	// doubles with each retry.
	InitialBackoff time.Duration
	// MaxBackoff caps each wait, a server's retry-after included (default
	// DefaultRetryMaxBackoff, or InitialBackoff if that is longer).
	MaxBackoff time.Duration
	// MaxElapsed is the retry budget: no retry starts, nor is waited for,
	// past this long after the call's first attempt began (default
	// DefaultRetryMaxElapsed). An attempt under way is not cut short.
	MaxElapsed time.Duration
}

// ThinkingConfig configures extended thinking. Thinking blocks are stored
// with their signatures and sent back unchanged.
type ThinkingConfig struct {
	// Adaptive lets Claude decide when and how much to think, on models
	// that support it. BudgetTokens is ignored then.
	Adaptive bool
	// BudgetTokens is the thinking budget: at least 1024 and below
	// MaxTokens.
	BudgetTokens int64
}

// CompactionConfig configures compaction. Before each model call, when the
// conversation would take more than Threshold of the context window, older
// messages are compacted with Strategy and moved to the message archive.
// Session.Compact compacts on demand.
type CompactionConfig struct {
	// Disabled turns automatic compaction off; Session.Compact still works.
	Disabled bool
	// Strategy is compaction.StrategyHybrid (the default: prune old tool
	// outputs, then summarize if still too long), StrategyPrune or
	// StrategySummarize.
	Strategy compaction.Strategy
	// Threshold is the fraction of the window that triggers compaction
	// (default 0.85); Target the fraction to get under (default 0.5).
	Threshold, Target float64
	// ProtectTokens is the most recent span, in tokens, that is never
	// compacted (default 40,000, at most Target of the window).
	ProtectTokens int
}

// Option changes a Config before New validates it.
type Option func(*Config)

// WithTools adds tools to the ones in Config.Tools.
func WithTools(tools ...tool.Tool) Option {
	return func(c *Config) { c.Tools = append(c.Tools, tools...) }
}

// WithLogger sets Config.Logger.
func WithLogger(logger *slog.Logger) Option {
	return func(c *Config) { c.Logger = logger }
}

// withDefaults returns the config with defaults in its zero fields.
func (c Config) withDefaults() Config {
	if c.Schema == "" {
		c.Schema = store.DefaultSchema
	}
	if c.MaxTokens == 0 {
		c.MaxTokens = DefaultMaxTokens
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.MaxPromptBytes == 0 {
		c.MaxPromptBytes = DefaultMaxPromptBytes
	}
	if c.Queue == "" {
		c.Queue = DefaultQueue
	}
	if c.MaxIterations == 0 {
		c.MaxIterations = DefaultMaxIterations
	}
	if c.ConversationCacheSize == 0 {
		c.ConversationCacheSize = DefaultConversationCacheSize
	}
	if c.MaxAgentDepth == 0 {
		c.MaxAgentDepth = DefaultMaxAgentDepth
	}
	switch {
	case c.Logger == nil:
		c.Logger = slog.New(slog.DiscardHandler)
	case !c.DisableLogRedaction:
		c.Logger = slog.New(redact.NewHandler(c.Logger.Handler()))
	}
	if c.Audit.Redact == nil {
		c.Audit.Redact = redact.Redact
	}
	if c.Retry.MaxAttempts == 0 {
		c.Retry.MaxAttempts = DefaultRetryMaxAttempts
	}
	if c.RetentionBatchSize == 0 {
		c.RetentionBatchSize = DefaultRetentionBatchSize
	}
	if c.Retry.InitialBackoff == 0 {
		c.Retry.InitialBackoff = DefaultRetryInitialBackoff
		if c.Retry.MaxBackoff > 0 {
			c.Retry.InitialBackoff = min(c.Retry.InitialBackoff, c.Retry.MaxBackoff)
		}
	}
	if c.Retry.MaxBackoff == 0 {
		c.Retry.MaxBackoff = max(DefaultRetryMaxBackoff, c.Retry.InitialBackoff)
	}
	if c.Retry.MaxElapsed == 0 {
		c.Retry.MaxElapsed = DefaultRetryMaxElapsed
	}
	return c
}

// validate reports every problem of the config, each naming its field.
func (c Config) validate() error {
	var errs []error
	problem := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("agentpg: Config."+format, args...))
	}
	if c.DB == nil {
		problem("DB is required")
	} else if !madeByPgxpool(c.DB) {
		problem("DB is not a pool from pgxpool.New or pgxpool.NewWithConfig: a zero pgxpool.Pool cannot connect")
	}
	if c.Client == nil {
		problem("Client is required")
	}
	if strings.TrimSpace(c.Model) == "" {
		problem("Model is required")
	}
	if err := store.ValidateSchema(c.Schema); err != nil {
		problem("Schema: %v", err)
	}
	if c.MaxTokens < 1 {
		problem("MaxTokens must be positive, got %d", c.MaxTokens)
	}
	if t := c.Thinking; t != nil && !t.Adaptive && (t.BudgetTokens < 1024 || t.BudgetTokens >= c.MaxTokens) {
		problem("Thinking.BudgetTokens must be at least 1024 and below MaxTokens (%d), got %d", c.MaxTokens, t.BudgetTokens)
	}
	if c.LeaseTTL < time.Second {
		problem("LeaseTTL must be at least 1s, got %s", c.LeaseTTL)
	}
	if c.MaxIterations < 1 {
		problem("MaxIterations must be positive, got %d", c.MaxIterations)
	}
	if c.MaxAgentDepth < 1 {
		problem("MaxAgentDepth must be positive, got %d", c.MaxAgentDepth)
	}
	if c.MaxPromptBytes < 1 {
		problem("MaxPromptBytes must be positive, got %d", c.MaxPromptBytes)
	}
	if len(c.Queue) > 64 || !queueName.MatchString(c.Queue) {
		problem("Queue %q must match %s and be at most 64 bytes", c.Queue, queueName)
	}
	if c.ConversationCacheSize < 1 {
		problem("ConversationCacheSize must be positive, got %d", c.ConversationCacheSize)
	}
	if c.RetentionBatchSize < 1 {
		problem("RetentionBatchSize must be positive, got %d", c.RetentionBatchSize)
	}
	if c.ContextWindow < 0 {
		problem("ContextWindow must not be negative, got %d", c.ContextWindow)
	}
	if r := c.Retry; r.MaxAttempts < 1 {
		problem("Retry.MaxAttempts must be positive, got %d", r.MaxAttempts)
	}
	if r := c.Retry; r.InitialBackoff <= 0 {
		problem("Retry.InitialBackoff must be positive, got %s", r.InitialBackoff)
	}
	if r := c.Retry; r.MaxBackoff < r.InitialBackoff {
		problem("Retry.MaxBackoff must be at least Retry.InitialBackoff (%s), got %s", r.InitialBackoff, r.MaxBackoff)
	}
	if r := c.Retry; r.MaxElapsed <= 0 {
		problem("Retry.MaxElapsed must be positive, got %s", r.MaxElapsed)
	}
	for model, p := range c.Prices {
		for _, v := range []float64{p.Input, p.Output, p.CacheRead, p.CacheWrite} {
			if !(v >= 0) || math.IsInf(v, 1) {
				problem("Prices[%q]: prices must be finite and not negative, got %+v", model, p)
				break
			}
		}
	}
	if err := c.compactionOptions(c.Model).Validate(); err != nil {
		problem("Compaction: %v", err)
	}
	return errors.Join(errs...)
}

// madeByPgxpool reports whether pool was made by pgxpool's constructors.
// pgxpool offers no way to ask; a zero Pool panics on first use, so this
// asks for its configuration, which only a made one has.
func madeByPgxpool(pool *pgxpool.Pool) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return pool.Config() != nil
}

// compactionOptions returns the compaction options for a model.
func (c Config) compactionOptions(model string) compaction.Options {
	window := c.ContextWindow
	if window == 0 {
		window = ContextWindow(model, c.ExtendedContext)
	}
	return compaction.Options{
		Strategy:      c.Compaction.Strategy,
		ContextWindow: window,
		Threshold:     c.Compaction.Threshold,
		Target:        c.Compaction.Target,
		ProtectTokens: c.Compaction.ProtectTokens,
	}.WithDefaults()
}
