package audit_test

import (
	"context"
	"fmt"
	"log"
	"strings"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/audit"
)

// The audit log of an Agent: entries recorded in the background, listed,
// verified, and one user's erased.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, agentpgtest.DatabaseURL())
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	client := anthropic.NewClient()
	agent, err := agentpg.New(agentpg.Config{
		DB: pool, Client: &client, Model: "claude-sonnet-5-5", Schema: "agentpg_audit_examples",
		Audit: agentpg.AuditConfig{
			Enabled: true, // the Agent records its own tool calls, approvals...
			Redact:  func(s string) string { return strings.ReplaceAll(s, "4111 1111 1111 1111", "[card]") },
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	// Start from a clean schema, whatever an earlier run left.
	if _, err := pool.Exec(ctx, `DROP SCHEMA IF EXISTS agentpg_audit_examples CASCADE`); err != nil {
		log.Fatal(err)
	}
	if err := agent.Migrate(ctx); err != nil {
		log.Fatal(err)
	}

	auditLog := agent.AuditLog()
	for _, user := range []string{"user-1", "user-2"} {
		err := auditLog.Record(audit.Entry{TenantID: "acme", UserID: user, Action: "export", Input: "card 4111 1111 1111 1111", Success: true})
		if err != nil {
			log.Fatal(err)
		}
	}
	if err := auditLog.Flush(ctx); err != nil { // or agent.Close on shutdown
		log.Fatal(err)
	}
	erased, err := auditLog.Erase(ctx, "acme", "user-1", "dpo@acme")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("erased:", erased)

	entries, err := auditLog.List(ctx, "acme", audit.ListOptions{})
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range entries {
		fmt.Printf("%d %s %q %q erased=%t\n", e.Seq, e.Action, e.UserID, e.Input, !e.ErasedAt.IsZero())
	}
	fmt.Println("verify:", auditLog.Verify(ctx, "acme"))
	if err := agent.Close(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// erased: 1
	// 1 export "" "" erased=true
	// 2 export "user-2" "card [card]" erased=false
	// 3 audit_erasure "" "" erased=false
	// verify: <nil>
}
