package main

import (
	"encoding/json"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg/agentpgtest"
)

// The retention commands set, show and apply policies; erase previews
// unless told --yes, then deletes the end user's session and nothing else.
func TestRetentionAndErase(t *testing.T) {
	t.Parallel()
	schema := migrated(t)
	for _, ident := range []string{"old", "new", "pay-2"} {
		pausedRun(t, schema, ident, "Oslo")
	}
	pool, err := pgxpool.New(t.Context(), agentpgtest.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	sessions := func(ident string) int {
		var n int
		if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM `+schema+`.sessions WHERE identifier = $1`, ident).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// The runs await approval: deny them, so that nothing holds the sessions.
	if _, err := pool.Exec(t.Context(), `UPDATE `+schema+`.runs SET status = 'failed'`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(t.Context(), `UPDATE `+schema+`.sessions SET updated_at = now() - interval '100 days' WHERE identifier = 'old'`); err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) result {
		t.Helper()
		return agentpgCLI(t, append(args, "--schema", schema)...)
	}

	res := cli("retention", "set")
	wantCode(t, res, 2)
	wantContains(t, "set without a tenant", res.stderr, "--tenant or --default is required")
	res = cli("retention", "set", "--tenant", "acme", "--sessions", "soon")
	wantCode(t, res, 2)
	wantContains(t, "a bad period", res.stderr, `--sessions: "soon" is not a period`)
	res = cli("retention", "set", "--default", "--guide")
	wantCode(t, res, 0)
	wantContains(t, "set --guide", res.stdout, "Retention of the default: sessions 90 days, archive 30 days, run events forever.")
	res = cli("retention", "set", "--tenant", "globex", "--sessions", "36h")
	wantCode(t, res, 0)
	res = cli("retention", "show", "--json")
	wantCode(t, res, 0)
	var policies map[string]struct{ Sessions, Archive float64 }
	if err := json.Unmarshal([]byte(res.stdout), &policies); err != nil || len(policies) != 2 ||
		policies[""].Archive != 30*24*3600 || policies["globex"].Sessions != 36*3600 {
		t.Fatalf("retention show --json: %v\n%s", err, res.stdout)
	}

	res = cli("retention", "run", "--dry-run")
	wantCode(t, res, 0)
	wantContains(t, "run --dry-run", res.stdout, "Would delete 1 session, 0 archived messages, 0 run events.", `"acme": 1 session`)
	if sessions("old") != 1 {
		t.Fatal("a dry run deleted")
	}
	res = cli("retention", "run")
	wantCode(t, res, 0)
	wantContains(t, "run", res.stdout, "Deleted 1 session")
	if sessions("old") != 0 || sessions("new") != 1 {
		t.Fatalf("after retention run: old %d, new %d", sessions("old"), sessions("new"))
	}

	res = cli("erase", "--tenant", "acme", "--identifier", "new")
	wantCode(t, res, 0)
	wantContains(t, "erase without --yes", res.stdout, `Would erase identifier "new" of tenant "acme": 1 session, 2 messages`,
		"Nothing was deleted: add --yes to erase.")
	res = cli("erase", "--tenant", "acme", "--identifier", "new", "--yes")
	wantCode(t, res, 0)
	wantContains(t, "erase --yes", res.stdout, `Erased identifier "new" of tenant "acme": 1 session`)
	if sessions("new") != 0 || sessions("pay-2") != 1 {
		t.Fatalf("after erase: new %d, pay-2 %d", sessions("new"), sessions("pay-2"))
	}
	res = cli("erase", "--identifier", "pay-2", "--yes")
	wantCode(t, res, 2)
	wantContains(t, "erase without a tenant", res.stderr, "--tenant is required")
}
