package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentpg/agentpg"
)

// serveHelp describes serve, for its usage.
const serveHelp = `Execute enqueued runs (Session.Enqueue) until interrupted: serve runs an
AgentPG worker on River, taking runs from the queue "agentpg" of --schema. Any
number of serve processes, and of applications' workers, can share the queue:
the runs of one session execute one at a time, in order, and the runs of a
process that died are resumed by another once their lease expires.

On SIGINT or SIGTERM, serve stops taking runs and waits for those under way,
at most --shutdown-timeout; the runs still going then are handed back to the
queue (their leases expire and another worker resumes them).

serve does not migrate: run "agentpg migrate" first. It offers the model no
tools: runs that need the application's tools need the application's workers.`

// serveCmd returns "agentpg serve".
func (c *cli) serveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "execute enqueued runs until interrupted",
		Long:  serveHelp + "\n\n" + claudeHelp,
	}
	concurrency := cmd.Flags().Int("concurrency", agentpg.DefaultWorkerConcurrency, "how many runs to execute at once")
	shutdown := cmd.Flags().Duration("shutdown-timeout", 30*time.Second, "how long to wait for the runs under way when stopping")
	model := c.modelFlag(cmd)
	return c.leaf(cmd, databaseFlags, func(ctx context.Context) error {
		if *concurrency < 1 {
			return usageErrorf("--concurrency must be positive, got %d", *concurrency)
		}
		if *shutdown <= 0 {
			return usageErrorf("--shutdown-timeout must be positive, got %s", *shutdown)
		}
		return c.serve(ctx, *model, *concurrency, *shutdown)
	})
}

// serve runs a worker until ctx ends, then stops it within shutdown.
func (c *cli) serve(ctx context.Context, model string, concurrency int, shutdown time.Duration) error {
	agent, _, db, release, err := c.modelAgent(ctx, false, agentpg.Config{Model: model})
	if err != nil {
		return err
	}
	defer release()
	worker, err := agentpg.NewWorker(agent, agentpg.WorkerConfig{Concurrency: concurrency})
	if err != nil {
		return err
	}
	if err := worker.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "Executing the runs enqueued in schema %q of %s, %d at a time. Stop with Ctrl-C.\n",
		c.schema, db.name, concurrency)
	<-ctx.Done()
	fmt.Fprintf(c.stderr, "Stopping: waiting up to %s for the runs under way.\n", shutdown)
	stopCtx, cancel := context.WithTimeout(context.Background(), shutdown)
	defer cancel()
	if err := worker.Stop(stopCtx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("stopped after %s with runs under way; they were handed back to the queue", shutdown)
		}
		return err
	}
	fmt.Fprintln(c.stderr, "Stopped.")
	return nil
}
