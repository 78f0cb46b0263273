package agentpg

import (
	"testing"

	"github.com/agentpg/agentpg/internal/store"
)

// TestConversationLoan: the first run to read a cached conversation
// appends to its arrays (messages and their encoding) in place, and a run
// reading it before the first remembered its own gets copies, so that
// neither writes over the other's; once remembered, the new conversation
// is lent in turn.
func TestConversationLoan(t *testing.T) {
	s := &Session{cache: &cachedConversation{}}
	cached := make([]Message, 2, 8)
	cached[0], cached[1] = Message{ID: "m1", Seq: 1}, Message{ID: "m2", Seq: 2}
	wire := make([]byte, 0, 1024)
	conv := conversation{messages: cached, wire: wire}
	if _, err := conv.encodedMessages(); err != nil {
		t.Fatal(err)
	}
	s.remember(conv)

	first, err := s.conversationSince(store.Begun{})
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.conversationSince(store.Begun{})
	if err != nil {
		t.Fatal(err)
	}
	first.add(Message{ID: "first", Seq: 3}, []byte(`["first"]`))
	second.add(Message{ID: "second", Seq: 3}, []byte(`["second"]`))
	firstWire, err := first.encodedMessages()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.encodedMessages(); err != nil {
		t.Fatal(err)
	}
	if got := first.messages[2].ID; got != "first" {
		t.Fatalf("the first run's message is %q: the second run wrote into its array", got)
	}
	if want := `{"content":null,"role":"user"},{"content":null,"role":"user"},{"content":["first"],"role":"user"}`; string(firstWire) != want {
		t.Fatalf("the first run's encoding is %s, want %s", firstWire, want)
	}
	if &first.messages[0] != &cached[0] || &first.wire[0] != &wire[:1][0] {
		t.Error("the first run copied the cached conversation instead of appending to it")
	}
	if &second.messages[0] == &cached[0] || &second.wire[0] == &wire[:1][0] {
		t.Error("the second run appended to the arrays lent to the first")
	}

	s.remember(first)
	third, err := s.conversationSince(store.Begun{})
	if err != nil {
		t.Fatal(err)
	}
	if len(third.messages) != 3 || &third.messages[0] != &first.messages[0] {
		t.Errorf("the run after the first got %d messages in another array, want the first's 3 in its array", len(third.messages))
	}
}
