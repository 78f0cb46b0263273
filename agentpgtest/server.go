package agentpgtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
)

const (
	messagesPath    = "/v1/messages"
	countTokensPath = "/v1/messages/count_tokens"
)

// Server is a scripted Claude server speaking the Messages API over HTTP on
// the loopback interface. It is safe for concurrent use.
type Server struct {
	http      *httptest.Server
	closing   chan struct{} // closed by Close, to end delays
	closeOnce sync.Once

	mu        sync.Mutex
	replies   []Reply
	responder func(Request) Reply
	requests  []Request
	received  int  // requests received, kept or not
	forget    bool // keep no requests (KeepRequests)
	cache     promptCache
}

// Start starts a server on 127.0.0.1 at a free port. Close stops it.
func Start() (*Server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("agentpgtest: %w", err)
	}
	s := &Server{
		closing:   make(chan struct{}),
		responder: Echo,
		cache:     make(promptCache),
	}
	s.http = &httptest.Server{Listener: l, Config: &http.Server{Handler: http.HandlerFunc(s.handle)}}
	s.http.Start()
	return s, nil
}

// NewServer starts a server that is closed when the test ends. It fails the
// test if the server cannot start.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Close stops the server, dropping the connections of delayed replies, and
// waits for the requests in flight to end.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.http.Close()
	})
}

// URL returns the server's base URL, such as "http://127.0.0.1:41235".
func (s *Server) URL() string {
	return s.http.URL
}

// Client returns an SDK client for the server: it sends a dummy x-api-key,
// reads nothing from the environment, and does not retry. opts are applied
// last, so they can change any of that.
func (s *Server) Client(opts ...option.RequestOption) *anthropic.Client {
	client := anthropic.NewClient(slices.Concat([]option.RequestOption{
		option.WithoutEnvironmentDefaults(),
		option.WithBaseURL(s.URL()),
		option.WithHeader("X-Api-Key", "sk-ant-agentpgtest"),
		option.WithMaxRetries(0),
	}, opts)...)
	return &client
}

// Push queues replies. Each /v1/messages request that the server accepts,
// streaming or not, takes the oldest queued reply.
func (s *Server) Push(replies ...Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replies = append(s.replies, replies...)
}

// SetResponder sets the function that answers the requests that find no
// queued reply; nil restores the default, [Echo]. The function may be called
// concurrently.
func (s *Server) SetResponder(responder func(req Request) Reply) {
	if responder == nil {
		responder = Echo
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.responder = responder
}

// Requests returns every request received so far, in order of arrival,
// rejected ones included.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// KeepRequests sets whether the server keeps the requests it receives,
// which it does from the start, for Requests and Rejected. A server that
// answers many long conversations, as a benchmark's does, holds every body
// it received unless told not to.
func (s *Server) KeepRequests(keep bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forget = !keep
}

// Rejected returns the requests the server refused, in order of arrival.
func (s *Server) Rejected() []Request {
	return slices.DeleteFunc(s.Requests(), func(r Request) bool { return !r.Rejected })
}

// Pending returns how many queued replies are not yet taken.
func (s *Server) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.replies)
}

// handle serves one request.
func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // the client is gone
	}
	req := Request{Path: r.URL.Path, Header: redact(r.Header), Body: body}
	prompt, rejection := admit(r, &req)
	if rejection != nil {
		req.Rejected, req.RejectReason = true, rejection.Message
	}
	reply, ok := s.record(&req, rejection == nil && req.Path == messagesPath)
	switch {
	case rejection != nil:
		rejection.write(w, req.ID, 0)
	case req.Path == countTokensPath:
		writeJSON(w, req.ID, http.StatusOK, fmt.Appendf(nil, `{"input_tokens":%d}`, inputTokens(prompt)))
	default:
		if !ok {
			reply = s.responderFunc()(req)
		}
		s.reply(r.Context(), w, req, prompt, reply)
	}
}

