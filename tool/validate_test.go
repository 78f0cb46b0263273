package tool

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// validationSchema exercises every PropertyDef constraint.
var validationSchema = ToolSchema{
	Type: "object",
	Properties: map[string]PropertyDef{
		"path":  {Type: "string", Pattern: "^/", MinLength: ptr(2), MaxLength: ptr(10)},
		"mode":  {Type: "string", Enum: []any{"r", "w"}},
		"count": {Type: "integer", Minimum: ptr(1.0), Maximum: ptr(10.0)},
		"options": {
			Type:                 "object",
			Properties:           map[string]PropertyDef{"depth": {Type: "integer"}},
			Required:             []string{"depth"},
			AdditionalProperties: ptr(false),
		},
		"tags": {Type: "array", Items: &PropertyDef{Type: "string"}, MinItems: ptr(1), MaxItems: ptr(2)},
	},
	Required:             []string{"path"},
	AdditionalProperties: ptr(false),
}

func newValidationRegistry(t *testing.T) *Registry {
	t.Helper()
	reg, err := NewRegistry(&fakeTool{name: "files", schema: validationSchema})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestValidate(t *testing.T) {
	t.Parallel()

	reg := newValidationRegistry(t)
	tests := []struct {
		name  string
		input string
		want  []string // each must appear in some violation; nil means valid
	}{
		{"valid", `{"path": "/a", "mode": "r", "count": 3, "options": {"depth": 1}, "tags": ["x"]}`, nil},
		{"missing required", `{}`, []string{"at (root): missing property 'path'"}},
		{"wrong type", `{"path": 42}`, []string{"at /path: got number, want string"}},
		{"integer", `{"path": "/a", "count": 1.5}`, []string{"at /count: got number, want integer"}},
		{"enum miss", `{"path": "/a", "mode": "x"}`, []string{"at /mode: value must be one of 'r', 'w'"}},
		{"pattern miss", `{"path": "ab"}`, []string{"at /path: 'ab' does not match pattern '^/'"}},
		{"minimum", `{"path": "/a", "count": 0}`, []string{"at /count: minimum: got 0, want 1"}},
		{"maximum", `{"path": "/a", "count": 11}`, []string{"at /count: maximum: got 11, want 10"}},
		{"minLength", `{"path": "/"}`, []string{"at /path: minLength: got 1, want 2"}},
		{"maxLength", `{"path": "/abcdefghij"}`, []string{"at /path: maxLength: got 11, want 10"}},
		{"nested required", `{"path": "/a", "options": {}}`, []string{"at /options: missing property 'depth'"}},
		{"nested type", `{"path": "/a", "options": {"depth": "deep"}}`, []string{"at /options/depth: got string, want integer"}},
		{"array item", `{"path": "/a", "tags": ["ok", 7]}`, []string{"at /tags/1: got number, want string"}},
		{"minItems", `{"path": "/a", "tags": []}`, []string{"at /tags: minItems: got 0, want 1"}},
		{"maxItems", `{"path": "/a", "tags": ["a", "b", "c"]}`, []string{"at /tags: maxItems: got 3, want 2"}},
		{"additional property", `{"path": "/a", "extra": 1}`, []string{"at (root): additional properties 'extra' not allowed"}},
		{"nested additional property", `{"path": "/a", "options": {"depth": 1, "x": 2}}`, []string{"at /options: additional properties 'x' not allowed"}},
		{"several violations", `{"mode": "x", "count": "3"}`, []string{
			"at (root): missing property 'path'",
			"at /mode: value must be one of",
			"at /count: got string, want integer",
		}},
		{"array input", `["/a"]`, []string{"at (root): got array, want object"}},
		{"string input", `"/a"`, []string{"at (root): got string, want object"}},
		{"null input", `null`, []string{"at (root): got null, want object"}},
		{"invalid JSON", `{"path": `, []string{"invalid JSON"}},
		{"trailing data", `{"path": "/a"} {}`, []string{"invalid JSON"}},
		{"empty input", ``, []string{"invalid JSON"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := reg.Validate("files", json.RawMessage(tt.input))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate(%s) = %v, want nil", tt.input, err)
				}
				return
			}
			var verr *ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("Validate(%s) = %v, want *ValidationError", tt.input, err)
			}
			violations := verr.Violations()
			if len(violations) != len(tt.want) {
				t.Errorf("got %d violations, want %d:\n%s", len(violations), len(tt.want), err)
			}
			for _, want := range tt.want {
				if !slices.ContainsFunc(violations, func(v string) bool { return strings.Contains(v, want) }) {
					t.Errorf("no violation contains %q:\n%s", want, err)
				}
			}
		})
	}
}

func TestValidationErrorMessage(t *testing.T) {
	t.Parallel()

	reg := newValidationRegistry(t)
	err := reg.Validate("files", json.RawMessage(`{"mode": "x"}`))
	want := "input does not match schema:\n" +
		"- at (root): missing property 'path'\n" +
		"- at /mode: value must be one of 'r', 'w'"
	if err == nil || err.Error() != want {
		t.Errorf("Error() = %q, want %q", err, want)
	}
}

func TestValidateTruncatesEchoedValues(t *testing.T) {
	t.Parallel()

	reg := newValidationRegistry(t)
	long := strings.Repeat("é", 10_000)
	err := reg.Validate("files", json.RawMessage(`{"path": "`+long+`", "`+long+`": 1}`))
	if err == nil {
		t.Fatal("Validate accepted an invalid input")
	}
	if len(err.Error()) > 2_000 {
		t.Errorf("error is %d bytes long; echoed values are not truncated", len(err.Error()))
	}
	if !strings.Contains(err.Error(), "does not match pattern '^/'") {
		t.Errorf("truncation hid the pattern:\n%s", err)
	}
}

func TestValidateOversizedInput(t *testing.T) {
	t.Parallel()

	reg := newValidationRegistry(t)
	input := json.RawMessage(`{"path": "/` + strings.Repeat("a", DefaultMaxInputBytes) + `"}`)
	err := reg.Validate("files", input)
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("Validate(oversized) = %v, want *ValidationError", err)
	}
	if !strings.Contains(err.Error(), "exceeding the limit of 1048576 bytes") {
		t.Errorf("error %q does not state the limit", err)
	}

	valid := json.RawMessage(`{"path": "/abc"}`)
	reg.SetMaxInputBytes(len(valid))
	if err := reg.Validate("files", valid); err != nil {
		t.Errorf("Validate at the limit = %v, want nil", err)
	}
	if err := reg.Validate("files", append(valid, ' ')); !errors.As(err, &verr) {
		t.Errorf("Validate one byte over the limit = %v, want *ValidationError", err)
	}
}
