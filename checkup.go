package agentpg

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/agentpg/agentpg/internal/store"
)

// CheckStatus is the outcome of a Check.
type CheckStatus string

// The outcomes of a Check.
const (
	// CheckOK: what the check looks at is as the security guide's
	// checklist asks.
	CheckOK CheckStatus = "ok"
	// CheckWarn: it falls short of the checklist in a way that may be
	// deliberate (no retention policy, no PII filter), or that only the
	// application can judge.
	CheckWarn CheckStatus = "warn"
	// CheckFail: it is broken or unsafe (a tool that takes any input, a
	// broken audit chain, row-level security that does not bind), or
	// could not be checked.
	CheckFail CheckStatus = "fail"
)

// Check is the outcome of one check of Agent.Checkup.
type Check struct {
	// Name is the check's name, one of the Check... names below (such as
	// CheckToolSchemas); it does not change between releases.
	Name   string      `json:"name"`
	Status CheckStatus `json:"status"`
	// Detail says what the check found, on one line.
	Detail string `json:"detail"`
	// Fix says what to do about it; "" when Status is CheckOK.
	Fix string `json:"fix,omitempty"`
}

// The names of the checks of Agent.Checkup, in the order it runs them.
const (
	CheckToolSchemas      = "tool schemas"
	CheckPIIFilter        = "PII filter"
	CheckLogRedaction     = "log redaction"
	CheckEncryption       = "encryption"
	CheckMigrations       = "migrations"
	CheckRowLevelSecurity = "row-level security"
	CheckDatabaseRole     = "database role"
	CheckAuditLog         = "audit log"
	CheckRetention        = "retention"
	CheckRateLimits       = "rate limits"
	CheckUsageAnomalies   = "usage anomalies"
	CheckEncryptionAtRest = "encryption at rest"
)

// checkupAnomalyThreshold is how many times its usual daily tokens a
// tenant uses today before CheckUsageAnomalies warns.
const checkupAnomalyThreshold = 3

// checkSpec is one check of Checkup: readsSchema when it needs the schema
// migrated.
type checkSpec struct {
	name        string
	readsSchema bool
	run         func(a *Agent, ctx context.Context) Check
}

// checkSpecs are the checks of Checkup, in order.
var checkSpecs = []checkSpec{
	{CheckToolSchemas, false, (*Agent).checkToolSchemas},
	{CheckPIIFilter, false, (*Agent).checkPIIFilter},
	{CheckLogRedaction, false, (*Agent).checkLogRedaction},
	{CheckEncryption, false, (*Agent).checkEncryption},
	{CheckMigrations, false, (*Agent).checkMigrations},
	{CheckRowLevelSecurity, true, (*Agent).checkRowLevelSecurity},
	{CheckDatabaseRole, false, (*Agent).checkDatabaseRole},
	{CheckAuditLog, true, (*Agent).checkAuditLog},
	{CheckRetention, true, (*Agent).checkRetention},
	{CheckRateLimits, true, (*Agent).checkRateLimits},
	{CheckUsageAnomalies, true, (*Agent).checkUsageAnomalies},
	{CheckEncryptionAtRest, true, (*Agent).checkEncryptionAtRest},
}

// MaxKeyAge is how old the newest data key of a tenant may be before
// Checkup warns that it is due for rotation (Agent.RotateKeys).
const MaxKeyAge = 90 * 24 * time.Hour

