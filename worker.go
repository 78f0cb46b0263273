package agentpg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/agentpg/agentpg/internal/store"
)

// Defaults of WorkerConfig.
const (
	// DefaultWorkerConcurrency is how many runs a Worker executes at once.
	DefaultWorkerConcurrency = 8
	// DefaultWorkerPollInterval is how often an idle Worker looks for jobs
	// that no notification announces: retried and snoozed ones.
	DefaultWorkerPollInterval = 100 * time.Millisecond
	// DefaultWorkerBusyDelay is how long a job whose session is busy
	// snoozes, at first; the snooze doubles each time, up to a second.
	DefaultWorkerBusyDelay = 25 * time.Millisecond
)

// WorkerConfig configures a Worker. Its zero value uses the defaults.
type WorkerConfig struct {
	// Concurrency is how many runs the Worker executes at once (default
	// DefaultWorkerConcurrency), of as many sessions: one job executes a
	// session's enqueued runs, one after the other. The Worker holds up
	// to as many more jobs whose session is busy (a Session.Run of another
	// process holds it), which take no part of it.
	Concurrency int
	// PollInterval is how often the idle Worker looks for jobs that no
	// notification announces (default DefaultWorkerPollInterval): one
	// snoozed while its session was busy, or one retried after an error.
	// Newly enqueued runs are announced, and start at once.
	PollInterval time.Duration
	// BusyDelay is how long a job whose session is busy (another process
	// holds it) snoozes before it is tried again, at first (default
	// DefaultWorkerBusyDelay); the snooze doubles each time, up to a
	// second.
	BusyDelay time.Duration
	// RescueAfter is how long a job may be held by a worker before River's
	// rescuer deems that worker dead and hands the job to another (default
	// three times Config.LeaseTTL). The other resumes the job's run from
	// its last committed step once the dead worker's lease on the session
	// has expired; a run still going (its lease renewed) makes the rescued
	// job wait for it, then go on. A job executing a session's runs one
	// after the other hands the next to a new job once it has been held
	// for half of RescueAfter.
	RescueAfter time.Duration
	// StuckRunGrace is how long a synchronous run (Session.Run) that no
	// process holds is left for ResumeRun before the Workers' periodic
	// rescuer fails it (Agent.FailStuckRuns), so that no run stays running
	// forever (default DefaultStuckRunGrace). The rescuer also gives a new
	// job to a session whose enqueued runs have waited as long with no job
	// to execute them (River discarded it after its last attempt, say).
	StuckRunGrace time.Duration
	// RetentionInterval is how often the Workers apply the retention
	// policies (Agent.ApplyRetention) (default
	// DefaultWorkerRetentionInterval); one Worker, River's leader, does.
	RetentionInterval time.Duration
}

// DefaultWorkerRetentionInterval is WorkerConfig.RetentionInterval's
// default.
const DefaultWorkerRetentionInterval = time.Hour

// DefaultStuckRunGrace is WorkerConfig.StuckRunGrace's default.
const DefaultStuckRunGrace = 10 * time.Minute

// rescueJobArgs are the arguments of the periodic job that fails stuck
// synchronous runs.
type rescueJobArgs struct{}

// Kind is the River job kind of the rescuer.
func (rescueJobArgs) Kind() string { return "agentpg_rescue_stuck_runs" }

// rescueWorker runs Agent.FailStuckRuns.
type rescueWorker struct {
	river.WorkerDefaults[rescueJobArgs]
	w *Worker
}

// Work fails the synchronous runs stuck for longer than the grace period,
// and gives a job to the sessions whose enqueued runs have waited as long
// for one that will never come.
func (rw *rescueWorker) Work(ctx context.Context, _ *river.Job[rescueJobArgs]) error {
	_, err := rw.w.agent.FailStuckRuns(ctx, rw.w.cfg.StuckRunGrace)
	return errors.Join(err, rw.w.restartOrphanedRuns(ctx))
}

// restartOrphanedRuns gives a new job to each session whose enqueued runs
// no job executes (see store.OrphanedRunChains): River discarded its job
// after the last attempt, say.
func (w *Worker) restartOrphanedRuns(ctx context.Context) error {
	a := w.agent
	orphans, err := a.store.OrphanedRunChains(ctx, RunJobKind, w.cfg.StuckRunGrace)
	if err != nil {
		return fmt.Errorf("agentpg: finding enqueued runs without a job: %w", err)
	}
	for _, o := range orphans {
		if err := a.store.RequeueRun(ctx, o.TenantID, o.RunID, a.runJob()); err != nil {
			return fmt.Errorf("agentpg: giving run %s a job: %w", o.RunID, err)
		}
		a.cfg.Logger.WarnContext(ctx, "enqueued runs had no job; gave them one", "tenant_id", o.TenantID, "run_id", o.RunID)
	}
	return nil
}

