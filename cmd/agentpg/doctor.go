package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"

	"github.com/agentpg/agentpg/audit"
	"github.com/agentpg/agentpg/internal/store"
)

// doctorHelp describes the checks, for the usage of doctor.
const doctorHelp = `Check the deployment agentpg is pointed at, as the Checklist of the security
guide (docs/security.md) asks: whether ANTHROPIC_API_KEY is set, where the
database's URL comes from (a warning when DATABASE_URL is unset and the local
default is used), whether the database answers, over TLS, whether the URL holds
a password, the server's version, whether the schema has every migration,
whether row-level security is forced on every tenant table, whether the role
connected is one row-level security binds (not a superuser, without
BYPASSRLS, owner of none of the tables: docs/deployment.md), whether the
audit log has entries and every tenant's chain is intact,
whether a retention policy and tenant rate limits are set, and which tenants
use more than 3 times their usual daily tokens today.

TLS is judged by sslmode: disable, allow and prefer warn (they fall back to
plaintext silently and never verify the server), require warns for a remote
server (it encrypts but does not verify the server), verify-ca and verify-full
verify it; the guide asks for verify-full.

Each check prints a line: ok, warn or fail, and what to do. The output never
shows the API key or the password. The exit status is 0 when no check failed,
1 otherwise.`

// status is the outcome of a check.
type status string

const (
	statusOK   status = "ok"
	statusWarn status = "warn"
	statusFail status = "fail"
)

// finding is what a check found: its status and a short explanation, with
// the remedy when the status is not ok.
type finding struct {
	status status
	text   string
}

func okf(format string, args ...any) finding { return finding{statusOK, fmt.Sprintf(format, args...)} }
func warnf(format string, args ...any) finding {
	return finding{statusWarn, fmt.Sprintf(format, args...)}
}
func failf(format string, args ...any) finding {
	return finding{statusFail, fmt.Sprintf(format, args...)}
}

// checkup is what the checks look at.
type checkup struct {
	getenv func(string) string
	// dsn is the database's URL; source says where it comes from, as
	// databaseURL does.
	dsn, source string
	schema      string
	// db is the database, or nil when connecting failed with dbErr.
	db    *database
	dbErr error
	// store runs statements in the schema, once connected.
	store *store.Store
	// migrated is set by checkMigrations when the schema is up to date.
	migrated bool
}

// doctorCheck is one check of doctor.
type doctorCheck struct {
	name  string
	needs need
	run   func(ctx context.Context, cu *checkup) finding
}

// need is what a check needs to run.
type need int

const (
	needsNothing need = iota
	needsDB           // a connection
	needsSchema       // a connection, and the schema migrated
)

// doctorChecks are the checks of doctor, in the order they print.
var doctorChecks = []doctorCheck{
	{"API key", needsNothing, checkAPIKey},
	{"database URL", needsNothing, checkDatabaseURL},
	{"database", needsNothing, checkDatabase},
	{"TLS", needsDB, checkTLS},
	{"password", needsNothing, checkPassword},
	{"server version", needsDB, checkServerVersion},
	{"migrations", needsDB, checkMigrations},
	{"row-level security", needsSchema, checkRowLevelSecurity},
	{"database role", needsDB, checkRole},
	{"audit log", needsSchema, checkAuditLog},
	{"retention", needsSchema, checkRetention},
	{"rate limits", needsSchema, checkLimits},
	{"usage anomalies", needsSchema, checkAnomalies},
}

// doctorCmd returns "agentpg doctor".
func (c *cli) doctorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "check the deployment: API key, database, TLS, migrations, row-level security",
		Long:  doctorHelp,
	}
	return c.leaf(cmd, []string{flagDatabaseURL, flagSchema, flagJSON}, c.doctor)
}

// doctorReport is the outcome of doctor, as --json prints it.
type doctorReport struct {
	Checks []checkResult `json:"checks"`
	// Skipped names the checks that need a connection, when there is none,
	// and Unmigrated those that need the schema migrated, when it is not.
	Skipped    []string `json:"skipped"`
	Unmigrated []string `json:"unmigrated"`
	Failed     int      `json:"failed"`
	Warnings   int      `json:"warnings"`
}

// checkResult is the outcome of one check.
type checkResult struct {
	Name    string `json:"name"`
	Status  status `json:"status"`
	Message string `json:"message"`
}

