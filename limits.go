package agentpg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/agentpg/agentpg/audit"
	"github.com/agentpg/agentpg/internal/store"
)

// TenantLimits are a tenant's limits on model calls, set with
// Agent.SetTenantLimits and held in PostgreSQL, so that they hold across
// every process on the database and schema. A zero field sets no limit.
//
// Every model call of a run is admitted before it is made: the run's first
// (or, for a resumed run, next) call in the batch that begins the run, each
// later call in the batch that stores the tool step before it. Admission
// costs no round trip of its own. A refused run's caller gets a
// *LimitError matching ErrLimitExceeded that says when to retry.
// Compaction's summary calls are counted in usage and budgets but not
// admitted on their own.
type TenantLimits struct {
	// RequestsPerMinute caps the tenant's model calls in any 60 seconds,
	// wherever the minute starts (a sliding window).
	RequestsPerMinute int
	// TokensPerDay caps the input and output tokens (as the API counts
	// them; cache reads and writes are not counted) of the tenant's model
	// calls in a UTC day. A call is admitted while the day's tokens are
	// below the cap, so the call that crosses it completes; the next is
	// refused until midnight UTC.
	TokensPerDay int64
	// PerSession limits each session of the tenant on its own, on top of
	// the tenant's limits. A session's identifier is unique within its
	// tenant, so these are also per-identifier (per end user) limits. A
	// nested agent's session (Agent.AsTool) is a session of its own.
	PerSession SessionLimits
}

// SessionLimits are limits of each session of a tenant; see TenantLimits.
type SessionLimits struct {
	RequestsPerMinute int
	TokensPerDay      int64
}

// The limits a LimitError names.
const (
	LimitRequestsPerMinute = "requests_per_minute"
	LimitTokensPerDay      = "tokens_per_day"
)

// ErrLimitExceeded matches the error of a run refused by its tenant's
// limits (see TenantLimits): a *LimitError, whose RetryAfter says when to
// try again, or the *RunError of a run that failed on one.
var ErrLimitExceeded = errors.New("tenant limit exceeded")

// LimitError is the error of a model call refused by a tenant's limit.
// errors.Is(err, ErrLimitExceeded) holds for it.
//
// A run refused before its first model call (by Session.Run, or when
// Agent.ResumeRun resumes it) is left as it was: a new run is not
// recorded, a queued run stays queued (a Worker tries it again after
// RetryAfter), a resumed one stays where it stopped. A run refused before
// a later call, once the model asked for tools, stops before those tools
// run: an enqueued run goes back to the queue with that step stored (a
// Worker resumes it after RetryAfter, tools first); a run of Session.Run
// fails with class "limit", keeping the model's answer for the record.
type LimitError struct {
	Tenant string
	// SessionID is the session whose run was refused.
	SessionID string
	// Limit is the limit reached: LimitRequestsPerMinute or
	// LimitTokensPerDay.
	Limit string
	// PerSession reports that the session's own limit was reached
	// (TenantLimits.PerSession), not the tenant's.
	PerSession bool
	// Max is the limit's value.
	Max int64
	// RetryAfter is how long until the limit admits a call again (given
	// no other call takes the room first): when the oldest call of the
	// minute leaves it, or at midnight UTC for a daily budget.
	RetryAfter time.Duration
}

// Error names the tenant, the limit and when to retry.
func (e *LimitError) Error() string {
	scope := "tenant " + fmt.Sprintf("%q", e.Tenant)
	if e.PerSession {
		scope = "session " + e.SessionID + " of " + scope
	}
	return fmt.Sprintf("%s: %v: %s (%d); retry after %s", scope, ErrLimitExceeded, e.Limit, e.Max, e.RetryAfter)
}

// Is matches ErrLimitExceeded.
func (e *LimitError) Is(target error) bool { return target == ErrLimitExceeded }

// limitError returns the *LimitError of the session's call when err is a
// refusal by a limit, and nil otherwise.
func limitError(err error, tenantID, sessionID string) *LimitError {
	refusal, ok := errors.AsType[*store.LimitExceeded](err)
	if !ok {
		return nil
	}
	return &LimitError{Tenant: tenantID, SessionID: sessionID, Limit: refusal.Limit,
		PerSession: refusal.Scope == "session", Max: refusal.Max, RetryAfter: refusal.RetryAfter}
}

