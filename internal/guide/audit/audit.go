// Package audit is the audit log of the security guide's samples
// (docs/security.md): a stand-in for the one an application already has.
package audit

import (
	"sync"
	"time"
)

// Entry is one audited action.
type Entry struct {
	Timestamp time.Time
	UserID    string
	TenantID  string
	Action    string
	Tool      string
	Input     string
	Success   bool
}

// Log keeps entries in memory.
type Log struct {
	mu      sync.Mutex
	entries []Entry
}

// Record appends e.
func (l *Log) Record(e Entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, e)
}

// Entries returns the recorded entries.
func (l *Log) Entries() []Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Entry(nil), l.entries...)
}
