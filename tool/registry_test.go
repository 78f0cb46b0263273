package tool

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestRegisterName(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		tool    string
		wantErr error
	}{
		{"letters digits dash underscore", "read_file-2", nil},
		{"64 chars", strings.Repeat("a", 64), nil},
		{"empty", "", ErrInvalidToolName},
		{"65 chars", strings.Repeat("a", 65), ErrInvalidToolName},
		{"space", "read file", ErrInvalidToolName},
		{"dot", "read.file", ErrInvalidToolName},
		{"unicode", "lire_fiché", ErrInvalidToolName},
		{"slash", "a/b", ErrInvalidToolName},
		{"trailing newline", "read\n", ErrInvalidToolName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewRegistry(&fakeTool{name: tt.tool})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("NewRegistry(%q) error = %v, want %v", tt.tool, err, tt.wantErr)
			}
		})
	}
}

func TestRegisterDuplicate(t *testing.T) {
	t.Parallel()

	reg, err := NewRegistry(&fakeTool{name: "search"})
	if err != nil {
		t.Fatal(err)
	}
	err = reg.Register(&fakeTool{name: "search"})
	if !errors.Is(err, ErrDuplicateTool) {
		t.Fatalf("Register duplicate: error = %v, want ErrDuplicateTool", err)
	}
	if !strings.Contains(err.Error(), `"search"`) {
		t.Errorf("error %q does not name the tool", err)
	}
	if reg.Len() != 1 {
		t.Errorf("Len() = %d after rejected registration, want 1", reg.Len())
	}

	if _, err := NewRegistry(&fakeTool{name: "a"}, &fakeTool{name: "a"}); !errors.Is(err, ErrDuplicateTool) {
		t.Errorf("NewRegistry with duplicates: error = %v, want ErrDuplicateTool", err)
	}
}

func TestRegisterNil(t *testing.T) {
	t.Parallel()

	if _, err := NewRegistry(nil); err == nil {
		t.Fatal("NewRegistry(nil) succeeded, want error")
	}
}

func TestRegisterSchema(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		schema  ToolSchema
		wantErr string // empty when the schema is valid
	}{
		{"empty type means object", ToolSchema{}, ""},
		{"object", ToolSchema{Type: "object", Properties: map[string]PropertyDef{"q": {Type: "string"}}}, ""},
		{"array root", ToolSchema{Type: "array"}, `type is "array"`},
		{"unknown property type", ToolSchema{Properties: map[string]PropertyDef{"q": {Type: "strin"}}}, "/properties/q/type"},
		{"invalid pattern", ToolSchema{Properties: map[string]PropertyDef{"q": {Pattern: "("}}}, "/properties/q/pattern"},
		{"negative minLength", ToolSchema{Properties: map[string]PropertyDef{"q": {MinLength: ptr(-1)}}}, "/properties/q/minLength"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewRegistry(&fakeTool{name: "t", schema: tt.schema})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewRegistry: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidSchema) {
				t.Fatalf("NewRegistry error = %v, want ErrInvalidSchema", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestRegistryLookup(t *testing.T) {
	t.Parallel()

	names := []string{"zeta", "alpha", "mid"}
	reg, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if err := reg.Register(&fakeTool{name: name}); err != nil {
			t.Fatal(err)
		}
	}

	if reg.Len() != len(names) {
		t.Errorf("Len() = %d, want %d", reg.Len(), len(names))
	}
	tools := reg.Tools()
	for i, tl := range tools {
		if tl.Name() != names[i] {
			t.Errorf("Tools()[%d] = %q, want %q (registration order)", i, tl.Name(), names[i])
		}
	}
	tools[0] = nil // the returned slice is the caller's
	if reg.Tools()[0] == nil {
		t.Error("modifying the result of Tools() changed the registry")
	}

	if got, ok := reg.Get("mid"); !ok || got.Name() != "mid" {
		t.Errorf(`Get("mid") = %v, %v`, got, ok)
	}
	if _, ok := reg.Get("missing"); ok {
		t.Error(`Get("missing") reported ok`)
	}

	err = reg.Validate("missing", []byte(`{}`))
	if !errors.Is(err, ErrUnknownTool) {
		t.Fatalf("Validate unknown tool: error = %v, want ErrUnknownTool", err)
	}
	if !strings.Contains(err.Error(), "zeta, alpha, mid") {
		t.Errorf("error %q does not list the available tools", err)
	}
}

func TestRegistryConcurrentUse(t *testing.T) {
	t.Parallel()

	reg, err := NewRegistry(&fakeTool{name: "base"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if err := reg.Register(&fakeTool{name: fmt.Sprintf("t%d", i)}); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			reg.Get("base")
			reg.Tools()
			if err := reg.Validate("base", []byte(`{}`)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if reg.Len() != 9 {
		t.Errorf("Len() = %d, want 9", reg.Len())
	}
}