// SetTenantLimits replaces the tenant's limits with l; zero fields remove
// limits, and a zero TenantLimits removes them all. Runs already under way
// meet the new limits at their next model call. A negative limit is
// ErrInvalidArgument. With Config.Audit.Enabled, the change is recorded in
// the audit log (audit.ActionLimitsSet).
func (a *Agent) SetTenantLimits(ctx context.Context, tenantID string, l TenantLimits) error {
	if err := validateTenant(tenantID); err != nil {
		return err
	}
	for _, v := range []struct {
		name string
		rpm  int
		tpd  int64
	}{{"", l.RequestsPerMinute, l.TokensPerDay}, {"PerSession.", l.PerSession.RequestsPerMinute, l.PerSession.TokensPerDay}} {
		if v.rpm < 0 || v.rpm > math.MaxInt32 {
			return fmt.Errorf("agentpg: %w: TenantLimits.%sRequestsPerMinute must be between 0 and %d, got %d",
				ErrInvalidArgument, v.name, math.MaxInt32, v.rpm)
		}
		if v.tpd < 0 {
			return fmt.Errorf("agentpg: %w: TenantLimits.%sTokensPerDay must not be negative, got %d", ErrInvalidArgument, v.name, v.tpd)
		}
	}
	err := a.store.SetLimits(ctx, tenantID, store.Limits{
		RequestsPerMinute: l.RequestsPerMinute, TokensPerDay: l.TokensPerDay,
		SessionRequestsPerMinute: l.PerSession.RequestsPerMinute, SessionTokensPerDay: l.PerSession.TokensPerDay,
	})
	set, _ := json.Marshal(l)
	a.record(ctx, audit.Entry{TenantID: tenantID, Action: audit.ActionLimitsSet, Input: string(set), Success: err == nil})
	if err != nil {
		return fmt.Errorf("agentpg: %w", err)
	}
	a.cfg.Logger.InfoContext(ctx, "tenant limits set", "tenant_id", tenantID,
		"requests_per_minute", l.RequestsPerMinute, "tokens_per_day", l.TokensPerDay,
		"session_requests_per_minute", l.PerSession.RequestsPerMinute, "session_tokens_per_day", l.PerSession.TokensPerDay)
	return nil
}

// GetTenantLimits returns the tenant's limits: a zero TenantLimits for a
// tenant without any.
func (a *Agent) GetTenantLimits(ctx context.Context, tenantID string) (TenantLimits, error) {
	if err := validateTenant(tenantID); err != nil {
		return TenantLimits{}, err
	}
	l, err := a.store.GetLimits(ctx, tenantID)
	if err != nil {
		return TenantLimits{}, fmt.Errorf("agentpg: %w", err)
	}
	return TenantLimits{RequestsPerMinute: l.RequestsPerMinute, TokensPerDay: l.TokensPerDay,
		PerSession: SessionLimits{RequestsPerMinute: l.SessionRequestsPerMinute, TokensPerDay: l.SessionTokensPerDay}}, nil
}

// DailyUsage is a tenant's usage of one model on one UTC day.
type DailyUsage struct {
	// Day is the day, at midnight UTC.
	Day   time.Time
	Model string
	// Requests counts the model calls, compaction summaries included;
	// retries of a call are not calls of their own.
	Requests int64
	// Usage sums the calls' tokens, those of failed attempts included.
	Usage Usage
	// Cost is what the usage costs in US dollars at the model's price
	// (Config.Prices); Priced is false, and Cost 0, for a model without
	// one.
	Cost   float64
	Priced bool
}

// TenantUsage returns the tenant's usage from the UTC day of from to that
// of to, both included, day by day and model by model, oldest first. The
// usage of a run counts on the day each of its steps is stored.
func (a *Agent) TenantUsage(ctx context.Context, tenantID string, from, to time.Time) ([]DailyUsage, error) {
	if err := validateTenant(tenantID); err != nil {
		return nil, err
	}
	if to.Before(from) {
		return nil, fmt.Errorf("agentpg: %w: TenantUsage: to (%s) is before from (%s)", ErrInvalidArgument,
			to.Format(time.DateOnly), from.Format(time.DateOnly))
	}
	rows, err := a.store.TenantUsage(ctx, tenantID, from, to)
	if err != nil {
		return nil, fmt.Errorf("agentpg: %w", err)
	}
	prices := a.cfg.prices()
	days := make([]DailyUsage, len(rows))
	for i, r := range rows {
		usage := Usage{InputTokens: r.Usage.InputTokens, OutputTokens: r.Usage.OutputTokens,
			CacheReadInputTokens: r.Usage.CacheReadTokens, CacheCreationInputTokens: r.Usage.CacheWriteTokens}
		days[i] = DailyUsage{Day: r.Day, Model: r.Model, Requests: r.Requests, Usage: usage}
		if price, ok := priceOf(prices, r.Model); ok {
			days[i].Cost, days[i].Priced = price.Cost(usage), true
		}
	}
	return days, nil
}

// UsageAnomaly is a tenant whose usage today is out of line with its past.
type UsageAnomaly struct {
	Tenant string
	// TodayTokens are the tenant's input and output tokens of the current
	// UTC day; TrailingAverage its daily average over the seven days
	// before; Ratio the one over the other.
	TodayTokens     int64
	TrailingAverage float64
	Ratio           float64
}

// UsageAnomalies returns, across all tenants, those whose input and output
// tokens of the current UTC day exceed threshold times their daily average
// over the seven days before (days without usage count as zero), the most
// anomalous first. A tenant without usage in those seven days has no
// baseline and is not returned. Operators can run the same query in SQL:
// SELECT * FROM agentpg.usage_anomalies(3). The threshold must be positive.
func (a *Agent) UsageAnomalies(ctx context.Context, threshold float64) ([]UsageAnomaly, error) {
	if !(threshold > 0) || math.IsInf(threshold, 1) {
		return nil, fmt.Errorf("agentpg: %w: UsageAnomalies: threshold must be a positive number, got %v", ErrInvalidArgument, threshold)
	}
	rows, err := a.store.UsageAnomalies(ctx, threshold)
	if err != nil {
		return nil, fmt.Errorf("agentpg: %w", err)
	}
	anomalies := make([]UsageAnomaly, len(rows))
	for i, r := range rows {
		anomalies[i] = UsageAnomaly{Tenant: r.TenantID, TodayTokens: r.TodayTokens, TrailingAverage: r.TrailingAvg, Ratio: r.Ratio}
	}
	return anomalies, nil
}
