package tool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// DefaultMaxInputBytes is the default limit on the size of a tool input.
const DefaultMaxInputBytes = 1 << 20

// maxViolationBytes bounds the length of one violation message.
const maxViolationBytes = 512

var printer = message.NewPrinter(language.English)

// ValidationError reports why a tool input was rejected. Its message is
// written for the model: each violation names the JSON pointer of the
// offending value, so the model can correct its call.
type ValidationError struct {
	violations []string
}

// Error lists every violation on its own line.
func (e *ValidationError) Error() string {
	return "input does not match schema:\n- " + strings.Join(e.violations, "\n- ")
}

// Violations returns one message per problem found in the input.
func (e *ValidationError) Violations() []string {
	return slices.Clone(e.violations)
}

// SetMaxInputBytes sets the size above which Validate rejects an input
// without parsing it. A non-positive n restores DefaultMaxInputBytes.
func (r *Registry) SetMaxInputBytes(n int) {
	if n <= 0 {
		n = DefaultMaxInputBytes
	}
	r.maxInputBytes.Store(int64(n))
}

// Validate checks input against the schema of the tool registered under name.
// It returns a *ValidationError if input is too large, is not valid JSON or
// does not match the schema, and an error wrapping ErrUnknownTool if no such
// tool is registered.
func (r *Registry) Validate(name string, input json.RawMessage) error {
	_, err := r.validate(name, input)
	return err
}

// validate is Validate, also returning the tool on success.
func (r *Registry) validate(name string, input json.RawMessage) (Tool, error) {
	reg, err := r.lookup(name)
	if err != nil {
		return nil, err
	}
	if limit := r.maxInputBytes.Load(); int64(len(input)) > limit {
		return nil, &ValidationError{violations: []string{
			fmt.Sprintf("input is %d bytes, exceeding the limit of %d bytes", len(input), limit),
		}}
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(input))
	if err != nil {
		return nil, &ValidationError{violations: []string{"invalid JSON: " + err.Error()}}
	}
	var verr *jsonschema.ValidationError
	if err := reg.schema.Validate(doc); errors.As(err, &verr) {
		return nil, &ValidationError{violations: violations(verr)}
	} else if err != nil {
		return nil, err
	}
	return reg.tool, nil
}

// violations flattens the error tree of a failed validation into sorted
// messages, one per failing keyword.
func violations(err *jsonschema.ValidationError) []string {
	var out []string
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			out = append(out, describe(e))
			return
		}
		for _, cause := range e.Causes {
			walk(cause)
		}
	}
	walk(err)
	slices.Sort(out)
	return out
}

// describe renders one leaf validation error as "at <pointer>: <message>".
func describe(e *jsonschema.ValidationError) string {
	if k, ok := e.ErrorKind.(*kind.Pattern); ok {
		k.Got = truncate(k.Got, maxEchoBytes)
	}
	msg := fmt.Sprintf("at %s: %s", pointer(e.InstanceLocation), e.ErrorKind.LocalizedString(printer))
	return truncate(msg, maxViolationBytes)
}

// pointer renders tokens as a JSON pointer (RFC 6901), or "(root)" when empty.
func pointer(tokens []string) string {
	if len(tokens) == 0 {
		return "(root)"
	}
	escaper := strings.NewReplacer("~", "~0", "/", "~1")
	var b strings.Builder
	for _, tok := range tokens {
		b.WriteByte('/')
		b.WriteString(escaper.Replace(tok))
	}
	return b.String()
}
