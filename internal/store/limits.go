package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Limits are a tenant's limits on model calls, 0 meaning none: for the
// tenant altogether, and for each of its sessions on its own.
type Limits struct {
	RequestsPerMinute        int
	TokensPerDay             int64
	SessionRequestsPerMinute int
	SessionTokensPerDay      int64
}

// LimitExceeded is the error of a model call refused by a tenant's limit.
type LimitExceeded struct {
	Scope      string // "tenant" or "session"
	Limit      string // "requests_per_minute" or "tokens_per_day"
	Max        int64  // the limit's value
	RetryAfter time.Duration
}

func (e *LimitExceeded) Error() string {
	return fmt.Sprintf("%s limit %s (%d) exceeded; retry after %s", e.Scope, e.Limit, e.Max, e.RetryAfter)
}

// limitExceededCode is the SQLSTATE admit_model_call refuses with.
const limitExceededCode = "AGL01"

// limitError returns the *LimitExceeded err carries, if it is a refusal of
// admit_model_call, and err otherwise.
func limitError(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != limitExceededCode {
		return err
	}
	var detail struct {
		Scope        string `json:"scope"`
		Limit        string `json:"limit"`
		Max          int64  `json:"max"`
		RetryAfterMS int64  `json:"retry_after_ms"`
	}
	if jerr := json.Unmarshal([]byte(pgErr.Detail), &detail); jerr != nil {
		return fmt.Errorf("decoding a limit's refusal: %w", jerr)
	}
	return &LimitExceeded{Scope: detail.Scope, Limit: detail.Limit, Max: detail.Max,
		RetryAfter: time.Duration(detail.RetryAfterMS) * time.Millisecond}
}

// admitSQL admits the next model call of the tenant's run $2 while it
// holds its session's lease (with the fencing token $3, when not NULL), in
// the batch that begins the run or stores the step before the call. It
// does nothing when the run does not hold the lease: the batch's own write
// was not stored either.
const admitSQL = `
SELECT {{schema}}.admit_model_call(s.tenant_id, s.id)
FROM {{schema}}.runs r
JOIN {{schema}}.sessions s ON s.id = r.session_id
WHERE r.tenant_id = $1 AND r.id = $2 AND s.lease_run_id = $2 AND ($3::bigint IS NULL OR s.lease_token = $3)`

// queueAdmit queues in batch the admission of a model call of the lease's
// run, fenced by token unless nil. A refusal fails the batch, and so rolls
// it back whole.
func (s *Store) queueAdmit(batch *pgx.Batch, l Lease, token *int64) {
	batch.Queue(s.q(admitSQL), l.TenantID, l.RunID, token)
}

// usageShards is how many rows a tenant's usage of a day and model is
// split in (migration 014): a session adds to one, by its id's hash, so
// that the step commits of different sessions seldom lock the same row.
const usageShards = 16

// usageShard is the shard of the tenant's usage the session adds to.
func usageShard(sessionID string) int16 {
	h := fnv.New32a()
	h.Write([]byte(sessionID))
	return int16(h.Sum32() % usageShards)
}

// addUsageSQL adds model calls and their usage to the session's shard of
// the tenant's usage of the day, and the input and output tokens to the
// session's of the day; with a fencing token ($9), only if the batch's
// write under that token was stored (the token changes when another run
// takes the lease).
const addUsageSQL = `
WITH d AS (SELECT (now() AT TIME ZONE 'UTC')::date AS today), u AS (
    INSERT INTO {{schema}}.tenant_usage AS t
        (tenant_id, day, model, shard, requests, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
    SELECT $1, today, $3, $10, $4, $5, $6, $7, $8 FROM d
    WHERE $9::bigint IS NULL
       OR EXISTS (SELECT 1 FROM {{schema}}.sessions WHERE tenant_id = $1 AND id = $2 AND lease_token = $9)
    ON CONFLICT (tenant_id, day, model, shard) DO UPDATE
    SET requests = t.requests + EXCLUDED.requests,
        input_tokens = t.input_tokens + EXCLUDED.input_tokens,
        output_tokens = t.output_tokens + EXCLUDED.output_tokens,
        cache_read_tokens = t.cache_read_tokens + EXCLUDED.cache_read_tokens,
        cache_write_tokens = t.cache_write_tokens + EXCLUDED.cache_write_tokens
)
UPDATE {{schema}}.sessions
SET usage_day_tokens = CASE WHEN usage_day = d.today THEN usage_day_tokens ELSE 0 END + $5 + $6,
    usage_day = d.today
FROM d
WHERE tenant_id = $1 AND id = $2 AND ($9::bigint IS NULL OR lease_token = $9)`

