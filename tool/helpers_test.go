package tool

import (
	"context"
	"encoding/json"
	"time"
)

// fakeTool is a Tool whose behaviour each test chooses.
type fakeTool struct {
	name    string
	schema  ToolSchema
	timeout time.Duration
	exec    func(ctx context.Context, input json.RawMessage) (string, error)
}

func (t *fakeTool) Name() string            { return t.name }
func (t *fakeTool) Description() string     { return "A tool for tests." }
func (t *fakeTool) InputSchema() ToolSchema { return t.schema }
func (t *fakeTool) Timeout() time.Duration  { return t.timeout }

func (t *fakeTool) Execute(ctx context.Context, input json.RawMessage) (string, error) {
	if t.exec == nil {
		return "ok", nil
	}
	return t.exec(ctx, input)
}

func ptr[T any](v T) *T { return &v }
