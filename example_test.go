package agentpg_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
)

// exampleAgent returns an agent on the local database, in a schema of the
// examples' own, talking to a scripted model that answers with replies. In
// a program, Client would be anthropic.NewClient().
func exampleAgent(ctx context.Context, replies ...string) (*agentpg.Agent, func()) {
	scripted := make([]agentpgtest.Reply, len(replies))
	for i, r := range replies {
		scripted[i] = agentpgtest.Text(r)
	}
	return exampleAgentWith(ctx, nil, scripted...)
}

// exampleAgentWith is exampleAgent with scripted replies of any kind and a
// Config that configure, if not nil, adjusts.
func exampleAgentWith(ctx context.Context, configure func(*agentpg.Config), replies ...agentpgtest.Reply) (*agentpg.Agent, func()) {
	pool, err := pgxpool.New(ctx, agentpgtest.DatabaseURL())
	if err != nil {
		log.Fatal(err)
	}
	model, err := agentpgtest.Start()
	if err != nil {
		log.Fatal(err)
	}
	model.Push(replies...)
	cfg := agentpg.Config{
		DB:           pool,
		Client:       model.Client(),
		Model:        "claude-sonnet-5-5",
		SystemPrompt: "You are a helpful assistant.",
		Schema:       "agentpg_examples",
	}
	if configure != nil {
		configure(&cfg)
	}
	agent, err := agentpg.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	// Start from a clean schema, whatever an earlier run left.
	if _, err := pool.Exec(ctx, `DROP SCHEMA IF EXISTS agentpg_examples CASCADE`); err != nil {
		log.Fatal(err)
	}
	if err := agent.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	return agent, func() {
		pool.Exec(context.Background(), `DROP SCHEMA agentpg_examples CASCADE`)
		model.Close()
		pool.Close()
	}
}

func Example() {
	ctx := context.Background()
	agent, cleanup := exampleAgent(ctx, "Nice to meet you, Ada.", "Your name is Ada.")
	defer cleanup()

	sess, err := agent.NewSession(ctx, "company-a", "user-1", nil)
	if err != nil {
		log.Fatal(err)
	}
	res, err := sess.Run(ctx, "Hi, I'm Ada.")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Text)

	// Later, perhaps in another process: the conversation is in PostgreSQL.
	sess, err = agent.LoadSessionByIdentifier(ctx, "company-a", "user-1")
	if err != nil {
		log.Fatal(err)
	}
	res, err = sess.Run(ctx, "What is my name?")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Text)
	// Output:
	// Nice to meet you, Ada.
	// Your name is Ada.
}

// Text deltas arrive through RunOptions.OnEvent as the model streams them.
func ExampleSession_RunWithOptions() {
	ctx := context.Background()
	agent, cleanup := exampleAgent(ctx, "Streaming works token by token.")
	defer cleanup()

	sess, err := agent.NewSession(ctx, "company-a", "user-2", nil)
	if err != nil {
		log.Fatal(err)
	}
	var streamed strings.Builder
	_, err = sess.RunWithOptions(ctx, "Stream something.", agentpg.RunOptions{
		OnEvent: func(e agentpg.Event) {
			if e.Kind == agentpg.EventText {
				streamed.WriteString(e.Text) // e.g. write to an HTTP response and flush
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(streamed.String())
	// Output: Streaming works token by token.
}

// Sessions are scoped by tenant: another tenant's session is not found.
func ExampleAgent_LoadSession() {
	ctx := context.Background()
	agent, cleanup := exampleAgent(ctx)
	defer cleanup()

	sess, err := agent.NewSession(ctx, "company-a", "user-3", nil)
	if err != nil {
		log.Fatal(err)
	}
	_, err = agent.LoadSession(ctx, "company-b", sess.ID)
	fmt.Println(errors.Is(err, agentpg.ErrSessionNotFound))
	// Output: true
}

// A hook can block a turn before anything is sent to the model.
func ExampleAgent_OnBeforeMessage() {
	ctx := context.Background()
	agent, cleanup := exampleAgent(ctx)
	defer cleanup()

	agent.OnBeforeMessage(func(ctx context.Context, messages []any) error {
		for _, m := range messages {
			if strings.Contains(m.(agentpg.Message).Text(), "password") {
				return errors.New("secrets may not be sent to the model")
			}
		}
		return nil
	})
	sess, err := agent.NewSession(ctx, "company-a", "user-4", nil)
	if err != nil {
		log.Fatal(err)
	}
	_, err = sess.Run(ctx, "my password is hunter2")
	fmt.Println(errors.Is(err, agentpg.ErrHookRejected))
	// Output: true
}