// doctor checks the deployment: a line per check, or a JSON report, and an
// error when a check failed.
func (c *cli) doctor(ctx context.Context) error {
	cu := &checkup{getenv: c.getenv, schema: c.schema}
	cu.dsn, cu.source = c.databaseURL()
	cu.db, cu.dbErr = c.openDB(ctx, false) // the deployment's database: never a throwaway cluster
	if cu.db != nil {
		defer cu.db.close()
		st, err := store.New(cu.db.pool, cu.schema) // the schema's name is checked already
		if err != nil {
			return err
		}
		cu.store = st
	}
	report := doctorReport{Checks: []checkResult{}, Skipped: []string{}, Unmigrated: []string{}}
	for _, check := range doctorChecks {
		if check.needs >= needsDB && cu.db == nil {
			report.Skipped = append(report.Skipped, check.name)
			continue
		}
		if check.needs == needsSchema && !cu.migrated {
			report.Unmigrated = append(report.Unmigrated, check.name)
			continue
		}
		f := check.run(ctx, cu)
		text := strings.Join(strings.Fields(f.text), " ") // a line, even for pgx's errors of several
		report.Checks = append(report.Checks, checkResult{check.name, f.status, text})
		switch f.status {
		case statusFail:
			report.Failed++
		case statusWarn:
			report.Warnings++
		}
	}
	if c.json {
		if err := writeJSON(c.stdout, report); err != nil {
			return err
		}
	} else {
		c.printReport(report)
	}
	if report.Failed > 0 {
		return fmt.Errorf("%s failed", count(report.Failed, "check"))
	}
	return nil
}

// printReport prints the report of doctor for people.
func (c *cli) printReport(report doctorReport) {
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	for _, r := range report.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Status, r.Name, escapeLine(r.Message)) // it may quote the server
	}
	tw.Flush()
	if len(report.Skipped) > 0 {
		fmt.Fprintf(c.stdout, "\nNot checked, for want of a connection: %s.\n", strings.Join(report.Skipped, ", "))
	}
	if len(report.Unmigrated) > 0 {
		fmt.Fprintf(c.stdout, "\nNot checked until the schema is migrated: %s.\n", strings.Join(report.Unmigrated, ", "))
	}
	switch {
	case report.Failed > 0:
	case report.Warnings > 0:
		fmt.Fprintf(c.stdout, "\nNo check failed; %s.\n", count(report.Warnings, "warning"))
	default:
		fmt.Fprintln(c.stdout, "\nAll checks passed.")
	}
}

// checkAPIKey tells whether ANTHROPIC_API_KEY is set, never showing any of
// it.
func checkAPIKey(_ context.Context, cu *checkup) finding {
	key := cu.getenv("ANTHROPIC_API_KEY")
	switch {
	case key == "":
		return warnf("ANTHROPIC_API_KEY is not set: demo and chat answer with the built-in scripted model")
	case strings.TrimSpace(key) != key:
		return warnf("ANTHROPIC_API_KEY is set, from the environment, but with white space around it, such as a final newline: trim it")
	case !strings.HasPrefix(key, "sk-ant-"):
		return warnf("ANTHROPIC_API_KEY is set, from the environment, but does not look like an Anthropic API key")
	}
	return okf("ANTHROPIC_API_KEY is set, from the environment")
}

// checkDatabaseURL tells where the database's URL comes from: a deployment
// names its database, where the default is the local server of a
// developer's machine.
func checkDatabaseURL(_ context.Context, cu *checkup) finding {
	if cu.source == "" {
		return warnf("DATABASE_URL is not set: using the default %s, the local server with trust authentication; set DATABASE_URL to the deployment's database", cu.dsn)
	}
	return okf("from %s", cu.source)
}

// checkDatabase tells whether the database answered.
func checkDatabase(_ context.Context, cu *checkup) finding {
	if cu.dbErr != nil {
		return failf("%s", message(cu.dbErr)) // connect names the database without its password
	}
	return okf("connected to %s", cu.db.name)
}

