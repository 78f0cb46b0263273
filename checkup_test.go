package agentpg_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/audit"
	"github.com/agentpg/agentpg/keys"
	"github.com/agentpg/agentpg/redact"
	"github.com/agentpg/agentpg/tool"
)

// schemaTool is a tool with the input schema the test gives it.
type schemaTool struct {
	name   string
	schema tool.ToolSchema
}

func (t schemaTool) Name() string                 { return t.name }
func (t schemaTool) Description() string          { return "Does nothing." }
func (t schemaTool) InputSchema() tool.ToolSchema { return t.schema }
func (t schemaTool) Execute(context.Context, json.RawMessage) (string, error) {
	return "", nil
}

// checkOf runs the check name of agent's Checkup.
func checkOf(t *testing.T, agent *agentpg.Agent, name string) agentpg.Check {
	t.Helper()
	checks := agent.Checkup(ctx(t), name)
	if len(checks) != 1 || checks[0].Name != name {
		t.Fatalf("Checkup(%q) = %+v, want that check alone", name, checks)
	}
	return checks[0]
}

// wantCheck checks that c has status and that its detail and fix hold
// every one of wants; a Check not ok must say what to do.
func wantCheck(t *testing.T, c agentpg.Check, status agentpg.CheckStatus, wants ...string) {
	t.Helper()
	text := c.Detail + " | " + c.Fix
	if c.Status != status {
		t.Errorf("check %s is %s, want %s: %s", c.Name, c.Status, status, text)
	}
	if (c.Fix == "") != (c.Status == agentpg.CheckOK) {
		t.Errorf("check %s (%s) has fix %q: want one exactly when it is not ok", c.Name, c.Status, c.Fix)
	}
	for _, want := range wants {
		if !strings.Contains(text, want) {
			t.Errorf("check %s says %q, want %q in it", c.Name, text, want)
		}
	}
}

// A tool whose schema declares no properties accepts any JSON object, and
// fails the check, whether it came with the Config or was registered on
// the Executor afterwards; one that takes nothing says so, and passes.
func TestCheckupToolSchemas(t *testing.T) {
	t.Parallel()
	none := false
	b := setup(t, func(c *agentpg.Config) {
		c.Tools = []tool.Tool{weatherTool(t, new(atomic.Int32)), schemaTool{"clock", tool.ToolSchema{AdditionalProperties: &none}}}
	})
	wantCheck(t, checkOf(t, b.agent, agentpg.CheckToolSchemas), agentpg.CheckOK, "each of the 2 tools declares its input")

	if err := b.agent.Executor().Registry().Register(schemaTool{"anything", tool.ToolSchema{Type: "object"}}); err != nil {
		t.Fatal(err)
	}
	c := checkOf(t, b.agent, agentpg.CheckToolSchemas)
	wantCheck(t, c, agentpg.CheckFail, `1 tool of 3 tools declare no input properties`, `"anything"`, "AdditionalProperties to false")
	if strings.Contains(c.Detail, "weather") || strings.Contains(c.Detail, "clock") {
		t.Errorf("the check names tools with a schema: %s", c.Detail)
	}

	bare := setup(t)
	wantCheck(t, checkOf(t, bare.agent, agentpg.CheckToolSchemas), agentpg.CheckOK, "no tools registered")
}

// Without an OnBeforeMessage hook the check warns; with one, whatever it
// does, it passes, saying that AgentPG cannot tell what the hook does.
func TestCheckupPIIFilter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	wantCheck(t, checkOf(t, b.agent, agentpg.CheckPIIFilter), agentpg.CheckWarn, "no OnBeforeMessage hook", "redact.BlockPII()")
	b.agent.OnBeforeMessage(redact.BlockPII())
	wantCheck(t, checkOf(t, b.agent, agentpg.CheckPIIFilter), agentpg.CheckOK, "1 OnBeforeMessage hook registered", "cannot tell what a hook does")
}

