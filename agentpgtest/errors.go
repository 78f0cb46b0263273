package agentpgtest

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"time"
)

// apiError is an error the server answers with.
type apiError struct {
	status int
	errorInfo
}

// errorInfo is the error object of an error response or event.
type errorInfo struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// invalidRequest returns a 400 invalid_request_error saying message.
func invalidRequest(message string) *apiError {
	return &apiError{http.StatusBadRequest, errorInfo{"invalid_request_error", message}}
}

// apiErrorKinds lists the API's error types, with their HTTP status and a
// message typical of each.
var apiErrorKinds = []struct {
	status       int
	typ, message string
}{
	{400, "invalid_request_error", "Invalid request"},
	{401, "authentication_error", "invalid x-api-key"},
	{402, "billing_error", "Your credit balance is too low to access the Anthropic API."},
	{403, "permission_error", "Your API key does not have permission to use the specified resource."},
	{404, "not_found_error", "Not found"},
	{413, "request_too_large", "Request exceeds the maximum allowed number of bytes."},
	{429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."},
	{500, "api_error", "Internal server error"},
	{504, "timeout_error", "Request timed out"},
	{529, "overloaded_error", "Overloaded"},
}

// errorTypeOf returns the API's error type for an HTTP status.
func errorTypeOf(status int) string {
	for _, k := range apiErrorKinds {
		if k.status == status {
			return k.typ
		}
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}

// messageOf returns a message typical of the error type typ.
func messageOf(typ string) string {
	for _, k := range apiErrorKinds {
		if k.typ == typ {
			return k.message
		}
	}
	return typ
}

// write answers with the error. A positive retryAfter sets the headers that
// tell the client when to retry.
func (e *apiError) write(w http.ResponseWriter, requestID string, retryAfter time.Duration) {
	if retryAfter > 0 {
		w.Header().Set("retry-after-ms", strconv.FormatInt(retryAfter.Milliseconds(), 10))
		w.Header().Set("retry-after", strconv.FormatFloat(math.Ceil(retryAfter.Seconds()), 'f', 0, 64))
	}
	body, _ := marshal(struct {
		Type      string    `json:"type"`
		Error     errorInfo `json:"error"`
		RequestID string    `json:"request_id"`
	}{"error", e.errorInfo, requestID})
	writeJSON(w, requestID, e.status, body)
}

// marshal encodes v as the API does, leaving <, > and & unescaped.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// writeJSON answers with status and the JSON body.
func writeJSON(w http.ResponseWriter, requestID string, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("request-id", requestID)
	w.WriteHeader(status)
	w.Write(body)
}
