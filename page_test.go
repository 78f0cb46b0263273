package agentpg_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/agentpg/agentpg"
)

// pages reads a whole listing page by page with a small page size, and
// checks that only the last page has no Next cursor.
func pages[T any](t *testing.T, list func(agentpg.ListOptions) (agentpg.Page[T], error)) []T {
	t.Helper()
	var all []T
	opts := agentpg.ListOptions{Limit: 2}
	for range 100 {
		page, err := list(opts)
		if err != nil {
			t.Fatalf("page after %q: %v", opts.After, err)
		}
		if len(page.Items) > 2 {
			t.Fatalf("page of %d items, limit 2", len(page.Items))
		}
		all = append(all, page.Items...)
		if page.Next == "" {
			return all
		}
		opts.After = page.Next
	}
	t.Fatal("listing never ended")
	return nil
}

func TestListingsPageThroughEverything(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sess := b.session(t, "acme", "pager")
	for i := range 3 {
		if _, err := sess.Run(ctx(t), fmt.Sprintf("turn %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	msgs := pages(t, func(o agentpg.ListOptions) (agentpg.Page[agentpg.Message], error) { return sess.Messages(ctx(t), o) })
	if len(msgs) != 6 {
		t.Fatalf("%d messages over the pages, want 6", len(msgs))
	}
	for i, m := range msgs {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d: pages skip or repeat", i, m.Seq)
		}
	}
	runs := pages(t, func(o agentpg.ListOptions) (agentpg.Page[agentpg.RunInfo], error) { return sess.Runs(ctx(t), o) })
	if len(runs) != 3 || runs[0].ID == runs[1].ID || runs[1].ID == runs[2].ID {
		t.Fatalf("runs over the pages: %+v", runs)
	}
	for i := 1; i < len(runs); i++ {
		if runs[i].StartedAt.Before(runs[i-1].StartedAt) {
			t.Fatalf("runs out of order: %v before %v", runs[i-1].StartedAt, runs[i].StartedAt)
		}
	}

	for i := range 4 {
		b.session(t, "acme", fmt.Sprintf("other-%d", i))
	}
	b.session(t, "globex", "not-listed")
	sessions := pages(t, func(o agentpg.ListOptions) (agentpg.Page[*agentpg.Session], error) {
		return b.agent.ListSessions(ctx(t), "acme", o)
	})
	seen := map[string]bool{}
	for _, s := range sessions {
		if s.TenantID != "acme" || seen[s.ID] {
			t.Fatalf("session %s of %s listed (twice: %v)", s.ID, s.TenantID, seen[s.ID])
		}
		seen[s.ID] = true
	}
	if len(seen) != 5 {
		t.Fatalf("%d of acme's 5 sessions listed", len(seen))
	}
}

func TestListingsRefuseBadPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sess := b.session(t, "acme", "pager")
	for _, opts := range []agentpg.ListOptions{
		{Limit: -1},
		{Limit: agentpg.MaxPageSize + 1},
		{After: "not-a-cursor"},
		{After: "-5"},
	} {
		if _, err := sess.Messages(ctx(t), opts); !errors.Is(err, agentpg.ErrInvalidArgument) {
			t.Errorf("Messages(%+v): %v, want ErrInvalidArgument", opts, err)
		}
		if _, err := sess.Runs(ctx(t), opts); !errors.Is(err, agentpg.ErrInvalidArgument) {
			t.Errorf("Runs(%+v): %v, want ErrInvalidArgument", opts, err)
		}
		if _, err := sess.Archive(ctx(t), opts); !errors.Is(err, agentpg.ErrInvalidArgument) {
			t.Errorf("Archive(%+v): %v, want ErrInvalidArgument", opts, err)
		}
		if _, err := b.agent.ListSessions(ctx(t), "acme", opts); !errors.Is(err, agentpg.ErrInvalidArgument) {
			t.Errorf("ListSessions(%+v): %v, want ErrInvalidArgument", opts, err)
		}
	}
}