// Log redaction passes by default and warns when turned off for a Logger
// that gets records; encryption warns without keys and passes with them.
func TestCheckupLoggingAndKeys(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	provider, err := keys.Static(map[string][]byte{"kek-2026": bytes.Repeat([]byte{7}, keys.KeySize)}, "kek-2026")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name                string
		configure           func(*agentpg.Config)
		redaction, keyCheck agentpg.CheckStatus
		wants               []string
	}{
		{"defaults", func(*agentpg.Config) {}, agentpg.CheckOK, agentpg.CheckWarn, []string{"on: every log record", "Config.Keys is nil"}},
		{"raw logs", func(c *agentpg.Config) { c.Logger, c.DisableLogRedaction = logger, true },
			agentpg.CheckWarn, agentpg.CheckWarn, []string{"log records reach Config.Logger unredacted"}},
		{"no logger", func(c *agentpg.Config) { c.DisableLogRedaction = true },
			agentpg.CheckOK, agentpg.CheckWarn, []string{"without Config.Logger nothing is logged"}},
		{"keys", func(c *agentpg.Config) { c.Logger, c.Keys = logger, provider },
			agentpg.CheckOK, agentpg.CheckOK, []string{`the current key-encryption key is "kek-2026"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tc.configure)
			checks := b.agent.Checkup(ctx(t), agentpg.CheckLogRedaction, agentpg.CheckEncryption)
			wantCheck(t, checks[0], tc.redaction)
			wantCheck(t, checks[1], tc.keyCheck)
			text := checks[0].Detail + checks[1].Detail
			for _, want := range tc.wants {
				if !strings.Contains(text, want) {
					t.Errorf("checks say %q, want %q", text, want)
				}
			}
		})
	}
}

// The audit check warns while the log is off or empty, passes with intact
// chains, and fails, naming the tenant, once an entry is changed behind
// the triggers' back.
func TestCheckupAuditLog(t *testing.T) {
	t.Parallel()
	off := setup(t)
	wantCheck(t, checkOf(t, off.agent, agentpg.CheckAuditLog), agentpg.CheckWarn, "Config.Audit.Enabled is off", "0 tenants")

	b := setupOn(t, off.db, func(c *agentpg.Config) { c.Audit.Enabled = true })
	wantCheck(t, checkOf(t, b.agent, agentpg.CheckAuditLog), agentpg.CheckWarn, "no audit entries", "Agent.AuditLog")
	for _, tenant := range []string{"acme", "globex"} {
		if err := b.agent.AuditLog().Record(audit.Entry{TenantID: tenant, UserID: "u1", Action: audit.ActionToolCall, Tool: "t", Input: "{}", Success: true}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.agent.AuditLog().Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	wantCheck(t, checkOf(t, b.agent, agentpg.CheckAuditLog), agentpg.CheckOK, "Config.Audit.Enabled; 2 tenants, every chain intact")

	tx, err := b.db.Begin(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx(t))
	for _, sql := range []string{`SET LOCAL session_replication_role = replica`, `UPDATE agentpg.audit_log SET success = false WHERE tenant_id = 'globex'`} {
		if _, err := tx.Exec(ctx(t), sql); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx(t)); err != nil {
		t.Fatal(err)
	}
	c := checkOf(t, b.agent, agentpg.CheckAuditLog)
	wantCheck(t, c, agentpg.CheckFail, `the audit chain of tenant "globex" is broken`, "agentpg audit verify")
	// The log that is off still verifies the chains it finds.
	wantCheck(t, checkOf(t, off.agent, agentpg.CheckAuditLog), agentpg.CheckFail, `tenant "globex"`)
}

// An Agent configured as the guide asks, on a database it reaches as an
// application role, with a retention policy and limits, passes every
// check.
func TestCheckupAllGood(t *testing.T) {
	t.Parallel()
	provider, err := keys.Static(map[string][]byte{"k1": bytes.Repeat([]byte{1}, keys.KeySize)}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	b := setupOn(t, agentpgtest.DBWithOptions(t, agentpgtest.DBOptions{AppRole: true}), func(c *agentpg.Config) {
		c.Tools = []tool.Tool{weatherTool(t, new(atomic.Int32))}
		c.Audit.Enabled = true
		c.Keys = provider
	})
	b.agent.OnBeforeMessage(redact.BlockPII())
	wantCheck(t, checkOf(t, b.agent, agentpg.CheckRetention), agentpg.CheckWarn, "no retention policy", "agentpg retention set --default --guide")
	if err := b.agent.SetRetention(ctx(t), "acme", agentpg.GuideRetention); err != nil {
		t.Fatal(err)
	}
	wantCheck(t, checkOf(t, b.agent, agentpg.CheckRetention), agentpg.CheckWarn, "1 tenant with a policy of its own, no default")
	wantCheck(t, checkOf(t, b.agent, agentpg.CheckRateLimits), agentpg.CheckWarn, "no tenant has rate limits", "Agent.SetTenantLimits")
	if err := b.agent.SetRetention(ctx(t), "", agentpg.GuideRetention); err != nil {
		t.Fatal(err)
	}
	// SetTenantLimits is audited: the log gets its entry.
	if err := b.agent.SetTenantLimits(ctx(t), "acme", agentpg.TenantLimits{RequestsPerMinute: 60}); err != nil {
		t.Fatal(err)
	}
	if err := b.agent.AuditLog().Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}

	checks := b.agent.Checkup(ctx(t))
	names := []string{agentpg.CheckToolSchemas, agentpg.CheckPIIFilter, agentpg.CheckLogRedaction, agentpg.CheckEncryption,
		agentpg.CheckMigrations, agentpg.CheckRowLevelSecurity, agentpg.CheckDatabaseRole, agentpg.CheckAuditLog,
		agentpg.CheckRetention, agentpg.CheckRateLimits, agentpg.CheckUsageAnomalies, agentpg.CheckEncryptionAtRest}
	if len(checks) != len(names) {
		t.Fatalf("Checkup returned %d checks, want %d: %+v", len(checks), len(names), checks)
	}
	for i, c := range checks {
		if c.Name != names[i] {
			t.Errorf("check %d is %q, want %q", i, c.Name, names[i])
		}
		wantCheck(t, c, agentpg.CheckOK)
	}
	wantCheck(t, checks[5], agentpg.CheckOK, "forced on the 15 tenant tables")
	wantCheck(t, checks[6], agentpg.CheckOK, "not a superuser, no BYPASSRLS")
	wantCheck(t, checks[7], agentpg.CheckOK, "1 tenant, every chain intact")
	wantCheck(t, checks[8], agentpg.CheckOK, "default policy set; 1 tenant with a policy of its own")
}

// On a schema that was never migrated, the configuration's checks still
// run, and those that read the schema fail unchecked, with the migration's
// fix; a name Checkup does not know fails.
func TestCheckupUnmigrated(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *agentpg.Config) { c.Schema = "checkup_nowhere" })
	checks := b.agent.Checkup(ctx(t), agentpg.CheckRetention, agentpg.CheckToolSchemas, agentpg.CheckMigrations, agentpg.CheckDatabaseRole, "spelling")
	wantCheck(t, checks[0], agentpg.CheckFail, `not checked: schema "checkup_nowhere" does not exist`, "agentpg migrate --schema checkup_nowhere", "Agent.Migrate")
	wantCheck(t, checks[1], agentpg.CheckOK, "no tools registered")
	wantCheck(t, checks[2], agentpg.CheckFail, `schema "checkup_nowhere" does not exist`)
	wantCheck(t, checks[3], agentpg.CheckFail, "is a superuser", "agentpg migrate --app-role")
	wantCheck(t, checks[4], agentpg.CheckFail, "no such check")
	if checks[4].Name != "spelling" {
		t.Errorf("the unknown check is named %q", checks[4].Name)
	}

	// One migration short, the schema is not up to date.
	if err := b.agent.Migrate(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.Exec(ctx(t), `DELETE FROM checkup_nowhere.schema_migrations WHERE version = (SELECT max(version) FROM checkup_nowhere.schema_migrations)`); err != nil {
		t.Fatal(err)
	}
	wantCheck(t, checkOf(t, b.agent, agentpg.CheckRowLevelSecurity), agentpg.CheckFail, `not checked: schema "checkup_nowhere" lacks 1 of`)
}

// The encryption at rest check: warns when a tenant has sessions but no
// data key, when the newest key of a tenant is over MaxKeyAge and when a
// rotation was left unfinished; ok otherwise.
func TestCheckupKeyAge(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *agentpg.Config) { c.Keys = testKeys(t) })
	keyAge := func() agentpg.Check { return b.agent.Checkup(ctx(t), agentpg.CheckEncryptionAtRest)[0] }
	wantCheck(t, keyAge(), agentpg.CheckOK, "no tenant has a data key, nor a session")
	plain := b.another(t, func(c *agentpg.Config) { c.Keys = nil })
	if _, err := plain.NewSession(ctx(t), "acme", "user-1", nil); err != nil {
		t.Fatal(err)
	}
	wantCheck(t, keyAge(), agentpg.CheckWarn, "1 tenant with sessions and no data key", "agentpg keys rotate --all")
	if _, err := b.session(t, "acme", "user-2").Run(ctx(t), "hello"); err != nil {
		t.Fatal(err)
	}
	wantCheck(t, keyAge(), agentpg.CheckOK, "1 tenant with data keys; the oldest in use is 0 days old")
	if _, err := b.db.Exec(ctx(t), `UPDATE agentpg.data_keys SET created_at = now() - interval '100 days'`); err != nil {
		t.Fatal(err)
	}
	wantCheck(t, keyAge(), agentpg.CheckWarn, "the oldest data key in use is 100 days old, over 90", "agentpg keys rotate --all")
	if _, err := b.db.Exec(ctx(t), `UPDATE agentpg.data_keys SET rotated_at = NULL`); err != nil {
		t.Fatal(err)
	}
	wantCheck(t, keyAge(), agentpg.CheckWarn, "1 key rotation left unfinished")
	// The first rotation finishes the one left unfinished; the second
	// makes a new key.
	for range 2 {
		if err := b.agent.RotateKeys(ctx(t), "acme"); err != nil {
			t.Fatal(err)
		}
	}
	wantCheck(t, keyAge(), agentpg.CheckOK, "1 tenant with data keys; the oldest in use is 0 days old")
}
