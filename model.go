package agentpg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

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
	// EventApproval reports a tool call awaiting approval (Status
	// "pending"), or the decision on it, with the call's ToolUseID,
	// ToolName and Input.
	EventApproval EventKind = "approval"
	// EventRetry reports that a model call failed and is tried again (see
	// RetryConfig); Text says why. The text and thinking deltas received
	// since the call began (since the run began, the last tool result or
	// the last EventRetry) belong to an answer that is dropped: it is
	// neither stored nor returned. Discard them.
	EventRetry EventKind = "retry"
)

// Event is something that happened during a run, delivered to
// RunOptions.OnEvent as it happens.
type Event struct {
	Kind EventKind
	// Text is the delta of text or thinking, a tool's output, or why a
	// model call is retried.
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

// modelRequest is what a model call sends: the call's parameters, whose
// Messages stay empty, and the messages, encoded apart (see
// conversation.encodedMessages).
type modelRequest struct {
	params anthropic.MessageNewParams
	// messages are the elements of the body's "messages" array, separated
	// by commas.
	messages []byte
}

// request returns the Messages API request for the conversation,
// encoding the messages that conv has not encoded before.
func (s *Session) request(conv *conversation) (modelRequest, error) {
	messages, err := conv.encodedMessages()
	if err != nil {
		return modelRequest{}, err
	}
	return modelRequest{params: s.params(*conv), messages: messages}, nil
}

// params returns the parameters of a request for the conversation, but
// its messages. The last system block (the system prompt, or the summary
// of the compacted start of the conversation after it) carries a cache
// breakpoint; the request-level cache_control puts another on the
// conversation's last block, so each turn reads the previous turn's
// prefix from the cache.
func (s *Session) params(conv conversation) anthropic.MessageNewParams {
	cfg := s.agent.cfg
	params := anthropic.MessageNewParams{
		Model:        anthropic.Model(cfg.Model),
		MaxTokens:    cfg.MaxTokens,
		CacheControl: anthropic.NewCacheControlEphemeralParam(),
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

// messageParams returns messages as SDK parameters.
func messageParams(messages []Message) []anthropic.MessageParam {
	params := make([]anthropic.MessageParam, len(messages))
	for i, msg := range messages {
		params[i] = msg.param()
	}
	return params
}

// encodedMessages returns the conversation's messages encoded as the
// elements of a request body's "messages" array, separated by commas. The
// conversation keeps the encoding and extends it with the messages added
// since, encoding those that add did not: a turn encodes its new
// messages, not the whole conversation. Its array is lent with the
// conversation's messages (see cachedConversation.lent).
func (c *conversation) encodedMessages() ([]byte, error) {
	for _, msg := range c.messages[c.wired:] {
		content, err := json.Marshal(msg.Content)
		if err != nil {
			return nil, fmt.Errorf("encoding message %s: %w", msg.ID, err)
		}
		c.encode(msg.Role, content)
	}
	return c.wire, nil
}

// add appends msg, whose content content encodes, to the conversation,
// and its encoding to the conversation's when that holds every message
// before it.
func (c *conversation) add(msg Message, content json.RawMessage) {
	c.messages = append(c.messages, msg)
	if c.wired == len(c.messages)-1 {
		c.encode(msg.Role, content)
	}
}

// encode appends the encoding of the next message not encoded yet, of
// role and content, to the conversation's.
func (c *conversation) encode(role string, content json.RawMessage) {
	if len(c.wire) > 0 {
		c.wire = append(c.wire, ',')
	}
	c.wire = append(c.wire, `{"content":`...)
	c.wire = append(c.wire, content...)
	if role == "assistant" {
		c.wire = append(c.wire, `,"role":"assistant"}`...)
	} else {
		c.wire = append(c.wire, `,"role":"user"}`...)
	}
	c.wired++
}

// body returns the request's JSON body, streaming: the SDK's encoding of
// the parameters, with the messages spliced in. It means what the SDK's
// encoding of the parameters with the messages in them means
// (TestRequestBody). "stream" comes first, where the SDK, which sets it
// again, finds it without reading the rest.
func (r modelRequest) body() ([]byte, error) {
	params := r.params
	params.Messages = nil
	head, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("encoding the request: %w", err)
	}
	const open = `{"stream":true,"messages":[`
	body := make([]byte, 0, len(open)+len(r.messages)+len(head)+1)
	body = append(append(append(body, open...), r.messages...), ']')
	if len(head) > len("{}") {
		body = append(body, ',')
	}
	return append(body, head[1:]...), nil
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
	// retried is the usage of the failed attempts of the call before the
	// one that answered: Message.Usage is the answer's own, as the API
	// reported it.
	retried anthropic.Usage
	// attempts is how many attempts the call took.
	attempts int
}

// spent returns what the model call cost: the usage of the answer and of
// the failed attempts before it. Count this as the call's usage; store
// Usage, the answer's own, with the answer, as the next turn's context
// size is estimated from it.
func (r *response) spent() anthropic.Usage {
	u := r.Usage
	addUsage(&u, r.retried)
	return u
}

// input returns the input of a tool_use block exactly as the model sent it.
func (r *response) input(block anthropic.ContentBlockUnion) json.RawMessage {
	if raw, ok := r.malformed[block.ID]; ok {
		return json.RawMessage(raw)
	}
	return block.Input
}

// callModel streams one response, passing text and thinking deltas to
// onEvent as they arrive, and retries the failures Config.Retry retries
// (see RetryConfig), telling onEvent with an EventRetry. A partial answer
// is never returned. A retried call that fails returns a *RetryError
// wrapping the last attempt's error.
//
// On success, the response's Usage is the answer's own, and spent() adds
// the failed attempts' usage to it. On failure, when any attempt got as
// far as a response, a response is returned with the error that carries
// in its Usage the summed usage of every attempt, and nothing else: those
// tokens were spent. When none did (the API refused every attempt with an
// error status, or no connection was made), the response is nil.
func (a *Agent) callModel(ctx context.Context, req modelRequest, onEvent func(Event)) (*response, error) {
	body, err := req.body()
	if err != nil {
		return nil, err
	}
	policy := a.cfg.Retry
	start := time.Now()
	var spent anthropic.Usage // of the failed attempts
	began := false            // whether any failed attempt got a response
	for attempt := 1; ; attempt++ {
		resp, err := a.callModelOnce(ctx, req.params, body, onEvent)
		if err == nil {
			resp.retried, resp.attempts = spent, attempt
			if attempt > 1 {
				a.modelLog(ctx).InfoContext(ctx, "model call succeeded after retries", "attempts", attempt)
			}
			return resp, nil
		}
		if resp != nil {
			addUsage(&spent, resp.Usage)
			began = true
		}
		failed := func(err error) (*response, error) {
			if !began {
				return nil, err
			}
			return &response{Message: &anthropic.Message{Usage: spent}, attempts: attempt}, err
		}
		if cause := context.Cause(ctx); cause != nil {
			return failed(cause)
		}
		if !retryable(err) {
			if attempt > 1 {
				err = &RetryError{Attempts: attempt, Last: err}
			}
			return failed(err)
		}
		if policy.MaxAttempts <= 1 {
			return failed(err) // retries are off
		}
		if attempt >= policy.MaxAttempts {
			return failed(&RetryError{Attempts: attempt, Last: err})
		}
		delay := policy.backoff(attempt, err)
		deadline, hasDeadline := ctx.Deadline()
		if time.Since(start)+delay > policy.MaxElapsed || hasDeadline && time.Until(deadline) <= delay {
			return failed(&RetryError{Attempts: attempt, Last: err})
		}
		a.logRetry(ctx, attempt+1, delay, err)
		if onEvent != nil {
			onEvent(Event{Kind: EventRetry, Text: err.Error()})
		}
		if err := sleep(ctx, delay); err != nil {
			return failed(err)
		}
	}
}

// logRetry logs that the model call is tried again, for the attempt-th
// time, after delay, having failed with err.
func (a *Agent) logRetry(ctx context.Context, attempt int, delay time.Duration, err error) {
	attrs := []any{"attempt", attempt, "max_attempts", a.cfg.Retry.MaxAttempts, "delay", delay}
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		attrs = append(attrs, "status", apiErr.StatusCode, "error_type", apiErr.Type, "request_id", apiErr.RequestID)
	}
	attrs = append(attrs, "error", err)
	a.modelLog(ctx).WarnContext(ctx, "retrying the model call", attrs...)
}

// modelLog returns the logger of the model calls made with ctx: the run's,
// with its identifiers, during a run.
func (a *Agent) modelLog(ctx context.Context) *slog.Logger {
	if r := runFrom(ctx); r != nil && r.log != nil {
		return r.log
	}
	return a.cfg.Logger
}

// callModelOnce makes one attempt at a model call, sending body, the
// request with params: it streams one
// response, passing text and thinking deltas to onEvent as they arrive. A
// stream that ends before message_stop is ErrIncompleteResponse: its
// partial answer is never used. When the attempt fails after the response
// began, the partial response is returned with the error, for its usage:
// those tokens were spent.
func (a *Agent) callModelOnce(ctx context.Context, params anthropic.MessageNewParams, body []byte, onEvent func(Event)) (*response, error) {
	opts := a.requestOptions(string(params.Model), option.WithRequestBody("application/json", body))
	// The SDK encodes the parameters it is given into a body that body
	// replaces: it is given none of the tools, whose schemas it would
	// encode for nothing. Its spans read the other parameters.
	params.Tools = nil
	stream := a.cfg.Client.Messages.NewStreaming(ctx, params, opts...)
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

// requestOptions are the SDK options of a Messages API call for model:
// first, then Config.RequestOptions, so that those apply to a body that
// first sets. They turn the SDK's retries off, last so that nothing
// overrides it: the model call retries by Config.Retry, and retries of
// both would multiply.
func (a *Agent) requestOptions(model string, first ...option.RequestOption) []option.RequestOption {
	opts := slices.Concat(first, a.cfg.RequestOptions)
	if a.cfg.ExtendedContext && offersExtendedContext(model) {
		opts = append(opts, option.WithHeaderAdd("anthropic-beta", extendedContextBeta))
	}
	return append(opts, option.WithMaxRetries(0))
}
