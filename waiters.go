package agentpg

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/agentpg/agentpg/internal/store"
)

// ticketTTL is how long a waiter's ticket lives without renewal: a process
// that dies while it waits holds its place this long at most.
const ticketTTL = 5 * time.Second

// leaseWaiters wakes the goroutines of an Agent that wait for busy sessions
// when the lease of one is released, in any process: while any waits, one
// pooled connection LISTENs on the schema's sessions channel.
type leaseWaiters struct {
	mu      sync.Mutex
	waiting map[string]map[chan struct{}]bool // by session id
	count   int
	stop    context.CancelFunc // ends the listener; nil when none runs
}

// register returns a channel that receives when the session's lease is
// released, and the func to call once done waiting.
func (w *leaseWaiters) register(a *Agent, sessionID string) (<-chan struct{}, func()) {
	wake := make(chan struct{}, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.waiting == nil {
		w.waiting = make(map[string]map[chan struct{}]bool)
	}
	if w.waiting[sessionID] == nil {
		w.waiting[sessionID] = make(map[chan struct{}]bool)
	}
	w.waiting[sessionID][wake] = true
	if w.count++; w.stop == nil {
		ctx, cancel := context.WithCancel(context.Background())
		w.stop = cancel
		go w.listen(ctx, a)
	}
	return wake, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.waiting[sessionID], wake)
		if len(w.waiting[sessionID]) == 0 {
			delete(w.waiting, sessionID)
		}
		if w.count--; w.count == 0 && w.stop != nil {
			w.stop()
			w.stop = nil
		}
	}
}

// listen passes the releases announced on the sessions channel to the
// waiters until ctx ends. Should it fail, waiters still poll.
func (w *leaseWaiters) listen(ctx context.Context, a *Agent) {
	conn, err := a.cfg.DB.Acquire(ctx)
	if err != nil {
		return
	}
	defer releaseListener(conn)
	if err := store.Listen(ctx, conn.Conn(), a.store.SessionsChannel()); err != nil {
		a.cfg.Logger.WarnContext(ctx, "listening for released sessions", "error", err)
		return
	}
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				a.cfg.Logger.WarnContext(ctx, "listening for released sessions", "error", err)
			}
			return
		}
		w.mu.Lock()
		for wake := range w.waiting[n.Payload] {
			select {
			case wake <- struct{}{}:
			default:
			}
		}
		w.mu.Unlock()
	}
}

// waitTurn waits for the session's lease to be released, or its ticket to
// come first, at most a second (a lease that expires is announced by no
// one), holding the caller's place among the session's waiters: ticket is
// taken on the first wait and renewed on the next. It returns ctx's cause
// if ctx ends first.
func (a *Agent) waitTurn(ctx context.Context, tenantID, sessionID string, ticket **int64, wake <-chan struct{}) error {
	if *ticket == nil {
		t, err := a.store.TakeTicket(ctx, tenantID, sessionID, ticketTTL)
		if err != nil {
			return err
		}
		*ticket = &t
	} else if err := a.store.RenewTicket(ctx, **ticket, ticketTTL); err != nil {
		return err
	}
	timer := time.NewTimer(time.Second)
	defer timer.Stop()
	select {
	case <-wake:
	case <-timer.C:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	return nil
}