// retentionJobArgs are the arguments of the periodic job that applies the
// retention policies.
type retentionJobArgs struct{}

// Kind is the River job kind of the retention job.
func (retentionJobArgs) Kind() string { return "agentpg_apply_retention" }

// retentionWorker runs Agent.ApplyRetention.
type retentionWorker struct {
	river.WorkerDefaults[retentionJobArgs]
	w *Worker
}

// Work deletes what the retention policies say has expired.
func (rw *retentionWorker) Work(ctx context.Context, _ *river.Job[retentionJobArgs]) error {
	_, err := rw.w.agent.ApplyRetention(ctx)
	return err
}

// Worker executes enqueued runs (Session.Enqueue) on River: any number of
// Workers, in any processes sharing the database and schema, take runs from
// the Agent's queue (Config.Queue). One River job at a time executes a
// session's enqueued runs, in order; it only points at them, and the runs'
// own state machine is the truth. A job ends when no run of its session is
// left, or its run pauses for approvals, and a Worker that dies leaves its
// jobs to the others, which resume their runs.
type Worker struct {
	agent  *Agent
	cfg    WorkerConfig
	client *river.Client[pgx.Tx]

	// runs are the runs being executed, which outlive their job's context
	// when Stop hands them back.
	runs sync.WaitGroup
	// handBack is closed when Stop gives up waiting for the runs: their
	// jobs end then, to be retried, while the runs go on.
	handBack     chan struct{}
	handBackOnce sync.Once
	// tasks hand the runs to execute to the Worker's Concurrency runners
	// (see runner); a run waiting for its session's turn is not handed
	// over. The runners end once quit is closed.
	tasks   chan runTask
	quit    chan struct{}
	started atomic.Bool
	// stopListening lets the Agent's listener for released sessions go.
	stopListening func()
}

// NewWorker returns a Worker executing the Agent's enqueued runs. It does
// not touch the database until Start.
func NewWorker(a *Agent, cfg WorkerConfig) (*Worker, error) {
	if a == nil {
		return nil, fmt.Errorf("agentpg: %w: NewWorker needs an Agent", ErrInvalidArgument)
	}
	switch {
	case cfg.Concurrency < 0:
		return nil, fmt.Errorf("agentpg: %w: WorkerConfig.Concurrency must not be negative", ErrInvalidArgument)
	case cfg.PollInterval < 0, cfg.BusyDelay < 0, cfg.RescueAfter < 0, cfg.StuckRunGrace < 0, cfg.RetentionInterval < 0:
		return nil, fmt.Errorf("agentpg: %w: WorkerConfig durations must not be negative", ErrInvalidArgument)
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultWorkerConcurrency
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultWorkerPollInterval
	}
	if cfg.BusyDelay == 0 {
		cfg.BusyDelay = DefaultWorkerBusyDelay
	}
	if cfg.RescueAfter == 0 {
		cfg.RescueAfter = 3 * a.cfg.LeaseTTL
	}
	if cfg.StuckRunGrace == 0 {
		cfg.StuckRunGrace = DefaultStuckRunGrace
	}
	if cfg.RetentionInterval == 0 {
		cfg.RetentionInterval = DefaultWorkerRetentionInterval
	}
	w := &Worker{agent: a, cfg: cfg, handBack: make(chan struct{}),
		tasks: make(chan runTask), quit: make(chan struct{})}
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &runWorker{w: w}); err != nil {
		return nil, fmt.Errorf("agentpg: registering the run worker: %w", err)
	}
	if err := river.AddWorkerSafely(workers, &rescueWorker{w: w}); err != nil {
		return nil, fmt.Errorf("agentpg: registering the rescuer: %w", err)
	}
	if err := river.AddWorkerSafely(workers, &retentionWorker{w: w}); err != nil {
		return nil, fmt.Errorf("agentpg: registering the retention job: %w", err)
	}
	// The leader among the Workers inserts the rescuer's job, at most
	// every minute and once on start.
	rescue := river.NewPeriodicJob(river.PeriodicInterval(min(time.Minute, cfg.StuckRunGrace)),
		func() (river.JobArgs, *river.InsertOpts) {
			return rescueJobArgs{}, &river.InsertOpts{Queue: a.cfg.Queue}
		},
		&river.PeriodicJobOpts{RunOnStart: true})
	retention := river.NewPeriodicJob(river.PeriodicInterval(cfg.RetentionInterval),
		func() (river.JobArgs, *river.InsertOpts) {
			return retentionJobArgs{}, &river.InsertOpts{Queue: a.cfg.Queue}
		},
		&river.PeriodicJobOpts{RunOnStart: true})
	client, err := river.NewClient(riverpgxv5.New(a.cfg.DB), &river.Config{
		Schema: a.cfg.Schema,
		Logger: a.cfg.Logger,
		// Twice as many jobs as runs that execute: a job whose session is
		// busy (a Session.Run holds it) waits for its turn without keeping
		// a run of another session from executing.
		Queues:  map[string]river.QueueConfig{a.cfg.Queue: {MaxWorkers: 2 * cfg.Concurrency}},
		Workers: workers,
		// A job's timeout is when River's rescuer may deem its worker dead
		// (see runWorker.Timeout); a run is not bound by it.
		JobTimeout:           cfg.RescueAfter,
		RescueStuckJobsAfter: cfg.RescueAfter,
		FetchCooldown:        min(10*time.Millisecond, cfg.PollInterval),
		FetchPollInterval:    cfg.PollInterval,
		PeriodicJobs:         []*river.PeriodicJob{rescue, retention},
	})
	if err != nil {
		return nil, fmt.Errorf("agentpg: making the River client: %w", err)
	}
	w.client = client
	return w, nil
}

