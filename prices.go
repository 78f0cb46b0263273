package agentpg

import (
	"maps"
	"strings"
)

// ModelPrice is what a model's tokens cost, in US dollars per million
// tokens.
type ModelPrice struct {
	Input  float64
	Output float64
	// CacheRead and CacheWrite are the prices of prompt-cache reads and
	// writes (5-minute cache writes).
	CacheRead  float64
	CacheWrite float64
}

// Cost returns what usage costs at this price, in US dollars.
func (p ModelPrice) Cost(u Usage) float64 {
	return (float64(u.InputTokens)*p.Input + float64(u.OutputTokens)*p.Output +
		float64(u.CacheReadInputTokens)*p.CacheRead + float64(u.CacheCreationInputTokens)*p.CacheWrite) / 1e6
}

// listPrice is the price of a model with the API's usual cache
// multipliers: reads at a tenth of the input price, writes at 1.25 times.
func listPrice(input, output float64) ModelPrice {
	return ModelPrice{Input: input, Output: output, CacheRead: input / 10, CacheWrite: input * 1.25}
}

// DefaultPrices are the prices Agent.TenantUsage uses for models that
// Config.Prices does not name, by model name prefix. They are list prices
// as of 2026-12, for reporting only: check them against your contract and
// override them with Config.Prices. Models none of them prefixes (such as
// claude-fable-5 and claude-mythos-5) have no price.
func DefaultPrices() map[string]ModelPrice {
	return map[string]ModelPrice{
		"claude-opus-5":     listPrice(5, 25),
		"claude-sonnet-5":   listPrice(3, 15),
		"claude-haiku-5":    listPrice(1, 5),
		"claude-opus-4-5":   listPrice(5, 25),
		"claude-opus-4":     listPrice(15, 75),
		"claude-sonnet-4":   listPrice(3, 15),
		"claude-haiku-4":    listPrice(1, 5),
		"claude-3-7-sonnet": listPrice(3, 15),
		"claude-3-5-haiku":  listPrice(0.8, 4),
		"claude-3-haiku":    listPrice(0.25, 1.25),
		"claude-3-opus":     listPrice(15, 75),
	}
}

// prices returns DefaultPrices with Config.Prices over them.
func (c Config) prices() map[string]ModelPrice {
	prices := DefaultPrices()
	maps.Copy(prices, c.Prices)
	return prices
}

// priceOf returns the price of model in prices: that of the longest key
// that prefixes the model's name.
func priceOf(prices map[string]ModelPrice, model string) (ModelPrice, bool) {
	var best string
	found := false
	for key := range prices {
		if strings.HasPrefix(model, key) && (!found || len(key) > len(best)) {
			best, found = key, true
		}
	}
	return prices[best], found
}
