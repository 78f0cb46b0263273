package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"slices"
	"time"

	"github.com/agentpg/agentpg/internal/store"
)

// ErrChainBroken: a tenant's chain is not what the Log wrote. Verify
// returns it as a *ChainError, which says where and why.
var ErrChainBroken = errors.New("audit: chain broken")

// ChainError is Verify's report of a broken chain: the first seq at which
// the stored chain departs from what the Log wrote, and how.
type ChainError struct {
	TenantID string
	Seq      int64
	Reason   string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("audit: chain of tenant %q broken at seq %d: %s", e.TenantID, e.Seq, e.Reason)
}

// Unwrap makes errors.Is(err, ErrChainBroken) hold.
func (e *ChainError) Unwrap() error { return ErrChainBroken }

// verifyPageSize is how many entries Verify reads at a time.
const verifyPageSize = 1000

// Verify reads the tenant's whole chain, in one snapshot, and returns nil
// when it is intact: seqs from 1 without gaps, each entry's prev_hash the
// hash of the one before, its hash and (unless erased) its content_hash
// those of what it holds, each erased entry blank and accounted for by
// the tombstone that erased it, and the chain ending at its head. Any
// update, deletion, reordering or insertion made outside the Log is
// reported as a *ChainError (errors.Is ErrChainBroken) at the first seq
// it affects. A tenant without entries is intact.
//
// The hashes carry no secret: whoever can write the tables can also
// rewrite a whole chain from some entry on, hashes and head included.
// Compare the Head with a copy kept elsewhere to detect that.
func (l *Log) Verify(ctx context.Context, tenantID string) error {
	if l == nil || l.store == nil {
		return ErrClosed
	}
	if err := checkTenant(tenantID); err != nil {
		return err
	}
	v := &verifier{tenantID: tenantID, prev: genesis, next: 1, erased: map[int64]*erasure{}}
	head, err := l.store.ReadAuditChain(ctx, tenantID, verifyPageSize, v.visit)
	if err != nil {
		var broken *ChainError
		if errors.As(err, &broken) {
			return broken
		}
		return fmt.Errorf("audit: verifying: %w", err)
	}
	return v.end(head)
}

// verifier checks a chain entry by entry.
type verifier struct {
	tenantID string
	prev     []byte // the hash of the entry before next
	next     int64  // the seq expected next
	// erased are the entries found erased, by the seq of the tombstone
	// they name.
	erased map[int64]*erasure
}

// erasure is what a tombstone accounts for: how many entries it erased,
// and the digest of their seqs.
type erasure struct {
	first   int64 // the lowest seq
	entries int
	seqs    hash.Hash
}

func newErasure() *erasure { return &erasure{seqs: sha256.New()} }

func (e *erasure) add(seq int64) {
	if e.entries == 0 {
		e.first = seq
	}
	e.entries++
	e.seqs.Write(binary.BigEndian.AppendUint64(nil, uint64(seq)))
}

// tombstone is the Detail of an erasure's tombstone entry, as JSON.
type tombstone struct {
	// Scope is "user" (Log.Erase) or "tenant" (Log.EraseTenant).
	Scope string `json:"scope"`
	// UserSHA256 is the SHA-256 of the erased user's id, in hex: the
	// erasure can be checked for a user id without the log keeping it.
	UserSHA256 string `json:"user_sha256,omitempty"`
	// Entries is how many entries were erased; SeqsSHA256 the SHA-256 of
	// their seqs, each an int64 big-endian, in ascending order, in hex.
	Entries    int    `json:"entries"`
	SeqsSHA256 string `json:"seqs_sha256"`
}

func (v *verifier) broken(seq int64, reason string, args ...any) error {
	return &ChainError{TenantID: v.tenantID, Seq: seq, Reason: fmt.Sprintf(reason, args...)}
}

// visit checks the next row of the chain, in seq order.
func (v *verifier) visit(r store.AuditRow) error {
	if r.Seq != v.next {
		return v.broken(v.next, "the entry is missing (the next stored entry is seq %d)", r.Seq)
	}
	if !bytes.Equal(r.PrevHash, v.prev) {
		return v.broken(r.Seq, "prev_hash is not the hash of the entry before: an entry was removed, inserted or moved here")
	}
	if err := v.checkContent(&r); err != nil {
		return err
	}
	if !bytes.Equal(chainHash(&r), r.Hash) {
		return v.broken(r.Seq, "hash does not match the entry's tenant, seq, timestamp, action, tool, success or content_hash")
	}
	if r.Action == ActionErasure {
		if err := v.checkTombstone(&r); err != nil {
			return err
		}
	}
	v.prev, v.next = r.Hash, r.Seq+1
	return nil
}

