package agentpgtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"unicode/utf8"
)

// segment is a piece of a request's prompt that may carry a cache
// breakpoint: a tool definition, a system block or a message block.
type segment struct {
	kind       string // "tool", "system", or the role of the block's message
	raw        json.RawMessage
	breakpoint bool
}

// segments returns the request's prompt in the order the API caches it:
// tools, then system, then messages.
func (w *wireRequest) segments() []segment {
	var segs []segment
	for _, t := range w.Tools {
		segs = append(segs, segment{"tool", t.raw, isSet(t.CacheControl)})
	}
	for _, b := range w.System {
		segs = append(segs, segment{"system", b.Raw, b.CacheControl})
	}
	for _, m := range w.Messages {
		for _, b := range m.Content {
			segs = append(segs, segment{m.Role, b.Raw, b.CacheControl})
		}
	}
	return segs
}

// breakpoints counts the request's cache breakpoints, the top-level
// cache_control included.
func (w *wireRequest) breakpoints() int {
	n := 0
	if isSet(w.CacheControl) {
		n++
	}
	for _, s := range w.segments() {
		if s.breakpoint {
			n++
		}
	}
	return n
}

// prompt returns the request's segments with the top-level cache_control,
// if any, set on the last one, as the API's automatic caching does.
func (w *wireRequest) prompt() []segment {
	segs := w.segments()
	if isSet(w.CacheControl) && len(segs) > 0 {
		segs[len(segs)-1].breakpoint = true
	}
	return segs
}

// prefix is the part of a prompt that ends with a given segment.
type prefix struct {
	hash   [sha256.Size]byte // of the canonical segments
	tokens int64
}

// prefixes returns the prefix that ends at each segment. The cache_control
// markers do not count, so that moving a breakpoint leaves what comes before
// it cached, as it does with the API.
func prefixes(segs []segment) []prefix {
	h := sha256.New()
	size := 0
	out := make([]prefix, len(segs))
	for i, s := range segs {
		c := canonical(s.raw)
		h.Write([]byte(s.kind))
		h.Write(c)
		size += len(c)
		out[i] = prefix{hash: [sha256.Size]byte(h.Sum(nil)), tokens: tokens(size)}
	}
	return out
}

// canonical returns raw with its keys sorted and its cache_control removed.
func canonical(raw json.RawMessage) []byte {
	var v map[string]any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if d.Decode(&v) != nil {
		return raw
	}
	delete(v, "cache_control")
	c, err := json.Marshal(v)
	if err != nil {
		return raw
	}
	return c
}

// inputTokens estimates the input tokens of a prompt.
func inputTokens(segs []segment) int64 {
	if len(segs) == 0 {
		return 0
	}
	return prefixes(segs)[len(segs)-1].tokens
}

// promptCache holds the prefixes cached by earlier requests.
type promptCache map[[sha256.Size]byte]bool

// usage returns the input side of the usage of a request for segs. The
// longest prefix, up to the last breakpoint, that an earlier request cached
// is read from the cache, the rest up to the last breakpoint is written to
// it, and the prefix ending at each breakpoint is cached for later requests.
func (c promptCache) usage(segs []segment) Usage {
	if len(segs) == 0 {
		return Usage{}
	}
	pre := prefixes(segs)
	total := pre[len(pre)-1].tokens
	last := -1
	for i, s := range segs {
		if s.breakpoint {
			last = i
		}
	}
	if last < 0 {
		return Usage{InputTokens: total}
	}
	var read int64
	for i := last; i >= 0; i-- {
		if c[pre[i].hash] {
			read = pre[i].tokens
			break
		}
	}
	for i, s := range segs {
		if s.breakpoint {
			c[pre[i].hash] = true
		}
	}
	return Usage{
		InputTokens:              total - pre[last].tokens,
		CacheCreationInputTokens: pre[last].tokens - read,
		CacheReadInputTokens:     read,
	}
}

// tokens estimates the tokens of n bytes or characters: one per four.
func tokens(n int) int64 {
	return int64(n+3) / 4
}

// outputTokens estimates the output tokens of content: one per four
// characters, at least one.
func outputTokens(content []Block) int64 {
	n := 0
	for _, b := range content {
		n += utf8.RuneCountInString(b.Text) + utf8.RuneCountInString(b.Thinking) +
			utf8.RuneCountInString(b.Data) + utf8.RuneCountInString(b.Name) + utf8.RuneCount(b.Input)
	}
	return max(1, tokens(n))
}
