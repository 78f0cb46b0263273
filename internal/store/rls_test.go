package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/internal/store"
)

// tenantTables are the tables migration 011 puts under row-level security.
var tenantTables = []string{
	"audit_heads", "audit_log", "compaction_events", "data_keys", "message_archive", "messages", "model_request_counts",
	"model_requests", "run_events", "runs", "session_waiters", "sessions", "tenant_limits", "tenant_usage", "tool_executions",
}

// populate stores, through st, a row of the tenant in every tenant table:
// limits, a session and its child, a completed run with a tool call and
// events, its model call admitted and its usage counted, a run of the
// child called by it, a compaction that archived a message, a waiter, a
// queued run and an audit entry. It returns the session's id.
func populate(t *testing.T, st *store.Store, tenant string) string {
	t.Helper()
	ctx := t.Context()
	if err := st.SetLimits(ctx, tenant, store.Limits{RequestsPerMinute: 1000, TokensPerDay: 1 << 40}); err != nil {
		t.Fatalf("SetLimits: %v", err)
	}
	sessionID, childID := uuid.NewString(), uuid.NewString()
	if _, err := st.CreateSession(ctx, store.CreateSessionParams{ID: sessionID, TenantID: tenant, Identifier: "main"}); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	if _, err := st.CreateSession(ctx, store.CreateSessionParams{ID: childID, TenantID: tenant, Identifier: "child", ParentID: &sessionID}); err != nil {
		t.Fatalf("CreateSession of the child: %v", err)
	}
	text := func(s string) json.RawMessage { return json.RawMessage(`[{"type":"text","text":"` + s + `"}]`) }
	turn := func(sessionID string, parentRunID *string) string {
		begun, err := st.BeginRun(ctx, store.BeginRunParams{TenantID: tenant, SessionID: sessionID, RunID: uuid.NewString(),
			Model: "m", LeaseTTL: time.Minute, ParentRunID: parentRunID})
		if err != nil {
			t.Fatalf("BeginRun: %v", err)
		}
		now := time.Now()
		_, err = st.CommitStep(ctx, begun.Lease, store.StepParams{
			Messages: []store.NewMessage{
				{ID: uuid.NewString(), Role: "user", Content: text("hello")},
				{ID: uuid.NewString(), Role: "assistant", Content: text("hi")},
			},
			ToolCalls: []store.ToolCall{{ID: uuid.NewString(), ToolUseID: "toolu_1", Name: "echo", Input: json.RawMessage(`{}`),
				Status: store.ToolCompleted, Output: "ok", StartedAt: now, FinishedAt: now}},
			Events: append(textEvents("hi"), runEnd()),
			Status: store.RunCompleted, Iterations: 1, StopReason: "end_turn",
			Model: "m", Usage: store.Usage{InputTokens: 10, OutputTokens: 5},
		})
		if err != nil {
			t.Fatalf("CommitStep: %v", err)
		}
		return begun.Lease.RunID
	}
	runID := turn(sessionID, nil)
	turn(childID, &runID)
	turn(sessionID, nil)

	lease, err := st.AcquireLease(ctx, tenant, sessionID, uuid.NewString(), time.Minute)
	if err != nil {
		t.Fatalf("AcquireLease: %v", err)
	}
	archived, err := st.ApplyCompaction(ctx, lease, time.Minute, store.Compaction{ID: uuid.NewString(), Strategy: "summarize",
		Trigger: "manual", ArchiveBeforeSeq: 3, Summary: &store.Summary{Text: "they greeted", FirstIntent: "hello"}})
	if err != nil || archived != 2 {
		t.Fatalf("ApplyCompaction: %d archived, %v", archived, err)
	}
	if err := st.ReleaseLease(ctx, lease); err != nil {
		t.Fatal(err)
	}
	if _, err := st.TakeTicket(ctx, tenant, sessionID, time.Minute); err != nil {
		t.Fatalf("TakeTicket: %v", err)
	}
	_, err = st.EnqueueRun(ctx, store.EnqueueRunParams{TenantID: tenant, SessionID: sessionID, RunID: uuid.NewString(), Model: "m",
		Prompt: text("later"), Job: testJob})
	if err != nil {
		t.Fatalf("EnqueueRun: %v", err)
	}
	err = st.AppendAudit(ctx, []string{tenant}, func(heads map[string]store.AuditHead) ([]store.AuditRow, error) {
		h := heads[tenant]
		return []store.AuditRow{{TenantID: tenant, Seq: h.Seq + 1, OccurredAt: time.Now(), Action: "test",
			ContentHash: []byte{1}, PrevHash: h.Hash, Hash: []byte{2}}}, nil
	})
	if err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	return sessionID
}

