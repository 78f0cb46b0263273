package agentpg_test

import (
	"context"
	"fmt"
	"log"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/redact"
	"github.com/agentpg/agentpg/tool"
)

// The application checks its own Agent, at startup or from a health
// endpoint: its tools, hooks, logging and keys, and its database. These
// examples connect as a superuser, which row-level security does not bind,
// and set no keys, audit, retention or limits.
func ExampleAgent_Checkup() {
	ctx := context.Background()
	weather, err := tool.NewFunc("get_weather", "Current weather in a city.",
		func(ctx context.Context, in struct {
			City string `json:"city" jsonschema:"minLength=1"`
		}) (string, error) {
			return "Sunny in " + in.City, nil
		})
	if err != nil {
		log.Fatal(err)
	}
	agent, cleanup := exampleAgentWith(ctx, func(c *agentpg.Config) { c.Tools = []tool.Tool{weather} })
	defer cleanup()
	agent.OnBeforeMessage(redact.BlockPII())

	for _, c := range agent.Checkup(ctx) {
		if c.Status != agentpg.CheckOK { // c.Detail says what was found, c.Fix what to do
			fmt.Println(c.Status, c.Name)
		}
	}
	fmt.Println(agent.Checkup(ctx, agentpg.CheckEncryption)[0].Detail)
	// Output:
	// warn encryption
	// fail database role
	// warn audit log
	// warn retention
	// warn rate limits
	// Config.Keys is nil: content is stored unencrypted
}
