package builtin

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/agentpg/agentpg/tool"
)

// Default limits of FilesConfig.
const (
	DefaultMaxReadBytes   = 1 << 20
	DefaultMaxWriteBytes  = 1 << 20
	DefaultMaxListEntries = 1000
)

// FilesConfig configures NewFiles. Zero limits take the defaults above.
type FilesConfig struct {
	// Root is the directory the tools are confined to. It is required and
	// must be an existing directory.
	Root string
	// AllowWrite adds the write_file tool.
	AllowWrite bool
	// MaxReadBytes is the size of the largest file read_file returns.
	MaxReadBytes int64
	// MaxWriteBytes is the size of the largest content write_file accepts.
	MaxWriteBytes int64
	// MaxListEntries is the most entries list_files returns for one
	// directory.
	MaxListEntries int
}

// Files provides tools that read, list and optionally write files inside one
// root directory. Every access goes through an os.Root, so neither '..' nor a
// symbolic link can lead outside the root. Only regular files are read or
// replaced, and limits that are exceeded are refused with ErrTooLarge rather
// than truncated.
type Files struct {
	root       *os.Root
	allowWrite bool
	maxRead    int64
	maxWrite   int64
	maxList    int
}

// NewFiles opens cfg.Root and returns the tools confined to it. Close
// releases the root.
func NewFiles(cfg FilesConfig) (*Files, error) {
	if cfg.Root == "" {
		return nil, fmt.Errorf("%w: Root is required", ErrInvalidConfig)
	}
	if cfg.MaxReadBytes < 0 || cfg.MaxWriteBytes < 0 || cfg.MaxListEntries < 0 {
		return nil, fmt.Errorf("%w: limits must not be negative", ErrInvalidConfig)
	}
	root, err := os.OpenRoot(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("%w: Root: %w", ErrInvalidConfig, err)
	}
	return &Files{
		root:       root,
		allowWrite: cfg.AllowWrite,
		maxRead:    cmp.Or(cfg.MaxReadBytes, DefaultMaxReadBytes),
		maxWrite:   cmp.Or(cfg.MaxWriteBytes, DefaultMaxWriteBytes),
		maxList:    cmp.Or(cfg.MaxListEntries, DefaultMaxListEntries),
	}, nil
}

// Close releases the root directory. The tools fail once it is closed.
func (f *Files) Close() error {
	return f.root.Close()
}

// Tools returns read_file and list_files, and write_file when writing is
// allowed. All of them are idempotent.
func (f *Files) Tools() []tool.Tool {
	pathProp := tool.PropertyDef{Type: "string", Description: "Path relative to the root, with '/' separators."}
	readDesc := fmt.Sprintf("Reads a text file inside the workspace and returns its content. Files over %d bytes are refused; "+
		"binary files are described, not shown, and invalid UTF-8 is shown as U+FFFD, with a note.", f.maxRead)
	listDesc := "Lists a directory inside the workspace, one name per line, sorted; directories end with '/'. Use \".\" for the workspace root. " +
		"Names that are not plain text are escaped in double quotes, as a note after an empty line explains."
	tools := []tool.Tool{
		funcTool{
			name:        "read_file",
			description: readDesc,
			schema:      objectSchema(map[string]tool.PropertyDef{"path": pathProp}),
			run:         f.readFile,
		},
		funcTool{
			name:        "list_files",
			description: listDesc,
			schema:      objectSchema(map[string]tool.PropertyDef{"path": pathProp}),
			run:         f.listFiles,
		},
	}
	if f.allowWrite {
		tools = append(tools, funcTool{
			name:        "write_file",
			description: fmt.Sprintf("Creates or replaces a regular file inside the workspace with the given content (at most %d bytes). The parent directory must exist.", f.maxWrite),
			schema: objectSchema(map[string]tool.PropertyDef{
				"path":    pathProp,
				"content": {Type: "string", Description: "The complete new content of the file."},
			}),
			run: f.writeFile,
		})
	}
	return tools
}

func (f *Files) readFile(_ context.Context, input json.RawMessage) (string, error) {
	name, err := decodePath(input)
	if err != nil {
		return "", err
	}
	file, info, err := f.open(name, 0)
	if err != nil {
		return "", err
	}
	defer file.Close()
	if info.Size() > f.maxRead {
		return "", fmt.Errorf("%w: %q is %d bytes; the limit is %d", ErrTooLarge, name, info.Size(), f.maxRead)
	}
	data, err := io.ReadAll(io.LimitReader(file, f.maxRead+1))
	if err != nil {
		return "", fmt.Errorf("reading %q: %w", name, err)
	}
	if int64(len(data)) > f.maxRead {
		return "", fmt.Errorf("%w: %q grew past the limit of %d bytes", ErrTooLarge, name, f.maxRead)
	}
	return asText(fmt.Sprintf("file %q", name), data), nil
}

