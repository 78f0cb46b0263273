package audit_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/agentpg/agentpg/audit"
)

// tombstoneOf decodes the Detail of an erasure tombstone.
func tombstoneOf(t *testing.T, e audit.Entry) map[string]any {
	t.Helper()
	if e.Action != audit.ActionErasure || !e.Success {
		t.Fatalf("not a tombstone: %+v", e)
	}
	var detail map[string]any
	if err := json.Unmarshal([]byte(e.Detail), &detail); err != nil {
		t.Fatal(err)
	}
	return detail
}

// Erasing a user blanks the content of their entries, and only theirs,
// keeps the envelope and the chain, and appends a tombstone that names
// the user only by a hash; entries recorded but not yet written are
// erased too. Verify holds after each erasure, and the chain goes on.
func TestErase(t *testing.T) {
	t.Parallel()
	l, _ := newLog(t, audit.Options{})
	record(t, l, "acme", 6)   // user-1 at odd seqs, user-2 at even
	record(t, l, "globex", 2) // another tenant's user-1
	// Not flushed: Erase must flush it first.
	if err := l.Record(audit.Entry{TenantID: "acme", UserID: "user-1", Action: "login", Input: "late"}); err != nil {
		t.Fatal(err)
	}
	n, err := l.Erase(ctx(t), "acme", "user-1", "dpo@acme")
	if err != nil || n != 4 {
		t.Fatalf("Erase: %d %v", n, err)
	}
	entries := list(t, l, "acme")
	if len(entries) != 8 {
		t.Fatalf("%d entries", len(entries))
	}
	for _, e := range entries[:7] {
		erased := e.Seq%2 == 1 || e.Seq == 7
		switch {
		case erased && (e.ErasedAt.IsZero() || e.UserID != "" || e.Input != "" || e.SessionID != "" || e.RunID != ""):
			t.Errorf("seq %d not erased: %+v", e.Seq, e)
		case erased && (e.Action == "" || e.Tool == "" && e.Seq != 7 || e.Timestamp.IsZero()):
			t.Errorf("seq %d lost its envelope: %+v", e.Seq, e)
		case !erased && (!e.ErasedAt.IsZero() || e.UserID != "user-2" || e.Input == ""):
			t.Errorf("seq %d of another user was touched: %+v", e.Seq, e)
		}
	}
	tomb := entries[7]
	detail := tombstoneOf(t, tomb)
	sum := sha256.Sum256([]byte("user-1"))
	if tomb.Actor != "dpo@acme" || tomb.UserID != "" || detail["scope"] != "user" ||
		detail["user_sha256"] != hex.EncodeToString(sum[:]) || detail["entries"] != 4.0 || strings.Contains(tomb.Detail, "user-1") {
		t.Errorf("tombstone %+v", tomb)
	}
	if err := l.Verify(ctx(t), "acme"); err != nil {
		t.Fatalf("Verify after erasure: %v", err)
	}
	if got := list(t, l, "globex"); got[0].UserID != "user-1" || !got[0].ErasedAt.IsZero() {
		t.Errorf("another tenant's user was erased: %+v", got[0])
	}

	// Again: nothing left to erase, but the request is on record.
	if n, err := l.Erase(ctx(t), "acme", "user-1", "dpo@acme"); err != nil || n != 0 {
		t.Fatalf("second Erase: %d %v", n, err)
	}
	record(t, l, "acme", 2)
	n, err = l.EraseTenant(ctx(t), "acme", "ops")
	if err != nil || n != 5 { // user-2's three, and the two just recorded
		t.Fatalf("EraseTenant: %d %v", n, err)
	}
	entries = list(t, l, "acme")
	for _, e := range entries {
		if e.Action != audit.ActionErasure && (e.ErasedAt.IsZero() || e.UserID != "" || e.Input != "") {
			t.Errorf("seq %d left after EraseTenant: %+v", e.Seq, e)
		}
	}
	last := tombstoneOf(t, entries[len(entries)-1])
	if last["scope"] != "tenant" || last["entries"] != 5.0 || tombstoneOf(t, entries[8])["entries"] != 0.0 {
		t.Errorf("tombstones %+v %+v", entries[8], entries[len(entries)-1])
	}
	if err := l.Verify(ctx(t), "acme"); err != nil {
		t.Fatalf("Verify after EraseTenant: %v", err)
	}
	if err := l.Verify(ctx(t), "globex"); err != nil {
		t.Fatal(err)
	}

	if _, err := l.Erase(ctx(t), "acme", "", "dpo"); !errors.Is(err, audit.ErrInvalidArgument) {
		t.Errorf("Erase of no user: %v", err)
	}
}

// Tampering with erased entries, or with a tombstone, is reported.
func TestErasedEntriesStayChecked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		attack string
		seq    int64
	}{
		{"content put back", `UPDATE agentpg.audit_log SET input = 'back' WHERE seq = 1`, 1},
		{"erasure marks removed", `UPDATE agentpg.audit_log SET erased_at = NULL, erased_by = NULL WHERE seq = 1`, 1},
		{"another entry erased under the tombstone", `UPDATE agentpg.audit_log SET user_id = '', session_id = '',
			run_id = '', input = '', erased_at = now(), erased_by = 5 WHERE seq = 2`, 5},
		{"tombstone count changed", `UPDATE agentpg.audit_log SET detail = replace(detail, '"entries":2', '"entries":1')
			WHERE seq = 5`, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, db := newLog(t, audit.Options{})
			record(t, l, "acme", 4)
			if _, err := l.Erase(ctx(t), "acme", "user-1", "dpo"); err != nil {
				t.Fatal(err)
			}
			tamper(t, db, tc.attack)
			var broken *audit.ChainError
			if err := l.Verify(ctx(t), "acme"); !errors.As(err, &broken) || broken.Seq != tc.seq {
				t.Fatalf("Verify: %v, want a break at seq %d", err, tc.seq)
			}
		})
	}
}
