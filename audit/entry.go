package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/agentpg/agentpg/internal/store"
)

// Entry is one audited action. Record needs TenantID and Action; the
// fields a Log sets itself (Seq, Hash, ErasedAt) are ignored by Record and
// filled by List.
type Entry struct {
	// Timestamp is when the action happened; zero means when Record was
	// called. It is kept to the microsecond.
	Timestamp time.Time
	// UserID is the user the action is about, or who took it: the
	// session's identifier for the entries an Agent records. Log.Erase
	// erases a user's entries by it.
	UserID string
	// TenantID is the tenant whose chain holds the entry.
	TenantID string
	// Action names what happened, such as "tool_call" or the Action
	// constants of this package.
	Action string
	// Tool is the tool called, for tool calls and their approvals. It is
	// the model's to name, so Record stores whatever it is: made storable
	// and cut to MaxKeyBytes, as Input is.
	Tool string
	// Input is what the action was given, such as a tool call's JSON
	// input. It passes through the Log's Redact function.
	Input   string
	Success bool

	// SessionID and RunID, when set, name the session and run of the
	// action.
	SessionID string
	RunID     string
	// Actor is who acted, when someone other than UserID did: the person
	// who approved a call, an operator, a service.
	Actor string
	// Detail is free text, such as the note of an approval. It passes
	// through the Log's Redact function.
	Detail string

	// Seq is the entry's place in its tenant's chain, from 1.
	Seq int64
	// Hash is the entry's chain hash, in hex.
	Hash string
	// ErasedAt is when the entry's content (UserID, SessionID, RunID,
	// Actor, Input and Detail) was erased; zero if it was not.
	ErasedAt time.Time
}

// Actions the Agent records, and the tombstones of erasures. Success
// says whether the action took effect: false for a decision on a call that
// no longer waits, or a failed deletion.
const (
	ActionToolCall      = "tool_call"      // a tool ran: Tool, Input, and Success unless it failed
	ActionToolDenied    = "tool_denied"    // an OnBeforeToolCall hook denied a call (Success false); Detail says why
	ActionToolApprove   = "tool_approve"   // Agent.DecideToolCall approved a call; Detail is the note
	ActionToolDeny      = "tool_deny"      // Agent.DecideToolCall denied a call; Detail is the note
	ActionSessionDelete = "session_delete" // Agent.DeleteSession
	ActionRunCancel     = "run_cancel"     // Agent.CancelRun
	ActionLimitsSet     = "limits_set"     // Agent.SetTenantLimits; Input is the limits set, as JSON
	ActionKeyRotate     = "key_rotate"     // Agent.RotateKeys; Detail counts the rows re-encrypted
	// ActionErasure is the tombstone Log.Erase appends. Record refuses it.
	ActionErasure = "audit_erasure"
)

// Limits of an entry's fields, in bytes. Record refuses keys over their
// limit, cuts Tool to MaxKeyBytes and Input and Detail to MaxTextBytes.
const (
	MaxTenantIDBytes = 256
	MaxKeyBytes      = 1024 // UserID, SessionID, RunID, Actor, Action, Tool
	MaxTextBytes     = 64 << 10
)

// prepare validates e and returns its row without the chain fields: with
// Input and Detail redacted, and those and Tool made storable (invalid
// UTF-8 and NUL replaced by U+FFFD) and cut to their limits.
func prepare(e Entry, redact func(string) string) (store.AuditRow, error) {
	if e.Timestamp.IsZero() {
		e.Timestamp = time.Now()
	}
	if y := e.Timestamp.Year(); y < 1 || y > 9999 {
		return store.AuditRow{}, fmt.Errorf("%w: Timestamp %v is out of range", ErrInvalidEntry, e.Timestamp)
	}
	if e.Action == ActionErasure {
		return store.AuditRow{}, fmt.Errorf("%w: Action %q is reserved for erasure tombstones", ErrInvalidEntry, e.Action)
	}
	if err := checkKeys(e); err != nil {
		return store.AuditRow{}, fmt.Errorf("%w: %w", ErrInvalidEntry, err)
	}
	return store.AuditRow{
		TenantID: e.TenantID, OccurredAt: e.Timestamp.Truncate(time.Microsecond), Action: e.Action,
		Tool: storable(e.Tool, MaxKeyBytes), Success: e.Success,
		UserID: e.UserID, SessionID: e.SessionID, RunID: e.RunID, Actor: e.Actor,
		Input: storable(redact(e.Input), MaxTextBytes), Detail: storable(redact(e.Detail), MaxTextBytes),
	}, nil
}

