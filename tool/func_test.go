package tool_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentpg/agentpg/tool"
)

type searchOptions struct {
	Depth         int  `json:"depth" jsonschema:"minimum=1,maximum=5"`
	CaseSensitive bool `json:"case_sensitive,omitempty"`
}

type searchInput struct {
	Query   string            `json:"query" jsonschema:"description=Text to search for,minLength=1,maxLength=100"`
	Order   string            `json:"order,omitempty" jsonschema:"enum=asc,enum=desc"`
	Dir     string            `json:"dir,omitempty" jsonschema:"pattern=^/"`
	Paths   []string          `json:"paths,omitempty" jsonschema:"minItems=1,maxItems=3"`
	Options searchOptions     `json:"options"`
	Labels  map[string]string `json:"labels,omitempty"`
	Extra   any               `json:"extra,omitempty"`
}

func ptr[T any](v T) *T { return &v }

func newSearch(t *testing.T, got *searchInput) tool.Tool {
	t.Helper()
	search, err := tool.NewFunc("search", "Searches files.", func(_ context.Context, in searchInput) (string, error) {
		*got = in
		return "found", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return search
}

func TestNewFuncSchema(t *testing.T) {
	t.Parallel()

	search := newSearch(t, new(searchInput))
	want := tool.ToolSchema{
		Type: "object",
		Properties: map[string]tool.PropertyDef{
			"query": {Type: "string", Description: "Text to search for", MinLength: ptr(1), MaxLength: ptr(100)},
			"order": {Type: "string", Enum: []any{"asc", "desc"}},
			"dir":   {Type: "string", Pattern: "^/"},
			"paths": {Type: "array", Items: &tool.PropertyDef{Type: "string"}, MinItems: ptr(1), MaxItems: ptr(3)},
			"options": {
				Type: "object",
				Properties: map[string]tool.PropertyDef{
					"depth":          {Type: "integer", Minimum: ptr(1.0), Maximum: ptr(5.0)},
					"case_sensitive": {Type: "boolean"},
				},
				Required:             []string{"depth"},
				AdditionalProperties: ptr(false),
			},
			"labels": {Type: "object"},
			"extra":  {},
		},
		Required:             []string{"query", "options"},
		AdditionalProperties: ptr(false),
	}
	if got := search.InputSchema(); !reflect.DeepEqual(got, want) {
		gotJSON, _ := json.MarshalIndent(got, "", "  ")
		wantJSON, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("InputSchema() =\n%s\nwant\n%s", gotJSON, wantJSON)
	}
	if _, err := tool.NewRegistry(search); err != nil {
		t.Errorf("the generated schema does not register: %v", err)
	}
}

func TestNewFuncDecodesInput(t *testing.T) {
	t.Parallel()

	var got searchInput
	exec := tool.NewExecutor(mustRegistry(t, newSearch(t, &got)))
	res := exec.Execute(t.Context(), []tool.Call{{
		Name:  "search",
		Input: json.RawMessage(`{"query": "needle", "order": "desc", "paths": ["/a"], "options": {"depth": 2}, "labels": {"k": "v"}}`),
	}})[0]
	if res.IsError || res.Output != "found" {
		t.Fatalf("Output = %q, Err = %v", res.Output, res.Err)
	}
	want := searchInput{
		Query:   "needle",
		Order:   "desc",
		Paths:   []string{"/a"},
		Options: searchOptions{Depth: 2},
		Labels:  map[string]string{"k": "v"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("fn received %+v, want %+v", got, want)
	}
}

func TestNewFuncRejectsUnknownKeys(t *testing.T) {
	t.Parallel()

	search := newSearch(t, new(searchInput))
	for _, input := range []string{
		`{"query": "q", "options": {"depth": 1}, "limit": 3}`,
		`{"query": "q", "options": {"depth": 1, "limit": 3}}`,
	} {
		err := mustRegistry(t, search).Validate("search", json.RawMessage(input))
		if err == nil || !strings.Contains(err.Error(), "additional properties 'limit' not allowed") {
			t.Errorf("Validate(%s) = %v, want the unknown key rejected", input, err)
		}
		// Execute rejects unknown keys even when called without validation.
		if _, err := search.Execute(t.Context(), json.RawMessage(input)); err == nil || !strings.Contains(err.Error(), `unknown field "limit"`) {
			t.Errorf("Execute(%s) error = %v, want unknown field", input, err)
		}
	}
}

func TestNewFuncOptions(t *testing.T) {
	t.Parallel()

	fn := func(context.Context, struct{}) (string, error) { return "", nil }
	plain, err := tool.NewFunc("plain", "", fn)
	if err != nil {
		t.Fatal(err)
	}
	if plain.(tool.TimeoutTool).Timeout() != 0 || plain.(tool.IdempotentTool).Idempotent() {
		t.Error("a tool without options has a timeout or is idempotent")
	}

	tuned, err := tool.NewFunc("tuned", "", fn, tool.WithTimeout(time.Minute), tool.WithIdempotent())
	if err != nil {
		t.Fatal(err)
	}
	if d := tuned.(tool.TimeoutTool).Timeout(); d != time.Minute {
		t.Errorf("Timeout() = %s, want 1m", d)
	}
	if !tuned.(tool.IdempotentTool).Idempotent() {
		t.Error("Idempotent() = false, want true")
	}
}

func TestNewFuncErrors(t *testing.T) {
	t.Parallel()

	type exclusive struct {
		Ratio float64 `json:"ratio" jsonschema:"exclusiveMinimum=0"`
	}
	type nested struct {
		Inner struct {
			Values []int `json:"values" jsonschema:"uniqueItems=true"`
		} `json:"inner"`
	}
	tests := []struct {
		name    string
		newTool func() (tool.Tool, error)
		wantErr string
	}{
		{"non-struct input", func() (tool.Tool, error) {
			return tool.NewFunc("t", "", func(context.Context, string) (string, error) { return "", nil })
		}, "input type string is not a struct"},
		{"nil function", func() (tool.Tool, error) {
			return tool.NewFunc[struct{}]("t", "", nil)
		}, "nil function"},
		{"unsupported keyword", func() (tool.Tool, error) {
			return tool.NewFunc("t", "", func(context.Context, exclusive) (string, error) { return "", nil })
		}, `unsupported JSON Schema keyword "exclusiveMinimum" at /properties/ratio`},
		{"nested unsupported keyword", func() (tool.Tool, error) {
			return tool.NewFunc("t", "", func(context.Context, nested) (string, error) { return "", nil })
		}, `unsupported JSON Schema keyword "uniqueItems" at /properties/inner/properties/values`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := tt.newTool()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewFuncReturnsFunctionError(t *testing.T) {
	t.Parallel()

	errDenied := errors.New("permission denied")
	deny, err := tool.NewFunc("deny", "", func(context.Context, struct{}) (string, error) { return "", errDenied })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := deny.Execute(t.Context(), json.RawMessage(`{}`)); !errors.Is(err, errDenied) {
		t.Errorf("Execute error = %v, want the function's error", err)
	}
}

func mustRegistry(t *testing.T, tools ...tool.Tool) *tool.Registry {
	t.Helper()
	reg, err := tool.NewRegistry(tools...)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}
