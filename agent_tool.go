package agentpg

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/agentpg/agentpg/tool"
)

// runKey is the context key of the run a tool is called from.
type runKey struct{}

func withRun(ctx context.Context, r *run) context.Context {
	return context.WithValue(ctx, runKey{}, r)
}

func runFrom(ctx context.Context) *run {
	r, _ := ctx.Value(runKey{}).(*run)
	return r
}

// AsTool offers the agent to other agents as a tool named name. Each call
// runs its task in a new child session of the calling session (same
// tenant, ParentID set), as a run whose parent is the calling run, and
// answers with the child's final text. The child's usage is recorded on its
// own run, linked to the caller's by RunInfo.ParentRunID. Nesting deeper
// than Config.MaxAgentDepth fails with ErrAgentDepth. Both agents must use
// the same database and schema. A call may take AgentToolTimeout.
func (a *Agent) AsTool(name, description string) tool.Tool {
	return &agentTool{agent: a, name: name, description: description}
}

// AgentToolTimeout bounds one call of an agent offered as a tool: a whole
// run of the nested agent, tool calls included.
const AgentToolTimeout = 10 * time.Minute

type agentTool struct {
	agent             *Agent
	name, description string
}

func (t *agentTool) Name() string           { return t.name }
func (t *agentTool) Description() string    { return t.description }
func (t *agentTool) Timeout() time.Duration { return AgentToolTimeout }

func (t *agentTool) InputSchema() tool.ToolSchema {
	return tool.ToolSchema{
		Type: "object",
		Properties: map[string]tool.PropertyDef{
			"task": {Type: "string", Description: "The task for the agent, with all the context it needs."},
		},
		Required: []string{"task"},
	}
}

func (t *agentTool) Execute(ctx context.Context, input json.RawMessage) (string, error) {
	parent := runFrom(ctx)
	if parent == nil {
		return "", fmt.Errorf("agent tool %q can only be called from a run", t.name)
	}
	if depth := parent.session.depth + 1; depth > t.agent.cfg.MaxAgentDepth {
		return "", fmt.Errorf("%w: %d levels allowed", ErrAgentDepth, t.agent.cfg.MaxAgentDepth)
	}
	var in struct {
		Task string `json:"task"`
	}
	if err := json.Unmarshal(input, &in); err != nil {
		return "", fmt.Errorf("decoding input: %w", err)
	}
	// The child is named after its parent, by id where the parent's
	// identifier would make the child's too long.
	prefix := parent.session.Identifier
	if len(prefix)+len(t.name)+38 > MaxIdentifierBytes {
		prefix = parent.session.ID
	}
	identifier := fmt.Sprintf("%s/%s/%s", prefix, t.name, newID())
	child, err := t.agent.NewSession(ctx, parent.session.TenantID, identifier, &SessionOptions{ParentID: parent.session.ID})
	if err != nil {
		return "", err
	}
	child.endUser = parent.session.endUser
	res, err := child.run(ctx, in.Task, RunOptions{}, &parent.lease.RunID)
	if err != nil {
		return "", err
	}
	return res.Text, nil
}
