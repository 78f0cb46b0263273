package agentpg_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/agentpg/agentpg"
)

// Enqueue a prompt, and let a Worker (here in the same process; usually
// several, in "agentpg serve" or the application's own processes) execute
// it, then wait for its Result from anywhere.
func ExampleSession_Enqueue() {
	ctx := context.Background()
	agent, done := exampleAgent(ctx, "Paris.")
	defer done()

	worker, err := agentpg.NewWorker(agent, agentpg.WorkerConfig{Concurrency: 4})
	if err != nil {
		log.Fatal(err)
	}
	if err := worker.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := worker.Stop(stopCtx); err != nil {
			log.Print(err)
		}
	}()

	sess, err := agent.NewSession(ctx, "acme", fmt.Sprintf("enqueue-%d", time.Now().UnixNano()), nil)
	if err != nil {
		log.Fatal(err)
	}
	runID, err := sess.Enqueue(ctx, "What is the capital of France?")
	if err != nil {
		log.Fatal(err)
	}
	res, err := agent.WaitRun(ctx, "acme", runID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Text)
	// Output: Paris.
}
