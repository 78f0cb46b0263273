package agentpg_test

import (
	"context"
	"fmt"
	"log"
	"net/url"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
)

// The role that owns the tables migrates them and grants the application's
// role what it needs; the application connects as that role, which
// row-level security keeps to the tenant of each statement.
func ExampleAgent_GrantAppRole() {
	ctx := context.Background()
	var cfg agentpg.Config
	owner, cleanup := exampleAgentWith(ctx, func(c *agentpg.Config) { cfg = *c }, agentpgtest.Text("Hello, Ada."))
	defer cleanup()
	const role = "agentpg_examples_app" // made by your DBA: CREATE ROLE agentpg_examples_app LOGIN PASSWORD '...'
	defer exampleRole(ctx, role)()

	if err := owner.GrantAppRole(ctx, role); err != nil { // agentpg migrate --app-role agentpg_examples_app
		log.Fatal(err)
	}

	// The application, connected as the role.
	appURL, err := url.Parse(agentpgtest.DatabaseURL())
	if err != nil {
		log.Fatal(err)
	}
	appURL.User = url.User(role)
	cfg.DB, err = pgxpool.New(ctx, appURL.String())
	if err != nil {
		log.Fatal(err)
	}
	defer cfg.DB.Close()
	app, err := agentpg.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	sess, err := app.NewSession(ctx, "company-a", "user-1", nil)
	if err != nil {
		log.Fatal(err)
	}
	res, err := sess.Run(ctx, "Hi, I'm Ada.")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Text)

	// SQL that does not name its tenant sees nothing.
	var n int
	if err := cfg.DB.QueryRow(ctx, `SELECT count(*) FROM agentpg_examples.sessions`).Scan(&n); err != nil {
		log.Fatal(err)
	}
	fmt.Println("sessions seen without a tenant:", n)
	// Output:
	// Hello, Ada.
	// sessions seen without a tenant: 0
}

// exampleRole makes the login role name for an example, and returns the
// func that drops it.
func exampleRole(ctx context.Context, name string) func() {
	conn, err := pgx.Connect(ctx, agentpgtest.DatabaseURL())
	if err != nil {
		log.Fatal(err)
	}
	ident := pgx.Identifier{name}.Sanitize()
	drop := func() {
		var exists bool
		conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, name).Scan(&exists)
		if exists {
			conn.Exec(ctx, `DROP OWNED BY `+ident+` CASCADE`)
			conn.Exec(ctx, `DROP ROLE `+ident)
		}
	}
	drop() // what an interrupted run left
	if _, err := conn.Exec(ctx, `CREATE ROLE `+ident+` LOGIN`); err != nil {
		log.Fatal(err)
	}
	return func() {
		drop()
		conn.Close(ctx)
	}
}
