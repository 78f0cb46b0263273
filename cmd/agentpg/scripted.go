package main

import (
	"fmt"
	"regexp"

	"github.com/agentpg/agentpg/agentpgtest"
)

// startScripted starts the scripted model that demo and chat use without
// ANTHROPIC_API_KEY: a server on the loopback interface that speaks the
// Messages API, streaming included, and answers with scriptedReply.
func startScripted() (*agentpgtest.Server, error) {
	srv, err := agentpgtest.Start()
	if err != nil {
		return nil, err
	}
	srv.SetResponder(scriptedReply)
	return srv, nil
}

var (
	// introduction finds the name in "my name is Ada" or "call me Ada".
	introduction = regexp.MustCompile(`(?i)\b(?:my name is|call me)\s+(\p{L}[\p{L}'-]*)`)
	// nameQuestion matches a question about the user's name.
	nameQuestion = regexp.MustCompile(`(?i)\b(?:what(?:'s| is) my name|who am i)\b`)
)

// scriptedReply answers a request from the conversation it carries, which
// holds every message of the session so far: it recalls a name given in any
// earlier user message, so that a reloaded session shows that its history
// was sent. It answers with text only, never calling a tool, even one the
// request offers: chat offers those a session called before, as
// unavailable, for the server (as the Messages API does) refuses a
// conversation holding tool_use or tool_result blocks without tools.
func scriptedReply(req agentpgtest.Request) agentpgtest.Reply {
	prompt := req.LastUserText()
	name := userName(req.Messages)
	var answer string
	switch {
	case introduction.MatchString(prompt):
		answer = fmt.Sprintf("Nice to meet you, %s! I will remember your name.", name)
	case nameQuestion.MatchString(prompt) && name != "":
		answer = fmt.Sprintf("Your name is %s: you told me earlier in this conversation, which I received whole (%d messages).", name, len(req.Messages))
	case nameQuestion.MatchString(prompt):
		answer = `You have not told me your name yet. Tell me with "My name is ...".`
	default:
		answer = fmt.Sprintf("I am a scripted model, so all I can say is that I received %q after %d earlier messages. Set ANTHROPIC_API_KEY to talk to Claude.",
			excerpt(prompt, 80), len(req.Messages)-1)
	}
	return agentpgtest.Text(answer)
}

// userName returns the last name the user gave in msgs, or "".
func userName(msgs []agentpgtest.Message) string {
	var name string
	for _, msg := range msgs {
		if msg.Role != "user" {
			continue
		}
		for _, block := range msg.Content {
			for _, m := range introduction.FindAllStringSubmatch(block.Text, -1) {
				name = m[1]
			}
		}
	}
	return name
}
