package agentpg

import (
	"context"
	"errors"
	"fmt"

	"github.com/agentpg/agentpg/internal/store"
)

// GrantAppRole grants role exactly the privileges AgentPG needs at run
// time in the configured schema, River's queue included: USAGE on the
// schema, SELECT, INSERT, UPDATE and DELETE where the library uses them,
// USAGE on the sequences and EXECUTE on the one cross-tenant function (the
// rescuer's); no ownership, no DDL. What role held there before is revoked
// first, so running it again after each Migrate keeps the privileges exact.
//
// Run it as the owner of the tables (the role that runs Migrate); the
// application then connects as role, and row-level security keeps each
// statement to its tenant's rows (see docs/deployment.md). role must exist
// and must be an application role: not a superuser, without BYPASSRLS,
// neither owner of the schema or its tables nor a member of their owner;
// otherwise GrantAppRole returns ErrInvalidArgument, as it does for a name
// PostgreSQL reserves (PUBLIC, pg_*).
func (a *Agent) GrantAppRole(ctx context.Context, role string) error {
	err := a.store.GrantAppRole(ctx, role)
	switch {
	case errors.Is(err, store.ErrUnfitRole):
		return fmt.Errorf("agentpg: %w: %w", ErrInvalidArgument, err)
	case err != nil:
		return fmt.Errorf("agentpg: granting role %q in schema %s: %w", role, a.cfg.Schema, err)
	}
	return nil
}
