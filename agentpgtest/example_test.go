package agentpgtest_test

import (
	"context"
	"fmt"
	"log"

	"github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/agentpg/agentpg/agentpgtest"
)

// In a test, use agentpgtest.NewServer(t), which closes the server when the
// test ends.
func Example() {
	srv, err := agentpgtest.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	srv.Push(agentpgtest.Text("Hello! How can I help?"))

	client := srv.Client()
	msg, err := client.Messages.New(context.Background(), anthropic.MessageNewParams{
		Model:     anthropic.ModelClaudeSonnet4_5,
		MaxTokens: 1024,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hi"))},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(msg.Content[0].Text)
	fmt.Println(srv.Requests()[0].LastUserText())
	// Output:
	// Hello! How can I help?
	// Hi
}