// checkKeys checks the short fields of e: TenantID and Action are
// required; all are valid UTF-8 without control characters, within their
// limits.
func checkKeys(e Entry) error {
	keys := []struct {
		name, value string
		max         int
		required    bool
	}{
		{"TenantID", e.TenantID, MaxTenantIDBytes, true},
		{"Action", e.Action, MaxKeyBytes, true},
		{"UserID", e.UserID, MaxKeyBytes, false},
		{"SessionID", e.SessionID, MaxKeyBytes, false},
		{"RunID", e.RunID, MaxKeyBytes, false},
		{"Actor", e.Actor, MaxKeyBytes, false},
	}
	for _, k := range keys {
		if err := checkKey(k.name, k.value, k.max, k.required); err != nil {
			return err
		}
	}
	return nil
}

// checkKey checks one short field; a tenant id passes it as it passes the
// Agent's checks.
func checkKey(name, value string, max int, required bool) error {
	switch {
	case required && strings.TrimSpace(value) == "":
		return fmt.Errorf("%s is required", name)
	case len(value) > max:
		return fmt.Errorf("%s is %d bytes, over the limit of %d", name, len(value), max)
	case !utf8.ValidString(value):
		return fmt.Errorf("%s is not valid UTF-8", name)
	case strings.ContainsFunc(value, unicode.IsControl):
		return fmt.Errorf("%s contains a control character", name)
	}
	return nil
}

// checkTenant checks a tenant id argument.
func checkTenant(tenantID string) error {
	if err := checkKey("tenant id", tenantID, MaxTenantIDBytes, true); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	return nil
}

// storable returns s fit for a text column and within max bytes: invalid
// UTF-8 and NUL become U+FFFD, and a longer text is cut, on a character
// boundary, with a note of how much was cut.
func storable(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	if len(s) <= max {
		return s
	}
	note := fmt.Sprintf("…[%d bytes cut]", len(s))
	cut := max - len(note)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + note
}

// contentHash and chainHash compute the hashes of the package
// documentation, which an auditor can compute again with a short script.

// contentHash is the content hash of r.
func contentHash(r *store.AuditRow) []byte {
	h := sha256.New()
	for _, s := range []string{r.UserID, r.SessionID, r.RunID, r.Actor, r.Input, r.Detail} {
		h.Write(str(s))
	}
	return h.Sum(nil)
}

// chainHash is the hash of r, from its PrevHash, envelope and ContentHash.
func chainHash(r *store.AuditRow) []byte {
	h := sha256.New()
	h.Write(r.PrevHash)
	h.Write(str(r.TenantID))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(r.Seq)))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(r.OccurredAt.UnixMicro())))
	h.Write(str(r.Action))
	h.Write(str(r.Tool))
	if r.Success {
		h.Write([]byte{1})
	} else {
		h.Write([]byte{0})
	}
	h.Write(r.ContentHash)
	return h.Sum(nil)
}

// str is the canonical bytes of a string: its length, then itself.
func str(s string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(s))), s...)
}

// genesis is the prev_hash of a chain's first entry.
var genesis = make([]byte, sha256.Size)

// link fills in the chain fields of r, which follows the entry with seq
// and hash prev (0 and empty for a chain without entries).
func link(r *store.AuditRow, seq int64, prev []byte) {
	if len(prev) == 0 {
		prev = genesis
	}
	r.Seq, r.PrevHash = seq+1, prev
	r.ContentHash = contentHash(r)
	r.Hash = chainHash(r)
}