// Checkup checks the Agent and its database against the security guide's
// checklist (docs/security.md), live, and returns a Check for each of the
// checks named, in the order given, or for every check, in the order of
// the Check... names, when none is named. It never changes anything. An
// unknown name gets a Check that fails. `agentpg doctor` runs the
// database's checks with its own Agent; only the application's Agent can
// tell its tools, hooks, logging and keys.
//
// The Agent's configuration:
//   - CheckToolSchemas: every registered tool (Config.Tools and those
//     registered on Agent.Executor since) declares its input, so that the
//     model's input is validated before the tool runs; a tool whose schema
//     declares no properties (and does not forbid them all) accepts any
//     JSON object, and fails.
//   - CheckPIIFilter: an OnBeforeMessage hook is registered, such as
//     redact.BlockPII(); warns without one. AgentPG cannot tell what a hook
//     does: any counts.
//   - CheckLogRedaction: Config.DisableLogRedaction is not set, or no
//     Config.Logger takes the records.
//   - CheckEncryption: Config.Keys is set; warns without keys.
//
// The database, through Config.DB and in Config.Schema:
//   - CheckMigrations: the schema has every migration. The checks that
//     read the schema fail without them, unchecked.
//   - CheckRowLevelSecurity: row-level security is enabled and forced,
//     with its tenant policy, on every tenant table.
//   - CheckDatabaseRole: the role connected is one row-level security
//     binds: not a superuser, without BYPASSRLS (both fail), owning none
//     of the tables (warns).
//   - CheckAuditLog: Config.Audit.Enabled (warns if not), the log has
//     entries (warns if not), and every tenant's chain verifies
//     (audit.Log.Verify; fails if not). It reads every tenant's whole
//     chain.
//   - CheckRetention: a default retention policy is set (warns if not).
//   - CheckRateLimits: some tenant has rate limits or a budget (warns if
//     none has).
//   - CheckUsageAnomalies: no tenant uses more than 3 times its usual
//     daily tokens today (Agent.UsageAnomalies; warns, naming them).
//   - CheckEncryptionAtRest: every tenant with sessions has a data key (its content
//     is encrypted at rest), every tenant's newest data key is younger
//     than MaxKeyAge, and no rotation was left unfinished (warns if not).
func (a *Agent) Checkup(ctx context.Context, names ...string) []Check {
	specs := checkSpecs
	if len(names) > 0 {
		specs = make([]checkSpec, len(names))
		for i, name := range names {
			j := slices.IndexFunc(checkSpecs, func(s checkSpec) bool { return s.name == name })
			if j < 0 {
				specs[i] = checkSpec{name: name, run: unknownCheck}
				continue
			}
			specs[i] = checkSpecs[j]
		}
	}
	var migrations *Check // checked once, by the first check that needs it
	migrated := func() *Check {
		if migrations == nil {
			m := a.checkMigrations(ctx)
			migrations = &m
		}
		return migrations
	}
	checks := make([]Check, len(specs))
	for i, s := range specs {
		switch {
		case s.name == CheckMigrations:
			checks[i] = *migrated()
		case s.readsSchema && migrated().Status != CheckOK:
			checks[i] = failCheck("not checked: "+migrated().Detail, migrated().Fix)
		default:
			checks[i] = s.run(a, ctx)
		}
		checks[i].Name = s.name
	}
	return checks
}

// unknownCheck is the Check of a name Checkup does not know.
func unknownCheck(*Agent, context.Context) Check {
	return failCheck("no such check", "name one of the Check... constants of package agentpg")
}

func okCheck(format string, args ...any) Check {
	return Check{Status: CheckOK, Detail: fmt.Sprintf(format, args...)}
}

func warnCheck(detail, fix string) Check { return Check{Status: CheckWarn, Detail: detail, Fix: fix} }

func failCheck(detail, fix string) Check { return Check{Status: CheckFail, Detail: detail, Fix: fix} }

// errCheck is the failed Check of a check that could not read what it
// checks.
func errCheck(err error) Check {
	return failCheck(err.Error(), "check the connection (Config.DB) and that the schema is migrated")
}

