package builtin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Every error a constructor or a tool returns for something it refuses wraps
// one of these sentinels, so callers can classify it with errors.Is. The
// message around the sentinel says what was refused and why.
var (
	// ErrInvalidConfig reports a configuration a constructor rejected.
	ErrInvalidConfig = errors.New("invalid configuration")
	// ErrInvalidInput reports tool input that is not the expected JSON
	// object: malformed JSON, unknown fields, wrong types or a missing value.
	ErrInvalidInput = errors.New("invalid input")
	// ErrPathNotAllowed reports a file path that is malformed or leads
	// outside the root, or a file that is not of the kind the tool handles.
	ErrPathNotAllowed = errors.New("path not allowed")
	// ErrHostNotAllowed reports a URL host that is malformed, denied, or not
	// in the allowed hosts, and URLs carrying user information.
	ErrHostNotAllowed = errors.New("host not allowed")
	// ErrAddressNotAllowed reports an IP address that is not public unicast,
	// whether written in the URL or resolved from a host name.
	ErrAddressNotAllowed = errors.New("address not allowed")
	// ErrSchemeNotAllowed reports a URL scheme other than https (or http
	// when it is allowed).
	ErrSchemeNotAllowed = errors.New("scheme not allowed")
	// ErrTooManyRedirects reports a fetch that was redirected more times
	// than allowed.
	ErrTooManyRedirects = errors.New("too many redirects")
	// ErrActionNotAllowed reports a command action that is not configured.
	ErrActionNotAllowed = errors.New("action not allowed")
	// ErrArgumentNotAllowed reports a command argument refused by the
	// action's rules.
	ErrArgumentNotAllowed = errors.New("argument not allowed")
	// ErrTooLarge reports a file, response or directory listing over its
	// configured limit.
	ErrTooLarge = errors.New("too large")
)

// decodeInput decodes a tool's JSON input into v strictly: unknown fields,
// wrong types and trailing data are refused.
func decodeInput(input json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(input))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: unexpected data after the JSON object", ErrInvalidInput)
	}
	return nil
}
