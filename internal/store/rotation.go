package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentpg/agentpg/internal/envelope"
	"github.com/agentpg/agentpg/keys"
)

// sealedGroup is a set of sealed columns of one table that share a key
// version column: what a rotation re-encrypts together.
type sealedGroup struct {
	table   string     // SQL table
	version string     // its key version column
	pk      []pkColumn // the row's primary key, to update it
	// aadKey are the SQL expressions of the row's key in its AAD (see
	// row), and logical its logical table.
	aadKey  []string
	logical string
	columns []sealedColumn
}

type pkColumn struct{ name, sqlType string }

type sealedColumn struct {
	name  string
	jsonb bool // a jsonb column: a sealed value is a JSON string
}

// sealedGroups are every sealed column, by the key version that covers it.
// They must agree with the rows the write paths seal with (crypt.go).
var sealedGroups = []sealedGroup{
	{table: "sessions", version: "key_version", pk: []pkColumn{{"id", "uuid"}}, aadKey: []string{"id"},
		logical: "sessions", columns: []sealedColumn{{"metadata", true}, {"overrides", true}}},
	{table: "sessions", version: "summary_key_version", pk: []pkColumn{{"id", "uuid"}}, aadKey: []string{"id"},
		logical: "sessions", columns: []sealedColumn{{"summary", false}, {"first_intent", false}}},
	{table: "runs", version: "key_version", pk: []pkColumn{{"id", "uuid"}}, aadKey: []string{"id"},
		logical: "runs", columns: []sealedColumn{{"prompt", true}}},
	{table: "messages", version: "key_version", pk: []pkColumn{{"id", "uuid"}}, aadKey: []string{"session_id", "id"},
		logical: "messages", columns: []sealedColumn{{"content", true}}},
	{table: "message_archive", version: "key_version", pk: []pkColumn{{"compaction_id", "uuid"}, {"id", "uuid"}},
		aadKey: []string{"session_id", "id"}, logical: "messages", columns: []sealedColumn{{"content", true}}},
	{table: "tool_executions", version: "key_version", pk: []pkColumn{{"id", "uuid"}}, aadKey: []string{"run_id", "tool_use_id"},
		logical: "tool_executions", columns: []sealedColumn{{"input", true}, {"output", false}}},
	{table: "tool_executions", version: "note_key_version", pk: []pkColumn{{"id", "uuid"}}, aadKey: []string{"run_id", "tool_use_id"},
		logical: "tool_executions", columns: []sealedColumn{{"decision_note", false}}},
	{table: "run_events", version: "key_version", pk: []pkColumn{{"run_id", "uuid"}, {"seq", "bigint"}}, aadKey: []string{"run_id", "kind"},
		logical: "run_events", columns: []sealedColumn{{"data", true}}},
}

// holdsValues is the SQL condition of a row of g with a value to seal.
func (g sealedGroup) holdsValues() string {
	var c []string
	for _, col := range g.columns {
		c = append(c, col.name+" IS NOT NULL")
	}
	return "(" + strings.Join(c, " OR ") + ")"
}

// staleSQL selects, and locks, at most $3 rows of the tenant $1 whose
// values are not sealed with version $2 (plaintext ones included), in the
// order of their primary key, after the key given from $4 on (NULLs: from
// the first). Walking by primary key needs no index of its own.
func (g sealedGroup) staleSQL() string {
	cols := make([]string, 0, len(g.pk)+len(g.aadKey)+len(g.columns)+1)
	var pk, cursor []string
	for i, p := range g.pk {
		cols = append(cols, p.name+"::text")
		pk = append(pk, p.name)
		cursor = append(cursor, fmt.Sprintf("$%d::%s", 4+i, p.sqlType))
	}
	for _, k := range g.aadKey {
		cols = append(cols, k+"::text")
	}
	cols = append(cols, g.version)
	for _, c := range g.columns {
		cols = append(cols, c.name+"::text")
	}
	return fmt.Sprintf(`SELECT %s FROM {{schema}}.%s
WHERE tenant_id = $1 AND (%s IS NULL OR (%s) > (%s))
  AND (%s IS NULL OR %s <> $2) AND %s
ORDER BY %s
LIMIT $3 FOR UPDATE`, strings.Join(cols, ", "), g.table, cursor[0], strings.Join(pk, ", "), strings.Join(cursor, ", "),
		g.version, g.version, g.holdsValues(), strings.Join(pk, ", "))
}

