package tool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Errors returned by Registry, wrapped with context. Use errors.Is to test
// for them.
var (
	// ErrInvalidToolName means a tool's name does not match
	// ^[a-zA-Z0-9_-]{1,64}$, the rule the Messages API enforces.
	ErrInvalidToolName = errors.New("invalid tool name")
	// ErrDuplicateTool means a tool with the same name is already registered.
	ErrDuplicateTool = errors.New("duplicate tool name")
	// ErrInvalidSchema means a tool's input schema is not an object schema
	// or is not a valid JSON Schema.
	ErrInvalidSchema = errors.New("invalid input schema")
	// ErrUnknownTool means no tool with the requested name is registered.
	ErrUnknownTool = errors.New("unknown tool")
)

var validName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// Registry is the set of tools offered to the model. Each tool's input schema
// is compiled once, when the tool is registered. A Registry is safe for
// concurrent use.
type Registry struct {
	mu     sync.RWMutex
	tools  []Tool
	byName map[string]registered

	maxInputBytes atomic.Int64
}

// registered is a tool together with its compiled input schema.
type registered struct {
	tool   Tool
	schema *jsonschema.Schema
}

// isNil reports whether t is nil, or holds a nil pointer, map, slice,
// channel or function, whose methods would panic.
func isNil(t Tool) bool {
	if t == nil {
		return true
	}
	switch v := reflect.ValueOf(t); v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Chan, reflect.Func, reflect.Interface:
		return v.IsNil()
	}
	return false
}

// NewRegistry returns a Registry holding tools, registered in order. It fails
// on the first tool Register rejects.
func NewRegistry(tools ...Tool) (*Registry, error) {
	r := &Registry{byName: make(map[string]registered, len(tools))}
	r.maxInputBytes.Store(DefaultMaxInputBytes)
	for _, t := range tools {
		if err := r.Register(t); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Register adds t to the registry. It returns an error wrapping
// ErrInvalidToolName, ErrDuplicateTool or ErrInvalidSchema if t cannot be
// offered to the model.
//
// A tool whose methods panic while it is registered is refused with an
// error, as is a nil tool, typed or not.
func (r *Registry) Register(t Tool) (err error) {
	if isNil(t) {
		return fmt.Errorf("tool: registering a nil tool (%T)", t)
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("tool: registering %T: its methods panicked: %v", t, p)
		}
	}()
	name := t.Name()
	if !validName.MatchString(name) {
		return fmt.Errorf("tool: registering %q: %w: must match %s", name, ErrInvalidToolName, validName)
	}
	schema, err := compileSchema(t.InputSchema())
	if err != nil {
		return fmt.Errorf("tool: registering %q: %w: %w", name, ErrInvalidSchema, err)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.byName[name]; ok {
		return fmt.Errorf("tool: registering %q: %w", name, ErrDuplicateTool)
	}
	r.tools = append(r.tools, t)
	r.byName[name] = registered{tool: t, schema: schema}
	return nil
}

// Get returns the tool registered under name.
func (r *Registry) Get(name string) (Tool, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	reg, ok := r.byName[name]
	return reg.tool, ok
}

// Tools returns the registered tools in registration order.
func (r *Registry) Tools() []Tool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]Tool(nil), r.tools...)
}

// Len returns the number of registered tools.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.tools)
}

// lookup returns the tool registered under name, or an error wrapping
// ErrUnknownTool that lists the available tools so a model can correct
// itself.
func (r *Registry) lookup(name string) (registered, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if reg, ok := r.byName[name]; ok {
		return reg, nil
	}
	names := make([]string, len(r.tools))
	for i, t := range r.tools {
		names[i] = t.Name()
	}
	return registered{}, fmt.Errorf("%w %q; available tools: %s",
		ErrUnknownTool, truncate(name, maxEchoBytes), strings.Join(names, ", "))
}

// compileSchema compiles s as a draft 2020-12 JSON Schema.
func compileSchema(s ToolSchema) (*jsonschema.Schema, error) {
	switch s.Type {
	case "":
		s.Type = "object"
	case "object":
	default:
		return nil, fmt.Errorf("type is %q, want \"object\"", s.Type)
	}
	raw, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}

	const url = "mem:///input-schema.json"
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(url, doc); err != nil {
		return nil, err
	}
	return c.Compile(url)
}