// checkTLS tells whether the connection uses TLS, as the server sees it,
// and whether the settings make sure of it.
func checkTLS(ctx context.Context, cu *checkup) finding {
	conn, err := cu.db.pool.Acquire(ctx)
	if err != nil {
		return failf("%s", message(err))
	}
	defer conn.Release()
	var ssl bool
	var version string
	err = conn.QueryRow(ctx, `SELECT ssl, coalesce(version, '') FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl, &version)
	if err != nil {
		return warnf("cannot tell: reading pg_stat_ssl: %s", message(err))
	}
	local := isLocal(conn.Conn().PgConn().Conn().RemoteAddr())
	return tlsFinding(ssl, version, local, sslMode(&cu.db.pool.Config().ConnConfig.Config))
}

// tlsFinding judges a connection with TLS (ssl) of version or without, to a
// local server or not, made with sslmode mode ("" when only Unix sockets
// were configured). Below require, a setting is a warning even where TLS
// was used this time: the next connection may silently go without, and no
// setting below verify-ca verifies the server. A local connection needs no
// verification, so require is enough there.
func tlsFinding(ssl bool, version string, local bool, mode string) finding {
	setting := ""
	if mode != "" {
		setting = " (sslmode=" + mode + " " + sslModes[mode] + ")"
	}
	switch {
	case !ssl && local:
		return warnf("local connection without TLS%s; use sslmode=verify-full for a remote server", setting)
	case !ssl:
		return failf("connection without TLS%s: use sslmode=verify-full", setting)
	case mode == "allow" || mode == "prefer" || (mode == "require" && !local):
		return warnf("%s, but sslmode=%s %s: use sslmode=verify-full", version, mode, sslModes[mode])
	}
	return okf("%s%s", version, setting)
}

// sslModes says what each sslmode setting does.
var sslModes = map[string]string{
	"disable":     "never encrypts",
	"allow":       "connects in plaintext unless the server insists on TLS, and does not verify the server",
	"prefer":      "falls back to plaintext silently and does not verify the server",
	"require":     "encrypts but does not verify the server's certificate",
	"verify-ca":   "verifies the server's certificate, not its host name",
	"verify-full": "verifies the server's certificate and host name",
}

// sslMode names the sslmode of cfg, read back from the TLS configurations
// pgx built for the attempts on its first TCP host (the hosts share the
// setting): one without TLS for disable, without then with for allow, with
// then without for prefer, and with for the others, as the certificate
// checks tell apart. It returns "" when cfg has Unix sockets only, where
// pgx ignores sslmode.
func sslMode(cfg *pgconn.Config) string {
	tries := append([]*pgconn.FallbackConfig{{Host: cfg.Host, Port: cfg.Port, TLSConfig: cfg.TLSConfig}}, cfg.Fallbacks...)
	i := slices.IndexFunc(tries, func(f *pgconn.FallbackConfig) bool {
		network, _ := pgconn.NetworkAddress(f.Host, f.Port)
		return network != "unix"
	})
	if i < 0 {
		return ""
	}
	first, retry := tries[i].TLSConfig, false
	var second *tls.Config
	if i+1 < len(tries) && tries[i+1].Host == tries[i].Host && tries[i+1].Port == tries[i].Port {
		second, retry = tries[i+1].TLSConfig, true
	}
	switch {
	case first == nil && retry && second != nil:
		return "allow"
	case first == nil:
		return "disable"
	case retry && second == nil:
		return "prefer"
	case !first.InsecureSkipVerify:
		return "verify-full"
	case first.VerifyPeerCertificate != nil:
		return "verify-ca" // or require with sslrootcert, which pgx treats alike
	}
	return "require"
}

// isLocal reports whether addr, the server's end of a connection, is a Unix
// socket or a loopback address.
func isLocal(addr net.Addr) bool {
	switch a := addr.(type) {
	case *net.UnixAddr:
		return true
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	}
	return false
}

// checkPassword tells whether the database URL holds a password, never
// showing it: a password on the command line is visible to every user.
func checkPassword(_ context.Context, cu *checkup) finding {
	switch {
	case cu.source == "":
		return okf("the default URL holds no password")
	case hasPassword(cu.dsn) && cu.source == "--"+flagDatabaseURL:
		return warnf("%s holds a password, which any user can read in the process list: keep credentials in a secret manager or PGPASSFILE", cu.source)
	case hasPassword(cu.dsn):
		return warnf("%s holds a password: keep credentials in a secret manager or PGPASSFILE", cu.source)
	}
	return okf("%s holds no password", cu.source)
}

// hasPassword reports whether dsn, a URL or keyword/value settings, sets a
// non-empty password. It reads dsn as pgx does, as far as it needs to; pgx
// also takes a password from PGPASSWORD or a password file, which are not
// in dsn, so it cannot ask pgx.
func hasPassword(dsn string) bool {
	p, isURL := strings.CutPrefix(dsn, "postgresql://")
	if !isURL {
		p, isURL = strings.CutPrefix(dsn, "postgres://")
	}
	if isURL {
		// The user information ends at the first '@' before any '/'.
		if i := strings.IndexAny(p, "@/"); i >= 0 && p[i] == '@' {
			if _, password, _ := strings.Cut(p[:i], ":"); password != "" {
				return true
			}
			p = p[i+1:]
		}
		_, query, _ := strings.Cut(p, "?")
		for pair := range strings.SplitSeq(query, "&") {
			key, value, _ := strings.Cut(pair, "=")
			if key, err := url.PathUnescape(key); err == nil && strings.TrimSpace(key) == "password" && value != "" {
				return true
			}
		}
		return false
	}
	const spaces = " \t\n\r\v\f"
	for s := strings.TrimLeft(dsn, spaces); s != ""; {
		key, rest, found := strings.Cut(s, "=")
		if !found {
			return false // malformed: connecting fails and says so
		}
		var value string
		value, s = settingValue(strings.TrimLeft(rest, spaces))
		if strings.TrimSpace(key) == "password" && value != "" {
			return true
		}
		s = strings.TrimLeft(s, spaces)
	}
	return false
}

// settingValue splits s, which starts with the value of a keyword/value
// setting, quoted or not, into that value, still escaped, and the rest.
func settingValue(s string) (value, rest string) {
	quoted := strings.HasPrefix(s, "'")
	if quoted {
		s = s[1:]
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			i++ // the escaped character belongs to the value
		case quoted && c == '\'':
			return s[:i], s[i+1:]
		case !quoted && strings.IndexByte(" \t\n\r\v\f", c) >= 0:
			return s[:i], s[i:]
		}
	}
	return s, ""
}

// minServerVersion is the oldest PostgreSQL major release doctor accepts:
// migration 011 needs 15 (a foreign key's ON DELETE SET NULL of some of its
// columns), as do tests with package agentpgtest (CREATE DATABASE ...
// STRATEGY).
const minServerVersion = 15

// checkServerVersion tells whether the server is recent enough.
func checkServerVersion(ctx context.Context, cu *checkup) finding {
	var num int
	var version string
	err := cu.db.pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, current_setting('server_version')`).Scan(&num, &version)
	if err != nil {
		return failf("reading the server's version: %s", message(err))
	}
	return versionFinding(num, version)
}

