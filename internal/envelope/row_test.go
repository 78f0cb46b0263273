package envelope_test

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"github.com/agentpg/agentpg/internal/envelope"
)

// decodeAAD reads an AAD back into its Row, proving the encoding
// injective: two Rows with one AAD would decode to the same Row.
func decodeAAD(t *testing.T, aad []byte) envelope.Row {
	t.Helper()
	var fields []string
	for len(aad) > 0 {
		n, w := binary.Uvarint(aad)
		if w <= 0 || uint64(len(aad)-w) < n {
			t.Fatalf("AAD is not a sequence of length-prefixed fields: %x", aad)
		}
		fields = append(fields, string(aad[w:w+int(n)]))
		aad = aad[w+int(n):]
	}
	if len(fields) < 4 || fields[0] != "agentpg/row/v1" {
		t.Fatalf("AAD fields %q lack the label, tenant, table or column", fields)
	}
	r := envelope.Row{TenantID: fields[1], Table: fields[2], Column: fields[3]}
	if len(fields) > 4 {
		r.Key = fields[4:]
	}
	return r
}

func TestRowAADDistinct(t *testing.T) {
	rows := []envelope.Row{
		{TenantID: "ab", Table: "c"},
		{TenantID: "a", Table: "bc"},
		{TenantID: "a", Table: "b", Column: "c"},
		{TenantID: "a", Table: "b", Column: "", Key: []string{"c"}},
		{TenantID: "t", Table: "m", Column: "c", Key: []string{"s", "1"}},
		{TenantID: "t", Table: "m", Column: "c", Key: []string{"s1"}},
		{TenantID: "t", Table: "m", Column: "c", Key: []string{"s", "1", ""}},
		{TenantID: "t", Table: "m", Column: "c", Key: []string{"s", "", "1"}},
		{TenantID: "t", Table: "m", Column: "c"},
		{TenantID: "t", Table: "m", Column: "c", Key: []string{""}},
		{TenantID: "t\x00m", Table: "c"},
		{TenantID: "t", Table: "\x00m", Column: "c"},
		{TenantID: strings.Repeat("x", 200), Table: "m"},
	}
	seen := map[string]int{}
	for i, r := range rows {
		aad := string(r.AAD())
		if j, dup := seen[aad]; dup {
			t.Errorf("rows %d and %d share the AAD %x", j, i, aad)
		}
		seen[aad] = i
		if got := decodeAAD(t, []byte(aad)); !rowsEqual(got, r) {
			t.Errorf("row %d decodes as %+v", i, got)
		}
	}
	if !bytes.Equal(rows[4].AAD(), rows[4].AAD()) {
		t.Errorf("AAD is not deterministic")
	}
}

// rowsEqual compares two Rows, a nil Key equal to an empty one.
func rowsEqual(a, b envelope.Row) bool {
	return a.TenantID == b.TenantID && a.Table == b.Table && a.Column == b.Column && slices.Equal(a.Key, b.Key)
}

// FuzzRowAAD: whatever the fields, the AAD decodes back to them.
func FuzzRowAAD(f *testing.F) {
	f.Add("company-a", "messages", "content", "session", "12")
	f.Add("ab", "c", "", "", "")
	f.Add("a\x80", "\xff", "c,d", ":", strings.Repeat("k", 300))
	f.Fuzz(func(t *testing.T, tenant, table, column, key1, key2 string) {
		r := envelope.Row{TenantID: tenant, Table: table, Column: column, Key: []string{key1, key2}}
		if got := decodeAAD(t, r.AAD()); !rowsEqual(got, r) {
			t.Errorf("%+v decodes as %+v", r, got)
		}
	})
}
