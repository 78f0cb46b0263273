package compaction

import (
	"encoding/json"

	"github.com/anthropics/anthropic-sdk-go/v2"
)

// ImageTokens is the estimated cost of one image, whatever its size.
const ImageTokens = 1600

// bytesPerToken is the ratio of bytes to tokens assumed by the estimate.
const bytesPerToken = 4

// imageBytes is the size an image counts for: ImageTokens tokens.
const imageBytes = ImageTokens * bytesPerToken

// EstimateTokens estimates the tokens of a message's content without a
// model: one token per 4 bytes of each block's payload, rounded up, and at
// least 1 per block. The payload of a block is its text; its thinking and
// signature; the data of redacted thinking; the name and JSON-encoded input
// of a tool call; the content of a tool result (text, and for other parts
// their JSON encoding). Images, alone or in a tool result, count
// [ImageTokens] each; other blocks (documents, server tool blocks) count
// their whole JSON encoding. The framing of blocks (types, IDs, JSON syntax)
// is not counted. The estimate is deterministic.
func EstimateTokens(content []anthropic.ContentBlockParamUnion) int {
	n := 0
	for _, b := range content {
		n += max(1, (blockSize(b)+bytesPerToken-1)/bytesPerToken)
	}
	return n
}

// blockSize returns the size of the payload of b in bytes, an image
// counting imageBytes.
func blockSize(b anthropic.ContentBlockParamUnion) int {
	switch {
	case b.OfText != nil:
		return len(b.OfText.Text)
	case b.OfThinking != nil:
		return len(b.OfThinking.Thinking) + len(b.OfThinking.Signature)
	case b.OfRedactedThinking != nil:
		return len(b.OfRedactedThinking.Data)
	case b.OfToolUse != nil:
		return len(b.OfToolUse.Name) + encodedSize(b.OfToolUse.Input)
	case b.OfToolResult != nil:
		return resultSize(b.OfToolResult.Content)
	case b.OfImage != nil:
		return imageBytes
	default:
		return encodedSize(b)
	}
}

// resultSize returns the size of the content of a tool result in bytes, an
// image counting imageBytes.
func resultSize(content []anthropic.ToolResultBlockParamContentUnion) int {
	n := 0
	for _, c := range content {
		switch {
		case c.OfText != nil:
			n += len(c.OfText.Text)
		case c.OfImage != nil:
			n += imageBytes
		default:
			n += encodedSize(c)
		}
	}
	return n
}

// encodedSize returns the size of the JSON encoding of v, or 0 if v cannot
// be encoded.
func encodedSize(v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		return 0
	}
	return len(b)
}

// Size returns the tokens of msgs: the sum of their known Tokens, or of
// their estimates where unknown.
func Size(msgs []Message) int {
	n := 0
	for _, m := range msgs {
		n += m.tokens()
	}
	return n
}
