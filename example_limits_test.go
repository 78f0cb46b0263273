package agentpg_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/agentpg/agentpg"
)

// A tenant's limits hold across every process on the database: a run they
// refuse fails before the model is called, with the time to wait.
func ExampleAgent_SetTenantLimits() {
	ctx := context.Background()
	agent, cleanup := exampleAgent(ctx, "Hello.")
	defer cleanup()

	err := agent.SetTenantLimits(ctx, "company-a", agentpg.TenantLimits{
		RequestsPerMinute: 1,         // model calls, tool loops included
		TokensPerDay:      2_000_000, // input and output tokens per UTC day
		PerSession:        agentpg.SessionLimits{TokensPerDay: 100_000},
	})
	if err != nil {
		log.Fatal(err)
	}
	sess, err := agent.NewSession(ctx, "company-a", "user-1", nil)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := sess.Run(ctx, "Hi."); err != nil {
		log.Fatal(err)
	}
	_, err = sess.Run(ctx, "Hi again.")
	var limited *agentpg.LimitError
	if errors.As(err, &limited) {
		fmt.Println(errors.Is(err, agentpg.ErrLimitExceeded), limited.Limit, limited.RetryAfter > 0)
	}
	// Output: true requests_per_minute true
}