// checkContent checks the content of r against its content_hash, or, for
// an erased entry, that it is blank and names a later tombstone.
func (v *verifier) checkContent(r *store.AuditRow) error {
	if r.ErasedAt == nil && r.ErasedBy == nil {
		if !bytes.Equal(contentHash(r), r.ContentHash) {
			return v.broken(r.Seq, "the content (user, session, run, actor, input or detail) does not match its content_hash")
		}
		return nil
	}
	switch {
	case r.ErasedAt == nil || r.ErasedBy == nil || *r.ErasedBy <= r.Seq:
		return v.broken(r.Seq, "the entry's erasure marks are inconsistent")
	case r.Action == ActionErasure:
		return v.broken(r.Seq, "an erasure tombstone was erased")
	case r.UserID != "" || r.SessionID != "" || r.RunID != "" || r.Actor != "" || r.Input != "" || r.Detail != "":
		return v.broken(r.Seq, "the entry is marked erased but holds content")
	}
	e := v.erased[*r.ErasedBy]
	if e == nil {
		e = newErasure()
		v.erased[*r.ErasedBy] = e
	}
	e.add(r.Seq)
	return nil
}

// checkTombstone checks that the tombstone r accounts for exactly the
// entries marked erased by it.
func (v *verifier) checkTombstone(r *store.AuditRow) error {
	var t tombstone
	if err := json.Unmarshal([]byte(r.Detail), &t); err != nil {
		return v.broken(r.Seq, "the erasure tombstone's detail is not valid: %v", err)
	}
	e := v.erased[r.Seq]
	if e == nil {
		e = newErasure()
	}
	delete(v.erased, r.Seq)
	if e.entries != t.Entries || hex.EncodeToString(e.seqs.Sum(nil)) != t.SeqsSHA256 {
		return v.broken(r.Seq, "the erasure tombstone accounts for %d entries, but %d are marked erased by it, or others", t.Entries, e.entries)
	}
	return nil
}

// end checks, once every row was visited, that every erased entry was
// accounted for and that the chain ends at its head.
func (v *verifier) end(head *store.AuditHead) error {
	if len(v.erased) > 0 {
		var firsts []int64
		for _, e := range v.erased {
			firsts = append(firsts, e.first)
		}
		return v.broken(slices.Min(firsts), "the entry is marked erased by a seq that is no erasure tombstone")
	}
	last := v.next - 1
	switch {
	case head == nil && last == 0:
		return nil
	case head == nil:
		return v.broken(1, "the chain has entries but no head")
	case head.Seq > last:
		return v.broken(last+1, "the entries from here to seq %d, the head, are missing", head.Seq)
	case head.Seq < last:
		return v.broken(head.Seq+1, "the entries from here on are past the chain's head (seq %d)", head.Seq)
	case last > 0 && !bytes.Equal(head.Hash, v.prev):
		return v.broken(last, "the head's hash is not the last entry's")
	}
	return nil
}

// Erase erases the content of the tenant's entries about userID (their
// UserID): it blanks their UserID, SessionID, RunID, Actor, Input and
// Detail, keeping their place in the chain, and appends a tombstone entry
// (Action ActionErasure, Actor actor) that says how many were erased and
// whose, by the SHA-256 of userID, not userID itself. It flushes the Log
// first, so that the entries recorded before it are erased too, and
// returns how many entries it erased. Verify still holds afterwards.
//
// This is the only change the database lets anyone make to the log: an
// UPDATE that blanks content, in a transaction that set
// agentpg.audit_erasure (see the package documentation).
func (l *Log) Erase(ctx context.Context, tenantID, userID, actor string) (int, error) {
	if err := checkKey("user id", userID, MaxKeyBytes, true); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	sum := sha256.Sum256([]byte(userID))
	return l.erase(ctx, tenantID, &userID, actor, tombstone{Scope: "user", UserSHA256: hex.EncodeToString(sum[:])})
}

// EraseTenant is Erase for every entry of the tenant but the tombstones,
// as when the tenant itself is erased. The chain and its tombstones stay.
func (l *Log) EraseTenant(ctx context.Context, tenantID, actor string) (int, error) {
	return l.erase(ctx, tenantID, nil, actor, tombstone{Scope: "tenant"})
}

func (l *Log) erase(ctx context.Context, tenantID string, userID *string, actor string, t tombstone) (int, error) {
	if l == nil || l.store == nil {
		return 0, ErrClosed
	}
	if err := checkTenant(tenantID); err != nil {
		return 0, err
	}
	if err := checkKey("actor", actor, MaxKeyBytes, false); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	if err := l.Flush(ctx); err != nil {
		return 0, fmt.Errorf("audit: erasing: %w", err)
	}
	now := time.Now().Truncate(time.Microsecond)
	n, err := l.store.EraseAudit(ctx, tenantID, userID, now, func(head store.AuditHead, erased []int64) (store.AuditRow, error) {
		e := newErasure()
		for _, seq := range erased {
			e.add(seq)
		}
		t.Entries, t.SeqsSHA256 = e.entries, hex.EncodeToString(e.seqs.Sum(nil))
		detail, err := json.Marshal(t)
		if err != nil {
			return store.AuditRow{}, err
		}
		row := store.AuditRow{TenantID: tenantID, OccurredAt: now, Action: ActionErasure, Success: true, Actor: actor, Detail: string(detail)}
		link(&row, head.Seq, head.Hash)
		return row, nil
	})
	if err != nil {
		return 0, fmt.Errorf("audit: erasing: %w", err)
	}
	return n, nil
}
