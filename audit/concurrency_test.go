package audit_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg/audit"
)

// Entries each writer process records, over the tenants of
// writerTenants, and how many go in one batch at most.
const (
	writerEntries   = 600
	writerBatchSize = 7
)

var writerTenants = []string{"acme", "globex"}

// Two OS processes, and this one, record into the same tenants' chains at
// once, in many small batches: every chain verifies, its seqs go from 1
// without gaps, and every entry is there exactly once.
func TestConcurrentWriterProcesses(t *testing.T) {
	t.Parallel()
	l, db := newLog(t, audit.Options{BatchSize: writerBatchSize})
	var wg sync.WaitGroup
	outputs := make([]strings.Builder, 2)
	errs := make([]error, 2)
	for i := range 2 {
		child := exec.Command(os.Args[0], "-test.run=^TestWriterProcess$", "-test.v")
		child.Env = append(os.Environ(), "AGENTPG_AUDIT_DB="+db.Config().ConnString(), "AGENTPG_AUDIT_WRITER=child-"+strconv.Itoa(i))
		child.Stdout, child.Stderr = &outputs[i], &outputs[i]
		wg.Go(func() { errs[i] = child.Run() })
	}
	writeEntries(t, l, "parent")
	if err := l.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil || !strings.Contains(outputs[i].String(), "--- PASS: TestWriterProcess") {
			t.Fatalf("writer process %d: %v\n%s", i, err, outputs[i].String())
		}
	}
	var all []string
	for _, tenant := range writerTenants {
		if err := l.Verify(ctx(t), tenant); err != nil {
			t.Fatal(err)
		}
		entries := list(t, l, tenant)
		for i, e := range entries {
			if e.Seq != int64(i+1) {
				t.Fatalf("%s: entry %d has seq %d", tenant, i, e.Seq)
			}
		}
		all = append(all, inputs(entries)...)
	}
	var want []string
	for _, w := range []string{"parent", "child-0", "child-1"} {
		for i := range writerEntries {
			want = append(want, fmt.Sprintf("%s %d", w, i))
		}
	}
	slices.Sort(all)
	slices.Sort(want)
	if !slices.Equal(all, want) {
		t.Fatalf("%d entries stored, %d recorded, or not the same", len(all), len(want))
	}
}

// A writer process killed (SIGKILL) while it writes leaves the chains
// intact, what it committed whole: Verify holds, seqs have no gap, and the
// chains go on.
func TestWriterProcessKilled(t *testing.T) {
	t.Parallel()
	l, db := newLog(t, audit.Options{})
	child := exec.Command(os.Args[0], "-test.run=^TestWriterProcess$", "-test.v")
	child.Env = append(os.Environ(), "AGENTPG_AUDIT_DB="+db.Config().ConnString(), "AGENTPG_AUDIT_WRITER=forever")
	out := &strings.Builder{}
	child.Stdout, child.Stderr = out, out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	for {
		head, err := l.Head(ctx(t), "acme")
		if err != nil {
			t.Fatal(err)
		}
		if head.Seq >= 200 {
			break
		}
		select {
		case <-ctx(t).Done():
			t.Fatalf("the writer process wrote %d entries:\n%s", head.Seq, out)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	record(t, l, "acme", 3)
	for _, tenant := range writerTenants {
		if err := l.Verify(ctx(t), tenant); err != nil {
			t.Fatal(err)
		}
		for i, e := range list(t, l, tenant) {
			if e.Seq != int64(i+1) {
				t.Fatalf("%s: entry %d has seq %d", tenant, i, e.Seq)
			}
		}
	}
}

// writeEntries records writerEntries entries from writer, over the tenants.
func writeEntries(t *testing.T, l *audit.Log, writer string) {
	t.Helper()
	for i := range writerEntries {
		e := audit.Entry{TenantID: writerTenants[i%len(writerTenants)], Action: "a", Input: fmt.Sprintf("%s %d", writer, i)}
		if err := l.Record(e); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWriterProcess is a writer process of TestConcurrentWriterProcesses.
// It does nothing unless started by it.
func TestWriterProcess(t *testing.T) {
	dsn := os.Getenv("AGENTPG_AUDIT_DB")
	if dsn == "" {
		return
	}
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	l, err := audit.New(pool, audit.Options{BatchSize: writerBatchSize})
	if err != nil {
		t.Fatal(err)
	}
	writer := os.Getenv("AGENTPG_AUDIT_WRITER")
	for writer == "forever" { // until killed
		writeEntries(t, l, writer)
		if err := l.Flush(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	writeEntries(t, l, writer)
	if err := l.Close(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkRecord measures Record's throughput into one tenant's chain,
// written in batches, up to the last entry stored (Flush), from one
// goroutine and from many.
func BenchmarkRecord(b *testing.B) {
	entry := audit.Entry{TenantID: "acme", UserID: "user-1", SessionID: "0190f0e4-aaaa-7bbb-8ccc-000000000001",
		Action: "tool_call", Tool: "lookup", Input: `{"city":"Lisbon","units":"metric"}`, Success: true}
	b.Run("serial", func(b *testing.B) {
		l, _ := newLog(b, audit.Options{})
		b.ResetTimer()
		for range b.N {
			if err := l.Record(entry); err != nil {
				b.Fatal(err)
			}
		}
		if err := l.Flush(ctx(b)); err != nil {
			b.Fatal(err)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		l, _ := newLog(b, audit.Options{})
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := l.Record(entry); err != nil {
					b.Error(err)
					return
				}
			}
		})
		if err := l.Flush(ctx(b)); err != nil {
			b.Fatal(err)
		}
	})
}
