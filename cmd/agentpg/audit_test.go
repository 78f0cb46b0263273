package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/audit"
)

func TestAuditListAndVerify(t *testing.T) {
	t.Parallel()
	schema := migrated(t)
	agent, _ := testAgent(t, schema)
	log := agent.AuditLog()
	day := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for i, e := range []audit.Entry{
		{Timestamp: day, TenantID: "acme", UserID: "user-1", Action: "tool_call", Tool: "charge", Input: `{"amount":10}`, Success: true},
		{Timestamp: day.Add(time.Hour), TenantID: "acme", UserID: "user-2", Action: "export",
			Input: "evil \x1b[31mred\u202e", Actor: "ops\u202e"},
		{TenantID: "acme", UserID: "user-1", Action: "login", Success: true},
		{TenantID: "globex", Action: "login"},
	} {
		if err := log.Record(e); err != nil {
			t.Fatal(i, err)
		}
	}
	if err := agent.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) result {
		t.Helper()
		return agentpgCLI(t, append(args, "--schema", schema)...)
	}

	res := cli("audit", "list", "--tenant", "acme")
	wantCode(t, res, 0)
	wantContains(t, "audit list", res.stdout, "SEQ", "tool_call", "charge", `{"amount":10}`, "yes", "user-1",
		"export", `evil \x1b[31mred\u202e`, `ops\u202e`, "login")
	noRawEscape(t, "audit list", res.stdout)
	if strings.Contains(res.stdout, "globex") || strings.Contains(res.stdout, "More entries") {
		t.Errorf("audit list:\n%s", res.stdout)
	}

	// Pages, and --since.
	res = cli("audit", "list", "--tenant", "acme", "--limit", "2")
	wantCode(t, res, 0)
	wantContains(t, "audit list --limit 2", res.stdout, "export", "More entries follow: run again with --after 2")
	res = cli("audit", "list", "--tenant", "acme", "--limit", "2", "--after", "2", "--json")
	wantCode(t, res, 0)
	var page struct {
		Entries []struct {
			Seq      int64      `json:"seq"`
			Action   string     `json:"action"`
			Hash     string     `json:"hash"`
			ErasedAt *time.Time `json:"erased_at"`
		} `json:"entries"`
		Next string `json:"next"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &page); err != nil {
		t.Fatalf("%v\n%s", err, res.stdout)
	}
	if len(page.Entries) != 1 || page.Entries[0].Seq != 3 || page.Entries[0].Action != "login" ||
		len(page.Entries[0].Hash) != 64 || page.Entries[0].ErasedAt != nil || page.Next != "" {
		t.Errorf("audit list --after 2 --json: %+v", page)
	}
	res = cli("audit", "list", "--tenant", "acme", "--since", "2025-06-01T12:30:00Z", "--json")
	wantCode(t, res, 0)
	if err := json.Unmarshal([]byte(res.stdout), &page); err != nil || len(page.Entries) != 2 || page.Entries[0].Seq != 2 {
		t.Errorf("audit list --since a time: %+v %v", page, err)
	}
	res = cli("audit", "list", "--tenant", "acme", "--since", "1h")
	wantCode(t, res, 0)
	if !strings.Contains(res.stdout, "login") || strings.Contains(res.stdout, "charge") {
		t.Errorf("audit list --since 1h:\n%s", res.stdout)
	}
	for _, args := range [][]string{
		{"audit", "list"},
		{"audit", "list", "--tenant", "acme", "--since", "yesterday"},
		{"audit", "list", "--tenant", "acme", "--after", "x"},
		{"audit", "list", "--tenant", "a\x01b"},
		{"audit", "verify", "--tenant", " "},
	} {
		wantCode(t, cli(args...), 2)
	}

	// Every chain verifies, then one is tampered with.
	res = cli("audit", "verify")
	wantCode(t, res, 0)
	wantContains(t, "audit verify", res.stdout, `Tenant "acme": intact, 3 entries, head `, `Tenant "globex": intact, 1 entry, head `)
	tamperRow(t, schema, `UPDATE %s.audit_log SET input = 'forged' WHERE tenant_id = 'acme' AND seq = 2`)
	res = cli("audit", "verify")
	wantCode(t, res, 1)
	wantContains(t, "audit verify after tampering", res.stdout, `Tenant "acme": BROKEN at seq 2: the content`, `Tenant "globex": intact`)
	wantContains(t, "stderr", res.stderr, "1 audit chain of 2 audit chains broken")
	wantCode(t, cli("audit", "verify", "--tenant", "globex"), 0)
	res = cli("audit", "verify", "--tenant", "acme", "--json")
	wantCode(t, res, 1)
	var chains struct {
		Chains []struct {
			TenantID string `json:"tenant_id"`
			Intact   bool   `json:"intact"`
			HeadSeq  int64  `json:"head_seq"`
			BrokenAt *int64 `json:"broken_at"`
		} `json:"chains"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &chains); err != nil || len(chains.Chains) != 1 || chains.Chains[0].Intact ||
		chains.Chains[0].BrokenAt == nil || *chains.Chains[0].BrokenAt != 2 || chains.Chains[0].HeadSeq != 3 {
		t.Errorf("audit verify --json: %+v %v\n%s", chains, err, res.stdout)
	}
}

// tamperRow runs statement, whose %s is the schema, with triggers off, as
// an attacker with full rights would.
func tamperRow(t *testing.T, schema, statement string) {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), agentpgtest.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	err = pgx.BeginFunc(t.Context(), pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(t.Context(), `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		_, err := tx.Exec(t.Context(), strings.ReplaceAll(statement, "%s", pgx.Identifier{schema}.Sanitize()))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
