package agentpg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/agentpg/agentpg/tool"
)

// EventKind says what an Event carries.
type EventKind string

// The kinds of Event a run emits.
const (
	// EventText carries a delta of the answer's text.
	EventText EventKind = "text"
	// EventThinking carries a delta of the model's extended thinking.
	EventThinking EventKind = "thinking"
	// EventToolCall reports a tool call the model asked for, before it
	// runs.
	EventToolCall EventKind = "tool_call"
	// EventToolResult reports a tool call's result.
	EventToolResult EventKind = "tool_result"
)

// Event is something that happened during a run, delivered to
// RunOptions.OnEvent as it happens.
type Event struct {
	Kind EventKind
	// Text is the delta of text or thinking, or a tool's output.
	Text string
	// ToolUseID and ToolName identify the call of a tool event.
	ToolUseID string
	ToolName  string
	// Input is the input of a tool call.
	Input json.RawMessage
	// IsError reports a tool result that is an error.
	IsError bool
	// Seq is the event's place in its run's stored events, from 1, as
	// Agent.RunEvents yields them; 0 for an event given to OnEvent.
	Seq int64
	// Status is, on EventRunEnd, how the run ended: "completed", "failed"
	// or "cancelled"; on EventApproval, the call's approval: "pending",
	// "approved" or "denied".
	Status string
	// StopReason is, on EventRunEnd, the model's last stop reason, if any.
	StopReason string
	// Error is, on EventRunEnd, why the run failed or was cancelled; on
	// EventApproval, why a call was denied.
	Error string
	// Usage is, on EventRunEnd, the usage of every model call of the run.
	Usage Usage
}

// request builds the Messages API request for the conversation. The last
// system block (the system prompt, or the summary of the compacted start of
// the conversation after it) carries a cache breakpoint; the request-level
// cache_control puts another on the conversation's last block, so each turn
// reads the previous turn's prefix from the cache.
func (s *Session) request(conv conversation) anthropic.MessageNewParams {
	cfg := s.agent.cfg
	params := anthropic.MessageNewParams{
		Model:        anthropic.Model(cfg.Model),
		MaxTokens:    cfg.MaxTokens,
		Messages:     make([]anthropic.MessageParam, len(conv.messages)),
		CacheControl: anthropic.NewCacheControlEphemeralParam(),
	}
	for i, msg := range conv.messages {
		params.Messages[i] = msg.param()
	}
	if o := s.overrides; o.Model != "" {
		params.Model = anthropic.Model(o.Model)
	}
	if s.overrides.MaxTokens > 0 {
		params.MaxTokens = s.overrides.MaxTokens
	}
	system := cfg.SystemPrompt
	if s.overrides.SystemPrompt != "" {
		system = s.overrides.SystemPrompt
	}
	if system != "" {
		params.System = append(params.System, anthropic.TextBlockParam{Text: system})
	}
	if conv.summary != "" {
		params.System = append(params.System, anthropic.TextBlockParam{Text: summaryBlock(conv)})
	}
	if n := len(params.System); n > 0 {
		params.System[n-1].CacheControl = anthropic.NewCacheControlEphemeralParam()
	}
	for _, t := range s.agent.executor.Registry().Tools() {
		params.Tools = append(params.Tools, toolParam(t))
	}
	if t := cfg.Thinking; t != nil {
		if t.Adaptive {
			params.Thinking = anthropic.ThinkingConfigParamUnion{OfAdaptive: &anthropic.ThinkingConfigAdaptiveParam{}}
		} else {
			params.Thinking = anthropic.ThinkingConfigParamOfEnabled(t.BudgetTokens)
		}
	}
	return params
}

// model returns the model the session's runs use.
func (s *Session) model() string {
	if s.overrides.Model != "" {
		return s.overrides.Model
	}
	return s.agent.cfg.Model
}

