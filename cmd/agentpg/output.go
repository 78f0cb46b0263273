package main

import (
	"encoding/json"
	"fmt"
	"io"
)

// writeJSON writes v to w as indented JSON, for --json, with the same
// characters escaped as in text (see escapeJSON).
func writeJSON(w io.Writer, v any) error {
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the output: %w", err)
	}
	_, err = w.Write(append(escapeJSON(out), '\n'))
	return err
}