// Start starts executing runs, in goroutines of its own, and returns. The
// Worker runs until Stop, or until ctx ends (then stopping as Stop with an
// ended context would). A Worker starts once; a Start that failed may be
// tried again.
func (w *Worker) Start(ctx context.Context) error {
	if w.started.Swap(true) {
		return fmt.Errorf("agentpg: %w: the worker was started before", ErrInvalidArgument)
	}
	if err := w.client.Start(ctx); err != nil {
		w.started.Store(false) // nothing started: it may be tried again
		return fmt.Errorf("agentpg: starting the worker: %w", err)
	}
	for range w.cfg.Concurrency {
		go w.runner()
	}
	go func() {
		// Once River stopped, no job hands a run over any more when the
		// runs under way have ended, handed back or not.
		<-w.client.Stopped()
		w.runs.Wait()
		close(w.quit)
	}()
	// Keep the listener for released sessions up while the worker runs, so
	// that a run waiting for its turn is woken without delay.
	_, w.stopListening = w.agent.notes.register(w.agent, sessionReleased, "")
	w.agent.cfg.Logger.InfoContext(ctx, "worker started", "queue", w.agent.cfg.Queue, "concurrency", w.cfg.Concurrency)
	return nil
}

// Stop stops the Worker gracefully: it takes no more runs and waits for
// the runs it executes to end (or to pause for approvals). Should ctx end
// first, it hands them back: their jobs return to River, to be retried,
// and Stop returns ctx's error. The runs are not interrupted mid-step: in
// this process they go on until they end or the process exits; then their
// leases on their sessions expire and another Worker resumes each from its
// last committed step. A Stop whose runs all ended also flushes the Agent's
// audit log (Agent.Close closes it).
func (w *Worker) Stop(ctx context.Context) error {
	if w.stopListening != nil {
		defer w.stopListening()
	}
	err := w.client.Stop(ctx)
	if err == nil {
		w.runs.Wait()
		if err := w.agent.audit.Flush(ctx); err != nil {
			w.agent.cfg.Logger.WarnContext(ctx, "flushing the audit log", "error", err)
		}
		w.agent.cfg.Logger.InfoContext(ctx, "worker stopped")
		return nil
	}
	if ctx.Err() == nil {
		return fmt.Errorf("agentpg: stopping the worker: %w", err)
	}
	w.handBackOnce.Do(func() { close(w.handBack) })
	hardCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := w.client.StopAndCancel(hardCtx); err != nil {
		w.agent.cfg.Logger.WarnContext(ctx, "handing back the worker's runs", "error", err)
	}
	w.agent.cfg.Logger.WarnContext(ctx, "worker stopped before its runs ended; they were handed back")
	return fmt.Errorf("agentpg: stopping the worker: %w", context.Cause(ctx))
}

// runWorker is the River worker of RunJobKind jobs.
type runWorker struct {
	river.WorkerDefaults[runJobArgs]
	w *Worker
}

// Timeout is the job's timeout, which River's rescuer also takes as the
// time after which a job still running belongs to a dead worker:
// RescueAfter. The run itself is not bound by it (see Work).
func (rw *runWorker) Timeout(*river.Job[runJobArgs]) time.Duration { return rw.w.cfg.RescueAfter }