// response is a model's answer as it was streamed.
type response struct {
	*anthropic.Message
	// malformed holds, by tool_use id, each tool input the model streamed
	// that is not valid JSON: the SDK replaces those with {}, which would
	// pass a schema whose fields are all optional.
	malformed map[string]string
}

// input returns the input of a tool_use block exactly as the model sent it.
func (r *response) input(block anthropic.ContentBlockUnion) json.RawMessage {
	if raw, ok := r.malformed[block.ID]; ok {
		return json.RawMessage(raw)
	}
	return block.Input
}

// callModel streams one response, passing text and thinking deltas to
// onEvent as they arrive. A stream that ends before message_stop is
// ErrIncompleteResponse: its partial answer is never used. When the call
// fails after the response began, the partial response is returned with
// the error, for its usage: those tokens were spent.
func (a *Agent) callModel(ctx context.Context, params anthropic.MessageNewParams, onEvent func(Event)) (*response, error) {
	stream := a.cfg.Client.Messages.NewStreaming(ctx, params, a.requestOptions(string(params.Model))...)
	defer stream.Close()

	resp := &response{Message: &anthropic.Message{}}
	var inputs map[int64][]byte // the streamed input of each tool_use block, by index
	started, complete := false, false
	for stream.Next() {
		event := stream.Current()
		started = true
		if err := resp.Accumulate(event); err != nil {
			return resp, fmt.Errorf("%w: %v", ErrIncompleteResponse, err)
		}
		switch event.Type {
		case "content_block_delta":
			switch event.Delta.Type {
			case "input_json_delta":
				if inputs == nil {
					inputs = make(map[int64][]byte)
				}
				inputs[event.Index] = append(inputs[event.Index], event.Delta.PartialJSON...)
			case "text_delta":
				if onEvent != nil {
					onEvent(Event{Kind: EventText, Text: event.Delta.Text})
				}
			case "thinking_delta":
				if onEvent != nil {
					onEvent(Event{Kind: EventThinking, Text: event.Delta.Thinking})
				}
			}
		case "message_stop":
			complete = true
		}
	}
	// A connection cut after message_stop still leaves a complete answer.
	if err := stream.Err(); err != nil && !complete {
		if !started {
			resp = nil
		}
		if ctxErr := context.Cause(ctx); ctxErr != nil {
			return resp, ctxErr
		}
		var apiErr *APIError
		switch err = apiError(err); {
		case errors.As(err, &apiErr):
			return resp, err
		case started:
			return resp, fmt.Errorf("%w: %w", ErrIncompleteResponse, err)
		default:
			return resp, fmt.Errorf("calling the model: %w", err)
		}
	}
	if !complete {
		return resp, fmt.Errorf("%w: the stream ended before message_stop", ErrIncompleteResponse)
	}
	for index, raw := range inputs {
		if !json.Valid(raw) && int(index) < len(resp.Content) {
			if resp.malformed == nil {
				resp.malformed = make(map[string]string)
			}
			resp.malformed[resp.Content[index].ID] = string(raw)
		}
	}
	return resp, nil
}

// toolParam describes a tool to the Messages API.
func toolParam(t tool.Tool) anthropic.ToolUnionParam {
	schema := t.InputSchema()
	input := anthropic.ToolInputSchemaParam{Properties: schema.Properties, Required: schema.Required}
	if schema.AdditionalProperties != nil {
		input.ExtraFields = map[string]any{"additionalProperties": *schema.AdditionalProperties}
	}
	return anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{
		Name:        t.Name(),
		Description: anthropic.String(t.Description()),
		InputSchema: input,
	}}
}

// requestOptions are the SDK options of a Messages API call for model.
func (a *Agent) requestOptions(model string) []option.RequestOption {
	if !a.cfg.ExtendedContext || !offersExtendedContext(model) {
		return a.cfg.RequestOptions
	}
	return append(slices.Clip(a.cfg.RequestOptions), option.WithHeaderAdd("anthropic-beta", extendedContextBeta))
}
