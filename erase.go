package agentpg

import (
	"context"
	"fmt"

	"github.com/agentpg/agentpg/internal/store"
)

// ErasureCounts are the rows an erasure deletes, by kind.
type ErasureCounts struct {
	Sessions, Messages, ArchivedMessages, Runs, ToolCalls, RunEvents int64
}

// EraseTenant deletes every row of the tenant: its sessions with their
// messages, archive, runs, tool calls, events and nested agents' sessions,
// its settings (retention policy, limits), its usage and its data keys
// (crypto-shredding: see Config.Keys); in its audit log,
// the content of every entry is blanked and a tombstone says who erased it
// and when (the chain still verifies). Runs of the tenant still going fail
// at their next write. It deletes in statements of at most
// Config.RetentionBatchSize sessions; should it be interrupted, calling it
// again finishes.
func (a *Agent) EraseTenant(ctx context.Context, tenantID string) error {
	if err := validateTenant(tenantID); err != nil {
		return err
	}
	if err := a.erase(ctx, store.Erasure{TenantID: tenantID}); err != nil {
		return err
	}
	if err := a.store.EraseTenantSettings(ctx, tenantID); err != nil {
		return fmt.Errorf("agentpg: erasing the tenant's settings: %w", err)
	}
	// Crypto-shredding: without its data keys, any copy of the tenant's
	// ciphertext (a backup, a replica) no longer opens with this database.
	if _, err := a.store.DeleteDataKeys(ctx, tenantID); err != nil {
		return fmt.Errorf("agentpg: erasing the tenant's data keys: %w", err)
	}
	if _, err := a.audit.EraseTenant(ctx, tenantID, a.actor(ctx)); err != nil {
		return fmt.Errorf("agentpg: erasing the tenant's audit entries: %w", err)
	}
	a.cfg.Logger.InfoContext(ctx, "tenant erased", "tenant_id", tenantID)
	return nil
}

// EraseIdentifier deletes everything of one end user of the tenant: the
// session with that identifier, the nested agents' sessions under it, and
// their messages, archive, runs, tool calls and events; and the content of
// the audit entries whose UserID is identifier (the Agent records a run's
// entries under its session's identifier), leaving a tombstone. Other
// sessions of the tenant are untouched. A run of the session still going fails at its
// next write. Erasing an identifier the tenant does not have does nothing.
func (a *Agent) EraseIdentifier(ctx context.Context, tenantID, identifier string) error {
	if err := validateTenant(tenantID); err != nil {
		return err
	}
	if err := validateIdentifier(identifier); err != nil {
		return err
	}
	if err := a.erase(ctx, store.Erasure{TenantID: tenantID, Identifier: &identifier}); err != nil {
		return err
	}
	if _, err := a.audit.Erase(ctx, tenantID, identifier, a.actor(ctx)); err != nil {
		return fmt.Errorf("agentpg: erasing the identifier's audit entries: %w", err)
	}
	a.cfg.Logger.InfoContext(ctx, "identifier erased", "tenant_id", tenantID)
	return nil
}

// PreviewErasure returns what EraseTenant (identifier "") or
// EraseIdentifier would delete, deleting nothing.
func (a *Agent) PreviewErasure(ctx context.Context, tenantID, identifier string) (ErasureCounts, error) {
	if err := validateTenant(tenantID); err != nil {
		return ErasureCounts{}, err
	}
	e := store.Erasure{TenantID: tenantID}
	if identifier != "" {
		e.Identifier = &identifier
	}
	c, err := a.store.CountErasure(ctx, e)
	if err != nil {
		return ErasureCounts{}, fmt.Errorf("agentpg: counting what the erasure deletes: %w", err)
	}
	return ErasureCounts(c), nil
}

// erase deletes the sessions e names in batches, and forgets their cached
// conversations.
func (a *Agent) erase(ctx context.Context, e store.Erasure) error {
	for {
		ids, err := a.store.EraseSessions(ctx, e, a.cfg.RetentionBatchSize)
		if err != nil {
			return fmt.Errorf("agentpg: erasing sessions: %w", err)
		}
		for _, id := range ids {
			a.cache.Remove(id)
		}
		if len(ids) < a.cfg.RetentionBatchSize {
			return nil
		}
	}
}
