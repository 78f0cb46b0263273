package main

import (
	"strings"
	"testing"

	"github.com/agentpg/agentpg/agentpgtest"
)

func TestScriptedReply(t *testing.T) {
	t.Parallel()
	user := func(text string) agentpgtest.Message {
		return agentpgtest.Message{Role: "user", Content: []agentpgtest.ContentBlock{{Type: "text", Text: text}}}
	}
	assistant := func(text string) agentpgtest.Message {
		return agentpgtest.Message{Role: "assistant", Content: []agentpgtest.ContentBlock{{Type: "text", Text: text}}}
	}
	for _, tc := range []struct {
		name     string
		messages []agentpgtest.Message
		want     string
	}{
		{"introduction", []agentpgtest.Message{user("Hello, my name is Ada.")}, "Nice to meet you, Ada!"},
		{"recall", []agentpgtest.Message{
			user("Call me Grace"), assistant("Nice to meet you, Grace!"),
			user("Actually, my name is Ada."), assistant("Nice to meet you, Ada!"),
			user("What's my name?"),
		}, "Your name is Ada"},
		{"no name given", []agentpgtest.Message{user("What is my name?")}, "You have not told me your name"},
		{"a name only the assistant said", []agentpgtest.Message{
			user("Hi"), assistant("My name is Claude."), user("Who am I?"),
		}, "You have not told me your name"},
		{"anything else", []agentpgtest.Message{user("hi"), assistant("hello"), user("How are you?")}, `received "How are you?" after 2 earlier messages`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reply := scriptedReply(agentpgtest.Request{Messages: tc.messages})
			if len(reply.Content) != 1 || !strings.Contains(reply.Content[0].Text, tc.want) {
				t.Errorf("reply %+v, want a text containing %q", reply.Content, tc.want)
			}
		})
	}
}

// TestScriptedReplyAfterTools checks that the scripted model answers a
// conversation with tool calls, offering tools, with text.
func TestScriptedReplyAfterTools(t *testing.T) {
	t.Parallel()
	req := agentpgtest.Request{
		ToolNames: []string{"get_weather"},
		Messages: []agentpgtest.Message{
			{Role: "user", Content: []agentpgtest.ContentBlock{{Type: "text", Text: "My name is Ada. Weather?"}}},
			{Role: "assistant", Content: []agentpgtest.ContentBlock{{Type: "tool_use", ID: "toolu_1", Name: "get_weather"}}},
			{Role: "user", Content: []agentpgtest.ContentBlock{{Type: "tool_result", ToolUseID: "toolu_1", Content: []byte(`"sunny"`)}}},
			{Role: "assistant", Content: []agentpgtest.ContentBlock{{Type: "text", Text: "Sunny."}}},
			{Role: "user", Content: []agentpgtest.ContentBlock{{Type: "text", Text: "What is my name?"}}},
		},
	}
	reply := scriptedReply(req)
	if len(reply.Content) != 1 || reply.Content[0].Type != "text" || !strings.Contains(reply.Content[0].Text, "Your name is Ada") {
		t.Errorf("reply %+v, want a text recalling Ada", reply.Content)
	}
}