// Spent is what model calls of a session cost, to be counted in its
// tenant's usage.
type Spent struct {
	Model string
	Calls int
	Usage Usage
}

// queueUsage queues in batch, when there is any, the counting of what the
// model calls of the lease's session spent: only if the write of the batch
// fenced by token was stored, unless token is nil. Queue it after that
// write, and as late as the batch allows: the usage rows stay locked until
// the batch ends.
func (s *Store) queueUsage(batch *pgx.Batch, l Lease, token *int64, spent Spent) {
	u := spent.Usage
	if spent.Calls == 0 && u == (Usage{}) {
		return
	}
	batch.Queue(s.q(addUsageSQL), l.TenantID, l.SessionID, spent.Model, spent.Calls,
		u.InputTokens, u.OutputTokens, u.CacheReadTokens, u.CacheWriteTokens, token, usageShard(l.SessionID))
}

const getLimitsSQL = `
SELECT coalesce(max(requests_per_minute) FILTER (WHERE scope = 'tenant'), 0),
       coalesce(max(tokens_per_day) FILTER (WHERE scope = 'tenant'), 0),
       coalesce(max(requests_per_minute) FILTER (WHERE scope = 'session'), 0),
       coalesce(max(tokens_per_day) FILTER (WHERE scope = 'session'), 0)
FROM {{schema}}.tenant_limits WHERE tenant_id = $1`

// GetLimits returns the tenant's limits; a tenant without any has zero
// Limits.
func (s *Store) GetLimits(ctx context.Context, tenantID string) (Limits, error) {
	var l Limits
	err := s.as(tenantID).QueryRow(ctx, s.q(getLimitsSQL), tenantID).
		Scan(&l.RequestsPerMinute, &l.TokensPerDay, &l.SessionRequestsPerMinute, &l.SessionTokensPerDay)
	if err != nil {
		return l, fmt.Errorf("reading the tenant's limits: %w", err)
	}
	return l, nil
}

// setLimitsSQL replaces the tenant's limits, scope by scope: a scope
// whose limits are all zero loses its row. Forgetting the tenant's
// request log once it has no requests limit left keeps none behind.
const setLimitsSQL = `
WITH wanted (scope, rpm, tpd) AS (VALUES ('tenant', $2::integer, $3::bigint), ('session', $4::integer, $5::bigint)),
upserted AS (
    INSERT INTO {{schema}}.tenant_limits (tenant_id, scope, requests_per_minute, tokens_per_day)
    SELECT $1, scope, rpm, tpd FROM wanted WHERE rpm > 0 OR tpd > 0
    ON CONFLICT (tenant_id, scope) DO UPDATE
    SET requests_per_minute = EXCLUDED.requests_per_minute, tokens_per_day = EXCLUDED.tokens_per_day, updated_at = now()
), removed AS (
    DELETE FROM {{schema}}.tenant_limits l USING wanted w
    WHERE l.tenant_id = $1 AND l.scope = w.scope AND w.rpm = 0 AND w.tpd = 0
), forgotten AS (
    DELETE FROM {{schema}}.model_request_counts WHERE tenant_id = $1 AND $2 = 0 AND $4 = 0
)
DELETE FROM {{schema}}.model_requests WHERE tenant_id = $1 AND $2 = 0 AND $4 = 0`

