package agentpg_test

import (
	"context"
	"fmt"
	"log"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/keys"
)

// With Config.Keys, content is stored encrypted under a data key per
// tenant; RotateKeys moves every row to a new one while runs go on.
func ExampleAgent_RotateKeys() {
	ctx := context.Background()
	// In production: keys.FromEnv("AGENTPG_KEYS"), each key made with
	// head -c 32 /dev/urandom | base64.
	provider, err := keys.Parse("kek-2026:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
	if err != nil {
		log.Fatal(err)
	}
	agent, cleanup := exampleAgentWith(ctx, func(c *agentpg.Config) { c.Keys = provider }, agentpgtest.Text("Noted."))
	defer cleanup()
	sess, err := agent.NewSession(ctx, "company-a", "user-1", nil)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := sess.Run(ctx, "My locker code is 4711."); err != nil {
		log.Fatal(err)
	}
	if err := agent.RotateKeys(ctx, "company-a"); err != nil {
		log.Fatal(err)
	}
	status, err := agent.KeyStatus(ctx, "company-a")
	if err != nil {
		log.Fatal(err)
	}
	for _, k := range status.Keys {
		fmt.Printf("version %d, wrapped by %s, sealing rows: %v\n", k.Version, k.KEKID, k.Rows > 0)
	}
	fmt.Println("rows in plaintext:", status.PlaintextRows)
	// Output:
	// version 1, wrapped by kek-2026, sealing rows: false
	// version 2, wrapped by kek-2026, sealing rows: true
	// rows in plaintext: 0
}
