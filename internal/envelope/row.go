package envelope

import "encoding/binary"

// Row is the identity of the place a sealed value is stored. Its AAD binds
// the value there: sealed for one Row, it opens for no other.
type Row struct {
	// TenantID owns the row.
	TenantID string
	// Table is the logical table. A value that moves between SQL tables
	// without changing meaning (a message that compaction moves to
	// message_archive) keeps one logical table, so it moves as ciphertext.
	Table string
	// Column names the value within the row, so that two sealed columns of
	// one row (a tool call's input and output) cannot be swapped.
	Column string
	// Key is the row's key within the tenant and table, such as the
	// session id and the message's sequence number in decimal.
	Key []string
}

// aadLabel is the first field of every AAD: the format of the encoding.
const aadLabel = "agentpg/row/v1"

// AAD returns the additional data that binds a sealed value to r: the
// label, TenantID, Table, Column and each part of Key, each preceded by its
// length as a uvarint. The encoding is injective, so no two Rows share an
// AAD: ("ab", "c") and ("a", "bc") differ, and so do Key ["x"] and
// ["x", ""].
func (r Row) AAD() []byte {
	fields := append([]string{aadLabel, r.TenantID, r.Table, r.Column}, r.Key...)
	size := 0
	for _, f := range fields {
		size += binary.MaxVarintLen64 + len(f)
	}
	aad := make([]byte, 0, size)
	for _, f := range fields {
		aad = binary.AppendUvarint(aad, uint64(len(f)))
		aad = append(aad, f...)
	}
	return aad
}
