package agentpg

import "strings"

// Context windows, in tokens.
const (
	// DefaultContextWindow is the window of models the table does not
	// know, and of the Claude 4 models without the 1M option.
	DefaultContextWindow = 200_000
	// ExtendedContextWindow is the 1M-token window of the Claude 5 models,
	// and an option of some Claude 4 models.
	ExtendedContextWindow = 1_000_000
)

// contextWindows is what we know of each model family, by name prefix:
// its window, and its window with ExtendedContext (0: no such option).
var contextWindows = []struct {
	prefix           string
	window, extended int
}{
	// Claude 5: a 1M-token window, with no beta header to ask for it.
	{"claude-sonnet-5", ExtendedContextWindow, 0},
	{"claude-opus-5", ExtendedContextWindow, 0},
	{"claude-haiku-5", ExtendedContextWindow, 0},
	{"claude-fable-5", ExtendedContextWindow, 0},
	{"claude-mythos-5", ExtendedContextWindow, 0},
	{"claude-sonnet-4", DefaultContextWindow, ExtendedContextWindow},
	{"claude-opus-4", DefaultContextWindow, 0},
	{"claude-haiku-4", DefaultContextWindow, 0},
	{"claude-3", DefaultContextWindow, 0},
}

// extendedContextBeta is the anthropic-beta header value that enables the
// 1M-token context window.
const extendedContextBeta = "context-1m-2025-08-07"

// ContextWindow returns the context window of model, in tokens: with
// extended, the 1M-token window where the model offers it as an option. A
// model the table does not know gets DefaultContextWindow; set
// Config.ContextWindow for one with another window.
func ContextWindow(model string, extended bool) int {
	window, _ := contextWindow(model, extended)
	return window
}

// contextWindow is ContextWindow, also reporting whether the table knows
// the model.
func contextWindow(model string, extended bool) (window int, known bool) {
	for _, m := range contextWindows {
		if strings.HasPrefix(model, m.prefix) {
			if extended && m.extended > 0 {
				return m.extended, true
			}
			return m.window, true
		}
	}
	return DefaultContextWindow, false
}

// offersExtendedContext reports whether model has the 1M-token option,
// asked for with a beta header.
func offersExtendedContext(model string) bool {
	for _, m := range contextWindows {
		if strings.HasPrefix(model, m.prefix) {
			return m.extended > 0
		}
	}
	return false
}

// warnUnknownModel logs, once per model and Agent, that the context-window
// table does not know model, unless Config.ContextWindow says its window.
func (a *Agent) warnUnknownModel(model string) {
	if a.cfg.ContextWindow > 0 {
		return
	}
	if _, known := contextWindow(model, false); known {
		return
	}
	if _, warned := a.unknownModels.LoadOrStore(model, true); !warned {
		a.cfg.Logger.Warn("model not in AgentPG's context-window table; assuming the default window, set Config.ContextWindow to override",
			"model", model, "context_window", DefaultContextWindow)
	}
}