// updateSQL writes the values re-sealed with version $2 to the tenant $1's
// rows, given column by column: the primary key, then the values.
func (g sealedGroup) updateSQL() string {
	var set, from, alias, where []string
	n := 3
	for _, p := range g.pk {
		from = append(from, fmt.Sprintf("$%d::text[]", n))
		alias = append(alias, "pk_"+p.name)
		where = append(where, fmt.Sprintf("t.%s = u.pk_%s::%s", p.name, p.name, p.sqlType))
		n++
	}
	for _, c := range g.columns {
		from = append(from, fmt.Sprintf("$%d::text[]", n))
		alias = append(alias, "v_"+c.name)
		cast := ""
		if c.jsonb {
			cast = "::jsonb"
		}
		set = append(set, fmt.Sprintf("%s = u.v_%s%s", c.name, c.name, cast))
		n++
	}
	set = append(set, g.version+" = $2")
	return fmt.Sprintf(`UPDATE {{schema}}.%s t SET %s
FROM unnest(%s) AS u(%s)
WHERE t.tenant_id = $1 AND %s`, g.table, strings.Join(set, ", "), strings.Join(from, ", "),
		strings.Join(alias, ", "), strings.Join(where, " AND "))
}

// countSQL counts the tenant $1's rows of g with values, by key version.
func (g sealedGroup) countSQL() string {
	return fmt.Sprintf(`SELECT %s, count(*) FROM {{schema}}.%s WHERE tenant_id = $1 AND %s GROUP BY 1`,
		g.version, g.table, g.holdsValues())
}

// reencrypt re-seals, with k, at most limit rows of g of the tenant that are
// sealed with another version or not at all, after the primary key cursor
// (nils: from the first), in one transaction that locks them: a run writing
// one of them meanwhile waits, and its write (sealed with the key it has)
// wins. It returns how many it re-sealed, and moves cursor to the last.
func (s *Store) reencrypt(ctx context.Context, tenantID string, g sealedGroup, k *envelope.DataKey, limit int, cursor []*string) (int, error) {
	w := &sealer{tenantID: tenantID, key: k}
	o := s.opener(ctx, tenantID)
	pk := make([]string, len(g.pk))
	aadKey := make([]string, len(g.aadKey))
	var version *int
	values := make([]*string, len(g.columns))
	dest := make([]any, 0, len(pk)+len(aadKey)+1+len(values))
	for i := range pk {
		dest = append(dest, &pk[i])
	}
	for i := range aadKey {
		dest = append(dest, &aadKey[i])
	}
	dest = append(dest, &version)
	for i := range values {
		dest = append(dest, &values[i])
	}
	// columns are the update's arrays: the primary key's, then the values'.
	columns := make([][]*string, len(pk)+len(values))
	var n int
	err := pgx.BeginFunc(ctx, s.crypt.db, func(tx pgx.Tx) error {
		db := tenantDB{db: tx, tenant: tenantID}
		args := []any{tenantID, k.Version(), limit}
		for _, c := range cursor {
			args = append(args, c)
		}
		rows, err := db.Query(ctx, s.q(g.staleSQL()), args...)
		if err != nil {
			return err
		}
		_, err = pgx.ForEachRow(rows, dest, func() error {
			for i, v := range pk {
				columns[i] = append(columns[i], &v)
			}
			for i, c := range g.columns {
				resealed, err := reseal(o, w, version, row{g.logical, c.name, slices.Clone(aadKey)}, c.jsonb, values[i])
				if err != nil {
					return err
				}
				columns[len(pk)+i] = append(columns[len(pk)+i], resealed)
			}
			n++
			return nil
		})
		if err != nil || n == 0 {
			return err
		}
		args = []any{tenantID, k.Version()}
		for _, c := range columns {
			args = append(args, c)
		}
		_, err = db.Exec(ctx, s.q(g.updateSQL()), args...)
		return err
	})
	if err == nil && n > 0 {
		for i := range cursor {
			cursor[i] = columns[i][n-1]
		}
	}
	if err != nil {
		return 0, fmt.Errorf("re-encrypting %s.%s: %w", g.table, g.version, err)
	}
	return n, nil
}

