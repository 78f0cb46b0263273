package agentpg

import "strings"

// Context windows, in tokens.
const (
	DefaultContextWindow  = 200_000
	ExtendedContextWindow = 1_000_000
)

// extendedContextModels are the model name prefixes that offer the 1M-token
// context window, behind extendedContextBeta.
var extendedContextModels = []string{"claude-sonnet-4"}

// extendedContextBeta is the anthropic-beta header value that enables the
// 1M-token context window.
const extendedContextBeta = "context-1m-2025-08-07"

// ContextWindow returns the context window of model: ExtendedContextWindow
// when extended is set and the model offers it, else
// DefaultContextWindow, which every current Claude model has. Set
// Config.ContextWindow for a model with another window.
func ContextWindow(model string, extended bool) int {
	if extended && offersExtendedContext(model) {
		return ExtendedContextWindow
	}
	return DefaultContextWindow
}

func offersExtendedContext(model string) bool {
	for _, prefix := range extendedContextModels {
		if strings.HasPrefix(model, prefix) {
			return true
		}
	}
	return false
}
