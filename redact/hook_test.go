package redact_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/redact"
)

// message returns a stored-message value as OnBeforeMessage hooks get it.
func message(role string, blocks ...anthropic.ContentBlockParamUnion) any {
	return agentpg.Message{ID: "0197e0c2-7b1e-7c3a-9f1e-2d4b6a8c0e1f", Seq: 7, Role: role, Content: blocks}
}

// clean is a conversation with nothing to block, using every block type,
// with opaque data (a signature, base64 image data) that would read as a
// secret if it were text.
func clean() []any {
	opaque := "iVBORw0KGgo+AKIAIOSFODNN7EXAMPLE+token+7f3kQ9zLmP2xR8vNc4Tb"
	return []any{
		message("user", anthropic.NewTextBlock("What is the weather in Paris on 2026-12-01? I run v1.2.3."),
			anthropic.NewImageBlockBase64("image/png", opaque)),
		message("assistant", anthropic.NewThinkingBlock(opaque, "The user wants the weather."),
			anthropic.NewRedactedThinkingBlock(opaque),
			anthropic.NewToolUseBlock("toolu_01A09q90qw90lq917835lq9", map[string]any{"city": "Paris"}, "get_weather")),
		message("user", anthropic.NewToolResultBlock("toolu_01A09q90qw90lq917835lq9", "Sunny, 21 C, 1013 hPa", false)),
	}
}

func TestBlockPIIAllowsCleanMessages(t *testing.T) {
	t.Parallel()
	if err := redact.BlockPII()(t.Context(), clean()); err != nil {
		t.Fatalf("clean conversation refused: %v", err)
	}
	// The opaque data is skipped, not unreadable: as text it is a secret.
	opaque := message("user", anthropic.NewTextBlock("iVBORw0KGgo+AKIAIOSFODNN7EXAMPLE+token"))
	if err := redact.BlockPII()(t.Context(), []any{opaque}); !errors.Is(err, redact.ErrPIIDetected) {
		t.Fatalf("err = %v, want ErrPIIDetected", err)
	}
}

func TestBlockPIIFindsEveryPart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		block anthropic.ContentBlockParamUnion
		kinds []string
	}{
		{"text", anthropic.NewTextBlock("Mail bob@example.com, card 4111 1111 1111 1111"),
			[]string{redact.KindEmail, redact.KindCard}},
		// The key gives a random-looking value its meaning.
		{"tool input", anthropic.NewToolUseBlock("toolu_2", map[string]any{"api_key": "7f3kQ9zLmP2xR8vNc4Tb"}, "fetch"),
			[]string{redact.KindSecret}},
		{"tool input number", anthropic.NewToolUseBlock("toolu_2", map[string]any{"card": 4111111111111111}, "pay"),
			[]string{redact.KindCard}},
		{"tool result", anthropic.NewToolResultBlock("toolu_1", "customer SSN 123-45-6789, phone +44 20 7946 0958", false),
			[]string{redact.KindPhone, redact.KindSSN}},
		{"thinking text", anthropic.NewThinkingBlock("c2ln", "The IBAN is DE89 3704 0044 0532 0130 00."),
			[]string{redact.KindIBAN}},
		{"document text", anthropic.NewDocumentBlock(anthropic.PlainTextSourceParam{Data: "host 10.0.0.1"}),
			[]string{redact.KindIP}},
	} {
		messages := append(clean(), message("user", tc.block))
		err := redact.BlockPII()(t.Context(), messages)
		var detected *redact.DetectedError
		if !errors.As(err, &detected) || !errors.Is(err, redact.ErrPIIDetected) {
			t.Errorf("%s: err = %v, want a DetectedError", tc.name, err)
			continue
		}
		if detected.Message != len(messages)-1 || !slices.Equal(detected.Kinds, tc.kinds) {
			t.Errorf("%s: found %v in message %d, want %v in message %d", tc.name, detected.Kinds, detected.Message, tc.kinds, len(messages)-1)
		}
	}
}

