//go:build unix

package builtin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/agentpg/agentpg/tool/builtin"
)

func ExampleNewFiles() {
	root, err := os.MkdirTemp("", "workspace")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(root)
	os.WriteFile(filepath.Join(root, "notes.txt"), []byte("buy milk\n"), 0o644)

	files, err := builtin.NewFiles(builtin.FilesConfig{Root: root})
	if err != nil {
		panic(err)
	}
	defer files.Close()
	tools := files.Tools() // read_file and list_files: AllowWrite is false
	read := tools[0]

	ctx := context.Background()
	out, err := read.Execute(ctx, json.RawMessage(`{"path":"notes.txt"}`))
	fmt.Printf("%q %v\n", out, err)
	_, err = read.Execute(ctx, json.RawMessage(`{"path":"../../etc/passwd"}`))
	fmt.Println(err)
	fmt.Println(errors.Is(err, builtin.ErrPathNotAllowed))
	// Output:
	// "buy milk\n" <nil>
	// path not allowed: path "../../etc/passwd" contains a '..' element
	// true
}

func ExampleNewHTTPFetch() {
	fetch, err := builtin.NewHTTPFetch(builtin.HTTPFetchConfig{
		AllowedHosts: []string{"docs.example.com", "*.docs.example.com"},
	})
	if err != nil {
		panic(err)
	}
	// These are refused before anything is looked up or sent.
	ctx := context.Background()
	for _, u := range []string{
		"https://169.254.169.254/latest/meta-data/",
		"http://docs.example.com/",
		"https://docs.example.com@evil.example/",
	} {
		input, _ := json.Marshal(map[string]string{"url": u})
		_, err := fetch.Execute(ctx, input)
		fmt.Println(err)
	}
	// Output:
	// host not allowed: "169.254.169.254" is not an allowed host
	// scheme not allowed: "http" (allowed: https)
	// host not allowed: URLs with user information are refused
}

func ExampleNewCommand() {
	cmd, err := builtin.NewCommand(builtin.CommandConfig{
		Actions: map[string]builtin.Action{
			"greet": {
				Description: "Prints a greeting.",
				Path:        "/bin/echo",
				FixedArgs:   []string{"hello"},
				MaxArgs:     1,
			},
		},
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	out, err := cmd.Execute(ctx, json.RawMessage(`{"action":"greet","args":["world"]}`))
	fmt.Printf("%q %v\n", out, err)
	_, err = cmd.Execute(ctx, json.RawMessage(`{"action":"greet","args":["world; rm -rf ~"]}`))
	fmt.Println(err)
	_, err = cmd.Execute(ctx, json.RawMessage(`{"action":"rm","args":["-rf","/"]}`))
	fmt.Println(err)
	// Output:
	// "hello world\n" <nil>
	// action "greet": argument not allowed: argument 1 ("world; rm -rf ~") is refused by the default pattern, which allows only letters, digits and . _ , + = @ - /, with '/' only after a letter, digit, '.' or '_' and never in an option, and no '@' at the start
	// action not allowed: "rm" (allowed: greet)
}
