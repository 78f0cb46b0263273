package agentpg

import (
	"context"
	"fmt"
	"sync"
)

// gates queue the runs of one process on each session, so that they wait
// for each other without polling the database. The database lease still
// decides between processes.
type gates struct {
	mu sync.Mutex
	m  map[string]*gate
}

type gate struct {
	sem  chan struct{}
	refs int
}

// enter waits for the session's gate, or fails at once with ErrSessionBusy
// when noWait is set and the gate is taken. The returned func leaves it.
func (g *gates) enter(ctx context.Context, sessionID string, noWait bool) (leave func(), err error) {
	g.mu.Lock()
	if g.m == nil {
		g.m = make(map[string]*gate)
	}
	gt := g.m[sessionID]
	if gt == nil {
		gt = &gate{sem: make(chan struct{}, 1)}
		g.m[sessionID] = gt
	}
	gt.refs++
	g.mu.Unlock()

	release := func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if gt.refs--; gt.refs == 0 {
			delete(g.m, sessionID)
		}
	}
	if noWait {
		select {
		case gt.sem <- struct{}{}:
		default:
			release()
			return nil, fmt.Errorf("agentpg: %w", ErrSessionBusy)
		}
	} else {
		select {
		case gt.sem <- struct{}{}:
		case <-ctx.Done():
			release()
			return nil, busyErr(ctx)
		}
	}
	return func() { <-gt.sem; release() }, nil
}

// busyErr is the error of a wait for a session that ctx ended.
func busyErr(ctx context.Context) error {
	return fmt.Errorf("agentpg: %w: gave up waiting: %w", ErrSessionBusy, context.Cause(ctx))
}
