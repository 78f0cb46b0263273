package audit_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg/audit"
)

// row is a stored row of audit_log, as an auditor reads it.
type row struct {
	tenant, action, tool                     string
	seq                                      int64
	at                                       time.Time
	success                                  bool
	user, session, run, actor, input, detail string
	contentHash, prevHash, hash              []byte
}

// documentedHashes computes a row's content_hash and hash by the rules of
// the package documentation alone, as an auditor's script would.
func documentedHashes(r row) (contentHash, hash []byte) {
	str := func(s string) []byte { return append(binary.BigEndian.AppendUint32(nil, uint32(len(s))), s...) }
	var content []byte
	for _, s := range []string{r.user, r.session, r.run, r.actor, r.input, r.detail} {
		content = append(content, str(s)...)
	}
	c := sha256.Sum256(content)
	prev := r.prevHash
	if r.seq == 1 {
		prev = make([]byte, 32)
	}
	b := append([]byte{}, prev...)
	b = append(b, str(r.tenant)...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.seq))
	b = binary.BigEndian.AppendUint64(b, uint64(r.at.UnixMicro()))
	b = append(b, str(r.action)...)
	b = append(b, str(r.tool)...)
	if r.success {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = append(b, c[:]...)
	h := sha256.Sum256(b)
	return c[:], h[:]
}

// readRows reads the tenant's stored rows in seq order.
func readRows(t *testing.T, db *pgxpool.Pool, tenant string) []row {
	t.Helper()
	rows, err := db.Query(ctx(t), `SELECT tenant_id, action, tool, seq, occurred_at, success, user_id, session_id, run_id,
		actor, input, detail, content_hash, prev_hash, hash FROM agentpg.audit_log WHERE tenant_id = $1 ORDER BY seq`, tenant)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.tenant, &x.action, &x.tool, &x.seq, &x.at, &x.success, &x.user, &x.session, &x.run,
			&x.actor, &x.input, &x.detail, &x.contentHash, &x.prevHash, &x.hash)
		return x, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// The stored hashes are those of the documented rules, which a script can
