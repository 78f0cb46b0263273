package audit_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/audit"
)

// TestMain drops the template databases agentpgtest made once the last
// test process using them ends.
func TestMain(m *testing.M) { agentpgtest.Main(m) }

// newLog returns a Log on a database of the test's own, closed when the
// test ends, and the database.
func newLog(t testing.TB, opts audit.Options) (*audit.Log, *pgxpool.Pool) {
	t.Helper()
	db := agentpgtest.DB(t)
	l, err := audit.New(db, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l, db
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// record records n entries of the tenant, their inputs "<tenant> <i>" from
// 1, by user-1 and user-2 in turn, and flushes.
func record(t testing.TB, l *audit.Log, tenant string, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		err := l.Record(audit.Entry{TenantID: tenant, UserID: fmt.Sprintf("user-%d", 2-i%2), Action: "tool_call",
			Tool: "lookup", Input: fmt.Sprintf("%s %d", tenant, i), Success: i%3 != 0, SessionID: "s-1", RunID: "r-1"})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

// list returns every entry of the tenant.
func list(t testing.TB, l *audit.Log, tenant string) []audit.Entry {
	t.Helper()
	var all []audit.Entry
	for {
		page, err := l.List(ctx(t), tenant, audit.ListOptions{AfterSeq: int64(len(all)), Limit: audit.MaxListLimit})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if len(page) < audit.MaxListLimit {
			return all
		}
	}
}

// inputs returns the inputs of entries.
func inputs(entries []audit.Entry) []string {
	var in []string
	for _, e := range entries {
		in = append(in, e.Input)
	}
	return in
}

// Recorded entries are listed in order with every field as given, the
// tenant's seqs from 1, and the chain verifies; another tenant's entries
// are neither listed nor part of the chain.
func TestRecordListVerify(t *testing.T) {
	t.Parallel()
	l, _ := newLog(t, audit.Options{})
	at := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
	want := audit.Entry{
		Timestamp: at, UserID: "user-1", TenantID: "acme", Action: "tool_call", Tool: "charge",
		Input: `{"amount":10}`, Success: true, SessionID: "sess-1", RunID: "run-1", Actor: "ops@acme", Detail: "ok",
	}
	if err := l.Record(want); err != nil {
		t.Fatal(err)
	}
	record(t, l, "globex", 3)
	record(t, l, "acme", 2)

	entries := list(t, l, "acme")
	if len(entries) != 3 {
		t.Fatalf("acme has %d entries: %+v", len(entries), entries)
	}
	got := entries[0]
	if !got.Timestamp.Equal(at.Truncate(time.Microsecond)) || len(got.Hash) != 64 || got.Seq != 1 || !got.ErasedAt.IsZero() {
		t.Errorf("first entry %+v", got)
	}
	got.Timestamp, got.Seq, got.Hash = want.Timestamp, 0, ""
	if got != want {
		t.Errorf("listed %+v, recorded %+v", got, want)
	}
	for i, e := range entries {
		if e.Seq != int64(i+1) || e.TenantID != "acme" {
			t.Errorf("entry %d: seq %d of tenant %q", i, e.Seq, e.TenantID)
		}
	}
	if in := strings.Join(inputs(entries[1:]), ","); in != "acme 1,acme 2" {
		t.Errorf("acme's inputs: %s", in)
	}
	for _, tenant := range []string{"acme", "globex", "initech"} {
		if err := l.Verify(ctx(t), tenant); err != nil {
			t.Errorf("Verify(%s): %v", tenant, err)
		}
	}
	if got := list(t, l, "initech"); len(got) != 0 {
		t.Errorf("a tenant without entries lists %+v", got)
	}
	tenants, err := l.Tenants(ctx(t))
	if err != nil || strings.Join(tenants, ",") != "acme,globex" {
		t.Errorf("Tenants: %v %v", tenants, err)
	}
	head, err := l.Head(ctx(t), "acme")
	if err != nil || head.Seq != 3 || head.Hash != entries[2].Hash {
		t.Errorf("Head: %+v %v, last entry %+v", head, err, entries[2])
	}
}

// List pages by seq and filters by time; bad options and tenants are
// refused.
func TestListOptions(t *testing.T) {
	t.Parallel()
	l, _ := newLog(t, audit.Options{})
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 5 {
		if err := l.Record(audit.Entry{TenantID: "acme", Action: "a", Input: fmt.Sprint(i), Timestamp: base.Add(time.Duration(i) * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		opts audit.ListOptions
		want string
	}{
		{audit.ListOptions{Limit: 2}, "0,1"},
		{audit.ListOptions{AfterSeq: 2, Limit: 2}, "2,3"},
		{audit.ListOptions{Since: base.Add(3 * time.Hour)}, "3,4"},
		{audit.ListOptions{Until: base.Add(time.Hour)}, "0"},
		{audit.ListOptions{Since: base.Add(time.Hour), Until: base.Add(3 * time.Hour)}, "1,2"},
	} {
		got, err := l.List(ctx(t), "acme", tc.opts)
		if err != nil || strings.Join(inputs(got), ",") != tc.want {
			t.Errorf("List(%+v) = %v %v, want %s", tc.opts, inputs(got), err, tc.want)
		}
	}
	for _, opts := range []audit.ListOptions{{Limit: -1}, {Limit: audit.MaxListLimit + 1}, {AfterSeq: -1}} {
		if _, err := l.List(ctx(t), "acme", opts); !errors.Is(err, audit.ErrInvalidArgument) {
			t.Errorf("List(%+v): %v", opts, err)
		}
	}
	for _, tenant := range []string{"", " ", "a\x00b", strings.Repeat("t", audit.MaxTenantIDBytes+1)} {
		if _, err := l.List(ctx(t), tenant, audit.ListOptions{}); !errors.Is(err, audit.ErrInvalidArgument) {
			t.Errorf("List(%q): %v", tenant, err)
		}
		if err := l.Verify(ctx(t), tenant); !errors.Is(err, audit.ErrInvalidArgument) {
			t.Errorf("Verify(%q): %v", tenant, err)
		}
	}
}

// Record refuses what it cannot store as given, makes text storable, cuts
// it to its limit, and redacts Input and Detail.
func TestRecordValidatesAndRedacts(t *testing.T) {
	t.Parallel()
	redact := func(s string) string { return strings.ReplaceAll(s, "4111111111111111", "[card]") }
	l, _ := newLog(t, audit.Options{Redact: redact})
	for name, e := range map[string]audit.Entry{
		"no tenant":         {Action: "a"},
		"blank tenant":      {TenantID: "  ", Action: "a"},
		"no action":         {TenantID: "acme"},
		"reserved action":   {TenantID: "acme", Action: audit.ActionErasure},
		"control in user":   {TenantID: "acme", Action: "a", UserID: "u\x1b[31m"},
		"invalid UTF-8 run": {TenantID: "acme", Action: "a", RunID: "\xff"},
		"long actor":        {TenantID: "acme", Action: "a", Actor: strings.Repeat("x", audit.MaxKeyBytes+1)},
		"out of range time": {TenantID: "acme", Action: "a", Timestamp: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if err := l.Record(e); !errors.Is(err, audit.ErrInvalidEntry) {
			t.Errorf("%s: %v", name, err)
		}
	}
	long := strings.Repeat("é", audit.MaxTextBytes) // twice the limit, in bytes
	entries := []audit.Entry{
		{TenantID: "acme", Action: "a", Input: `{"card":"4111111111111111"}`, Detail: "paid with 4111111111111111"},
		{TenantID: "acme", Action: "a", Input: "nul\x00 and \xff"},
		{TenantID: "acme", Action: "a", Input: long},
		{TenantID: "acme", Action: "a", Tool: "\x1b[2J" + strings.Repeat("t", audit.MaxKeyBytes)}, // the model's to name
	}
	for _, e := range entries {
		if err := l.Record(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	got := list(t, l, "acme")
	if len(got) != 4 || got[0].Input != `{"card":"[card]"}` || got[0].Detail != "paid with [card]" ||
		got[1].Input != "nul\uFFFD and \uFFFD" {
		t.Fatalf("stored %+v", got[:2])
	}
	if n := len(got[2].Input); n > audit.MaxTextBytes || n < audit.MaxTextBytes-100 ||
		!strings.HasSuffix(got[2].Input, fmt.Sprintf("…[%d bytes cut]", len(long))) || !strings.HasPrefix(got[2].Input, "éé") {
		t.Errorf("a long input was stored as %d bytes ending %q", n, got[2].Input[n-30:])
	}
	if tool := got[3].Tool; len(tool) > audit.MaxKeyBytes || !strings.HasPrefix(tool, "\x1b[2Jttt") || !strings.HasSuffix(tool, "bytes cut]") {
		t.Errorf("a hostile tool name was stored as %q", tool)
	}
	if err := l.Verify(ctx(t), "acme"); err != nil {
		t.Fatal(err)
	}
}

// Close writes what was recorded; Record, Flush and the rest then fail
// with ErrClosed, a second Close does nothing. A zero Log is closed.
func TestCloseLosesNothing(t *testing.T) {
	t.Parallel()
	db := agentpgtest.DB(t)
	l, err := audit.New(db, audit.Options{BatchSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if err := l.Record(audit.Entry{TenantID: fmt.Sprintf("t%d", i%3), Action: "a", Input: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := l.Record(audit.Entry{TenantID: "t0", Action: "a"}); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Record after Close: %v", err)
	}
	if err := l.Close(ctx(t)); err != nil {
		t.Errorf("second Close: %v", err)
	}
	reader, err := audit.New(db, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for i := range 3 {
		tenant := fmt.Sprintf("t%d", i)
		entries := list(t, reader, tenant)
		total += len(entries)
		for j, e := range entries { // each tenant's entries in Record order
			if e.Input != fmt.Sprint(i+3*j) {
				t.Fatalf("%s entry %d: %q", tenant, j, e.Input)
			}
		}
		if err := reader.Verify(ctx(t), tenant); err != nil {
			t.Error(err)
		}
	}
	if total != 1000 {
		t.Errorf("%d of 1000 entries written", total)
	}

	var zero audit.Log
	if err := zero.Record(audit.Entry{TenantID: "t", Action: "a"}); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("zero Log: %v", err)
	}
}

// holdChain locks the tenant's chain head from another transaction, as a
// slow writer of another process would, until the returned func is called.
func holdChain(t *testing.T, db *pgxpool.Pool, tenant string) (release func()) {
	t.Helper()
	tx, err := db.Begin(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx(t), `INSERT INTO agentpg.audit_heads VALUES ($1, 0, '\x') ON CONFLICT DO NOTHING`, tenant)
	if err == nil {
		_, err = tx.Exec(ctx(t), `SELECT 1 FROM agentpg.audit_heads WHERE tenant_id = $1 FOR UPDATE`, tenant)
	}
	if err != nil {
		t.Fatal(err)
	}
	return func() { _ = tx.Commit(context.Background()) }
}

// While the database does not take entries, Record fills the buffer, then
// returns ErrBufferFull (after FullWait); Flush and Close give up when
// their context ends, saying what is not written. Once the database takes
// them again, nothing recorded is lost.
func TestBufferFullAndStalledWrites(t *testing.T) {
	t.Parallel()
	l, db := newLog(t, audit.Options{BufferSize: 3, FullWait: -1})
	release := holdChain(t, db, "acme")
	for i := range 3 {
		if err := l.Record(audit.Entry{TenantID: "acme", Action: "a", Input: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Record(audit.Entry{TenantID: "acme", Action: "a"}); !errors.Is(err, audit.ErrBufferFull) {
		t.Fatalf("Record into a full buffer: %v", err)
	}
	short, cancel := context.WithTimeout(ctx(t), 50*time.Millisecond)
	defer cancel()
	if err := l.Flush(short); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "3 entries") {
		t.Fatalf("Flush while stalled: %v", err)
	}

	// A Record that waits for room gets it once the writes go through.
	waiting, err := audit.New(db, audit.Options{BufferSize: 1, FullWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := waiting.Record(audit.Entry{TenantID: "acme", Action: "a", Input: "w0"}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- waiting.Record(audit.Entry{TenantID: "acme", Action: "a", Input: "w1"}) }()
	release()
	if err := <-done; err != nil {
		t.Fatalf("a Record waiting for room: %v", err)
	}
	for _, log := range []*audit.Log{l, waiting} {
		if err := log.Close(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	if got := slices.Sorted(slices.Values(inputs(list(t, l, "acme")))); strings.Join(got, ",") != "0,1,2,w0,w1" {
		t.Errorf("written: %s", got)
	}
	if err := l.Verify(ctx(t), "acme"); err != nil {
		t.Error(err)
	}
}

// Close gives up when its context ends while writes are stalled: it says
// how many entries it dropped, and the Log is closed.
func TestCloseGivesUp(t *testing.T) {
	t.Parallel()
	l, db := newLog(t, audit.Options{})
	release := holdChain(t, db, "acme")
	defer release()
	for range 2 {
		if err := l.Record(audit.Entry{TenantID: "acme", Action: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx(t), 50*time.Millisecond)
	defer cancel()
	if err := l.Close(short); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "2 entries dropped") {
		t.Fatalf("Close while stalled: %v", err)
	}
	if err := l.Record(audit.Entry{TenantID: "acme", Action: "a"}); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Record after Close: %v", err)
	}
	if err := l.Flush(ctx(t)); err != nil {
		t.Errorf("Flush after Close: %v", err)
	}
}