// reseal opens a stored value sealed with version (nil: plaintext) and seals
// it with w; a NULL stays NULL.
func reseal(o opener, w *sealer, version *int, r row, jsonb bool, stored *string) (*string, error) {
	if stored == nil {
		return nil, nil
	}
	var out string
	if jsonb {
		plaintext, err := o.json(version, r, json.RawMessage(*stored))
		if err != nil {
			return nil, err
		}
		sealed, err := w.json(r, plaintext)
		if err != nil {
			return nil, err
		}
		out = string(sealed)
	} else {
		plaintext, err := o.text(version, r, *stored)
		if err != nil {
			return nil, err
		}
		if out, err = w.text(r, plaintext); err != nil {
			return nil, err
		}
	}
	return &out, nil
}

// DataKeyInfo describes a version of a tenant's data key.
type DataKeyInfo struct {
	Version   int
	KEKID     string // the key-encryption key that wraps it
	CreatedAt time.Time
	// RotatedAt is when a rotation onto this version re-encrypted every
	// row; nil while one runs (or was killed: RotateKeys resumes it).
	RotatedAt *time.Time
	// Rows counts the tenant's rows sealed with this version.
	Rows int64
}

const dataKeysSQL = `
SELECT version, kek_id, created_at, rotated_at FROM {{schema}}.data_keys
WHERE tenant_id = $1 ORDER BY version`

// countSealedSQL counts the tenant's rows with values by key version
// (NULL: plaintext) over every sealed group.
var countSealedSQL = func() string {
	parts := make([]string, len(sealedGroups))
	for i, g := range sealedGroups {
		parts[i] = g.countSQL()
	}
	return "SELECT v, sum(n)::bigint FROM (" + strings.Join(parts, "\nUNION ALL\n") + ") AS c(v, n) GROUP BY v ORDER BY v"
}()

