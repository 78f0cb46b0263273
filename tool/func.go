package tool

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/invopop/jsonschema"
)

// FuncOption configures a tool built by NewFunc.
type FuncOption func(*funcOptions)

type funcOptions struct {
	timeout    time.Duration
	idempotent bool
}

// WithTimeout sets the tool's timeout, overriding the Executor's default.
func WithTimeout(d time.Duration) FuncOption {
	return func(o *funcOptions) { o.timeout = d }
}

// WithIdempotent marks the tool as safe to re-run after a crash.
func WithIdempotent() FuncOption {
	return func(o *funcOptions) { o.idempotent = true }
}

// NewFunc returns a Tool that decodes its input into In and calls fn.
//
// In must be a struct. Its input schema is generated from In: properties are
// named by `json` tags, fields without omitempty are required, unknown
// properties are rejected, and `jsonschema` tags add constraints, for example
// `jsonschema:"description=Path to read,minLength=1"` or
// `jsonschema:"enum=asc,enum=desc"`. NewFunc returns an error if In uses a
// schema keyword ToolSchema cannot express, such as anyOf or
// exclusiveMinimum.
//
// The returned tool implements TimeoutTool and IdempotentTool; see
// WithTimeout and WithIdempotent.
func NewFunc[In any](name, description string, fn func(ctx context.Context, in In) (string, error), opts ...FuncOption) (Tool, error) {
	if fn == nil {
		return nil, fmt.Errorf("tool: NewFunc %q: nil function", name)
	}
	schema, err := schemaFor[In]()
	if err != nil {
		return nil, fmt.Errorf("tool: NewFunc %q: %w", name, err)
	}
	t := &funcTool[In]{name: name, description: description, schema: schema, fn: fn}
	for _, opt := range opts {
		opt(&t.opts)
	}
	return t, nil
}

type funcTool[In any] struct {
	name        string
	description string
	schema      ToolSchema
	fn          func(context.Context, In) (string, error)
	opts        funcOptions
}

func (t *funcTool[In]) Name() string            { return t.name }
func (t *funcTool[In]) Description() string     { return t.description }
func (t *funcTool[In]) InputSchema() ToolSchema { return t.schema }
func (t *funcTool[In]) Timeout() time.Duration  { return t.opts.timeout }
func (t *funcTool[In]) Idempotent() bool        { return t.opts.idempotent }

// Execute decodes input into In, rejecting unknown properties, and calls the
// tool's function.
func (t *funcTool[In]) Execute(ctx context.Context, input json.RawMessage) (string, error) {
	var in In
	dec := json.NewDecoder(bytes.NewReader(input))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return "", fmt.Errorf("decoding input: %w", err)
	}
	return t.fn(ctx, in)
}

// schemaFor generates the input schema of In.
func schemaFor[In any]() (ToolSchema, error) {
	r := jsonschema.Reflector{
		Anonymous:      true,
		DoNotReference: true,
		ExpandedStruct: true,
	}
	raw, err := json.Marshal(r.Reflect(new(In)))
	if err != nil {
		return ToolSchema{}, err
	}
	var root map[string]any
	if err := json.Unmarshal(raw, &root); err != nil {
		return ToolSchema{}, err
	}
	if root["type"] != "object" {
		var in In
		return ToolSchema{}, fmt.Errorf("input type %T is not a struct", in)
	}
	if err := simplify(root, nil); err != nil {
		return ToolSchema{}, err
	}
	if raw, err = json.Marshal(root); err != nil {
		return ToolSchema{}, err
	}
	var schema ToolSchema
	err = json.Unmarshal(raw, &schema)
	return schema, err
}

// keywords are the JSON Schema keywords PropertyDef holds, plus annotations
// that constrain nothing and may be dropped.
var keywords = map[string]bool{
	"type": true, "description": true, "enum": true, "pattern": true,
	"format": true, "minimum": true, "maximum": true, "minLength": true,
	"maxLength": true, "minItems": true, "maxItems": true, "default": true,
	"items": true, "properties": true, "required": true,
	"additionalProperties": true,

	"$schema": true, "$id": true, "$comment": true, "title": true,
	"examples": true, "readOnly": true, "writeOnly": true, "deprecated": true,
	"contentEncoding": true, "contentMediaType": true,
}

// simplify rewrites the generated schema node at path, in place, into the
// subset of JSON Schema that PropertyDef can hold.
func simplify(node map[string]any, path []string) error {
	for kw, value := range node {
		switch {
		case !keywords[kw]:
			return fmt.Errorf("unsupported JSON Schema keyword %q at %s", kw, pointer(path))
		case kw == "items":
			items, err := simplifySub(value, slices.Concat(path, []string{kw}))
			if err != nil {
				return err
			}
			node[kw] = items
		case kw == "properties":
			props := value.(map[string]any)
			for name, sub := range props {
				prop, err := simplifySub(sub, slices.Concat(path, []string{kw, name}))
				if err != nil {
					return err
				}
				props[name] = prop
			}
		case kw == "additionalProperties":
			// A map's value schema cannot be expressed; decoding into the Go
			// type still checks the values.
			if _, ok := value.(bool); !ok {
				delete(node, kw)
			}
		}
	}
	return nil
}

// simplifySub simplifies a subschema. The generator writes the schema of
// types that accept any value, such as any and json.RawMessage, as true.
func simplifySub(schema any, path []string) (map[string]any, error) {
	if schema == true {
		return map[string]any{}, nil
	}
	node, ok := schema.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("unsupported schema %v at %s", schema, pointer(path))
	}
	return node, simplify(node, path)
}
