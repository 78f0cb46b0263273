package store

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentpg/agentpg/internal/envelope"
	"github.com/agentpg/agentpg/keys"
)

// ErrNoKeys: a stored value is sealed and the store has no keys to open
// it (Config.Keys is not set).
var ErrNoKeys = errors.New("content is encrypted and no keys are configured")

// currentKeyTTL is how long a process seals with the data key version it
// last read as its tenant's newest: a rotation made by another process is
// seen within it. Values sealed with an older version stay readable (the
// old key is kept) and the next rotation re-encrypts them.
const currentKeyTTL = 10 * time.Second

// keyCacheSize bounds the unwrapped data keys kept in memory.
const keyCacheSize = 4096

// crypt seals values before they are written and opens them after they
// are read, under per-tenant data keys (docs/encryption.md). A Store
// without one stores plaintext, and reading a sealed value is ErrNoKeys.
type crypt struct {
	provider keys.Provider
	cache    *envelope.Cache
	// db reads and stores data keys: the store's own connection, never a
	// caller's transaction, whose rollback would drop a key already used.
	db DB

	mu      sync.Mutex
	current map[string]currentKey // by tenant
}

// currentKey is the version a tenant's new values are sealed with, and
// when it was read.
type currentKey struct {
	version int
	readAt  time.Time
}

// WithKeys returns a copy of the store that seals every tenant's content
// with data keys wrapped by p (nil: plaintext).
func (s *Store) WithKeys(p keys.Provider) (*Store, error) {
	c := *s
	c.crypt = nil
	if p == nil {
		return &c, nil
	}
	cache, err := envelope.NewCache(p, keyCacheSize)
	if err != nil {
		return nil, err
	}
	c.crypt = &crypt{provider: p, cache: cache, db: s.noTenant(), current: make(map[string]currentKey)}
	return &c, nil
}

// Encrypted reports whether the store seals content.
func (s *Store) Encrypted() bool { return s.crypt != nil }

const newestDataKeySQL = `
SELECT version, kek_id, wrapped FROM {{schema}}.data_keys
WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1`

const insertDataKeySQL = `
INSERT INTO {{schema}}.data_keys (tenant_id, version, kek_id, wrapped, rotated_at)
VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN NULL ELSE now() END)
ON CONFLICT DO NOTHING`

const dataKeySQL = `SELECT kek_id, wrapped FROM {{schema}}.data_keys WHERE tenant_id = $1 AND version = $2`

// sealer returns what seals the tenant's values in one write: its newest
// data key, made at the tenant's first sealed write. It is nil when the
// store does not encrypt.
func (s *Store) sealer(ctx context.Context, tenantID string) (*sealer, error) {
	if s.crypt == nil {
		return nil, nil
	}
	c := s.crypt
	c.mu.Lock()
	cur, ok := c.current[tenantID]
	c.mu.Unlock()
	if !ok || time.Since(cur.readAt) > currentKeyTTL {
		version, err := s.newestDataKey(ctx, tenantID)
		if err != nil {
			return nil, err
		}
		cur = currentKey{version: version, readAt: time.Now()}
		c.setCurrent(tenantID, cur)
	}
	k, err := s.dataKey(ctx, tenantID, cur.version)
	if err != nil {
		return nil, err
	}
	return &sealer{tenantID: tenantID, key: k}, nil
}

func (c *crypt) setCurrent(tenantID string, cur currentKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.current[tenantID] = cur
}

// newestDataKey returns the version of the tenant's newest data key,
// making version 1 when it has none.
func (s *Store) newestDataKey(ctx context.Context, tenantID string) (int, error) {
	for {
		var version int
		var w keys.WrappedKey
		err := s.keyDB(tenantID).QueryRow(ctx, s.q(newestDataKeySQL), tenantID).Scan(&version, &w.KEKID, &w.Ciphertext)
		switch {
		case err == nil:
			s.crypt.dropIfReplaced(tenantID, version, w)
			return version, nil
		case !errors.Is(err, pgx.ErrNoRows):
			return 0, fmt.Errorf("reading the data key of tenant %q: %w", tenantID, err)
		}
		if _, err := s.addDataKey(ctx, tenantID, 1, false); err != nil {
			return 0, err
		}
	}
}

// dropIfReplaced forgets the tenant's cached data keys when the one of
// that version is not the stored one: the tenant was erased, and its
// versions started again at 1, since it was cached.
func (c *crypt) dropIfReplaced(tenantID string, version int, stored keys.WrappedKey) {
	if k, ok := c.cache.Peek(tenantID, version); ok && !bytes.Equal(k.Wrapped().Ciphertext, stored.Ciphertext) {
		c.cache.Forget(tenantID)
	}
}

// addDataKey makes the tenant's data key of that version and stores it,
// wrapped; rotating marks it as the target of a rotation not yet done. It
// reports false when the version exists already (another process made it).
func (s *Store) addDataKey(ctx context.Context, tenantID string, version int, rotating bool) (bool, error) {
	k, err := envelope.NewDataKey(ctx, s.crypt.provider, version)
	if err != nil {
		return false, err
	}
	w := k.Wrapped()
	tag, err := s.keyDB(tenantID).Exec(ctx, s.q(insertDataKeySQL), tenantID, version, w.KEKID, w.Ciphertext, rotating)
	if err != nil {
		return false, fmt.Errorf("storing data key %d of tenant %q: %w", version, tenantID, err)
	}
	if tag.RowsAffected() == 0 {
		return false, nil
	}
	s.crypt.cache.Put(tenantID, k)
	return true, nil
}