// lockLimitsSQL locks the tenant's limit rows in the order
// admit_model_call locks them.
const lockLimitsSQL = `SELECT 1 FROM {{schema}}.tenant_limits WHERE tenant_id = $1 ORDER BY scope FOR UPDATE`

// SetLimits replaces the tenant's limits, in one round trip.
func (s *Store) SetLimits(ctx context.Context, tenantID string, l Limits) error {
	batch := &pgx.Batch{}
	batch.Queue(s.q(lockLimitsSQL), tenantID)
	batch.Queue(s.q(setLimitsSQL), tenantID,
		l.RequestsPerMinute, l.TokensPerDay, l.SessionRequestsPerMinute, l.SessionTokensPerDay)
	if err := s.as(tenantID).SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("storing the tenant's limits: %w", err)
	}
	return nil
}

// DailyUsage is a row of the usage table: one tenant's usage of one model
// on one UTC day.
type DailyUsage struct {
	Day      time.Time
	Model    string
	Requests int64
	Usage    Usage
}

const tenantUsageSQL = `
SELECT day, model, sum(requests)::bigint, sum(input_tokens)::bigint, sum(output_tokens)::bigint,
       sum(cache_read_tokens)::bigint, sum(cache_write_tokens)::bigint
FROM {{schema}}.tenant_usage
WHERE tenant_id = $1 AND day >= $2 AND day <= $3
GROUP BY day, model
ORDER BY day, model`

// TenantUsage returns the tenant's usage from day from to day to, both
// included, by day and model.
func (s *Store) TenantUsage(ctx context.Context, tenantID string, from, to time.Time) ([]DailyUsage, error) {
	return queryAll(ctx, s.as(tenantID), "usage", s.q(tenantUsageSQL), func(row pgx.CollectableRow) (DailyUsage, error) {
		var d DailyUsage
		err := row.Scan(&d.Day, &d.Model, &d.Requests,
			&d.Usage.InputTokens, &d.Usage.OutputTokens, &d.Usage.CacheReadTokens, &d.Usage.CacheWriteTokens)
		return d, err
	}, tenantID, pgDate(from), pgDate(to))
}

// pgDate is t's UTC day, as a date parameter.
func pgDate(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// Anomaly is a tenant whose tokens of the day exceed a multiple of its
// trailing daily average.
type Anomaly struct {
	TenantID    string
	TodayTokens int64
	TrailingAvg float64
	Ratio       float64
}

// usageAnomaliesSQL calls usage_anomalies, which crosses tenants with its
// owner's rights (migration 011).
const usageAnomaliesSQL = `SELECT tenant_id, today_tokens, trailing_avg, ratio FROM {{schema}}.usage_anomalies($1)`

// UsageAnomalies returns, across tenants, those whose input and output
// tokens of the current UTC day exceed threshold times their daily average
// of the seven days before, the most anomalous first: a narrow cross-tenant
// path, which reads tenant ids and token counts only.
func (s *Store) UsageAnomalies(ctx context.Context, threshold float64) ([]Anomaly, error) {
	return queryAll(ctx, s.noTenant(), "usage anomalies", s.q(usageAnomaliesSQL), func(row pgx.CollectableRow) (Anomaly, error) {
		var a Anomaly
		err := row.Scan(&a.TenantID, &a.TodayTokens, &a.TrailingAvg, &a.Ratio)
		return a, err
	}, threshold)
}

// limitedTenantsSQL calls the function of migration 011 that counts,
// across tenants, those with limits.
const limitedTenantsSQL = `SELECT {{schema}}.limited_tenants()`

// LimitedTenants returns how many tenants have a limit set: a narrow
// cross-tenant path, which reads a count only.
func (s *Store) LimitedTenants(ctx context.Context) (int, error) {
	var n int
	err := s.noTenant().QueryRow(ctx, s.q(limitedTenantsSQL)).Scan(&n)
	return n, err
}