// inTenant runs fn in a transaction of conn with the tenant setting set to
// tenant ("" for none), and rolls it back.
func inTenant(t *testing.T, conn *pgxpool.Pool, tenant string, fn func(tx pgx.Tx)) {
	t.Helper()
	ctx := t.Context()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if tenant != "" {
		if _, err := tx.Exec(ctx, `SELECT set_config($1, $2, true)`, store.TenantSetting, tenant); err != nil {
			t.Fatal(err)
		}
	}
	fn(tx)
}

func count(t *testing.T, tx pgx.Tx, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := tx.QueryRow(t.Context(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != code {
		t.Errorf("%s: %v, want SQLSTATE %s", what, err, code)
	}
}

// TestRowLevelSecurityAsAppRole is the cross-tenant suite on the database
// itself: raw SQL as the application role, on every tenant table, with no
// tenant, with the wrong tenant and with the right one.
func TestRowLevelSecurityAsAppRole(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	app := agentpgtest.DBWithOptions(t, agentpgtest.DBOptions{AppRole: true})
	su := agentpgtest.OwnerDB(t, app)
	st, err := store.New(app, "")
	if err == nil {
		st, err = st.WithKeys(testKeys(t))
	}
	if err != nil {
		t.Fatal(err)
	}
	// The store, as the application role, writes every table of both
	// tenants, content encrypted: it sends the tenant with every statement.
	populate(t, st, "acme")
	populate(t, st, "globex")

	security, err := st.TenantTables(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for _, s := range security {
		tables = append(tables, s.Table)
		if !s.Enabled || !s.Forced || !s.Policy {
			t.Errorf("table %s: row-level security enabled %v, forced %v, tenant policy %v; want all", s.Table, s.Enabled, s.Forced, s.Policy)
		}
	}
	if !slices.Equal(tables, tenantTables) {
		t.Errorf("tenant tables %v, want %v", tables, tenantTables)
	}

	for _, table := range tables {
		t.Run(table, func(t *testing.T) {
			ident := pgx.Identifier{"agentpg", table}.Sanitize()
			var acme, globex int
			inTenant(t, su, "", func(tx pgx.Tx) {
				acme = count(t, tx, `SELECT count(*) FROM `+ident+` WHERE tenant_id = 'acme'`)
				globex = count(t, tx, `SELECT count(*) FROM `+ident+` WHERE tenant_id = 'globex'`)
			})
			// Both tenants have the same fixture, but a tenant's usage has a
			// row per shard its sessions add to, which their random ids pick.
			if acme == 0 || globex == 0 || acme != globex && table != "tenant_usage" {
				t.Fatalf("the fixture stored %d rows of acme and %d of globex, want the same, not none", acme, globex)
			}

			// No tenant: nothing to read, update or delete; the wrong
			// tenant: none of acme's rows, whatever the filter. Writes the
			// role has no privilege for are refused outright.
			for _, tenant := range []string{"", "globex"} {
				inTenant(t, app, tenant, func(tx pgx.Tx) {
					want := map[string]int{"": 0, "globex": globex}[tenant]
					if n := count(t, tx, `SELECT count(*) FROM `+ident); n != want {
						t.Errorf("with tenant %q, the app role sees %d rows, want %d", tenant, n, want)
					}
					if n := count(t, tx, `SELECT count(*) FROM `+ident+` WHERE tenant_id = 'acme'`); n != 0 {
						t.Errorf("with tenant %q, the app role sees %d rows of acme", tenant, n)
					}
				})
				for _, write := range []struct{ privilege, sql string }{
					{"UPDATE", `UPDATE ` + ident + ` SET tenant_id = tenant_id WHERE tenant_id = 'acme'`},
					{"DELETE", `DELETE FROM ` + ident + ` WHERE tenant_id = 'acme'`},
				} {
					inTenant(t, app, tenant, func(tx pgx.Tx) {
						var granted bool
						if err := tx.QueryRow(ctx, `SELECT has_table_privilege($1, $2)`, ident, write.privilege).Scan(&granted); err != nil {
							t.Fatal(err)
						}
						tag, err := tx.Exec(ctx, write.sql)
						switch {
						case !granted:
							wantCode(t, fmt.Sprintf("with tenant %q, %s", tenant, write.sql), err, "42501")
						case err != nil || tag.RowsAffected() != 0:
							t.Errorf("with tenant %q, %s: %d rows, %v; want none", tenant, write.sql, tag.RowsAffected(), err)
						}
					})
				}
			}
			// An empty setting, as a pooled connection has once a
			// transaction that set it ended, is no tenant either.
			inTenant(t, app, "", func(tx pgx.Tx) {
				if _, err := tx.Exec(ctx, `SELECT set_config($1, '', true)`, store.TenantSetting); err != nil {
					t.Fatal(err)
				}
				if n := count(t, tx, `SELECT count(*) FROM `+ident); n != 0 {
					t.Errorf("with an empty tenant, the app role sees %d rows", n)
				}
			})
			// Nor can globex write a row of acme's, or hand its rows over.
			inTenant(t, app, "globex", func(tx pgx.Tx) {
				_, err := tx.Exec(ctx, `SAVEPOINT s`)
				if err != nil {
					t.Fatal(err)
				}
				_, err = tx.Exec(ctx, `INSERT INTO `+ident+` SELECT (jsonb_populate_record(NULL::`+ident+`,
					to_jsonb(r) || '{"tenant_id": "acme"}')).* FROM `+ident+` r LIMIT 1`)
				wantCode(t, "as globex, inserting a row of acme", err, "42501")
				if _, err := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT s`); err != nil {
					t.Fatal(err)
				}
				_, err = tx.Exec(ctx, `UPDATE `+ident+` SET tenant_id = 'acme'`)
				wantCode(t, "as globex, moving its rows to acme", err, "42501")
			})
			// The right tenant sees its rows, all of them.
			inTenant(t, app, "acme", func(tx pgx.Tx) {
				if n := count(t, tx, `SELECT count(*) FROM `+ident); n != acme {
					t.Errorf("as acme, the app role sees %d rows, want %d", n, acme)
				}
			})
		})
	}

	// The application role may not lift the wall.
	for _, sql := range []string{
		`ALTER TABLE agentpg.sessions DISABLE ROW LEVEL SECURITY`,
		`ALTER TABLE agentpg.sessions NO FORCE ROW LEVEL SECURITY`,
		`DROP POLICY agentpg_tenant ON agentpg.sessions`,
		`SELECT agentpg.agentpg_enable_tenant_rls('agentpg.sessions')`,
		`TRUNCATE agentpg.messages`,
		`CREATE TABLE agentpg.mine (id int)`,
	} {
		_, err := app.Exec(ctx, sql)
		wantCode(t, "the app role: "+sql, err, "42501") // insufficient_privilege
	}
	// With row_security off, a query that policies would filter fails
	// rather than show everything.
	inTenant(t, app, "acme", func(tx pgx.Tx) {
		if _, err := tx.Exec(ctx, `SET LOCAL row_security = off`); err != nil {
			t.Fatal(err)
		}
		_, err := tx.Exec(ctx, `SELECT count(*) FROM agentpg.sessions`)
		wantCode(t, "the app role with row_security off", err, "42501")
	})
	// Setting the cross-tenant switch does nothing for it: the policy
	// that reads it is the owner's.
	inTenant(t, app, "", func(tx pgx.Tx) {
		if _, err := tx.Exec(ctx, `SET LOCAL agentpg.cross_tenant = 'on'`); err != nil {
			t.Fatal(err)
		}
		if n := count(t, tx, `SELECT count(*) FROM agentpg.runs`); n != 0 {
			t.Errorf("with agentpg.cross_tenant on, the app role sees %d runs", n)
		}
	})
}

// TestForeignKeysIncludeTheTenant checks that every foreign key between
// tenant tables pairs tenant_id with tenant_id, and that the schema refuses
// rows that mix tenants, even from a superuser.
func TestForeignKeysIncludeTheTenant(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	su := agentpgtest.DB(t)
	rows, err := su.Query(ctx, `
SELECT c.conrelid::regclass::text, c.conname,
       (SELECT array_agg(a.attname::text ORDER BY k.n) FROM unnest(c.conkey) WITH ORDINALITY k(num, n)
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.num),
       (SELECT array_agg(a.attname::text ORDER BY k.n) FROM unnest(c.confkey) WITH ORDINALITY k(num, n)
        JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.num)
FROM pg_constraint c
WHERE c.contype = 'f' AND c.connamespace = 'agentpg'::regnamespace
  AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.confrelid AND a.attname = 'tenant_id')
ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	type fk struct {
		table, name       string
		columns, referred []string
	}
	fks, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (fk, error) {
		var k fk
		err := row.Scan(&k.table, &k.name, &k.columns, &k.referred)
		return k, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(fks) < 12 {
		t.Errorf("found %d foreign keys to tenant tables, want the 12 of the migrations at least", len(fks))
	}
	for _, k := range fks {
		i := slices.Index(k.columns, "tenant_id")
		if i < 0 || k.referred[i] != "tenant_id" {
			t.Errorf("foreign key %s of %s: (%s) references (%s), without tenant_id on both sides",
				k.name, k.table, strings.Join(k.columns, ", "), strings.Join(k.referred, ", "))
		}
	}

	st, err := store.New(su, "")
	if err != nil {
		t.Fatal(err)
	}
	acme := populate(t, st, "acme")
	globex := populate(t, st, "globex")
	var acmeRun string
	if err := su.QueryRow(ctx, `SELECT id::text FROM agentpg.runs WHERE session_id = $1 LIMIT 1`, acme).Scan(&acmeRun); err != nil {
		t.Fatal(err)
	}
	for what, sql := range map[string]string{
		"a message of globex in acme's session": fmt.Sprintf(`INSERT INTO agentpg.messages (id, session_id, tenant_id, seq, role, content)
			VALUES (gen_random_uuid(), '%s', 'globex', 100, 'user', '[{"type":"text","text":"x"}]')`, acme),
		"a message of globex's session in acme's run": fmt.Sprintf(`INSERT INTO agentpg.messages (id, session_id, tenant_id, run_id, seq, role, content)
			VALUES (gen_random_uuid(), '%s', 'globex', '%s', 100, 'user', '[{"type":"text","text":"x"}]')`, globex, acmeRun),
		"a run of globex in acme's session": fmt.Sprintf(`INSERT INTO agentpg.runs (id, session_id, tenant_id, lease_token, model)
			VALUES (gen_random_uuid(), '%s', 'globex', 0, 'm')`, acme),
		"a session of globex under acme's": fmt.Sprintf(`INSERT INTO agentpg.sessions (id, tenant_id, identifier, parent_id)
			VALUES (gen_random_uuid(), 'globex', 'mixed', '%s')`, acme),
		"a tool call of globex in acme's run": fmt.Sprintf(`INSERT INTO agentpg.tool_executions (id, run_id, session_id, tenant_id, tool_use_id, name, input)
			VALUES (gen_random_uuid(), '%s', '%s', 'globex', 't', 'n', '{}')`, acmeRun, globex),
		"an event of globex in acme's run": fmt.Sprintf(`INSERT INTO agentpg.run_events (run_id, tenant_id, seq, kind, data)
			VALUES ('%s', 'globex', 100, 'text', '{}')`, acmeRun),
		"acme's run moved to globex": fmt.Sprintf(`UPDATE agentpg.runs SET tenant_id = 'globex' WHERE id = '%s'`, acmeRun),
	} {
		_, err := su.Exec(ctx, sql)
		wantCode(t, what, err, "23503") // foreign_key_violation
	}
}

// TestCrossTenantFunctions deploys as the guide says: tables migrated by
// an owner role that is not a superuser (so that FORCE ROW LEVEL SECURITY
// binds it too), the application connected as another role. The rescuer,
// retention and the cross-tenant listings reach every tenant through their
// SECURITY DEFINER functions, while neither role sees any tenant's rows
// without the setting.
func TestCrossTenantFunctions(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	su := agentpgtest.DB(t)
	owner, app := testRole(t, su, "owner"), testRole(t, su, "app")
	if _, err := su.Exec(ctx, `GRANT CREATE ON DATABASE `+pgx.Identifier{su.Config().ConnConfig.Database}.Sanitize()+
		` TO `+pgx.Identifier{owner.name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	ownerStore, err := store.New(owner.pool, "owned")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ownerStore.Migrate(ctx); err != nil {
		t.Fatalf("Migrate as a role that is not a superuser: %v", err)
	}
	if err := ownerStore.GrantAppRole(ctx, app.name); err != nil {
		t.Fatalf("GrantAppRole: %v", err)
	}
	appStore, err := store.New(app.pool, "owned")
	if err != nil {
		t.Fatal(err)
	}
	var stuck []string
	for _, tenant := range []string{"acme", "globex"} {
		sessionID := uuid.NewString()
		if _, err := appStore.CreateSession(ctx, store.CreateSessionParams{ID: sessionID, TenantID: tenant, Identifier: "s"}); err != nil {
			t.Fatal(err)
		}
		begun, err := appStore.BeginRun(ctx, store.BeginRunParams{TenantID: tenant, SessionID: sessionID, RunID: uuid.NewString(),
			Model: "m", LeaseTTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		stuck = append(stuck, begun.Lease.RunID)
	}
	// Their processes died an hour ago.
	if _, err := su.Exec(ctx, `UPDATE owned.runs SET started_at = now() - interval '1 hour';
		UPDATE owned.sessions SET lease_expires_at = now() - interval '1 hour'`); err != nil {
		t.Fatal(err)
	}

	for _, r := range []testRoleConn{owner, app} {
		var n int
		if err := r.pool.QueryRow(ctx, `SELECT count(*) FROM owned.runs`).Scan(&n); err != nil || n != 0 {
			t.Errorf("without a tenant, role %s sees %d runs (%v), want none", r.name, n, err)
		}
	}
	// Maintenance as the owner names the exception in its transaction
	// (docs/deployment.md); the app role cannot.
	for _, r := range []testRoleConn{owner, app} {
		tx, err := r.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if _, err := tx.Exec(ctx, `SET LOCAL agentpg.cross_tenant = 'on'`); err != nil {
			t.Fatal(err)
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM owned.runs`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if want := map[string]int{owner.name: 2, app.name: 0}[r.name]; n != want {
			t.Errorf("with agentpg.cross_tenant on, role %s sees %d runs, want %d", r.name, n, want)
		}
		tx.Rollback(ctx)
	}
	failed, err := appStore.FailStuckRuns(ctx, time.Minute, "stuck")
	if err != nil {
		t.Fatalf("FailStuckRuns as the app role: %v", err)
	}
	slices.Sort(failed)
	slices.Sort(stuck)
	if !slices.Equal(failed, stuck) {
		t.Errorf("FailStuckRuns failed %v, want the runs of both tenants %v", failed, stuck)
	}

	for _, tenant := range []string{"acme", "globex"} {
		if err := appStore.SetLimits(ctx, tenant, store.Limits{RequestsPerMinute: 10}); err != nil {
			t.Fatal(err)
		}
		err := appStore.AppendAudit(ctx, []string{tenant}, func(heads map[string]store.AuditHead) ([]store.AuditRow, error) {
			return []store.AuditRow{{TenantID: tenant, Seq: 1, OccurredAt: time.Now(), Action: "test",
				ContentHash: []byte{1}, PrevHash: heads[tenant].Hash, Hash: []byte{2}}}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if n, err := appStore.LimitedTenants(ctx); err != nil || n != 2 {
		t.Errorf("LimitedTenants = %d, %v; want 2", n, err)
	}
	if tenants, err := appStore.AuditTenants(ctx); err != nil || !slices.Equal(tenants, []string{"acme", "globex"}) {
		t.Errorf("AuditTenants = %v, %v; want acme and globex", tenants, err)
	}
	if _, err := appStore.UsageAnomalies(ctx, 3); err != nil {
		t.Errorf("UsageAnomalies: %v", err)
	}
	if err := appStore.SetRetention(ctx, store.RetentionPolicy{Sessions: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := su.Exec(ctx, `UPDATE owned.sessions SET updated_at = now() - interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"acme": 1, "globex": 1}
	if counts, err := appStore.CountRetention(ctx, store.RetainSessions); err != nil || !maps.Equal(counts, want) {
		t.Errorf("CountRetention = %v, %v; want %v", counts, err, want)
	}
	if deleted, err := appStore.ApplyRetention(ctx, store.RetainSessions, 100); err != nil || !maps.Equal(deleted, want) {
		t.Errorf("ApplyRetention = %v, %v; want %v", deleted, err, want)
	}
	var left int
	if err := su.QueryRow(ctx, `SELECT count(*) FROM owned.sessions`).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d sessions left after retention (%v)", left, err)
	}
}

// TestGrantAppRoleRefusesUnfitRoles checks that GrantAppRole grants only
// to a role row-level security binds, that cannot turn it off.
func TestGrantAppRoleRefusesUnfitRoles(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	su := agentpgtest.DB(t)
	st, err := store.New(su, "")
	if err != nil {
		t.Fatal(err)
	}
	bypass := testRole(t, su, "bypass")
	member := testRole(t, su, "member")
	for _, sql := range []string{
		`ALTER ROLE ` + pgx.Identifier{bypass.name}.Sanitize() + ` BYPASSRLS`,
		`GRANT ` + pgx.Identifier{su.Config().ConnConfig.User}.Sanitize() + ` TO ` + pgx.Identifier{member.name}.Sanitize(),
	} {
		if _, err := su.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ role, want string }{
		{su.Config().ConnConfig.User, "is a superuser"},
		{bypass.name, "has BYPASSRLS"},
		{member.name, "is a member of their owner"},
		{"agentpg_no_such_role", "does not exist"},
		{"public", "reserved"},
		{"PUBLIC", "reserved"},
		{"pg_monitor", "reserved"},
		{"", "empty"},
		{strings.Repeat("r", 64), "over PostgreSQL's 63"},
		{"bad\x00name", "NUL"},
	} {
		err := st.GrantAppRole(ctx, tc.role)
		if !errors.Is(err, store.ErrUnfitRole) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("GrantAppRole(%q) = %v, want ErrUnfitRole saying %q", tc.role, err, tc.want)
		}
	}

	// A fit role gets exactly its privileges, again and again.
	app := testRole(t, su, "app")
	for range 2 {
		if err := st.GrantAppRole(ctx, app.name); err != nil {
			t.Fatalf("GrantAppRole: %v", err)
		}
	}
	var got []string
	rows, err := su.Query(ctx, `
SELECT c.relname || ':' || string_agg(p.privilege_type, ',' ORDER BY p.privilege_type)
FROM pg_class c, aclexplode(c.relacl) p
WHERE c.relnamespace = 'agentpg'::regnamespace AND p.grantee = $1::regrole
GROUP BY c.relname ORDER BY c.relname`, app.name)
	if err != nil {
		t.Fatal(err)
	}
	if got, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"audit_heads:INSERT,SELECT,UPDATE", "audit_log:INSERT,SELECT,UPDATE",
		"compaction_events:INSERT,SELECT", "data_keys:DELETE,INSERT,SELECT,UPDATE", "message_archive:INSERT,SELECT,UPDATE",
		"messages:DELETE,INSERT,SELECT,UPDATE",
		"model_request_counts:DELETE,INSERT,SELECT,UPDATE", "model_requests:DELETE,INSERT,SELECT",
		"retention_policies:DELETE,INSERT,SELECT,UPDATE", "river_job:DELETE,INSERT,SELECT,UPDATE", "river_job_id_seq:USAGE", "river_leader:DELETE,INSERT,SELECT,UPDATE",
		"river_migration:SELECT", "river_notification:DELETE,INSERT,SELECT,UPDATE", "river_notification_id_seq:USAGE",
		"river_queue:DELETE,INSERT,SELECT,UPDATE", "run_events:INSERT,SELECT,UPDATE", "runs:INSERT,SELECT,UPDATE",
		"schema_migrations:SELECT", "session_waiters:DELETE,INSERT,SELECT,UPDATE", "session_waiters_ticket_seq:USAGE",
		"sessions:DELETE,INSERT,SELECT,UPDATE", "tenant_limits:DELETE,INSERT,SELECT,UPDATE",
		"tenant_usage:DELETE,INSERT,SELECT,UPDATE", "tool_executions:INSERT,SELECT,UPDATE",
	}
	if !slices.Equal(got, want) {
		t.Errorf("privileges:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// testRoleConn is a role made for a test, and a pool connected as it.
type testRoleConn struct {
	name string
	pool *pgxpool.Pool
}

// testRole makes a login role, neither superuser nor BYPASSRLS, for the
// test, with a pool on su's database; the role and what it owns there go
// when the test ends.
func testRole(t *testing.T, su *pgxpool.Pool, what string) testRoleConn {
	t.Helper()
	ctx := t.Context()
	name := su.Config().ConnConfig.Database + "_" + what
	password := strings.ReplaceAll(uuid.NewString(), "-", "")
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := su.Exec(ctx, `CREATE ROLE `+ident+` LOGIN PASSWORD '`+password+`'`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if _, err := su.Exec(ctx, `DROP OWNED BY `+ident+` CASCADE`); err != nil {
			t.Errorf("dropping what %s owns: %v", name, err)
		}
		if _, err := su.Exec(ctx, `DROP ROLE `+ident); err != nil {
			t.Errorf("dropping role %s: %v", name, err)
		}
	})
	cfg := su.Config().Copy()
	cfg.ConnConfig.User, cfg.ConnConfig.Password = name, password
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return testRoleConn{name: name, pool: pool}
}
