package agentpg

import "strings"

// Context windows, in tokens.
const (
	// DefaultContextWindow is the window of models the table does not
	// know, and of every current Claude model without the 1M option.
	DefaultContextWindow = 200_000
	// ExtendedContextWindow is the 1M-token window some models offer.
	ExtendedContextWindow = 1_000_000
)

// contextWindows is what we know of each model family, by name prefix:
// its window, and its window with ExtendedContext (0: no such option).
var contextWindows = []struct {
	prefix           string
	window, extended int
}{
	{"claude-sonnet-4", DefaultContextWindow, ExtendedContextWindow},
	{"claude-opus-4", DefaultContextWindow, 0},
	{"claude-haiku-4", DefaultContextWindow, 0},
	{"claude-3", DefaultContextWindow, 0},
}

// extendedContextBeta is the anthropic-beta header value that enables the
// 1M-token context window.
const extendedContextBeta = "context-1m-2025-08-07"

// ContextWindow returns the context window of model, in tokens: with
// extended, the 1M-token window where the model offers it. A model the
// table does not know gets DefaultContextWindow; set Config.ContextWindow
// for one with another window.
func ContextWindow(model string, extended bool) int {
	for _, m := range contextWindows {
		if strings.HasPrefix(model, m.prefix) {
			if extended && m.extended > 0 {
				return m.extended
			}
			return m.window
		}
	}
	return DefaultContextWindow
}

// offersExtendedContext reports whether model has the 1M-token option.
func offersExtendedContext(model string) bool {
	return ContextWindow(model, true) == ExtendedContextWindow
}
