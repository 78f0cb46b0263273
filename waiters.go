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

// announcement is what an Agent's goroutine waits to be announced: the
// release of a session's lease, or a run that stopped.
type announcement int

const (
	// sessionReleased is keyed by the session's id.
	sessionReleased announcement = iota
	// runStopped is keyed by the run's id: its events stop it (see
	// store.ParseEventsPayload).
	runStopped
)

// topic is what a waiter waits for: an announcement, with its key.
type topic struct {
	kind announcement
	key  string
}

// topicOf returns the topic of a notification on channel, if it is one of
// the store's.
func topicOf(st *store.Store, channel, payload string) (topic, bool) {
	switch channel {
	case st.SessionsChannel():
		return topic{sessionReleased, payload}, true
	case st.EventsChannel():
		runID, _, stops, ok := store.ParseEventsPayload(payload)
		return topic{runStopped, runID}, ok && stops
	}
	return topic{}, false
}

// notifier wakes the goroutines of an Agent that wait for something
// announced on the Agent's LISTEN channels, by topic: while any waits, one
// pooled connection LISTENs on both channels, however many wait and
// whatever for.
type notifier struct {
	mu      sync.Mutex
	waiting map[topic]map[chan struct{}]bool
	count   int
	stop    context.CancelFunc // ends the listener; nil when none runs
	live    bool               // the listener LISTENs: no announcement is missed
}

// register returns a channel that receives when the topic (kind, key) is
// announced, and the func to call once done waiting.
func (n *notifier) register(a *Agent, kind announcement, key string) (<-chan struct{}, func()) {
	t := topic{kind, key}
	wake := make(chan struct{}, 1)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.waiting == nil {
		n.waiting = make(map[topic]map[chan struct{}]bool)
	}
	if n.waiting[t] == nil {
		n.waiting[t] = make(map[chan struct{}]bool)
	}
	n.waiting[t][wake] = true
	if n.count++; n.stop == nil {
		ctx, cancel := context.WithCancel(context.Background())
		n.stop = cancel
		go n.listen(ctx, a)
	}
	return wake, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		delete(n.waiting[t], wake)
		if len(n.waiting[t]) == 0 {
			delete(n.waiting, t)
		}
		if n.count--; n.count == 0 && n.stop != nil {
			n.stop()
			n.stop = nil
		}
	}
}

// listen passes what is announced on the channels to the waiters until
// ctx ends. Should it fail, it wakes every waiter, and waiters poll.
func (n *notifier) listen(ctx context.Context, a *Agent) {
	conn, err := a.cfg.DB.Acquire(ctx)
	if err != nil {
		return
	}
	defer releaseListener(conn)
	for _, channel := range []string{a.store.SessionsChannel(), a.store.EventsChannel()} {
		if err := store.Listen(ctx, conn.Conn(), channel); err != nil {
			a.cfg.Logger.WarnContext(ctx, "listening for notifications", "error", err)
			return
		}
	}
	n.setLive(true)
	defer n.setLive(false)
	for {
		note, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				a.cfg.Logger.WarnContext(ctx, "listening for notifications", "error", err)
			}
			return
		}
		t, ok := topicOf(a.store, note.Channel, note.Payload)
		if !ok {
			continue
		}
		n.mu.Lock()
		for wake := range n.waiting[t] {
			select {
			case wake <- struct{}{}:
			default:
			}
		}
		n.mu.Unlock()
	}
}

// setLive records whether the listener LISTENs. Once it stops, every
// waiter is woken, to read again what it waits for and poll from then on.
func (n *notifier) setLive(live bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.live = live
	if live {
		return
	}
	for _, waiters := range n.waiting {
		for wake := range waiters {
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	}
}

// listening reports whether the listener LISTENs: what is announced from
// now on reaches the waiters, until it stops, which wakes them.
func (n *notifier) listening() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.live
}

// waitWake waits for wake, at most a second (what no one announces, such as
// an expired lease, is polled), or returns ctx's cause.
func waitWake(ctx context.Context, wake <-chan struct{}) error {
	return waitWakeFor(ctx, wake, time.Second)
}

// waitWakeFor waits for wake, at most d, or returns ctx's cause.
func waitWakeFor(ctx context.Context, wake <-chan struct{}, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-wake:
	case <-timer.C:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	return nil
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
	} else if err := a.store.RenewTicket(ctx, tenantID, **ticket, ticketTTL); err != nil {
		return err
	}
	return waitWake(ctx, wake)
}
