package redact

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrPIIDetected is wrapped by the error of a [BlockPII] hook that finds
// sensitive data. Branch on it with errors.Is; the error is a
// [*DetectedError].
var ErrPIIDetected = errors.New("redact: PII detected")

// ErrUnknownKind is returned by a [BlockPII] hook given a kind that is not
// one of [Kinds]. The hook then refuses every message rather than let a
// misspelt kind through.
var ErrUnknownKind = errors.New("redact: unknown kind")

// DetectedError is the error of a [BlockPII] hook that finds sensitive
// data. It names the kinds found, never the text. errors.Is(err,
// ErrPIIDetected) holds.
type DetectedError struct {
	Message int      // the index of the first message found holding blocked kinds
	Kinds   []string // the blocked kinds found in it, in the order of Kinds
}

// Error names the kinds and the message, as in "redact: PII detected
// (email, card) in message 3".
func (e *DetectedError) Error() string {
	return fmt.Sprintf("%v (%s) in message %d", ErrPIIDetected, strings.Join(e.Kinds, ", "), e.Message)
}

// Is reports whether target is ErrPIIDetected.
func (e *DetectedError) Is(target error) bool { return target == ErrPIIDetected }

// BlockPII returns an OnBeforeMessage hook that refuses the messages about
// to be sent when any of them holds data of the given kinds, every kind
// when none is given:
//
//	agent.OnBeforeMessage(redact.BlockPII())
//	agent.OnBeforeMessage(redact.BlockPII(redact.KindCard, redact.KindSecret))
//
// The hook returns a [*DetectedError], which wraps [ErrPIIDetected] and
// names the kinds found, never the text. It reads each message as text:
// a string or []byte as it is; json.RawMessage and any other value (such
// as agentpg.Message) as JSON, each string and number on a line after its
// key, so that a tool input {"api_key": "..."} reads "api_key: ..."; a
// fmt.Stringer both by its String and as JSON. The opaque parts of the Messages API are skipped:
// base64 image and document data, thinking signatures, redacted
// thinking. A message that cannot be read is refused with an error.
//
// The hook sees the whole conversation before every model call, so a
// tool result holding such data stops the run before the model sees it.
func BlockPII(kinds ...string) func(ctx context.Context, messages []any) error {
	blocked, err := kindSet(kinds)
	return func(ctx context.Context, messages []any) error {
		if err != nil {
			return err
		}
		for i, m := range messages {
			if err := ctx.Err(); err != nil {
				return err
			}
			text, err := messageText(m)
			if err != nil {
				return fmt.Errorf("redact: reading message %d: %w", i, err)
			}
			if found := kindsIn(text, blocked); len(found) > 0 {
				return &DetectedError{Message: i, Kinds: found}
			}
		}
		return nil
	}
}

// kindSet returns the set of kinds, all of them for none.
func kindSet(kinds []string) (map[string]bool, error) {
	if len(kinds) == 0 {
		kinds = Kinds()
	}
	set := map[string]bool{}
	for _, k := range kinds {
		if !slices.Contains(Kinds(), k) {
			return nil, fmt.Errorf("%w %q", ErrUnknownKind, k)
		}
		set[k] = true
	}
	return set, nil
}

// kindsIn returns the kinds of set found in text, in the order of Kinds.
func kindsIn(text string, set map[string]bool) []string {
	seen := map[string]bool{}
	for _, f := range Find(text) {
		seen[f.Kind] = set[f.Kind]
	}
	var found []string
	for _, k := range Kinds() {
		if seen[k] {
			found = append(found, k)
		}
	}
	return found
}

// messageText returns the text of a message to scan.
func messageText(m any) (string, error) {
	switch m := m.(type) {
	case string:
		return m, nil
	case []byte:
		return string(m), nil
	case json.RawMessage:
		if !json.Valid(m) {
			return string(m), nil
		}
		return jsonText(m)
	}
	var text string
	b, err := json.Marshal(m)
	if err == nil {
		text, err = jsonText(b)
	}
	if s, ok := m.(fmt.Stringer); ok {
		// Its String may leave fields out, and its JSON unexported
		// fields: read both, and need only one.
		return s.String() + "\n" + text, nil
	}
	return text, err
}

// jsonText renders a JSON document as lines "key: value", one for each
// string and number, in key order, leaving out opaque data.
func jsonText(doc []byte) (string, error) {
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return "", err
	}
	var b strings.Builder
	writeJSONText(&b, "", v)
	return b.String(), nil
}

func writeJSONText(b *strings.Builder, key string, v any) {
	switch v := v.(type) {
	case string, json.Number:
		fmt.Fprintf(b, "%s: %s\n", key, v)
	case []any:
		for _, e := range v {
			writeJSONText(b, key, e)
		}
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			if !opaque(v, k) {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			writeJSONText(b, k, v[k])
		}
	}
}

// opaque reports whether field k of the Messages API object o holds
// opaque data rather than text: the data of a base64 source or of a
// redacted thinking block, the signature of a thinking block.
func opaque(o map[string]any, k string) bool {
	switch o["type"] {
	case "base64", "redacted_thinking":
		return k == "data"
	case "thinking":
		return k == "signature"
	}
	return false
}