// Work executes the session's enqueued runs, one after the other, from
// the job's run on, while there is one: when the step ending a run shows
// that none was enqueued since, the job ends with it, and the session's
// next enqueued run gets a job of its own. A run that pauses for approvals
// ends the job too (DecideToolCall or CancelRun gives the session a new
// one); a failed run is not retried by River: its failure is recorded in
// the run. A busy session snoozes the job, and so does a run its tenant's
// limits refuse (queued again), until they admit it; anything else is
// retried, and the retried job goes on from the run it had reached.
func (rw *runWorker) Work(ctx context.Context, job *river.Job[runJobArgs]) error {
	w := rw.w
	args := job.Args
	start := time.Now()
	for {
		link := &chainLink{}
		res, err := w.execute(ctx, args, link)
		if done, jobErr := w.settle(ctx, job, args, res, err); done {
			return jobErr
		}
		// The run has ended.
		if link.ended && link.jobEnds {
			return nil
		}
		next := link.next
		if !link.ended || next == "" {
			next, err = w.agent.store.NextChainRun(context.WithoutCancel(ctx), args.TenantID, args.SessionID)
			switch {
			case errors.Is(err, store.ErrNotFound):
				return nil // the session is gone, with its runs
			case err != nil:
				return fmt.Errorf("agentpg: after run %s: %w", args.RunID, err)
			case next == "":
				return nil
			}
		}
		if time.Since(start) > w.cfg.RescueAfter/2 {
			return w.handOver(ctx, args.TenantID, next)
		}
		args.RunID = next
	}
}

// handOver ends a job that has executed its session's runs for half of
// RescueAfter, handing the session's next run to a new job: River's
// rescuer takes a job that runs for longer than RescueAfter for one whose
// worker died, and would have another worker retry it beside this one.
func (w *Worker) handOver(ctx context.Context, tenantID, nextRunID string) error {
	if err := w.agent.store.RequeueRun(context.WithoutCancel(ctx), tenantID, nextRunID, w.agent.runJob()); err != nil {
		return fmt.Errorf("agentpg: handing run %s to a new job: %w", nextRunID, err)
	}
	return nil
}

// chainLink is what the job executing a session's enqueued runs learns of
// the session's queue from a run it resumes (see store.ResumedChain).
type chainLink struct {
	// next is the session's next enqueued run, as the run's resume saw it,
	// "" for none.
	next string
	// endAt, when there was no next run, is the session's count of
	// enqueued runs then: the run's last step ends the job if it is
	// unchanged.
	endAt *int64
	// ended reports that the run ended here, with a step of its own;
	// jobEnds that the job ended with it.
	ended, jobEnds bool
}

// execute resumes the job's run, in one of the Worker's runners, and
// returns its outcome; or, should Stop hand the Worker's runs back first,
// an error that retries the job while the run goes on.
func (w *Worker) execute(ctx context.Context, args runJobArgs, link *chainLink) (*Result, error) {
	// The run's context is not the job's, whose timeout only tells River's
	// rescuer when the worker may be dead: the run goes on as long as it
	// needs, and a Stop that hands the job back does not interrupt it,
	// which a cancelled context would record as a failure.
	runCtx := context.WithoutCancel(ctx)
	done := make(chan runOutcome, 1)
	w.runs.Go(func() {
		res, err := w.resume(runCtx, args, link)
		done <- runOutcome{res, err}
	})
	select {
	case o := <-done:
		return o.res, o.err
	case <-w.handBack:
		return nil, handedBack(args.RunID)
	}
}

// errHandedBack: Stop handed the Worker's runs back.
var errHandedBack = errors.New("handed back")

// handedBack is the error of a job whose run Stop handed back: River
// retries the job, while the run goes on.
func handedBack(runID string) error {
	return fmt.Errorf("agentpg: worker stopping, run %s %w", runID, errHandedBack)
}

