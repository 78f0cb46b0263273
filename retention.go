package agentpg

import (
	"context"
	"fmt"
	"time"

	"github.com/agentpg/agentpg/internal/store"
)

// RetentionPolicy says how long a tenant's data is kept. A zero period
// keeps that data forever.
type RetentionPolicy struct {
	// Sessions: a session (with its messages, runs, tool calls, events,
	// archive and nested agents' sessions) not updated for this long is
	// deleted, unless a run holds it or waits in it.
	Sessions time.Duration
	// Archive: messages compaction archived this long ago are deleted.
	Archive time.Duration
	// RunEvents: the events of runs that ended are deleted this long after
	// they were written; the runs and their messages stay.
	RunEvents time.Duration
}

// GuideRetention is the retention of the security guide's two statements:
// sessions not updated for 90 days, and messages archived 30 days ago, are
// deleted. Switch it on for every tenant without a policy of its own with
// SetRetention(ctx, "", GuideRetention).
var GuideRetention = RetentionPolicy{Sessions: 90 * 24 * time.Hour, Archive: 30 * 24 * time.Hour}

// DefaultRetentionBatchSize is Config.RetentionBatchSize's default.
const DefaultRetentionBatchSize = 1000

// SetRetention stores the tenant's retention policy, which ApplyRetention
// (and the Workers' periodic job) enforces. The tenant "" sets the default,
// for tenants without a policy of their own; a tenant's policy replaces the
// default as a whole. RemoveRetention goes back to the default.
func (a *Agent) SetRetention(ctx context.Context, tenantID string, p RetentionPolicy) error {
	if tenantID != "" {
		if err := validateTenant(tenantID); err != nil {
			return err
		}
	}
	if p.Sessions < 0 || p.Archive < 0 || p.RunEvents < 0 {
		return fmt.Errorf("agentpg: %w: retention periods must not be negative", ErrInvalidArgument)
	}
	err := a.store.SetRetention(ctx, store.RetentionPolicy{TenantID: tenantID, Sessions: p.Sessions, Archive: p.Archive, RunEvents: p.RunEvents})
	if err != nil {
		return fmt.Errorf("agentpg: storing the retention policy: %w", err)
	}
	a.cfg.Logger.InfoContext(ctx, "retention policy set", "tenant_id", tenantID,
		"sessions", p.Sessions, "archive", p.Archive, "run_events", p.RunEvents)
	return nil
}

// RemoveRetention deletes the tenant's own retention policy, if it has
// one, so that the default applies to it again; with tenant "", it removes
// the default.
func (a *Agent) RemoveRetention(ctx context.Context, tenantID string) error {
	if err := a.store.RemoveRetention(ctx, tenantID); err != nil {
		return fmt.Errorf("agentpg: removing the retention policy: %w", err)
	}
	return nil
}

// RetentionPolicies returns the stored policies by tenant, the default
// under "".
func (a *Agent) RetentionPolicies(ctx context.Context) (map[string]RetentionPolicy, error) {
	rows, err := a.store.ListRetention(ctx)
	if err != nil {
		return nil, fmt.Errorf("agentpg: reading the retention policies: %w", err)
	}
	policies := make(map[string]RetentionPolicy, len(rows))
	for _, p := range rows {
		policies[p.TenantID] = RetentionPolicy{Sessions: p.Sessions, Archive: p.Archive, RunEvents: p.RunEvents}
	}
	return policies, nil
}

// RetentionCounts count what retention deleted, or would delete.
type RetentionCounts struct {
	Sessions         int64 // root sessions, each with all that belongs to it
	ArchivedMessages int64
	RunEvents        int64
}

// RetentionReport is what ApplyRetention deleted: in all, and by tenant.
type RetentionReport struct {
	RetentionCounts
	Tenants map[string]RetentionCounts
	// Batches is how many statements deleted rows; each deleted at most
	// Config.RetentionBatchSize.
	Batches int
}

// add counts n rows of kind deleted for each tenant.
func (r *RetentionReport) add(kind store.RetentionKind, byTenant map[string]int64) {
	if r.Tenants == nil {
		r.Tenants = map[string]RetentionCounts{}
	}
	for tenant, n := range byTenant {
		c := r.Tenants[tenant]
		for _, counts := range []*RetentionCounts{&c, &r.RetentionCounts} {
			switch kind {
			case store.RetainSessions:
				counts.Sessions += n
			case store.RetainArchive:
				counts.ArchivedMessages += n
			case store.RetainRunEvents:
				counts.RunEvents += n
			}
		}
		r.Tenants[tenant] = c
	}
}

// retentionKinds are the kinds ApplyRetention deletes, in order.
var retentionKinds = []store.RetentionKind{store.RetainRunEvents, store.RetainArchive, store.RetainSessions}

// ApplyRetention deletes, for every tenant, what its retention policy (or
// the default) says has expired, in statements of at most
// Config.RetentionBatchSize rows each, so that no lock is held long. It is
// what the Workers' periodic job runs; processes may run it at once: each
// skips the rows another is deleting. Should ctx end, it returns what it
// deleted so far with ctx's error; the next pass goes on from there.
func (a *Agent) ApplyRetention(ctx context.Context) (RetentionReport, error) {
	var report RetentionReport
	for _, kind := range retentionKinds {
		for {
			deleted, err := a.store.ApplyRetention(ctx, kind, a.cfg.RetentionBatchSize)
			if err != nil {
				return report, fmt.Errorf("agentpg: applying retention: %w", err)
			}
			var n int64
			for _, c := range deleted {
				n += c
			}
			if n == 0 {
				break
			}
			report.Batches++
			report.add(kind, deleted)
			if n < int64(a.cfg.RetentionBatchSize) {
				break
			}
		}
	}
	if report.Batches > 0 {
		a.cfg.Logger.InfoContext(ctx, "retention applied", "sessions", report.Sessions,
			"archived_messages", report.ArchivedMessages, "run_events", report.RunEvents, "batches", report.Batches)
	}
	return report, nil
}

// PreviewRetention returns what ApplyRetention would delete now, deleting
// nothing.
func (a *Agent) PreviewRetention(ctx context.Context) (RetentionReport, error) {
	var report RetentionReport
	for _, kind := range retentionKinds {
		counts, err := a.store.CountRetention(ctx, kind)
		if err != nil {
			return report, fmt.Errorf("agentpg: counting expired rows: %w", err)
		}
		report.add(kind, counts)
	}
	return report, nil
}
