package redact

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
)

// NewHandler returns a slog.Handler that redacts records before passing
// them to next: the message, and every attribute value that is a string,
// an error, a fmt.Stringer, []byte, an integer, or any other value (read
// as JSON), in groups too and after LogValuer resolution. A value is read
// after its key, so slog.String("token", t) is redacted as a token even
// when t alone would not be recognised. A value with nothing to redact is
// passed as it was; one with something is passed as its redacted string
// (for a fmt.Stringer whose JSON holds something, its String). Keys and
// group names are not redacted.
func NewHandler(next slog.Handler) slog.Handler {
	return &handler{next: next}
}

type handler struct {
	next slog.Handler
}

func (h *handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, Redact(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	redacted := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		redacted[i] = redactAttr(a)
	}
	return &handler{next: h.next.WithAttrs(redacted)}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{next: h.next.WithGroup(name)}
}

// redactAttr returns a with its value redacted.
func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	var s string
	switch v.Kind() {
	case slog.KindGroup:
		attrs := v.Group()
		redacted := make([]slog.Attr, len(attrs))
		for i, g := range attrs {
			redacted[i] = redactAttr(g)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(redacted...)}
	case slog.KindString, slog.KindInt64, slog.KindUint64:
		s = v.String()
	case slog.KindAny:
		var hidden string
		s, hidden = anyText(v.Any())
		if hidden != "" && Find(a.Key+": "+hidden) != nil {
			// What a handler may show instead (a Stringer's JSON) holds
			// something: show the String, redacted.
			return slog.String(a.Key, redactFrom(a.Key+": "+s, len(a.Key)+2))
		}
	default: // bool, float, time, duration: nothing to find
		return slog.Attr{Key: a.Key, Value: v}
	}
	if r := redactFrom(a.Key+": "+s, len(a.Key)+2); r != s {
		return slog.String(a.Key, r)
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// anyText returns the text of a log value of kind Any: its Error, its
// String, its bytes, or its JSON. For a fmt.Stringer, hidden is its JSON,
// which a JSON handler shows instead of its String.
func anyText(v any) (text, hidden string) {
	switch v := v.(type) {
	case error:
		return v.Error(), ""
	case fmt.Stringer:
		b, _ := json.Marshal(v)
		return v.String(), string(b)
	case []byte:
		return string(v), ""
	}
	if b, err := json.Marshal(v); err == nil {
		return string(b), ""
	}
	return fmt.Sprint(v), ""
}
