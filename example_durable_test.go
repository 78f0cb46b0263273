package agentpg_test

import (
	"context"
	"fmt"
	"log"
	"strings"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/tool"
)

// A tool whose calls need a person's approval: the run pauses, a person
// decides (in any process), and the run goes on.
func ExampleAgent_DecideToolCall() {
	ctx := context.Background()
	type payment struct {
		Payee string `json:"payee"`
	}
	transfer, err := tool.NewFunc("transfer", "Pays a payee.", func(_ context.Context, p payment) (string, error) {
		return "paid " + p.Payee, nil
	})
	if err != nil {
		log.Fatal(err)
	}
	agent, cleanup := exampleAgentWith(ctx, func(c *agentpg.Config) {
		c.Tools = []tool.Tool{transfer}
		c.ApprovalRequired = []string{"transfer"}
	},
		agentpgtest.Blocks(agentpgtest.ToolUse("toolu_1", "transfer", map[string]any{"payee": "ACME Corp"})),
		agentpgtest.Text("ACME Corp is paid."),
	)
	defer cleanup()

	sess, err := agent.NewSession(ctx, "company-a", "user-1", nil)
	if err != nil {
		log.Fatal(err)
	}
	res, err := sess.Run(ctx, "Pay ACME's invoice.")
	if err != nil {
		log.Fatal(err)
	}
	pending := res.PendingApprovals[0]
	fmt.Println(res.StopReason, pending.Name, string(pending.Input))

	if err := agent.DecideToolCall(ctx, "company-a", res.RunID, pending.ToolUseID, true, "approved by alice"); err != nil {
		log.Fatal(err)
	}
	res, err = agent.ResumeRun(ctx, "company-a", res.RunID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Text)

	for ev, err := range agent.RunEvents(ctx, "company-a", res.RunID, 0) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(ev.Seq, strings.TrimSpace(string(ev.Kind)+" "+ev.Status))
	}
	// Output:
	// awaiting_approval transfer {"payee":"ACME Corp"}
	// ACME Corp is paid.
	// 1 tool_call
	// 2 approval pending
	// 3 tool_result
	// 4 text
	// 5 run_end completed
}
