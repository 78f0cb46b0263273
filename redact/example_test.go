package redact_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/agentpg/agentpg/redact"
)

func ExampleRedact() {
	fmt.Println(redact.Redact("Ada (ada@example.com, +44 20 7946 0958) paid with 4111 1111 1111 1111."))
	fmt.Println(redact.Redact("Version 1.2.3.4 shipped on 2026-12-01; order 4155550100."))
	fmt.Println(redact.Redact("DATABASE_URL=postgres://app:s3cr3tPw9@db.internal/app"))
	// Output:
	// Ada ([REDACTED:email], [REDACTED:phone]) paid with [REDACTED:card].
	// Version 1.2.3.4 shipped on 2026-12-01; order 4155550100.
	// DATABASE_URL=postgres://app:[REDACTED:secret]@db.internal/app
}

func ExampleFind() {
	text := "SSN 123-45-6789, server 10.0.0.1"
	for _, f := range redact.Find(text) {
		fmt.Printf("%s at %d-%d: %s\n", f.Kind, f.Start, f.End, text[f.Start:f.End])
	}
	// Output:
	// ssn at 4-15: 123-45-6789
	// ip at 24-32: 10.0.0.1
}

// BlockPII makes an OnBeforeMessage hook: agent.OnBeforeMessage(hook).
// Here it is called as the agent would, with the conversation.
func ExampleBlockPII() {
	hook := redact.BlockPII(redact.KindCard, redact.KindSecret)
	conversation := []any{"Hi!", "Hello, how can I help?", "Charge my card 4111 1111 1111 1111."}
	ctx := context.Background()
	err := hook(ctx, conversation)
	fmt.Println(err)
	fmt.Println(errors.Is(err, redact.ErrPIIDetected))

	// An email address is not among the blocked kinds.
	fmt.Println(hook(ctx, []any{"Write to ada@example.com"}))
	// Output:
	// redact: PII detected (card) in message 2
	// true
	// <nil>
}

func ExampleNewHandler() {
	logger := slog.New(redact.NewHandler(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // for a stable output
			}
			return a
		},
	})))
	logger.Info("signup from ada@example.com", "ip", "203.0.113.9", "token", "7f3kQ9zLmP2xR8vNc4Tb", "plan", "pro")
	// Output:
	// level=INFO msg="signup from [REDACTED:email]" ip=[REDACTED:ip] token=[REDACTED:secret] plan=pro
}
