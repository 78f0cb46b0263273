package tool

import (
	"context"
	"encoding/json"
	"time"
)

// Tool is a capability offered to the model. Execute receives the model's
// input only after it has been validated against InputSchema.
type Tool interface {
	// Name is the identifier the model calls the tool by. It must match
	// ^[a-zA-Z0-9_-]{1,64}$ and be unique within a Registry.
	Name() string
	// Description tells the model what the tool does and when to use it.
	Description() string
	// InputSchema describes the JSON object the tool accepts.
	InputSchema() ToolSchema
	// Execute runs the tool. A returned error is reported to the model as an
	// error tool_result; it does not stop the run.
	Execute(ctx context.Context, input json.RawMessage) (string, error)
}

// TimeoutTool is implemented by tools that need a timeout other than the
// Executor's default.
type TimeoutTool interface {
	Tool
	Timeout() time.Duration
}

// IdempotentTool is implemented by tools whose effects may safely be repeated.
// A call interrupted by a crash is re-run on resume only for such tools.
type IdempotentTool interface {
	Tool
	Idempotent() bool
}

// ToolSchema is the JSON Schema of a tool's input. Type is "object" (the
// empty string is treated as "object").
type ToolSchema struct {
	Type        string                 `json:"type"`
	Description string                 `json:"description,omitempty"`
	Properties  map[string]PropertyDef `json:"properties,omitempty"`
	Required    []string               `json:"required,omitempty"`
	// AdditionalProperties, when non-nil, says whether keys not listed in
	// Properties are accepted.
	AdditionalProperties *bool `json:"additionalProperties,omitempty"`
}

// PropertyDef is the JSON Schema of one property.
type PropertyDef struct {
	Type        string   `json:"type,omitempty"`
	Description string   `json:"description,omitempty"`
	Enum        []any    `json:"enum,omitempty"`
	Pattern     string   `json:"pattern,omitempty"`
	Format      string   `json:"format,omitempty"`
	Minimum     *float64 `json:"minimum,omitempty"`
	Maximum     *float64 `json:"maximum,omitempty"`
	MinLength   *int     `json:"minLength,omitempty"`
	MaxLength   *int     `json:"maxLength,omitempty"`
	MinItems    *int     `json:"minItems,omitempty"`
	MaxItems    *int     `json:"maxItems,omitempty"`
	Default     any      `json:"default,omitempty"`
	// Items is the schema of each element when Type is "array".
	Items *PropertyDef `json:"items,omitempty"`
	// Properties and Required describe a nested object when Type is "object".
	Properties           map[string]PropertyDef `json:"properties,omitempty"`
	Required             []string               `json:"required,omitempty"`
	AdditionalProperties *bool                  `json:"additionalProperties,omitempty"`
}
