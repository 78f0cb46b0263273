package agentpg

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Page sizes of listings.
const (
	// DefaultPageSize is the page size of a ListOptions with no Limit.
	DefaultPageSize = 100
	// MaxPageSize is the largest Limit a listing accepts.
	MaxPageSize = 1000
)

// ListOptions select a page of a listing. Listings are keyset-paged: a
// page costs the same however far into a long listing it is.
type ListOptions struct {
	// After is the Next cursor of the previous page; "" starts at the
	// beginning. Cursors are opaque and belong to one kind of listing.
	After string
	// Limit is the most items a page holds: 0 means DefaultPageSize; above
	// MaxPageSize is ErrInvalidArgument.
	Limit int
}

// Page is one page of a listing.
type Page[T any] struct {
	Items []T
	// Next is the cursor of the following page, to pass as
	// ListOptions.After; "" when this page is the last.
	Next string
}

// limit validates the page size and returns how many rows to read: one
// more than the page holds, to tell whether another page follows.
func (o ListOptions) limit() (int, error) {
	switch {
	case o.Limit == 0:
		return DefaultPageSize + 1, nil
	case o.Limit < 0 || o.Limit > MaxPageSize:
		return 0, fmt.Errorf("agentpg: %w: ListOptions.Limit must be between 1 and %d, got %d", ErrInvalidArgument, MaxPageSize, o.Limit)
	}
	return o.Limit + 1, nil
}

// pageOf returns the page of items, read with a limit from
// ListOptions.limit, and the cursor after its last item.
func pageOf[T any](items []T, limit int, cursor func(T) string) Page[T] {
	if len(items) < limit {
		return Page[T]{Items: items}
	}
	items = items[:limit-1]
	return Page[T]{Items: items, Next: cursor(items[len(items)-1])}
}

// badCursor is the error of a cursor that no listing of this kind made.
func badCursor(cursor string) error {
	return fmt.Errorf("agentpg: %w: ListOptions.After %q is not a cursor of this listing", ErrInvalidArgument, cursor)
}

// seqCursor encodes a position in a session's sequence of messages.
func seqCursor(seq int64) string { return strconv.FormatInt(seq, 10) }

func parseSeqCursor(cursor string) (int64, error) {
	if cursor == "" {
		return 0, nil
	}
	seq, err := strconv.ParseInt(cursor, 10, 64)
	if err != nil || seq < 0 {
		return 0, badCursor(cursor)
	}
	return seq, nil
}

// idCursor is an id as a cursor; parseIDCursor returns nil for "".
func parseIDCursor(cursor string) (*string, error) {
	if cursor == "" {
		return nil, nil
	}
	if !validID(cursor) {
		return nil, badCursor(cursor)
	}
	return &cursor, nil
}

// pairCursor joins two keys of a position; splitCursor parses it with
// parseFirst, the second key being an id.
func pairCursor(first, id string) string { return first + "/" + id }

func splitCursor(cursor string) (first string, id *string, err error) {
	if cursor == "" {
		return "", nil, nil
	}
	first, second, ok := strings.Cut(cursor, "/")
	if !ok || !validID(second) {
		return "", nil, badCursor(cursor)
	}
	return first, &second, nil
}

// timeCursor and parseTimeCursor encode a time exactly, to the
// microsecond PostgreSQL keeps.
func timeCursor(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func parseTimeCursor(s string) (time.Time, error) { return time.Parse(time.RFC3339Nano, s) }
