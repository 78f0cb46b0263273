package agentpg_test

import (
	"testing"
)

// Every foreign key needs an index led by its columns: without one, each
// cascading delete of the referenced row scans the referencing table. The
// tenant_id that foreign keys between tenant tables include is left out:
// an index led by the id it goes with finds the rows as well, and another
// index on every table would slow every insert.
func TestForeignKeysAreIndexed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rows, err := b.db.Query(ctx(t), `
SELECT c.conrelid::regclass::text, c.conname
FROM pg_constraint c
CROSS JOIN LATERAL (
    SELECT array_agg(k ORDER BY n) AS cols FROM unnest(c.conkey) WITH ORDINALITY u(k, n)
    WHERE k <> (SELECT attnum FROM pg_attribute WHERE attrelid = c.conrelid AND attname = 'tenant_id')
       OR NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = c.conrelid AND attname = 'tenant_id')
) fk
WHERE c.contype = 'f' AND c.connamespace = 'agentpg'::regnamespace
  AND NOT EXISTS (
    SELECT 1 FROM pg_index i
    WHERE i.indrelid = c.conrelid
      AND (i.indkey::int2[])[0:cardinality(fk.cols) - 1] = fk.cols
  )`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var table, constraint string
		if err := rows.Scan(&table, &constraint); err != nil {
			t.Fatal(err)
		}
		t.Errorf("foreign key %s of %s has no index led by its columns", constraint, table)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}
