package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"os/user"
	"strings"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg"
)

const (
	// defaultLocalServer is where the PostgreSQL used without
	// --database-url or DATABASE_URL listens.
	defaultLocalServer = "127.0.0.1:5432"
	// defaultLocalDSN is the database used without --database-url or
	// DATABASE_URL: localDSN(defaultLocalServer).
	defaultLocalDSN = "postgres://root@" + defaultLocalServer + "/test?sslmode=disable"
	// defaultSchema is AgentPG's default schema.
	defaultSchema = "agentpg"
)

// localDSN is the database used without --database-url or DATABASE_URL: the
// PostgreSQL listening at addr, user root and database test, with trust
// authentication.
func localDSN(addr string) string {
	return "postgres://root@" + addr + "/test?sslmode=disable"
}

// database is the PostgreSQL a command works in.
type database struct {
	pool *pgxpool.Pool
	// name is the database's URL, without any password.
	name string
	// cluster is the throwaway cluster holding the database, or nil.
	cluster *cluster
	stderr  io.Writer
	// agent, once set by storageAgent, is closed first, writing its audit
	// entries.
	agent *agentpg.Agent
}

// databaseURL returns the URL of the database and where it comes from:
// --database-url, DATABASE_URL, or "" for localDSN(c.localServer), the
// default.
func (c *cli) databaseURL() (dsn, source string) {
	if c.dbURL != "" {
		return c.dbURL, "--" + flagDatabaseURL
	}
	if dsn := c.getenv("DATABASE_URL"); dsn != "" {
		return dsn, "DATABASE_URL"
	}
	return localDSN(c.localServer), ""
}

// openDB connects to the database of databaseURL. With throwaway, when it
// is the default and nothing answers at c.localServer, it starts a
// throwaway cluster instead, which close stops and removes.
func (c *cli) openDB(ctx context.Context, throwaway bool) (*database, error) {
	db := &database{stderr: c.stderr}
	dsn, source := c.databaseURL()
	if source == "" {
		if throwaway && !answers(ctx, c.localServer) {
			cl, err := startCluster(ctx)
			if err != nil {
				return nil, fmt.Errorf("no PostgreSQL answered on %s and no throwaway cluster could start: %w", c.localServer, err)
			}
			fmt.Fprintf(c.stderr, "No PostgreSQL answered on %s: started a throwaway cluster in %s; it is removed on exit.\n", c.localServer, cl.dir)
			db.cluster, dsn = cl, cl.dsn
		}
	}
	pool, err := connect(ctx, dsn, cmp.Or(source, "the default database URL"))
	if err != nil {
		db.close()
		return nil, err
	}
	db.pool, db.name = pool, describeDB(pool.Config())
	return db, nil
}

// close closes the Agent, the pool, and removes the throwaway cluster, if
// any.
func (db *database) close() {
	if db.agent != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := db.agent.Close(ctx); err != nil {
			fmt.Fprintf(db.stderr, "agentpg: %v\n", err)
		}
	}
	if db.pool != nil {
		db.pool.Close()
	}
	if db.cluster != nil {
		if err := db.cluster.stop(); err != nil {
			fmt.Fprintf(db.stderr, "agentpg: removing the throwaway cluster: %v\n", err)
		}
	}
}

// connect opens a pool on dsn, which source names, and checks that the
// database answers. Its errors never show a password: it names the database
// by describeDB, and pgx redacts the DSNs it quotes.
func connect(ctx context.Context, dsn, source string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err == nil {
		if err = pool.Ping(ctx); err != nil {
			pool.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", describeDB(cfg), err)
	}
	return pool, nil
}

// describeDB names the database of cfg as a URL without its password.
func describeDB(cfg *pgxpool.Config) string {
	cc := cfg.ConnConfig
	if strings.HasPrefix(cc.Host, "/") { // a Unix socket directory
		return fmt.Sprintf("postgres://%s@/%s?host=%s", cc.User, cc.Database, cc.Host)
	}
	return fmt.Sprintf("postgres://%s@%s/%s", cc.User, net.JoinHostPort(cc.Host, fmt.Sprint(cc.Port)), cc.Database)
}

// answers reports whether anything accepts TCP connections at addr.
func answers(ctx context.Context, addr string) bool {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// storageConfig is the configuration of an Agent that only reads and writes
// the database. agentpg.New requires a client and a model all the same: this
// client is never used.
func storageConfig(db *database, schema string) agentpg.Config {
	client := anthropic.NewClient(option.WithoutEnvironmentDefaults())
	return agentpg.Config{DB: db.pool, Client: &client, Model: defaultModel, Schema: schema,
		Audit: agentpg.AuditConfig{Enabled: true, Actor: func(context.Context) string { return cliActor() }}}
}

// cliActor names who runs agentpg, for the audit entries of its admin
// actions: "agentpg cli", and the operating system's user when known.
func cliActor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "agentpg cli (" + u.Username + ")"
	}
	return "agentpg cli"
}

// storageAgent opens the database and an Agent over it, in --schema, for
// the commands that only migrate or read storage. The caller closes the
// database.
func (c *cli) storageAgent(ctx context.Context) (*agentpg.Agent, *database, error) {
	db, err := c.openDB(ctx, false)
	if err != nil {
		return nil, nil, err
	}
	cfg := storageConfig(db, c.schema)
	if cfg.Keys, err = c.keys(); err != nil {
		db.close()
		return nil, nil, err
	}
	agent, err := agentpg.New(cfg)
	if err != nil {
		db.close()
		return nil, nil, &usageError{err} // the configuration comes from the flags
	}
	db.agent = agent
	return agent, db, nil
}

// modelAgent opens the database (with throwaway, starting a throwaway
// cluster where no server answers), the model client, and an Agent with
// cfg over both, in --schema. It returns the Config it completed, for more
// Agents, and a func that releases everything.
func (c *cli) modelAgent(ctx context.Context, throwaway bool, cfg agentpg.Config) (*agentpg.Agent, agentpg.Config, *database, func(), error) {
	db, err := c.openDB(ctx, throwaway)
	if err != nil {
		return nil, cfg, nil, nil, err
	}
	client, stopClient, err := c.openClaude()
	if err != nil {
		db.close()
		return nil, cfg, nil, nil, err
	}
	release := func() { stopClient(); db.close() }
	cfg.DB, cfg.Client, cfg.Schema = db.pool, client, c.schema
	if cfg.Keys, err = c.keys(); err != nil {
		release()
		return nil, cfg, nil, nil, err
	}
	agent, err := agentpg.New(cfg)
	if err != nil {
		release()
		return nil, cfg, nil, nil, &usageError{err} // the configuration comes from the flags
	}
	return agent, cfg, db, release, nil
}