func (f *Files) listFiles(_ context.Context, input json.RawMessage) (string, error) {
	name, err := decodePath(input)
	if err != nil {
		return "", err
	}
	dir, _, err := f.open(name, fs.ModeDir)
	if err != nil {
		return "", err
	}
	defer dir.Close()
	entries, err := dir.ReadDir(f.maxList + 1)
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("listing %q: %w", name, err)
	}
	if len(entries) > f.maxList {
		return "", fmt.Errorf("%w: %q has more than %d entries", ErrTooLarge, name, f.maxList)
	}
	lines := make([]string, len(entries))
	escaped := false
	for i, e := range entries {
		line := e.Name()
		if needsEscaping(line) {
			line = strconv.Quote(line)
			escaped = true
		}
		if e.IsDir() {
			line += "/"
		}
		lines[i] = line
	}
	slices.Sort(lines)
	listing := strings.Join(lines, "\n")
	if escaped {
		// No file has an empty name, so the empty line cannot be taken for
		// one, nor the note after it.
		listing += "\n\n" + escapedNamesNote
	}
	return listing, nil
}

// escapedNamesNote follows a listing that holds escaped names.
const escapedNamesNote = "[Names in double quotes are escaped like Go string literals, because they hold " +
	"invalid UTF-8, control or other non-printing characters, start with a double quote, or start or end with a space. " +
	"Unescape them to use them as paths; names with invalid UTF-8 or control characters cannot be used with these tools.]"

// needsEscaping reports whether list_files shows name escaped, in double
// quotes: if it could not be shown as is (invalid UTF-8, control characters)
// or could mislead (other non-printing characters such as bidirectional
// overrides, spaces at either end). Names that start with a double quote are
// escaped too, so that a listed name in double quotes is always an escaped
// one and cannot be confused with a file whose name has the quotes.
func needsEscaping(name string) bool {
	return !utf8.ValidString(name) ||
		strings.HasPrefix(name, `"`) ||
		strings.TrimSpace(name) != name ||
		strings.ContainsFunc(name, func(r rune) bool { return !unicode.IsPrint(r) })
}

func (f *Files) writeFile(_ context.Context, input json.RawMessage) (string, error) {
	var in struct {
		Path    string  `json:"path"`
		Content *string `json:"content"`
	}
	if err := decodeInput(input, &in); err != nil {
		return "", err
	}
	name, err := cleanPath(in.Path)
	if err != nil {
		return "", err
	}
	if in.Content == nil {
		return "", fmt.Errorf("%w: content is required", ErrInvalidInput)
	}
	if size := int64(len(*in.Content)); size > f.maxWrite {
		return "", fmt.Errorf("%w: content is %d bytes; the limit is %d", ErrTooLarge, size, f.maxWrite)
	}
	if err := f.checkReplaceable(name); err != nil {
		return "", err
	}
	if err := f.replace(name, []byte(*in.Content)); err != nil {
		return "", err
	}
	return fmt.Sprintf("wrote %d bytes to %s", len(*in.Content), name), nil
}

// checkReplaceable refuses name unless its parent is a directory and name is
// missing or a regular file: never a symlink, directory or special file.
func (f *Files) checkReplaceable(name string) error {
	parent, err := f.root.Stat(path.Dir(name))
	if err != nil {
		return rootError(err)
	}
	if !parent.IsDir() {
		return fmt.Errorf("%w: the parent of %q is a %s", ErrPathNotAllowed, name, describeType(parent.Mode().Type()))
	}
	info, err := f.root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return rootError(err)
	case !info.Mode().IsRegular():
		return fmt.Errorf("%w: %q is a %s; only regular files can be replaced", ErrPathNotAllowed, name, describeType(info.Mode().Type()))
	}
	return nil
}

// replace writes data to name atomically, with mode 0o600: into a new
// temporary file in the same directory, which is then renamed over name.
func (f *Files) replace(name string, data []byte) error {
	tmp := path.Join(path.Dir(name), "."+path.Base(name)+"."+rand.Text()+".tmp")
	file, err := f.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("writing %q: %w", name, rootError(err))
	}
	_, err = file.Write(data)
	if err == nil {
		err = file.Sync()
	}
	if closeErr := file.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = f.root.Rename(tmp, name)
	}
	if err != nil {
		f.root.Remove(tmp) // best effort: the write already failed
		return fmt.Errorf("writing %q: %w", name, err)
	}
	return nil
}

// decodePath decodes an input of the form {"path": "..."} and checks the
// path.
func decodePath(input json.RawMessage) (string, error) {
	var in struct {
		Path string `json:"path"`
	}
	if err := decodeInput(input, &in); err != nil {
		return "", err
	}
	return cleanPath(in.Path)
}

// objectSchema returns the schema of an object whose properties are all
// required and which has no other properties.
func objectSchema(props map[string]tool.PropertyDef) tool.ToolSchema {
	required := slices.Sorted(maps.Keys(props))
	no := false
	return tool.ToolSchema{Type: "object", Properties: props, Required: required, AdditionalProperties: &no}
}

// funcTool is an idempotent tool.Tool made of its parts.
type funcTool struct {
	name, description string
	schema            tool.ToolSchema
	run               func(context.Context, json.RawMessage) (string, error)
}

var _ tool.IdempotentTool = funcTool{}

func (t funcTool) Name() string                 { return t.name }
func (t funcTool) Description() string          { return t.description }
func (t funcTool) InputSchema() tool.ToolSchema { return t.schema }
func (t funcTool) Idempotent() bool             { return true }

func (t funcTool) Execute(ctx context.Context, input json.RawMessage) (string, error) {
	return storableResult(t.run(ctx, input))
}
