package tool_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"strings"

	"github.com/agentpg/agentpg/tool"
)

type greetInput struct {
	Name     string `json:"name" jsonschema:"description=Who to greet,minLength=1"`
	Language string `json:"language,omitempty" jsonschema:"enum=en,enum=fr"`
}

func greet(_ context.Context, in greetInput) (string, error) {
	if in.Language == "fr" {
		return "Bonjour, " + in.Name + "!", nil
	}
	return "Hello, " + in.Name + "!", nil
}

func ExampleNewFunc() {
	greeter, err := tool.NewFunc("greet", "Greets someone by name.", greet)
	if err != nil {
		log.Fatal(err)
	}

	schema, err := json.MarshalIndent(greeter.InputSchema(), "", "  ")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(schema))

	out, err := greeter.Execute(context.Background(), json.RawMessage(`{"name": "Ada", "language": "fr"}`))
	fmt.Println(out, err)
	// Output:
	// {
	//   "type": "object",
	//   "properties": {
	//     "language": {
	//       "type": "string",
	//       "enum": [
	//         "en",
	//         "fr"
	//       ]
	//     },
	//     "name": {
	//       "type": "string",
	//       "description": "Who to greet",
	//       "minLength": 1
	//     }
	//   },
	//   "required": [
	//     "name"
	//   ],
	//   "additionalProperties": false
	// }
	// Bonjour, Ada! <nil>
}

func ExampleRegistry_Validate() {
	greeter, err := tool.NewFunc("greet", "Greets someone by name.", greet)
	if err != nil {
		log.Fatal(err)
	}
	reg, err := tool.NewRegistry(greeter)
	if err != nil {
		log.Fatal(err)
	}

	fmt.Println(reg.Validate("greet", json.RawMessage(`{"name": "Ada"}`)))
	fmt.Println(reg.Validate("greet", json.RawMessage(`{"language": "de", "nickname": "A"}`)))
	// Output:
	// <nil>
	// input does not match schema:
	// - at (root): additional properties 'nickname' not allowed
	// - at (root): missing property 'name'
	// - at /language: value must be one of 'en', 'fr'
}

func ExampleExecutor_Execute() {
	greeter, err := tool.NewFunc("greet", "Greets someone by name.", greet)
	if err != nil {
		log.Fatal(err)
	}
	reg, err := tool.NewRegistry(greeter)
	if err != nil {
		log.Fatal(err)
	}
	exec := tool.NewExecutor(reg)

	results := exec.Execute(context.Background(), []tool.Call{
		{ID: "toolu_1", Name: "greet", Input: json.RawMessage(`{"name": "Ada"}`)},
		{ID: "toolu_2", Name: "greet", Input: json.RawMessage(`{"name": ""}`)},
		{ID: "toolu_3", Name: "wave", Input: json.RawMessage(`{}`)},
	})
	for _, res := range results {
		fmt.Printf("%s error=%t: %s\n", res.ID, res.IsError, strings.ReplaceAll(res.Output, "\n", " "))
	}
	// Output:
	// toolu_1 error=false: Hello, Ada!
	// toolu_2 error=true: input does not match schema: - at /name: minLength: got 0, want 1
	// toolu_3 error=true: unknown tool "wave"; available tools: greet
}
