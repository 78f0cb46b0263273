package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg/internal/store"
)

// Errors of a Log; callers branch on them with errors.Is.
var (
	// ErrInvalidEntry: Record refused the entry (a missing TenantID or
	// Action, a field over its limit or with control characters).
	ErrInvalidEntry = errors.New("audit: invalid entry")
	// ErrInvalidArgument: a tenant id or a ListOptions that List, Head,
	// Verify or Erase refuse.
	ErrInvalidArgument = errors.New("audit: invalid argument")
	// ErrClosed: the Log was closed, or not made by New.
	ErrClosed = errors.New("audit: log closed")
	// ErrBufferFull: the buffer stayed full for Options.FullWait, because
	// the database is down or slower than the entries come.
	ErrBufferFull = errors.New("audit: buffer full")
)

// Defaults of Options.
const (
	DefaultBufferSize = 10_000
	DefaultBatchSize  = 500
	DefaultFullWait   = time.Second
)

// Options configure a Log.
type Options struct {
	// Schema is the PostgreSQL schema of AgentPG's tables; "" means
	// "agentpg".
	Schema string
	// Redact, if set, rewrites each entry's Input and Detail before they
	// are stored, to keep secrets and personal data out of the log (such
	// as redact.Redact). Nil stores them as given.
	Redact func(string) string
	// Logger receives the failures of background writes (which are
	// retried). Nil discards them.
	Logger *slog.Logger
	// BufferSize caps the entries waiting to be written (default
	// DefaultBufferSize).
	BufferSize int
	// BatchSize caps the entries written in one transaction (default
	// DefaultBatchSize).
	BatchSize int
	// FullWait is how long Record waits for room when the buffer is full
	// before it returns ErrBufferFull (default DefaultFullWait; negative:
	// not at all).
	FullWait time.Duration
}

// Log is a tenant-partitioned, append-only, hash-chained audit log in
// PostgreSQL. Record buffers entries in memory; a goroutine writes them in
// the background, in batches, while any wait. Use Flush to wait for them,
// and Close on shutdown. A Log is safe for concurrent use, by any number
// of processes on one database.
//
// A clean shutdown (Close) loses nothing. A crash loses the entries not
// yet written: those recorded in the last moments (usually milliseconds'
// worth) or, while the database cannot be written, everything buffered
// since.
type Log struct {
	store *store.Store
	opts  Options
	// ctx ends, once Close gives up, the writer's retries.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	queue    []store.AuditRow // waiting, in Record order
	closed   bool
	writing  bool   // the writer goroutine runs
	accepted uint64 // entries Record took
	done     uint64 // entries written, of those taken
	lastErr  error  // of the last write, nil after a success
	// changed is closed, and replaced, whenever done grows or a write
	// fails, for Flush and a Record waiting for room.
	changed chan struct{}
}