// versionFinding judges the server of version, whose server_version_num is
// num.
func versionFinding(num int, version string) finding {
	if num/10000 < minServerVersion {
		return failf("PostgreSQL %s: AgentPG needs PostgreSQL %d or later, upgrade the server", version, minServerVersion)
	}
	return okf("PostgreSQL %s", version)
}

// checkMigrations tells whether the schema has every migration of this
// agentpg.
func checkMigrations(ctx context.Context, cu *checkup) finding {
	remedy := "run agentpg migrate"
	if cu.schema != defaultSchema {
		remedy += " --schema " + cu.schema
	}
	exists, err := schemaExists(ctx, cu.db.pool, cu.schema)
	if err != nil {
		return failf("%s", message(err))
	}
	if !exists {
		return failf("schema %q does not exist: %s", cu.schema, remedy)
	}
	st := cu.store
	migrations, err := store.Migrations()
	if err != nil {
		return failf("%s", message(err))
	}
	pending, err := st.Pending(ctx)
	if err != nil {
		return failf("%s", message(err))
	}
	if len(pending) > 0 {
		return failf("schema %q lacks %d of %s: %s", cu.schema, len(pending), count(len(migrations), "migration"), remedy)
	}
	cu.migrated = true
	return okf("schema %q is up to date (%s)", cu.schema, count(len(migrations), "migration"))
}

// checkRowLevelSecurity tells whether every tenant table of the schema has
// row-level security enabled and forced, with its tenant policy.
func checkRowLevelSecurity(ctx context.Context, cu *checkup) finding {
	st := cu.store
	tables, err := st.TenantTables(ctx)
	if err != nil {
		return failf("%s", message(err))
	}
	var lacking []string
	for _, t := range tables {
		if !t.Enabled || !t.Forced || !t.Policy {
			lacking = append(lacking, t.Table)
		}
	}
	if len(lacking) > 0 || len(tables) == 0 {
		return failf("not forced, or without the tenant policy, on %s of schema %q: run agentpg migrate as the tables' owner",
			strings.Join(lacking, ", "), cu.schema)
	}
	return okf("forced on the %s of schema %q", count(len(tables), "tenant table"), cu.schema)
}