// The error names kinds, never what was found.
func TestBlockPIIErrorHoldsNoData(t *testing.T) {
	t.Parallel()
	secrets := []string{"bob@example.com", "4111 1111 1111 1111", "hunter22", "sk-ant-api03-PtYgjmUhBel31iEl2hpChYgCfrL1spNxnyVmihA_AA"}
	text := "mail " + secrets[0] + " card " + secrets[1] + " password: " + secrets[2] + " key " + secrets[3]
	err := redact.BlockPII()(t.Context(), []any{message("user", anthropic.NewTextBlock(text))})
	if err == nil {
		t.Fatal("not refused")
	}
	msg := err.Error()
	for _, s := range append(secrets, "4111", "bob", "hunter") {
		if strings.Contains(msg, s) {
			t.Errorf("error %q holds %q", msg, s)
		}
	}
	if want := "redact: PII detected (email, card, secret) in message 0"; msg != want {
		t.Errorf("error = %q, want %q", msg, want)
	}
}

func TestBlockPIIKinds(t *testing.T) {
	t.Parallel()
	email := []any{message("user", anthropic.NewTextBlock("write to bob@example.com"))}
	card := []any{message("user", anthropic.NewTextBlock("card 4111 1111 1111 1111, mail bob@example.com"))}
	hook := redact.BlockPII(redact.KindCard, redact.KindSecret)
	if err := hook(t.Context(), email); err != nil {
		t.Errorf("an email refused by a hook for cards and secrets: %v", err)
	}
	var detected *redact.DetectedError
	if err := hook(t.Context(), card); !errors.As(err, &detected) || !slices.Equal(detected.Kinds, []string{redact.KindCard}) {
		t.Errorf("err = %v, want a DetectedError naming card only", err)
	}
	// A misspelt kind refuses everything rather than letting data through.
	bad := redact.BlockPII(redact.KindCard, "credit-card")
	for _, messages := range [][]any{email, nil} {
		if err := bad(t.Context(), messages); !errors.Is(err, redact.ErrUnknownKind) || !strings.Contains(err.Error(), `"credit-card"`) {
			t.Errorf("err = %v, want ErrUnknownKind naming the kind", err)
		}
	}
}

type stringer struct{ s string }

func (s stringer) String() string { return s.s }

// contact's String leaves out its email address.
type contact struct{ Name, Email string }

func (c contact) String() string { return "contact " + c.Name }

func TestBlockPIIMessageTypes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		message any
		found   bool
	}{
		{"string", "call +1 (415) 555-0100", true},
		{"bytes", []byte("call +1 (415) 555-0100"), true},
		{"raw json", json.RawMessage(`{"password": "hunter22"}`), true},
		{"raw json escapes", json.RawMessage(`{"note": "key:\n-----BEGIN PRIVATE KEY-----\nQUJDREVG\n-----END PRIVATE KEY-----"}`), true},
		{"raw text", json.RawMessage(`not json: bob@example.com`), true},
		{"stringer", stringer{"ip 10.0.0.1"}, true},
		{"stringer's fields", contact{Name: "Ada", Email: "ada@example.com"}, true},
		{"clean stringer", contact{Name: "Ada"}, false},
		{"struct", struct{ Note string }{"IBAN GB82 WEST 1234 5698 7654 32"}, true},
		{"map", map[string]any{"n": 1, "when": "2026-12-01"}, false},
		{"nil", nil, false},
		{"clean string", "version 1.2.3.4 released on 2026-12-01", false},
	} {
		err := redact.BlockPII()(t.Context(), []any{tc.message})
		if found := errors.Is(err, redact.ErrPIIDetected); found != tc.found || err != nil && !found {
			t.Errorf("%s: err = %v, want found = %v", tc.name, err, tc.found)
		}
	}
}

func TestBlockPIIUnreadableMessage(t *testing.T) {
	t.Parallel()
	err := redact.BlockPII()(t.Context(), []any{"fine", make(chan int)})
	if err == nil || errors.Is(err, redact.ErrPIIDetected) || !strings.Contains(err.Error(), "message 1") {
		t.Fatalf("err = %v, want an error reading message 1", err)
	}
}

func TestBlockPIICanceled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := redact.BlockPII()(ctx, clean()); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}