// check without AgentPG; the test vector below is quoted in
// docs/security.md.
func TestHashesFollowTheDocumentedRules(t *testing.T) {
	t.Parallel()
	l, db := newLog(t, audit.Options{})
	err := l.Record(audit.Entry{
		Timestamp: time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC), TenantID: "acme", UserID: "user-1",
		SessionID: "s-1", RunID: "r-1", Action: "tool_call", Tool: "charge", Input: `{"amount":10}`, Success: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	record(t, l, "acme", 20)
	rows := readRows(t, db, "acme")
	for i, r := range rows {
		c, h := documentedHashes(r)
		if !bytes.Equal(c, r.contentHash) || !bytes.Equal(h, r.hash) || i > 0 && !bytes.Equal(r.prevHash, rows[i-1].hash) {
			t.Fatalf("seq %d: stored hashes are not the documented ones", r.seq)
		}
	}
	const vector = "6eef68ec60f3b3971c72d04a1371cdf96bf9fb0a0d7606a0f9afe6f87e676ae6"
	if got := hex.EncodeToString(rows[0].hash); got != vector {
		t.Errorf("the test vector's hash is %s, documented %s", got, vector)
	}
}

// tamper runs statements as an attacker with full rights on the database
// would: with triggers off (session_replication_role replica, which takes a
// superuser).
func tamper(t *testing.T, db *pgxpool.Pool, statements ...string) {
	t.Helper()
	err := pgx.BeginFunc(ctx(t), db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx(t), `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		for _, s := range statements {
			if _, err := tx.Exec(ctx(t), s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("tampering: %v", err)
	}
}

// forgeAfter returns the INSERT of a forged row that follows prev in the
// tenant's chain, hashed by the documented rules, as a knowing attacker
// would forge it.
func forgeAfter(prev row, input string) string {
	r := prev
	r.seq, r.prevHash, r.input, r.at = prev.seq+1, prev.hash, input, prev.at.Add(time.Second)
	r.contentHash, r.hash = documentedHashes(r)
	return fmt.Sprintf(`INSERT INTO agentpg.audit_log (tenant_id, seq, occurred_at, action, tool, success, user_id,
		session_id, run_id, actor, input, detail, content_hash, prev_hash, hash)
		VALUES ('%s', %d, '%s', '%s', '%s', %t, '%s', '%s', '%s', '%s', '%s', '%s', '\x%x', '\x%x', '\x%x')`,
		r.tenant, r.seq, r.at.Format(time.RFC3339Nano), r.action, r.tool, r.success, r.user,
		r.session, r.run, r.actor, r.input, r.detail, r.contentHash, r.prevHash, r.hash)
}

// Every change made behind the Log's back, triggers off, is reported by
// Verify at the first seq it affects; the other tenant's chain stays
// intact unless touched.
func TestVerifyDetectsTampering(t *testing.T) {
	t.Parallel()
	const log = "agentpg.audit_log"
	where := func(seq string) string { return " WHERE tenant_id = 'acme' AND seq = " + seq }
	for _, tc := range []struct {
		name       string
		attack     func(acme []row) []string
		seq        int64
		globexGone bool // the attack breaks globex's chain too
	}{
		{name: "content updated", seq: 3, attack: func([]row) []string {
			return []string{`UPDATE ` + log + ` SET input = 'forged'` + where("3")}
		}},
		{name: "user changed", seq: 2, attack: func([]row) []string {
			return []string{`UPDATE ` + log + ` SET user_id = 'someone-else'` + where("2")}
		}},
		{name: "success flipped", seq: 4, attack: func([]row) []string {
			return []string{`UPDATE ` + log + ` SET success = NOT success` + where("4")}
		}},
		{name: "timestamp moved", seq: 2, attack: func([]row) []string {
			return []string{`UPDATE ` + log + ` SET occurred_at = occurred_at - interval '1 day'` + where("2")}
		}},
		{name: "deleted in the middle", seq: 3, attack: func([]row) []string {
			return []string{`DELETE FROM ` + log + where("3")}
		}},
		{name: "deleted at the end", seq: 5, attack: func([]row) []string {
			return []string{`DELETE FROM ` + log + where("5")}
		}},
		{name: "all deleted", seq: 1, attack: func([]row) []string {
			return []string{`DELETE FROM ` + log + ` WHERE tenant_id = 'acme'`}
		}},
		{name: "two entries swapped", seq: 2, attack: func([]row) []string {
			return []string{
				`UPDATE ` + log + ` SET seq = 1000` + where("2"),
				`UPDATE ` + log + ` SET seq = 2` + where("4"),
				`UPDATE ` + log + ` SET seq = 4` + where("1000"),
			}
		}},
		{name: "forged entry inserted in the middle", seq: 4, attack: func(acme []row) []string {
			return []string{
				`UPDATE ` + log + ` SET seq = seq + 1000 WHERE tenant_id = 'acme' AND seq >= 3`,
				`UPDATE ` + log + ` SET seq = seq - 999 WHERE tenant_id = 'acme' AND seq >= 1000`,
				forgeAfter(acme[1], "forged"),
			}
		}},
		{name: "forged entry appended without the head", seq: 6, attack: func(acme []row) []string {
			return []string{forgeAfter(acme[4], "forged")}
		}},
		{name: "entry moved from another tenant", seq: 6, globexGone: true, attack: func([]row) []string {
			return []string{`UPDATE ` + log + ` SET tenant_id = 'acme', seq = 6 WHERE tenant_id = 'globex' AND seq = 1`}
		}},
		{name: "erasure faked", seq: 2, attack: func([]row) []string {
			return []string{`UPDATE ` + log + ` SET user_id = '', session_id = '', run_id = '', input = '',
				erased_at = now(), erased_by = 5` + where("2")}
		}},
		{name: "head deleted", seq: 1, attack: func([]row) []string {
			return []string{`DELETE FROM agentpg.audit_heads WHERE tenant_id = 'acme'`}
		}},
		{name: "head moved back", seq: 4, attack: func([]row) []string {
			return []string{`UPDATE agentpg.audit_heads SET seq = 3 WHERE tenant_id = 'acme'`}
		}},
		{name: "head hash replaced", seq: 5, attack: func(acme []row) []string {
			return []string{`UPDATE agentpg.audit_heads SET hash = '\x` + hex.EncodeToString(acme[0].hash) + `' WHERE tenant_id = 'acme'`}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, db := newLog(t, audit.Options{})
			record(t, l, "acme", 5)
			record(t, l, "globex", 2)
			tamper(t, db, tc.attack(readRows(t, db, "acme"))...)
			err := l.Verify(ctx(t), "acme")
			var broken *audit.ChainError
			if !errors.As(err, &broken) || !errors.Is(err, audit.ErrChainBroken) {
				t.Fatalf("Verify after the attack: %v", err)
			}
			if broken.TenantID != "acme" || broken.Seq != tc.seq {
				t.Errorf("reported at seq %d of %q, want seq %d: %v", broken.Seq, broken.TenantID, tc.seq, err)
			}
			if err := l.Verify(ctx(t), "globex"); (err != nil) != tc.globexGone {
				t.Errorf("Verify(globex): %v", err)
			}
		})
	}
}

// The chain carries no secret: an attacker who rewrites every hash from
// the changed entry on, head included, gets past Verify. The head kept
// elsewhere before the attack tells.
func TestRewrittenChainIsCaughtByAKeptHead(t *testing.T) {
	t.Parallel()
	l, db := newLog(t, audit.Options{})
	record(t, l, "acme", 4)
	kept, err := l.Head(ctx(t), "acme")
	if err != nil {
		t.Fatal(err)
	}
	acme := readRows(t, db, "acme")
	tamper(t, db,
		`DELETE FROM agentpg.audit_log WHERE tenant_id = 'acme' AND seq >= 3`,
		forgeAfter(acme[1], "rewritten"),
		`UPDATE agentpg.audit_heads SET seq = 3, hash = (SELECT hash FROM agentpg.audit_log WHERE tenant_id = 'acme' AND seq = 3)`)
	if err := l.Verify(ctx(t), "acme"); err != nil {
		t.Fatalf("a consistent rewrite: %v", err)
	}
	now, err := l.Head(ctx(t), "acme")
	if err != nil || now == kept {
		t.Fatalf("the head after the rewrite is the one kept: %+v %v", now, err)
	}
}

// isRefused reports whether err is the triggers' refusal.
func isRefused(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42501"
}

// The triggers refuse to update, delete or truncate entries and to move
// a head back, and let only a blanking update through on the erasure
// path; the chain stays intact.
func TestTriggersRefuseChanges(t *testing.T) {
	t.Parallel()
	l, db := newLog(t, audit.Options{})
	record(t, l, "acme", 3)
	for _, s := range []string{
		`UPDATE agentpg.audit_log SET input = 'x' WHERE seq = 2`,
		`DELETE FROM agentpg.audit_log WHERE seq = 3`,
		`TRUNCATE agentpg.audit_log`,
		`DELETE FROM agentpg.audit_heads`,
		`UPDATE agentpg.audit_heads SET seq = seq - 1`,
		`UPDATE agentpg.audit_heads SET hash = '\x00'`,
		`TRUNCATE agentpg.audit_heads`,
	} {
		if _, err := db.Exec(ctx(t), s); !isRefused(err) {
			t.Errorf("%s: %v", s, err)
		}
	}
	// On the erasure path, only blanking an entry's content, marked erased
	// by a later seq, is let through.
	for _, s := range []string{
		`DELETE FROM agentpg.audit_log WHERE seq = 3`,
		`UPDATE agentpg.audit_log SET input = 'x' WHERE seq = 2`,
		`UPDATE agentpg.audit_log SET input = '', erased_at = now(), erased_by = 4 WHERE seq = 2`, // user_id kept
		`UPDATE agentpg.audit_log SET user_id = '', session_id = '', run_id = '', input = '',
			erased_at = now(), erased_by = 2 WHERE seq = 2`, // erased by itself
		`UPDATE agentpg.audit_log SET user_id = '', session_id = '', run_id = '', input = '', success = true,
			erased_at = now(), erased_by = 4 WHERE seq = 3`, // envelope changed
	} {
		err := pgx.BeginFunc(ctx(t), db, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx(t), `SET LOCAL agentpg.audit_erasure = 'on'`); err != nil {
				return err
			}
			_, err := tx.Exec(ctx(t), s)
			return err
		})
		if !isRefused(err) {
			t.Errorf("on the erasure path, %s: %v", s, err)
		}
	}
	if err := l.Verify(ctx(t), "acme"); err != nil {
		t.Fatal(err)
	}
}