// appRoleRemedy says how to connect as an application role.
const appRoleRemedy = "connect as an application role: create one (CREATE ROLE app LOGIN ...), run agentpg migrate --app-role app as the tables' owner, and use it in DATABASE_URL (docs/deployment.md)"

// checkRole tells whether row-level security binds the connected role.
func checkRole(ctx context.Context, cu *checkup) finding {
	st := cu.store
	role, err := st.CurrentRole(ctx)
	if err != nil {
		return failf("%s", message(err))
	}
	switch {
	case role.Superuser:
		return failf("role %q is a superuser, which row-level security never binds: %s", role.Name, appRoleRemedy)
	case role.BypassRLS:
		return failf("role %q has BYPASSRLS, so row-level security does not bind it: %s", role.Name, appRoleRemedy)
	case role.Owner:
		return warnf("role %q owns schema %q or its tables (or is a member of their owner): row-level security binds it, but it could turn it off; %s", role.Name, cu.schema, appRoleRemedy)
	}
	return okf("role %q: not a superuser, no BYPASSRLS, owns none of the tables", role.Name)
}

// checkAuditLog tells whether the audit log is in use (it has entries) and
// whether every tenant's chain verifies.
func checkAuditLog(ctx context.Context, cu *checkup) finding {
	log, err := audit.New(cu.db.pool, audit.Options{Schema: cu.schema})
	if err != nil {
		return failf("%s", message(err))
	}
	defer log.Close(ctx)
	tenants, err := log.Tenants(ctx)
	if err != nil {
		return failf("%s: run agentpg migrate", message(err))
	}
	if len(tenants) == 0 {
		return warnf("no audit entries: set Config.Audit.Enabled in the application, or record your own (Agent.AuditLog)")
	}
	for _, tenant := range tenants {
		if err := log.Verify(ctx, tenant); err != nil {
			return failf("the audit chain of tenant %s is broken: %s; see agentpg audit verify", quote(tenant), message(err))
		}
	}
	return okf("%s, every chain intact", count(len(tenants), "tenant"))
}

// checkRetention tells whether retention policies are set.
func checkRetention(ctx context.Context, cu *checkup) finding {
	st := cu.store
	policies, err := st.ListRetention(ctx)
	if err != nil {
		return failf("%s: run agentpg migrate", message(err))
	}
	switch {
	case len(policies) == 0:
		return warnf("no retention policy: data is kept forever; agentpg retention set --default --guide")
	case policies[0].TenantID != "":
		return warnf("%s, no default: other tenants keep everything; agentpg retention set --default --guide", count(len(policies), "tenant")+" with a policy of its own")
	}
	return okf("default policy set; %s with a policy of its own", count(len(policies)-1, "tenant"))
}

// checkLimits tells whether any tenant has rate limits or a budget.
func checkLimits(ctx context.Context, cu *checkup) finding {
	st := cu.store
	n, err := st.LimitedTenants(ctx)
	if err != nil {
		return failf("%s", message(err))
	}
	if n == 0 {
		return warnf("no tenant has rate limits or a token budget: agentpg limits set --tenant T --requests-per-minute N")
	}
	return okf("%s with limits", count(n, "tenant"))
}

// anomalyThreshold is how many times its usual daily tokens a tenant uses
// today before doctor warns.
const anomalyThreshold = 3

// checkAnomalies lists the tenants whose tokens today exceed
// anomalyThreshold times their daily average of the week before.
func checkAnomalies(ctx context.Context, cu *checkup) finding {
	st := cu.store
	anomalies, err := st.UsageAnomalies(ctx, anomalyThreshold)
	if err != nil {
		return failf("%s", message(err))
	}
	if len(anomalies) == 0 {
		return okf("no tenant uses more than %d times its usual daily tokens today", anomalyThreshold)
	}
	var tenants []string
	for _, a := range anomalies {
		tenants = append(tenants, fmt.Sprintf("%s (%.1f times)", quote(a.TenantID), a.Ratio))
	}
	return warnf("%s above %d times their usual daily tokens today: %s; see agentpg usage --tenant T",
		count(len(anomalies), "tenant"), anomalyThreshold, strings.Join(tenants, ", "))
}