// plural returns "1 tool", "2 tools" and so on.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// quoted returns names each quoted, separated by commas.
func quoted(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

func (a *Agent) checkToolSchemas(context.Context) Check {
	tools := a.executor.Registry().Tools()
	var open []string
	for _, t := range tools {
		s := t.InputSchema()
		if len(s.Properties) == 0 && (s.AdditionalProperties == nil || *s.AdditionalProperties) {
			open = append(open, t.Name())
		}
	}
	switch {
	case len(open) > 0:
		return failCheck(fmt.Sprintf("%s of %s declare no input properties, so any JSON object passes validation: %s",
			plural(len(open), "tool"), plural(len(tools), "tool"), quoted(open)),
			"declare each tool's properties in its InputSchema, or set AdditionalProperties to false for a tool that takes none (tool.NewFunc does both from a struct)")
	case len(tools) == 0:
		return okCheck("no tools registered")
	}
	return okCheck("each of the %s declares its input; inputs are validated before a tool runs", plural(len(tools), "tool"))
}

func (a *Agent) checkPIIFilter(context.Context) Check {
	a.hookMu.RLock()
	n := len(a.before)
	a.hookMu.RUnlock()
	if n == 0 {
		return warnCheck("no OnBeforeMessage hook: messages reach the model unfiltered",
			"register a PII filter: agent.OnBeforeMessage(redact.BlockPII())")
	}
	return okCheck("%s registered; AgentPG cannot tell what a hook does: make sure one refuses sensitive data, as redact.BlockPII() does",
		plural(n, "OnBeforeMessage hook"))
}

func (a *Agent) checkLogRedaction(context.Context) Check {
	switch {
	case !a.cfg.DisableLogRedaction:
		return okCheck("on: every log record passes through redact.Redact before Config.Logger")
	case a.cfg.Logger.Handler() == slog.DiscardHandler:
		return okCheck("Config.DisableLogRedaction is set, but without Config.Logger nothing is logged")
	}
	return warnCheck("Config.DisableLogRedaction is set: log records reach Config.Logger unredacted",
		"unset Config.DisableLogRedaction, unless Config.Logger redacts by itself")
}

func (a *Agent) checkEncryption(context.Context) Check {
	if a.cfg.Keys == nil {
		return warnCheck("Config.Keys is nil: content is stored unencrypted",
			"set Config.Keys to a key provider, such as keys.FromEnv (docs/encryption.md)")
	}
	return okCheck("Config.Keys is set; the current key-encryption key is %q", a.cfg.Keys.Current())
}

// migrateFix says how to migrate the Agent's schema.
func (a *Agent) migrateFix() string {
	cmd := "agentpg migrate"
	if a.cfg.Schema != store.DefaultSchema {
		cmd += " --schema " + a.cfg.Schema
	}
	return "run " + cmd + " (or Agent.Migrate) as the tables' owner"
}

func (a *Agent) checkMigrations(ctx context.Context) Check {
	exists, err := a.store.SchemaExists(ctx)
	if err != nil {
		return errCheck(err)
	}
	if !exists {
		return failCheck(fmt.Sprintf("schema %q does not exist", a.cfg.Schema), a.migrateFix())
	}
	migrations, err := store.Migrations()
	if err != nil {
		return errCheck(err)
	}
	pending, err := a.store.Pending(ctx)
	if err != nil {
		return errCheck(err)
	}
	if len(pending) > 0 {
		return failCheck(fmt.Sprintf("schema %q lacks %d of %s", a.cfg.Schema, len(pending), plural(len(migrations), "migration")),
			a.migrateFix())
	}
	return okCheck("schema %q is up to date (%s)", a.cfg.Schema, plural(len(migrations), "migration"))
}

func (a *Agent) checkRowLevelSecurity(ctx context.Context) Check {
	tables, err := a.store.TenantTables(ctx)
	if err != nil {
		return errCheck(err)
	}
	var lacking []string
	for _, t := range tables {
		if !t.Enabled || !t.Forced || !t.Policy {
			lacking = append(lacking, t.Table)
		}
	}
	if len(lacking) > 0 || len(tables) == 0 {
		return failCheck(fmt.Sprintf("not forced, or without the tenant policy, on %s of schema %q", strings.Join(lacking, ", "), a.cfg.Schema),
			a.migrateFix())
	}
	return okCheck("forced on the %s of schema %q", plural(len(tables), "tenant table"), a.cfg.Schema)
}

// appRoleFix says how to connect as an application role.
const appRoleFix = "connect as an application role: create one (CREATE ROLE app LOGIN ...), run agentpg migrate --app-role app (or Agent.GrantAppRole) as the tables' owner, and use it in DATABASE_URL (docs/deployment.md)"

func (a *Agent) checkDatabaseRole(ctx context.Context) Check {
	role, err := a.store.CurrentRole(ctx)
	if err != nil {
		return errCheck(err)
	}
	switch {
	case role.Superuser:
		return failCheck(fmt.Sprintf("role %q is a superuser, which row-level security never binds", role.Name), appRoleFix)
	case role.BypassRLS:
		return failCheck(fmt.Sprintf("role %q has BYPASSRLS, so row-level security does not bind it", role.Name), appRoleFix)
	case role.Owner:
		return warnCheck(fmt.Sprintf("role %q owns schema %q or its tables (or is a member of their owner): row-level security binds it, but it could turn it off", role.Name, a.cfg.Schema),
			appRoleFix)
	}
	return okCheck("role %q: not a superuser, no BYPASSRLS, owns none of the tables", role.Name)
}

func (a *Agent) checkAuditLog(ctx context.Context) Check {
	tenants, err := a.audit.Tenants(ctx)
	if err != nil {
		return errCheck(err)
	}
	for _, tenant := range tenants {
		if err := a.audit.Verify(ctx, tenant); err != nil {
			return failCheck(fmt.Sprintf("the audit chain of tenant %q is broken: %v", tenant, err),
				"find who changed the log, and how (agentpg audit verify, audit.Log.Verify); restore it from a backup")
		}
	}
	intact := plural(len(tenants), "tenant") + ", every chain intact"
	switch {
	case !a.cfg.Audit.Enabled:
		return warnCheck("Config.Audit.Enabled is off: this Agent records none of its tool calls, approvals and deletions; "+intact,
			"set Config.Audit.Enabled")
	case len(tenants) == 0:
		return warnCheck("no audit entries",
			"set Config.Audit.Enabled in the application, or record your own entries (Agent.AuditLog); a new deployment has none before its first tool call, approval or deletion")
	}
	return okCheck("Config.Audit.Enabled; %s", intact)
}

func (a *Agent) checkRetention(ctx context.Context) Check {
	policies, err := a.RetentionPolicies(ctx)
	if err != nil {
		return errCheck(err)
	}
	const fix = `agentpg retention set --default --guide, or Agent.SetRetention(ctx, "", agentpg.GuideRetention)`
	_, hasDefault := policies[""]
	own := len(policies)
	if hasDefault {
		own--
	}
	switch {
	case len(policies) == 0:
		return warnCheck("no retention policy: data is kept forever", fix)
	case !hasDefault:
		return warnCheck(plural(own, "tenant")+" with a policy of its own, no default: other tenants keep everything", fix)
	}
	return okCheck("default policy set; %s with a policy of its own", plural(own, "tenant"))
}

func (a *Agent) checkRateLimits(ctx context.Context) Check {
	n, err := a.store.LimitedTenants(ctx)
	if err != nil {
		return errCheck(err)
	}
	if n == 0 {
		return warnCheck("no tenant has rate limits or a token budget",
			"agentpg limits set --tenant T --requests-per-minute N, or Agent.SetTenantLimits")
	}
	return okCheck("%s with limits", plural(n, "tenant"))
}

func (a *Agent) checkUsageAnomalies(ctx context.Context) Check {
	anomalies, err := a.UsageAnomalies(ctx, checkupAnomalyThreshold)
	if err != nil {
		return errCheck(err)
	}
	if len(anomalies) == 0 {
		return okCheck("no tenant uses more than %d times its usual daily tokens today", checkupAnomalyThreshold)
	}
	tenants := make([]string, len(anomalies))
	for i, u := range anomalies {
		tenants[i] = fmt.Sprintf("%q (%.1f times)", u.Tenant, u.Ratio)
	}
	return warnCheck(fmt.Sprintf("%s above %d times their usual daily tokens today: %s",
		plural(len(anomalies), "tenant"), checkupAnomalyThreshold, strings.Join(tenants, ", ")),
		"look into their usage (agentpg usage --tenant T, Agent.TenantUsage), and limit it (Agent.SetTenantLimits)")
}

func (a *Agent) checkEncryptionAtRest(ctx context.Context) Check {
	k, err := a.store.KeySummary(ctx)
	if err != nil {
		return errCheck(err)
	}
	const fix = "agentpg keys rotate --all, or Agent.RotateKeys for each tenant (docs/encryption.md)"
	switch age := time.Since(k.OldestCurrent); {
	case k.Unencrypted > 0:
		return warnCheck(plural(int(k.Unencrypted), "tenant")+" with sessions and no data key: their content is not encrypted at rest",
			"set Config.Keys (AGENTPG_KEYS for agentpg), then agentpg keys rotate --all to encrypt what is stored")
	case k.Tenants == 0:
		return okCheck("no tenant has a data key, nor a session")
	case k.Unfinished > 0:
		return warnCheck(plural(int(k.Unfinished), "key rotation")+" left unfinished", fix)
	case age > MaxKeyAge:
		return warnCheck(fmt.Sprintf("the oldest data key in use is %d days old, over %d", int(age.Hours()/24), int(MaxKeyAge.Hours()/24)), fix)
	}
	return okCheck("%s with data keys; the oldest in use is %d days old", plural(int(k.Tenants), "tenant"), int(time.Since(k.OldestCurrent).Hours()/24))
}