// settle maps the outcome of the job's run to what becomes of the job: it
// is done, with jobErr, unless the run ended (done is false), when the job
// goes on to the session's next run.
func (w *Worker) settle(ctx context.Context, job *river.Job[runJobArgs], args runJobArgs, res *Result, err error) (done bool, jobErr error) {
	a := w.agent
	var runErr *RunError
	switch {
	case err == nil && res != nil && res.StopReason == StopAwaitingApproval, errors.Is(err, ErrApprovalPending):
		return true, nil // a person decides, then the session gets a job again
	case errors.Is(err, ErrSessionNotFound):
		return true, nil // the session is gone, with its runs
	case err == nil, errors.As(err, &runErr), errors.Is(err, ErrRunFinished), errors.Is(err, ErrRunNotFound):
		return false, nil
	case errors.Is(err, ErrSessionBusy):
		return true, river.JobSnooze(w.busyDelay(job))
	case errors.Is(err, errHandedBack):
		return true, err
	}
	// The run may have been recorded as failed (its model call failed,
	// say): then it ended.
	if info, gerr := a.GetRun(context.WithoutCancel(ctx), args.TenantID, args.RunID); gerr == nil {
		switch {
		case ended(info.Status):
			return false, nil
		case info.Status == RunAwaitingApproval:
			return true, nil
		}
	}
	if refused, ok := errors.AsType[*LimitError](err); ok {
		a.cfg.Logger.InfoContext(ctx, "run refused by its tenant's limits; snoozed", "tenant_id", args.TenantID,
			"run_id", args.RunID, "limit", refused.Limit, "retry_after", refused.RetryAfter)
		return true, river.JobSnooze(refused.RetryAfter)
	}
	a.cfg.Logger.WarnContext(ctx, "run job failed; River retries it", "tenant_id", args.TenantID,
		"run_id", args.RunID, "attempt", job.Attempt, "error", err)
	return true, err
}

// maxTurnWaits is how many times a job waits for its session's turn, a
// second at most each, before it snoozes and frees its worker.
const maxTurnWaits = 10

// resume resumes the job's run in one of the Worker's runners. While its
// session is busy (a process holds it, or an earlier run has not ended),
// it gives the runner back and waits to be woken by the release of the
// session's lease, announced by NOTIFY, rather than polling. After
// maxTurnWaits waits it returns ErrSessionBusy, and the job snoozes.
func (w *Worker) resume(ctx context.Context, args runJobArgs, link *chainLink) (*Result, error) {
	a := w.agent
	// Registered before the first try, a release that comes between the
	// try and the wait still wakes it; the Worker keeps the listener up.
	wake, unregister := a.notes.register(a, sessionReleased, args.SessionID)
	defer unregister()
	for range maxTurnWaits {
		res, err := w.try(ctx, args, wake, link)
		if !errors.Is(err, ErrSessionBusy) {
			return res, err
		}
		if err := waitWake(ctx, wake); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("agentpg: %w", ErrSessionBusy)
}

// runTask is a run handed to a runner: the job's run, the releases of its
// session, what the job learns from it, and where its outcome goes.
type runTask struct {
	ctx  context.Context
	args runJobArgs
	wake <-chan struct{}
	link *chainLink
	done chan runOutcome
}

// runOutcome is what a runner's run returned.
type runOutcome struct {
	res *Result
	err error
}

// try resumes the job's run in one of the Worker's runners, once one is
// free, and returns its outcome.
func (w *Worker) try(ctx context.Context, args runJobArgs, wake <-chan struct{}, link *chainLink) (*Result, error) {
	task := runTask{ctx: ctx, args: args, wake: wake, link: link, done: make(chan runOutcome, 1)}
	select {
	case w.tasks <- task:
	case <-w.handBack:
		return nil, handedBack(args.RunID)
	}
	o := <-task.done
	return o.res, o.err
}

// runner resumes the runs handed to it, one at a time, until quit. The
// Worker's runners live as long as it does, so that the deep stack a run
// needs (the SDK's encoding and decoding) is grown once, not by every run
// in a goroutine of its own: that growth cost 0.09 ms a run.
func (w *Worker) runner() {
	for {
		select {
		case t := <-w.tasks:
			// Forget the releases of the session announced before: the
			// try sees them.
			select {
			case <-t.wake:
			default:
			}
			res, err := w.agent.resumeRun(t.ctx, t.args.TenantID, t.args.SessionID, t.args.RunID, t.link)
			t.done <- runOutcome{res, err}
		case <-w.quit:
			return
		}
	}
}

// busyDelay is the snooze of a job whose session is busy: BusyDelay,
// doubled with each snooze, up to a second.
func (w *Worker) busyDelay(job *river.Job[runJobArgs]) time.Duration {
	var snoozes struct {
		Snoozes int `json:"snoozes"`
	}
	_ = json.Unmarshal(job.Metadata, &snoozes)
	d := w.cfg.BusyDelay
	for i := 0; i < snoozes.Snoozes && d < time.Second; i++ {
		d *= 2
	}
	return min(d, max(time.Second, w.cfg.BusyDelay))
}