// New returns a Log writing to the tables of opts.Schema in db (made by
// Agent.Migrate or agentpg migrate). It does not touch the database until
// used.
func New(db *pgxpool.Pool, opts Options) (*Log, error) {
	if db == nil {
		return nil, errors.New("audit: New needs a pool")
	}
	st, err := store.New(db, opts.Schema)
	if err != nil {
		return nil, fmt.Errorf("audit: Options.Schema: %w", err)
	}
	if opts.BufferSize < 0 || opts.BatchSize < 0 {
		return nil, errors.New("audit: Options.BufferSize and BatchSize must not be negative")
	}
	if opts.Redact == nil {
		opts.Redact = func(s string) string { return s }
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.BufferSize == 0 {
		opts.BufferSize = DefaultBufferSize
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.FullWait == 0 {
		opts.FullWait = DefaultFullWait
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Log{store: st, opts: opts, ctx: ctx, cancel: cancel, changed: make(chan struct{})}, nil
}

// Record adds e to the log: it validates e, redacts its Input and Detail,
// and queues it for the background writer, which chains it to its
// tenant's entries. It returns at once unless the buffer is full: then it
// waits up to Options.FullWait for room, and returns ErrBufferFull if none
// came. It returns ErrInvalidEntry for an entry it refuses, and ErrClosed
// after Close.
func (l *Log) Record(e Entry) error {
	if l == nil || l.store == nil {
		return ErrClosed
	}
	row, err := prepare(e, l.opts.Redact)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var timeout <-chan time.Time
	for len(l.queue) >= l.opts.BufferSize && !l.closed {
		if timeout == nil {
			if l.opts.FullWait < 0 {
				return ErrBufferFull
			}
			timer := time.NewTimer(l.opts.FullWait)
			defer timer.Stop()
			timeout = timer.C
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
			l.mu.Lock()
		case <-timeout:
			l.mu.Lock()
			return ErrBufferFull
		}
	}
	if l.closed {
		return ErrClosed
	}
	l.queue = append(l.queue, row)
	l.accepted++
	if !l.writing {
		l.writing = true
		go l.write()
	}
	return nil
}

// Flush waits until the entries recorded before it are written, and
// returns nil; or, should ctx end first, an error wrapping ctx's cause and
// the last write's failure.
func (l *Log) Flush(ctx context.Context) error {
	if l == nil || l.store == nil {
		return ErrClosed
	}
	if pending, err := l.wait(ctx); err != nil {
		return fmt.Errorf("audit: %d entries not written yet: %w", pending, err)
	}
	return nil
}

// wait waits until the entries recorded before it are written, or returns
// how many are not, with ctx's cause and the last write's failure.
func (l *Log) wait(ctx context.Context) (pending uint64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	target := l.accepted
	for l.done < target {
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
			l.mu.Lock()
		case <-ctx.Done():
			l.mu.Lock()
			return target - l.done, errors.Join(context.Cause(ctx), l.lastErr)
		}
	}
	return 0, nil
}

// Close stops the Log taking entries (Record then returns ErrClosed) and
// writes those it holds. Should ctx end first, it drops those not yet
// written and returns an error saying how many (a batch whose commit was
// under way may still land); otherwise it returns nil. Closing a closed
// Log returns nil.
func (l *Log) Close(ctx context.Context) error {
	if l == nil || l.store == nil {
		return nil
	}
	l.mu.Lock()
	l.closed = true
	l.broadcast() // a Record waiting for room returns ErrClosed
	l.mu.Unlock()
	pending, err := l.wait(ctx)
	l.mu.Lock()
	l.cancel() // the writer stops
	l.queue, l.done = nil, l.accepted
	l.broadcast()
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("audit: closing: %d entries dropped: %w", pending, err)
	}
	return nil
}

// broadcast wakes those waiting for a change. l.mu is held.
func (l *Log) broadcast() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// Backoff of the writer's retries after a failed write.
const (
	retryMin = 50 * time.Millisecond
	retryMax = 5 * time.Second
	// batchTimeout bounds the write of one batch.
	batchTimeout = 30 * time.Second
)

// write writes the queue, a batch at a time, until it is empty, retrying
// a failed batch with backoff until it succeeds or Close gives up. Entries
// that come while a batch is written make the next batch: under load,
// batches grow by themselves.
func (l *Log) write() {
	backoff := retryMin
	for {
		l.mu.Lock()
		if len(l.queue) == 0 || l.ctx.Err() != nil {
			l.writing = false
			l.mu.Unlock()
			return
		}
		n := min(len(l.queue), l.opts.BatchSize)
		batch := l.queue[:n:n]
		l.mu.Unlock()

		err := l.append(batch)

		l.mu.Lock()
		if l.ctx.Err() != nil { // Close gave up on the queue
			l.writing = false
			l.mu.Unlock()
			return
		}
		l.lastErr = err
		if err == nil {
			clear(l.queue[:len(batch)]) // let the written entries go
			l.queue = l.queue[len(batch):]
			l.done += uint64(len(batch))
		}
		l.broadcast()
		l.mu.Unlock()
		if err == nil {
			backoff = retryMin
			continue
		}
		l.opts.Logger.WarnContext(l.ctx, "audit: writing entries failed; retrying", "entries", len(batch), "error", err)
		select {
		case <-time.After(backoff):
		case <-l.ctx.Done():
		}
		backoff = min(2*backoff, retryMax)
	}
}

// append writes a batch in one transaction, chaining each entry to the
// entries of its tenant before it.
func (l *Log) append(batch []store.AuditRow) error {
	tenants := make([]string, len(batch))
	for i, r := range batch {
		tenants[i] = r.TenantID
	}
	ctx, cancel := context.WithTimeout(l.ctx, batchTimeout)
	defer cancel()
	return l.store.AppendAudit(ctx, tenants, func(heads map[string]store.AuditHead) ([]store.AuditRow, error) {
		rows := make([]store.AuditRow, len(batch))
		for i, r := range batch {
			head := heads[r.TenantID]
			link(&r, head.Seq, head.Hash)
			heads[r.TenantID] = store.AuditHead{TenantID: r.TenantID, Seq: r.Seq, Hash: r.Hash}
			rows[i] = r
		}
		return rows, nil
	})
}
