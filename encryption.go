package agentpg

import (
	"context"
	"fmt"
	"time"

	"github.com/agentpg/agentpg/audit"
	"github.com/agentpg/agentpg/internal/store"
)

// DataKey describes a version of a tenant's data key (see Config.Keys).
type DataKey struct {
	Version int
	// KEKID names the key-encryption key that wraps it.
	KEKID     string
	CreatedAt time.Time
	// RotatedAt is when RotateKeys finished re-encrypting the tenant's
	// rows with this version; nil while a rotation onto it has not
	// finished (RotateKeys resumes it). A version made by the tenant's
	// first encrypted write has it set.
	RotatedAt *time.Time
	// Rows is how many of the tenant's rows are sealed with it.
	Rows int64
}

// KeyStatus is the state of a tenant's encryption at rest.
type KeyStatus struct {
	TenantID string
	// Keys are the tenant's data keys, oldest first; the last one seals
	// new content.
	Keys []DataKey
	// PlaintextRows counts the tenant's rows stored unencrypted: written
	// before Config.Keys was set. RotateKeys encrypts them.
	PlaintextRows int64
}

// KeyStatus reports the tenant's data keys, their age and the rows each
// one seals.
func (a *Agent) KeyStatus(ctx context.Context, tenantID string) (KeyStatus, error) {
	if err := validateTenant(tenantID); err != nil {
		return KeyStatus{}, err
	}
	stored, plaintext, err := a.store.DataKeys(ctx, tenantID)
	if err != nil {
		return KeyStatus{}, fmt.Errorf("agentpg: reading the tenant's data keys: %w", err)
	}
	st := KeyStatus{TenantID: tenantID, PlaintextRows: plaintext, Keys: make([]DataKey, len(stored))}
	for i, k := range stored {
		st.Keys[i] = DataKey(k)
	}
	return st, nil
}

// KeyTenants returns the ids of the tenants with a data key or a session:
// those `agentpg keys rotate --all` visits.
func (a *Agent) KeyTenants(ctx context.Context) ([]string, error) {
	tenants, err := a.store.KeyTenants(ctx)
	if err != nil {
		return nil, fmt.Errorf("agentpg: listing tenants: %w", err)
	}
	return tenants, nil
}

// RotateKeys gives the tenant a new data key and re-encrypts its rows with
// it, Config.RetentionBatchSize rows a transaction, while runs go on: new
// content is sealed with the new key at once in this process and within
// ten seconds in others, and every row stays readable throughout (a row
// keeps the version of the key that sealed it). Data keys wrapped by a
// key-encryption key other than the provider's current one are re-wrapped
// first, which is all a rotation of the key-encryption key needs. Rows
// stored in plaintext, before Config.Keys was set, are encrypted too.
//
// Killed or cancelled, it leaves every row readable, and the next call
// finishes the same rotation rather than starting another. Old versions
// stay stored, wrapped, until the tenant is erased: a process that has not
// yet seen the new version may still seal with an old one, and a later
// rotation re-encrypts what it wrote. It needs Config.Keys.
func (a *Agent) RotateKeys(ctx context.Context, tenantID string) error {
	_, err := a.RotateKeysProgress(ctx, tenantID, nil)
	return err
}

// RotateKeysProgress is RotateKeys, calling progress, when not nil, after
// each batch with the number of rows re-encrypted so far. It returns that
// number.
func (a *Agent) RotateKeysProgress(ctx context.Context, tenantID string, progress func(rows int)) (int, error) {
	if err := validateTenant(tenantID); err != nil {
		return 0, err
	}
	if a.cfg.Keys == nil {
		return 0, fmt.Errorf("agentpg: rotating keys: %w", ErrNoKeys)
	}
	rows, err := a.rotateKeys(ctx, tenantID, progress)
	a.record(ctx, audit.Entry{TenantID: tenantID, Action: audit.ActionKeyRotate, Success: err == nil,
		Detail: fmt.Sprintf("%d rows re-encrypted", rows)})
	if err != nil {
		return rows, fmt.Errorf("agentpg: rotating the keys of tenant %q: %w", tenantID, err)
	}
	a.cfg.Logger.InfoContext(ctx, "data key rotated", "tenant_id", tenantID, "rows", rows)
	return rows, nil
}

func (a *Agent) rotateKeys(ctx context.Context, tenantID string, progress func(rows int)) (int, error) {
	if _, err := a.store.RewrapDataKeys(ctx, tenantID); err != nil {
		return 0, err
	}
	r, err := a.store.BeginRotation(ctx, tenantID)
	if err != nil {
		return 0, err
	}
	total := 0
	for {
		n, err := a.store.ReencryptBatch(ctx, &r, a.cfg.RetentionBatchSize)
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, a.store.FinishRotation(ctx, r)
		}
		total += n
		if progress != nil {
			progress(total)
		}
	}
}

// RewrapKeys wraps again, under the provider's current key-encryption key,
// each of the tenant's data keys wrapped by another, and touches no
// content: the whole of a key-encryption key's rotation (append the new
// key to the provider, make it current, RewrapKeys every tenant, then
// retire the old key). It returns how many data keys it re-wrapped.
// RotateKeys does this first too.
func (a *Agent) RewrapKeys(ctx context.Context, tenantID string) (int, error) {
	if err := validateTenant(tenantID); err != nil {
		return 0, err
	}
	if a.cfg.Keys == nil {
		return 0, fmt.Errorf("agentpg: re-wrapping keys: %w", ErrNoKeys)
	}
	n, err := a.store.RewrapDataKeys(ctx, tenantID)
	if err != nil {
		return n, fmt.Errorf("agentpg: re-wrapping the data keys of tenant %q: %w", tenantID, err)
	}
	return n, nil
}

// ErrNoKeys: content is encrypted and Config.Keys is not set, or an
// operation on keys was asked of an Agent without them.
var ErrNoKeys = store.ErrNoKeys