// admit checks a request as the API does before generating anything: its
// path, its headers, then its body, which it describes in req. It returns
// the request's prompt, or the error to answer with.
func admit(r *http.Request, req *Request) ([]segment, *apiError) {
	switch {
	case r.Method != http.MethodPost || req.Path != messagesPath && req.Path != countTokensPath:
		return nil, &apiError{http.StatusNotFound, errorInfo{"not_found_error", fmt.Sprintf("Not found: %s %s", r.Method, req.Path)}}
	case r.Header.Get("X-Api-Key") == "" && !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer "):
		return nil, &apiError{http.StatusUnauthorized, errorInfo{"authentication_error", "x-api-key header is required"}}
	case r.Header.Get("Anthropic-Version") == "":
		return nil, invalidRequest("anthropic-version: header is required")
	}
	var w wireRequest
	if err := json.Unmarshal(req.Body, &w); err != nil {
		return nil, invalidRequest("invalid request body: " + err.Error())
	}
	w.describe(req)
	if err := w.validate(req.Path == countTokensPath); err != nil {
		return nil, invalidRequest(err.Error())
	}
	return w.prompt(), nil
}

// record numbers req and keeps it, unless told not to keep requests. When
// takeReply is set, it also takes the oldest queued reply, if any, in the
// same step, so that replies go to requests in order of arrival.
func (s *Server) record(req *Request, takeReply bool) (reply Reply, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.received++
	req.ID = fmt.Sprintf("req_%06d", s.received)
	if !s.forget {
		s.requests = append(s.requests, *req)
	}
	if !takeReply || len(s.replies) == 0 {
		return Reply{}, false
	}
	reply = s.replies[0]
	s.replies = s.replies[1:]
	return reply, true
}

// responderFunc returns the current responder.
func (s *Server) responderFunc() func(Request) Reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.responder
}

// message is a Message as the API sends it.
type message struct {
	ID           string    `json:"id"`
	Type         string    `json:"type"`
	Role         string    `json:"role"`
	Model        string    `json:"model"`
	Content      []Block   `json:"content"`
	StopReason   *string   `json:"stop_reason"`
	StopSequence *string   `json:"stop_sequence"`
	Usage        wireUsage `json:"usage"`
}

// wireUsage is a Usage as the API sends it in a message.
type wireUsage struct {
	Usage
	CacheCreation struct {
		Ephemeral5m int64 `json:"ephemeral_5m_input_tokens"`
		Ephemeral1h int64 `json:"ephemeral_1h_input_tokens"`
	} `json:"cache_creation"`
	ServiceTier string `json:"service_tier"`
}

// reply answers req, whose prompt is prompt, with reply.
func (s *Server) reply(ctx context.Context, w http.ResponseWriter, req Request, prompt []segment, reply Reply) {
	if !s.wait(ctx, reply.Delay) {
		cut(w)
		return
	}
	if reply.isError() {
		reply.apiError().write(w, req.ID, reply.RetryAfter)
		return
	}
	msg := s.messageFor(req, prompt, reply)
	body, err := marshal(msg)
	if err != nil {
		(&apiError{http.StatusInternalServerError, errorInfo{"api_error", err.Error()}}).write(w, req.ID, 0)
		return
	}
	if !req.Stream {
		writeJSON(w, req.ID, http.StatusOK, body)
		return
	}
	events := streamEvents(msg)
	if reply.StreamError != "" {
		events = withStreamError(events, errorInfo{reply.StreamError, messageOf(reply.StreamError)})
	}
	writeStream(w, req.ID, events, reply.CutAfter)
}

// wait waits for d, unless ctx is done or the server closes first. It
// reports whether d elapsed.
func (s *Server) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-s.closing:
	}
	return false
}

// messageFor returns the message that answers req with reply, with its
// usage computed unless reply sets it.
func (s *Server) messageFor(req Request, prompt []segment, reply Reply) message {
	s.mu.Lock()
	usage := s.cache.usage(prompt)
	s.mu.Unlock()
	usage.OutputTokens = outputTokens(reply.Content)
	if reply.Usage != nil {
		usage = *reply.Usage
	}
	msg := message{
		ID:         "msg_" + strings.TrimPrefix(req.ID, "req_"),
		Type:       "message",
		Role:       "assistant",
		Model:      req.Model,
		Content:    reply.Content,
		StopReason: new(reply.stopReason()),
		Usage:      wireUsage{Usage: usage, ServiceTier: "standard"},
	}
	msg.Usage.CacheCreation.Ephemeral5m = usage.CacheCreationInputTokens
	if msg.Content == nil {
		msg.Content = []Block{}
	}
	return msg
}
