// Package tool defines the tools an agent can offer to Claude: the Tool
// interface, the JSON Schema subset used to describe inputs, a Registry that
// enforces the API's naming rules, and an Executor that validates inputs and
// runs calls safely.
//
// # Defining tools
//
// A tool is any type implementing Tool. The simplest way to write one is
// NewFunc, which derives the input schema from a Go struct and decodes the
// model's input into it:
//
//	type readInput struct {
//		Path string `json:"path" jsonschema:"description=Absolute path of the file"`
//	}
//
//	read, err := tool.NewFunc("read_file", "Reads a file.",
//		func(ctx context.Context, in readInput) (string, error) {
//			b, err := os.ReadFile(in.Path)
//			return string(b), err
//		})
//
// # Registering tools
//
// A Registry holds the tools offered to the model. Registration checks each
// tool's name against the Messages API rule and compiles its input schema
// once; Registry.Validate then checks inputs against it and reports every
// violation with its JSON pointer, in words a model can act on.
//
// # Running calls
//
// An Executor runs the tool_use blocks of one model turn. Calls run in
// parallel, each under a timeout, and every failure (unknown tool, invalid
// input, error, panic, timeout, cancellation) becomes an error Result rather
// than a Go error, so it can be returned to the model as an error
// tool_result:
//
//	exec := tool.NewExecutor(reg)
//	exec.SetDefaultTimeout(30 * time.Second)
//	for _, res := range exec.Execute(ctx, calls) {
//		// Send res.Output, flagged with res.IsError, as the tool_result
//		// for res.ID.
//	}
package tool
