package compaction_test

import (
	"fmt"
	"log"
	"strings"

	"github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/agentpg/agentpg/compaction"
)

func ExamplePlanCompaction() {
	text := anthropic.NewTextBlock
	buildLog := strings.Repeat("main.go:12: undefined: x\n", 2000)
	history := []compaction.Message{
		{ID: "m1", Role: "user", Content: []anthropic.ContentBlockParamUnion{text("Why does the build fail?")}},
		{ID: "m2", Role: "assistant", Content: []anthropic.ContentBlockParamUnion{
			anthropic.NewToolUseBlock("toolu_1", map[string]any{"cmd": "go build ./..."}, "run"),
		}},
		{ID: "m3", Role: "user", Content: []anthropic.ContentBlockParamUnion{
			anthropic.NewToolResultBlock("toolu_1", buildLog, true),
		}},
		{ID: "m4", Role: "assistant", Content: []anthropic.ContentBlockParamUnion{text("x is undefined at main.go:12.")}},
		{ID: "m5", Role: "user", Content: []anthropic.ContentBlockParamUnion{text("Fix it.")}},
		{ID: "m6", Role: "assistant", Content: []anthropic.ContentBlockParamUnion{text("Done: x is now declared.")}},
	}
	// Protect only the latest turn: its last message, back to its prompt.
	o := compaction.Options{ContextWindow: 14_000, ProtectTokens: 1}
	fmt.Println("needs compaction:", compaction.NeedsCompaction(compaction.Size(history), o))

	plan, err := compaction.PlanCompaction(history, o)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range plan.Pruned {
		fmt.Println("pruned:", m.ID)
	}
	fmt.Println("summarized:", len(plan.Summarize), "messages")
	fmt.Println("tokens:", plan.TokensBefore, "->", plan.TokensAfter)
	fmt.Print(compaction.Transcript(plan.Keep, 80))
	// Output:
	// needs compaction: true
	// pruned: m3
	// summarized: 0 messages
	// tokens: 12529 -> 41
	// user: Why does the build fail?
	//
	// assistant: [tool call toolu_1 run] {"cmd":"go build ./..."}
	//
	// user: [tool error toolu_1] [tool output pruned by compaction: 50000 bytes]
	//
	// assistant: x is undefined at main.go:12.
	//
	// user: Fix it.
	//
	// assistant: Done: x is now declared.
}