// DataKeys returns the tenant's data keys, oldest first, with the rows each
// seals, and the number of rows stored in plaintext.
func (s *Store) DataKeys(ctx context.Context, tenantID string) (keys []DataKeyInfo, plaintextRows int64, err error) {
	keys, err = s.listDataKeys(ctx, tenantID)
	if err != nil {
		return nil, 0, err
	}
	rows, err := s.as(tenantID).Query(ctx, s.q(countSealedSQL), tenantID)
	if err != nil {
		return nil, 0, fmt.Errorf("counting sealed rows: %w", err)
	}
	var version *int
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&version, &n}, func() error {
		if version == nil {
			plaintextRows = n
		}
		for i := range keys {
			if version != nil && keys[i].Version == *version {
				keys[i].Rows = n
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("counting sealed rows: %w", err)
	}
	return keys, plaintextRows, nil
}

// listDataKeys returns the tenant's data keys, oldest first, without
// counting their rows.
func (s *Store) listDataKeys(ctx context.Context, tenantID string) ([]DataKeyInfo, error) {
	return queryAll(ctx, s.as(tenantID), "data keys", s.q(dataKeysSQL), func(row pgx.CollectableRow) (DataKeyInfo, error) {
		var k DataKeyInfo
		err := row.Scan(&k.Version, &k.KEKID, &k.CreatedAt, &k.RotatedAt)
		return k, err
	}, tenantID)
}

const keyTenantsSQL = `SELECT t FROM {{schema}}.key_tenants() AS t`

// KeyTenants returns, across tenants, the ids of those with a data key or
// a session: the tenants a rotation of all keys visits. It is a narrow
// cross-tenant path (migration 013's key_tenants).
func (s *Store) KeyTenants(ctx context.Context) ([]string, error) {
	return queryAll(ctx, s.noTenant(), "tenants", s.q(keyTenantsSQL), pgx.RowTo[string])
}

// Rotation is a rotation of a tenant's data key under way.
type Rotation struct {
	TenantID string
	Version  int  // the new data key's
	Resumed  bool // a rotation killed before it finished, taken up again

	// group is the sealed group being walked, cursor the primary key of
	// its last row re-sealed (nils: none yet).
	group  int
	cursor []*string
}

// BeginRotation makes the tenant's next data key version, which new values
// are sealed with from now on in this process (in others within
// currentKeyTTL), or takes up a rotation that did not finish. It needs
// WithKeys.
func (s *Store) BeginRotation(ctx context.Context, tenantID string) (Rotation, error) {
	if s.crypt == nil {
		return Rotation{}, ErrNoKeys
	}
	r := Rotation{TenantID: tenantID}
	for {
		keys, err := s.listDataKeys(ctx, tenantID)
		if err != nil {
			return r, err
		}
		r.Version = 1
		if n := len(keys); n > 0 {
			newest := keys[n-1]
			if newest.RotatedAt == nil {
				r.Version, r.Resumed = newest.Version, true
				break
			}
			r.Version = newest.Version + 1
		}
		added, err := s.addDataKey(ctx, tenantID, r.Version, true)
		if err != nil {
			return r, err
		}
		if added {
			break
		}
	}
	s.crypt.setCurrent(tenantID, currentKey{version: r.Version, readAt: time.Now()})
	return r, nil
}

// ReencryptBatch re-seals with the rotation's key the next rows, at most
// limit, of the tenant's sealed with another version or not at all, in a
// short transaction. It walks each table in the order of its primary key,
// so a batch costs what it reads, not the table's size. It returns how
// many it re-sealed: 0 when the walk is over. A row written behind the
// walk with an older key (by a process that has not yet seen the new one)
// stays readable; the next rotation re-seals it.
func (s *Store) ReencryptBatch(ctx context.Context, r *Rotation, limit int) (int, error) {
	k, err := s.dataKey(ctx, r.TenantID, r.Version)
	if err != nil {
		return 0, err
	}
	for ; r.group < len(sealedGroups); r.group++ {
		g := sealedGroups[r.group]
		if r.cursor == nil {
			r.cursor = make([]*string, len(g.pk))
		}
		n, err := s.reencrypt(ctx, r.TenantID, g, k, limit, r.cursor)
		if n > 0 || err != nil {
			return n, err
		}
		r.cursor = nil
	}
	return 0, nil
}

const finishRotationSQL = `
UPDATE {{schema}}.data_keys SET rotated_at = now()
WHERE tenant_id = $1 AND version = $2 AND rotated_at IS NULL`

// FinishRotation records that every row was re-encrypted onto the
// rotation's version.
func (s *Store) FinishRotation(ctx context.Context, r Rotation) error {
	_, err := s.keyDB(r.TenantID).Exec(ctx, s.q(finishRotationSQL), r.TenantID, r.Version)
	return err
}

const staleWrapsSQL = `
SELECT version, kek_id, wrapped FROM {{schema}}.data_keys
WHERE tenant_id = $1 AND kek_id <> $2 ORDER BY version`

const rewrapSQL = `
UPDATE {{schema}}.data_keys SET kek_id = $3, wrapped = $4
WHERE tenant_id = $1 AND version = $2 AND kek_id = $5`

// RewrapDataKeys wraps again, under the provider's current key-encryption
// key, each of the tenant's data keys wrapped by another: the rotation of a
// key-encryption key, which touches no content. It returns how many it
// re-wrapped.
func (s *Store) RewrapDataKeys(ctx context.Context, tenantID string) (int, error) {
	if s.crypt == nil {
		return 0, ErrNoKeys
	}
	type stale struct {
		version int
		wrapped keys.WrappedKey
	}
	old, err := queryAll(ctx, s.keyDB(tenantID), "data keys", s.q(staleWrapsSQL), func(row pgx.CollectableRow) (stale, error) {
		var k stale
		err := row.Scan(&k.version, &k.wrapped.KEKID, &k.wrapped.Ciphertext)
		return k, err
	}, tenantID, s.crypt.provider.Current())
	if err != nil {
		return 0, err
	}
	for _, k := range old {
		dk, err := envelope.UnwrapDataKey(ctx, s.crypt.provider, k.version, k.wrapped)
		if err != nil {
			return 0, fmt.Errorf("re-wrapping data key %d of tenant %q: %w", k.version, tenantID, err)
		}
		if dk, err = dk.Rewrap(ctx, s.crypt.provider); err != nil {
			return 0, fmt.Errorf("re-wrapping data key %d of tenant %q: %w", k.version, tenantID, err)
		}
		w := dk.Wrapped()
		if _, err := s.keyDB(tenantID).Exec(ctx, s.q(rewrapSQL), tenantID, k.version, w.KEKID, w.Ciphertext, k.wrapped.KEKID); err != nil {
			return 0, fmt.Errorf("re-wrapping data key %d of tenant %q: %w", k.version, tenantID, err)
		}
	}
	return len(old), nil
}

const deleteDataKeysSQL = `DELETE FROM {{schema}}.data_keys WHERE tenant_id = $1`

// DeleteDataKeys deletes the tenant's data keys, once its rows are gone
// (crypto-shredding: a copy of its ciphertext, in a backup, no longer
// opens with the database's keys), and forgets them in this process.
func (s *Store) DeleteDataKeys(ctx context.Context, tenantID string) (int64, error) {
	tag, err := s.as(tenantID).Exec(ctx, s.q(deleteDataKeysSQL), tenantID)
	if err != nil {
		return 0, fmt.Errorf("deleting data keys: %w", err)
	}
	if c := s.crypt; c != nil {
		c.cache.Forget(tenantID)
		c.mu.Lock()
		delete(c.current, tenantID)
		c.mu.Unlock()
	}
	return tag.RowsAffected(), nil
}

// KeySummary describes, across tenants, the data keys new content is
// sealed with.
type KeySummary struct {
	Tenants int64 // tenants with a data key
	// OldestCurrent is when the oldest of the tenants' newest keys was
	// made: the key age a rotation schedule bounds. Zero without keys.
	OldestCurrent time.Time
	Unfinished    int64 // rotations killed before they finished
	// Unencrypted counts the tenants with sessions and no data key.
	Unencrypted int64
}

const keySummarySQL = `
SELECT tenants, coalesce(oldest_current, 'epoch'), unfinished, unencrypted_tenants FROM {{schema}}.key_summary()`

// KeySummary returns the summary of every tenant's data keys, through a
// narrow cross-tenant path (migration 013's key_summary).
func (s *Store) KeySummary(ctx context.Context) (KeySummary, error) {
	var k KeySummary
	err := s.noTenant().QueryRow(ctx, s.q(keySummarySQL)).Scan(&k.Tenants, &k.OldestCurrent, &k.Unfinished, &k.Unencrypted)
	if k.Tenants == 0 {
		k.OldestCurrent = time.Time{}
	}
	return k, err
}
