package agentpg

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg/compaction"
	"github.com/agentpg/agentpg/internal/store"
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
	// attributes. Nil discards them.
	Logger *slog.Logger
	// LeaseTTL is how long a run's lease on its session lasts without
	// renewal (default DefaultLeaseTTL). A run renews it every third of
	// that; a process that dies holding it blocks the session at most this
	// long.
	LeaseTTL time.Duration
	// MaxPromptBytes caps a prompt's size (default DefaultMaxPromptBytes).
	MaxPromptBytes int
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
	// RequestOptions are passed to every Messages API call, for settings
	// this Config does not name (headers, sampling parameters the model
	// accepts, a beta flag).
	RequestOptions []option.RequestOption
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
	if c.MaxIterations == 0 {
		c.MaxIterations = DefaultMaxIterations
	}
	if c.ConversationCacheSize == 0 {
		c.ConversationCacheSize = DefaultConversationCacheSize
	}
	if c.MaxAgentDepth == 0 {
		c.MaxAgentDepth = DefaultMaxAgentDepth
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
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
	if c.ConversationCacheSize < 1 {
		problem("ConversationCacheSize must be positive, got %d", c.ConversationCacheSize)
	}
	if c.ContextWindow < 0 {
		problem("ContextWindow must not be negative, got %d", c.ContextWindow)
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
