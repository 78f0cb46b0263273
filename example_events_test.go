package agentpg_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/agentpg/agentpg"
)

// Following a run from another process, such as a web server relaying it
// to a browser: RunEvents reads the run's stored events and waits for the
// next ones, and a client that reconnects passes the Seq of the last event
// it received, as an SSE Last-Event-ID would carry it, to get the rest
// exactly once.
func ExampleAgent_RunEvents() {
	ctx := context.Background()
	var agent *agentpg.Agent // made with agentpg.New, in any process
	var tenantID, runID string
	var lastSeq int64 // 0, or the last seq the client saw

	for e, err := range agent.RunEvents(ctx, tenantID, runID, lastSeq) {
		if errors.Is(err, agentpg.ErrRunNotFound) {
			log.Print("no such run")
			return
		}
		if err != nil {
			log.Printf("following run %s: %v (resume after %d)", runID, err, lastSeq)
			return
		}
		switch e.Kind {
		case agentpg.EventText:
			fmt.Print(e.Text)
		case agentpg.EventToolCall:
			fmt.Printf("\n[calling %s with %s]\n", e.ToolName, e.Input)
		case agentpg.EventApproval:
			fmt.Printf("\n[%s: %s]\n", e.ToolName, e.Status)
		case agentpg.EventRunEnd:
			fmt.Printf("\n[run %s: %s, %d output tokens]\n", e.Status, e.StopReason, e.Usage.OutputTokens)
		}
		lastSeq = e.Seq
	}
}
