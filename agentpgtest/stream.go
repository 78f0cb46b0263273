package agentpgtest

import (
	"fmt"
	"net/http"
	"slices"
)

// maxChunk is the most characters a streamed delta carries.
const maxChunk = 8

// event is a server-sent event of a streamed reply. Its name is its Type.
type event struct {
	Type         string     `json:"type"`
	Message      *message   `json:"message,omitempty"`
	Index        *int       `json:"index,omitempty"`
	ContentBlock *Block     `json:"content_block,omitempty"`
	Delta        any        `json:"delta,omitempty"`
	Usage        *Usage     `json:"usage,omitempty"`
	Error        *errorInfo `json:"error,omitempty"`
}

// blockDelta is the delta of a content_block_delta event.
type blockDelta struct {
	Type        string `json:"type"`
	Text        string `json:"text,omitempty"`
	Thinking    string `json:"thinking,omitempty"`
	Signature   string `json:"signature,omitempty"`
	PartialJSON string `json:"partial_json,omitempty"`
}

// messageDelta is the delta of a message_delta event.
type messageDelta struct {
	StopReason   *string `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
}

// streamEvents returns the events that stream msg, as the API sends them.
func streamEvents(msg message) []event {
	start := msg
	start.Content = []Block{}
	start.StopReason = nil
	start.Usage.OutputTokens = 1
	events := []event{{Type: "message_start", Message: &start}, {Type: "ping"}}
	for i, b := range msg.Content {
		events = append(events, blockEvents(i, b)...)
	}
	return append(events,
		event{Type: "message_delta", Delta: messageDelta{StopReason: msg.StopReason}, Usage: &msg.Usage.Usage},
		event{Type: "message_stop"},
	)
}

// blockEvents returns the events that stream the block at index: its start
// with empty text, thinking or input, the deltas that fill them in, and its
// stop.
func blockEvents(index int, b Block) []event {
	start := b
	var deltas []blockDelta
	switch b.Type {
	case "text":
		start.Text = ""
		for _, c := range chunks(b.Text) {
			deltas = append(deltas, blockDelta{Type: "text_delta", Text: c})
		}
	case "thinking":
		start.Thinking, start.Signature = "", ""
		for _, c := range chunks(b.Thinking) {
			deltas = append(deltas, blockDelta{Type: "thinking_delta", Thinking: c})
		}
		if b.Signature != "" {
			deltas = append(deltas, blockDelta{Type: "signature_delta", Signature: b.Signature})
		}
	case "tool_use":
		start.Input = nil
		for _, c := range chunks(string(b.input())) {
			deltas = append(deltas, blockDelta{Type: "input_json_delta", PartialJSON: c})
		}
	}
	events := []event{{Type: "content_block_start", Index: &index, ContentBlock: &start}}
	for _, d := range deltas {
		events = append(events, event{Type: "content_block_delta", Index: &index, Delta: d})
	}
	return append(events, event{Type: "content_block_stop", Index: &index})
}

// chunks splits s into pieces of at most maxChunk characters, and into two
// at least when it has two characters or more, so that streams show several
// deltas.
func chunks(s string) []string {
	runes := []rune(s)
	size := max(1, min(maxChunk, (len(runes)+1)/2))
	var out []string
	for len(runes) > 0 {
		n := min(size, len(runes))
		out = append(out, string(runes[:n]))
		runes = runes[n:]
	}
	return out
}

// withStreamError returns events ended, after the first content delta, by an
// error event for e.
func withStreamError(events []event, e errorInfo) []event {
	n := 2 // message_start and ping
	if i := slices.IndexFunc(events, func(e event) bool { return e.Type == "content_block_delta" }); i >= 0 {
		n = i + 1
	}
	return append(events[:n:n], event{Type: "error", Error: &e})
}

// writeStream answers with events as a server-sent event stream. A positive
// cutAfter drops the connection after that many events.
func writeStream(w http.ResponseWriter, requestID string, events []event, cutAfter int) {
	if cutAfter > 0 {
		events = events[:min(cutAfter, len(events))]
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("request-id", requestID)
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for _, e := range events {
		data, err := marshal(e)
		if err != nil {
			panic(err) // unreachable: the reply's blocks were marshaled before
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e.Type, data); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
	}
	if cutAfter > 0 {
		cut(w)
	}
}

// cut closes the connection of w without ending the response, as a network
// failure would.
func cut(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // not HTTP/1: abort the response instead
	}
	conn.Close()
}