// keyDB returns the connection for data keys, bound to the tenant.
func (s *Store) keyDB(tenantID string) querier { return tenantDB{db: s.crypt.db, tenant: tenantID} }

// dataKey returns the tenant's data key of that version, unwrapped.
func (s *Store) dataKey(ctx context.Context, tenantID string, version int) (*envelope.DataKey, error) {
	return s.crypt.cache.Get(ctx, tenantID, version, func(ctx context.Context) (keys.WrappedKey, error) {
		var w keys.WrappedKey
		err := s.keyDB(tenantID).QueryRow(ctx, s.q(dataKeySQL), tenantID, version).Scan(&w.KEKID, &w.Ciphertext)
		if errors.Is(err, pgx.ErrNoRows) {
			return w, fmt.Errorf("no such data key (erased?): %w", keys.ErrDecrypt)
		}
		return w, err
	})
}

// sealer seals the values of one tenant's write under one data key. A nil
// sealer leaves values as they are: the store does not encrypt.
type sealer struct {
	tenantID string
	key      *envelope.DataKey
}

// version returns the version to store next to the values it sealed: nil
// for plaintext.
func (w *sealer) version() *int {
	if w == nil {
		return nil
	}
	v := w.key.Version()
	return &v
}

// text seals a value stored in a text column: base64 of the sealed bytes.
func (w *sealer) text(r row, plaintext string) (string, error) {
	if w == nil {
		return plaintext, nil
	}
	sealed, err := w.key.Seal([]byte(plaintext), r.aad(w.tenantID))
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(sealed), nil
}

// json seals a value stored in a jsonb column: a JSON string of base64.
func (w *sealer) json(r row, plaintext json.RawMessage) (json.RawMessage, error) {
	if w == nil || plaintext == nil {
		return plaintext, nil
	}
	sealed, err := w.text(r, string(plaintext))
	if err != nil {
		return nil, err
	}
	return json.Marshal(sealed)
}

// opener opens the values of one tenant's rows, each under the data key
// version stored with it.
type opener struct {
	ctx      context.Context
	s        *Store
	tenantID string
}

func (s *Store) opener(ctx context.Context, tenantID string) opener {
	return opener{ctx: ctx, s: s, tenantID: tenantID}
}

// text opens a value read from a text column; a nil version is plaintext.
func (o opener) text(version *int, r row, stored string) (string, error) {
	if version == nil {
		return stored, nil
	}
	if o.s.crypt == nil {
		return "", fmt.Errorf("reading %s: %w", r.describe(), ErrNoKeys)
	}
	sealed, err := base64.StdEncoding.DecodeString(stored)
	if err != nil {
		return "", fmt.Errorf("reading %s: not base64: %w", r.describe(), keys.ErrDecrypt)
	}
	plaintext, err := o.open(*version, sealed, r.aad(o.tenantID))
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", r.describe(), err)
	}
	return string(plaintext), nil
}

// open opens sealed with the tenant's data key of that version. A value
// that does not open with a cached key is tried once more with the stored
// one: the tenant may have been erased, and its versions started again,
// since the key was cached.
func (o opener) open(version int, sealed, aad []byte) ([]byte, error) {
	k, err := o.s.dataKey(o.ctx, o.tenantID, version)
	if err != nil {
		return nil, err
	}
	plaintext, err := k.Open(sealed, aad)
	if err == nil {
		return plaintext, nil
	}
	o.s.crypt.cache.Forget(o.tenantID)
	if k, err = o.s.dataKey(o.ctx, o.tenantID, version); err != nil {
		return nil, err
	}
	return k.Open(sealed, aad)
}

// json opens a value read from a jsonb column.
func (o opener) json(version *int, r row, stored json.RawMessage) (json.RawMessage, error) {
	if version == nil || stored == nil {
		return stored, nil
	}
	var sealed string
	if err := json.Unmarshal(stored, &sealed); err != nil {
		return nil, fmt.Errorf("reading %s: not a sealed value: %w", r.describe(), keys.ErrDecrypt)
	}
	plaintext, err := o.text(version, r, sealed)
	if err != nil {
		return nil, err
	}
	return json.RawMessage(plaintext), nil
}

// row names the place of a sealed value (see envelope.Row): its logical
// table, column and key within the tenant.
type row struct {
	table, column string
	key           []string
}

func (r row) aad(tenantID string) []byte {
	return envelope.Row{TenantID: tenantID, Table: r.table, Column: r.column, Key: r.key}.AAD()
}

// describe names the value in errors: ids only, never content.
func (r row) describe() string {
	return fmt.Sprintf("%s.%s of %v", r.table, r.column, r.key)
}

// The places of sealed values. A message keeps its place when compaction
// archives it, so it moves as ciphertext.
func messageContent(sessionID, messageID string) row {
	return row{"messages", "content", []string{sessionID, messageID}}
}
func sessionField(column, sessionID string) row { return row{"sessions", column, []string{sessionID}} }
func runPrompt(runID string) row                { return row{"runs", "prompt", []string{runID}} }
func toolField(column, runID, toolUseID string) row {
	return row{"tool_executions", column, []string{runID, toolUseID}}
}
func eventData(runID, kind string) row { return row{"run_events", "data", []string{runID, kind}} }
