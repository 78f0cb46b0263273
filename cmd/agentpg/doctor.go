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

	"github.com/agentpg/agentpg"
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
whether a retention policy and tenant rate limits are set, which tenants
use more than 3 times their usual daily tokens today, and whether every
tenant with sessions has its content encrypted at rest, with a data key
younger than 90 days and no key rotation left unfinished.

TLS is judged by sslmode: disable, allow and prefer warn (they fall back to
plaintext silently and never verify the server), require warns for a remote
server (it encrypts but does not verify the server), verify-ca and verify-full
verify it; the guide asks for verify-full.

The database's checks are those of Agent.Checkup. Its other checks look at
the application's own Agent, which doctor cannot see: whether every tool
declares its input schema, a PII filter hook is registered, log redaction is
on and encryption keys are set. Call agent.Checkup(ctx) in the application,
at startup or from a health endpoint, for all of them.

Each check prints a line: ok, warn or fail, what it found and, unless ok,
the fix. The output never shows the API key or the password. --json prints
the checks with the same fields (name, status, detail, fix). The exit status
is 0 when no check failed, 1 otherwise.`

func ok(format string, args ...any) agentpg.Check {
	return agentpg.Check{Status: agentpg.CheckOK, Detail: fmt.Sprintf(format, args...)}
}

func warn(detail, fix string) agentpg.Check {
	return agentpg.Check{Status: agentpg.CheckWarn, Detail: detail, Fix: fix}
}

func fail(detail, fix string) agentpg.Check {
	return agentpg.Check{Status: agentpg.CheckFail, Detail: detail, Fix: fix}
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
	// agent is an Agent on db, once connected, whose Checkup checks the
	// database.
	agent *agentpg.Agent
	// migrated is set once the migrations check passed.
	migrated bool
}

// doctorCheck is one check of doctor: run, or, when run is nil, the
// check of Agent.Checkup of that name.
type doctorCheck struct {
	name  string
	needs need
	run   func(ctx context.Context, cu *checkup) agentpg.Check
}

// need is what a check needs to run.
type need int

const (
	needsNothing need = iota
	needsDB           // a connection
	needsSchema       // a connection, and the schema migrated
)

// doctorChecks are the checks of doctor, in the order they print. Those
// of Agent.Checkup that look at the application's Agent (its tools,
// hooks, logging and keys) are the application's to run: doctor's Agent
// is not the application's.
var doctorChecks = []doctorCheck{
	{"API key", needsNothing, checkAPIKey},
	{"database URL", needsNothing, checkDatabaseURL},
	{"database", needsNothing, checkDatabase},
	{"TLS", needsDB, checkTLS},
	{"password", needsNothing, checkPassword},
	{"server version", needsDB, checkServerVersion},
	{agentpg.CheckMigrations, needsDB, nil},
	{agentpg.CheckRowLevelSecurity, needsSchema, nil},
	{agentpg.CheckDatabaseRole, needsDB, nil},
	{agentpg.CheckAuditLog, needsSchema, nil},
	{agentpg.CheckRetention, needsSchema, nil},
	{agentpg.CheckRateLimits, needsSchema, nil},
	{agentpg.CheckUsageAnomalies, needsSchema, nil},
	{agentpg.CheckEncryptionAtRest, needsSchema, nil},
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
	Checks []agentpg.Check `json:"checks"`
	// Skipped names the checks that need a connection, when there is none,
	// and Unmigrated those that need the schema migrated, when it is not.
	Skipped    []string `json:"skipped"`
	Unmigrated []string `json:"unmigrated"`
	// Application names the checks that only the application's Agent can
	// run (Agent.Checkup).
	Application []string `json:"application"`
	Failed      int      `json:"failed"`
	Warnings    int      `json:"warnings"`
}

// applicationChecks are the checks of Agent.Checkup that doctor leaves to
// the application.
var applicationChecks = []string{agentpg.CheckToolSchemas, agentpg.CheckPIIFilter, agentpg.CheckLogRedaction, agentpg.CheckEncryption}

// doctor checks the deployment: a line per check, or a JSON report, and an
// error when a check failed.
func (c *cli) doctor(ctx context.Context) error {
	cu := &checkup{getenv: c.getenv, schema: c.schema}
	cu.dsn, cu.source = c.databaseURL()
	cu.db, cu.dbErr = c.openDB(ctx, false) // the deployment's database: never a throwaway cluster
	if cu.db != nil {
		defer cu.db.close()
		agent, err := agentpg.New(storageConfig(cu.db, cu.schema)) // the schema's name is checked already
		if err != nil {
			return err
		}
		cu.agent, cu.db.agent = agent, agent
	}
	report := doctorReport{Checks: []agentpg.Check{}, Skipped: []string{}, Unmigrated: []string{}, Application: applicationChecks}
	for _, check := range doctorChecks {
		if check.needs >= needsDB && cu.db == nil {
			report.Skipped = append(report.Skipped, check.name)
			continue
		}
		if check.needs == needsSchema && !cu.migrated {
			report.Unmigrated = append(report.Unmigrated, check.name)
			continue
		}
		var r agentpg.Check
		if check.run != nil {
			r = check.run(ctx, cu)
		} else {
			r = cu.agent.Checkup(ctx, check.name)[0]
		}
		r.Name = check.name
		r.Detail = strings.Join(strings.Fields(r.Detail), " ") // a line, even for pgx's errors of several
		if check.name == agentpg.CheckMigrations && r.Status == agentpg.CheckOK {
			cu.migrated = true
		}
		report.Checks = append(report.Checks, r)
		switch r.Status {
		case agentpg.CheckFail:
			report.Failed++
		case agentpg.CheckWarn:
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
		line := r.Detail
		if r.Fix != "" {
			line += "; fix: " + r.Fix
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Status, r.Name, escapeLine(line)) // it may quote the server
	}
	tw.Flush()
	if len(report.Skipped) > 0 {
		fmt.Fprintf(c.stdout, "\nNot checked, for want of a connection: %s.\n", strings.Join(report.Skipped, ", "))
	}
	if len(report.Unmigrated) > 0 {
		fmt.Fprintf(c.stdout, "\nNot checked until the schema is migrated: %s.\n", strings.Join(report.Unmigrated, ", "))
	}
	fmt.Fprintf(c.stdout, "\nChecked by the application's Agent only (Agent.Checkup): %s.\n", strings.Join(report.Application, ", "))
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
func checkAPIKey(_ context.Context, cu *checkup) agentpg.Check {
	key := cu.getenv("ANTHROPIC_API_KEY")
	switch {
	case key == "":
		return warn("ANTHROPIC_API_KEY is not set: demo and chat answer with the built-in scripted model",
			"set ANTHROPIC_API_KEY from your secret manager")
	case strings.TrimSpace(key) != key:
		return warn("ANTHROPIC_API_KEY is set, from the environment, but with white space around it, such as a final newline", "trim it")
	case !strings.HasPrefix(key, "sk-ant-"):
		return warn("ANTHROPIC_API_KEY is set, from the environment, but does not look like an Anthropic API key",
			"set it to a key of the Anthropic Console, which starts with sk-ant-")
	}
	return ok("ANTHROPIC_API_KEY is set, from the environment")
}

// checkDatabaseURL tells where the database's URL comes from: a deployment
// names its database, where the default is the local server of a
// developer's machine.
func checkDatabaseURL(_ context.Context, cu *checkup) agentpg.Check {
	if cu.source == "" {
		return warn(fmt.Sprintf("DATABASE_URL is not set: using the default %s, the local server with trust authentication", cu.dsn),
			"set DATABASE_URL to the deployment's database")
	}
	return ok("from %s", cu.source)
}

// checkDatabase tells whether the database answered.
func checkDatabase(_ context.Context, cu *checkup) agentpg.Check {
	if cu.dbErr != nil {
		return fail(message(cu.dbErr), "check the database's URL, and that the server answers") // connect names the database without its password
	}
	return ok("connected to %s", cu.db.name)
}

// checkTLS tells whether the connection uses TLS, as the server sees it,
// and whether the settings make sure of it.
func checkTLS(ctx context.Context, cu *checkup) agentpg.Check {
	conn, err := cu.db.pool.Acquire(ctx)
	if err != nil {
		return fail(message(err), "check that the server answers")
	}
	defer conn.Release()
	var ssl bool
	var version string
	err = conn.QueryRow(ctx, `SELECT ssl, coalesce(version, '') FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl, &version)
	if err != nil {
		return warn("cannot tell: reading pg_stat_ssl: "+message(err), "use sslmode=verify-full")
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
func tlsFinding(ssl bool, version string, local bool, mode string) agentpg.Check {
	setting := ""
	if mode != "" {
		setting = " (sslmode=" + mode + " " + sslModes[mode] + ")"
	}
	switch {
	case !ssl && local:
		return warn("local connection without TLS"+setting, "use sslmode=verify-full for a remote server")
	case !ssl:
		return fail("connection without TLS"+setting, "use sslmode=verify-full")
	case mode == "allow" || mode == "prefer" || (mode == "require" && !local):
		return warn(fmt.Sprintf("%s, but sslmode=%s %s", version, mode, sslModes[mode]), "use sslmode=verify-full")
	}
	return ok("%s%s", version, setting)
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

// passwordFix says where to keep the database's password.
const passwordFix = "keep credentials in a secret manager or PGPASSFILE"

// checkPassword tells whether the database URL holds a password, never
// showing it: a password on the command line is visible to every user.
func checkPassword(_ context.Context, cu *checkup) agentpg.Check {
	switch {
	case cu.source == "":
		return ok("the default URL holds no password")
	case hasPassword(cu.dsn) && cu.source == "--"+flagDatabaseURL:
		return warn(cu.source+" holds a password, which any user can read in the process list", passwordFix)
	case hasPassword(cu.dsn):
		return warn(cu.source+" holds a password", passwordFix)
	}
	return ok("%s holds no password", cu.source)
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
func checkServerVersion(ctx context.Context, cu *checkup) agentpg.Check {
	var num int
	var version string
	err := cu.db.pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, current_setting('server_version')`).Scan(&num, &version)
	if err != nil {
		return fail("reading the server's version: "+message(err), "check that the server answers")
	}
	return versionFinding(num, version)
}

// versionFinding judges the server of version, whose server_version_num is
// num.
func versionFinding(num int, version string) agentpg.Check {
	if num/10000 < minServerVersion {
		return fail(fmt.Sprintf("PostgreSQL %s: AgentPG needs PostgreSQL %d or later", version, minServerVersion), "upgrade the server")
	}
	return ok("PostgreSQL %s", version)
}
