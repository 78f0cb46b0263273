//go:build unix

package builtin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/agentpg/agentpg/tool"
)

// filesFixture is a directory holding a root for the Files tools and, beside
// it, an outside directory with a secret the tools must never reach.
type filesFixture struct {
	base  string // holds root and outside
	root  string
	tools map[string]tool.Tool
}

// Limits of the fixture's tools.
const (
	testMaxRead  = 64
	testMaxWrite = 64
	testMaxList  = 20
)

func newFilesFixture(t *testing.T, allowWrite bool) *filesFixture {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	secret := filepath.Join(outside, "secret.txt")
	for _, dir := range []string{root, outside, filepath.Join(root, "sub"), filepath.Join(root, "many")} {
		mustDo(t, os.Mkdir(dir, 0o755))
	}
	files := map[string]string{
		secret:                                   "top secret\n",
		filepath.Join(root, "hello.txt"):         "hello\n",
		filepath.Join(root, "sub", "nested.txt"): "nested\n",
		filepath.Join(root, "big.txt"):           strings.Repeat("x", testMaxRead+1),
	}
	for i := range testMaxList + 1 {
		files[filepath.Join(root, "many", fmt.Sprintf("f%02d", i))] = ""
	}
	for name, content := range files {
		mustDo(t, os.WriteFile(name, []byte(content), 0o644))
	}
	symlinks := map[string]string{
		"link-etc":        "/etc",
		"link-outside":    "../outside",
		"link-abs-secret": secret,
		"link-rel-secret": "../outside/secret.txt",
		"loop1":           "loop2",
		"loop2":           "loop1",
		"self":            "self",
		"devnull":         "/dev/null",
		"link-inside":     "hello.txt",
		"link-fifo":       "fifo",
	}
	for name, target := range symlinks {
		mustDo(t, os.Symlink(target, filepath.Join(root, name)))
	}
	mustDo(t, syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(root, "sock"), Net: "unix"})
	mustDo(t, err)
	l.SetUnlinkOnClose(false)
	mustDo(t, l.Close())

	f, err := NewFiles(FilesConfig{
		Root:           root,
		AllowWrite:     allowWrite,
		MaxReadBytes:   testMaxRead,
		MaxWriteBytes:  testMaxWrite,
		MaxListEntries: testMaxList,
	})
	mustDo(t, err)
	t.Cleanup(func() { f.Close() })
	tools := make(map[string]tool.Tool)
	for _, tl := range f.Tools() {
		tools[tl.Name()] = tl
	}
	return &filesFixture{base: base, root: root, tools: tools}
}

func (fx *filesFixture) run(t *testing.T, name, input string) (string, error) {
	t.Helper()
	tl, ok := fx.tools[name]
	if !ok {
		t.Fatalf("no tool %q", name)
	}
	return tl.Execute(context.Background(), json.RawMessage(input))
}

// snapshot describes every entry under dir (type, size, time, content or
// link target) without following symlinks or opening special files.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries := make(map[string]string)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v %d %d", info.Mode(), info.Size(), info.ModTime().UnixNano())
		switch {
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += " " + string(data)
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		}
		entries[p] = desc
		return nil
	})
	mustDo(t, err)
	return entries
}

// filesCorpus holds hostile inputs for the file tools. BASE in an input
// stands for the fixture's base directory, which holds the root and the
// outside directory.
var filesCorpus = []struct {
	tool, input string
	want        error
	msg         string
}{
	// Traversal.
	{"read_file", `{"path":"../outside/secret.txt"}`, ErrPathNotAllowed, "'..' element"},
	{"read_file", `{"path":"a/../../outside/secret.txt"}`, ErrPathNotAllowed, "'..' element"},
	{"read_file", `{"path":"./../outside/secret.txt"}`, ErrPathNotAllowed, "'..' element"},
	{"read_file", `{"path":"sub/../../outside/secret.txt"}`, ErrPathNotAllowed, "'..' element"},
	{"read_file", `{"path":"sub/../hello.txt"}`, ErrPathNotAllowed, "'..' element"},
	{"read_file", `{"path":".."}`, ErrPathNotAllowed, "'..' element"},
	{"read_file", `{"path":"sub/.."}`, ErrPathNotAllowed, "'..' element"},
	{"read_file", `{"path":"%2e%2e/outside/secret.txt"}`, fs.ErrNotExist, "no such file"},
	{"read_file", `{"path":"..%2foutside%2fsecret.txt"}`, fs.ErrNotExist, "no such file"},
	{"read_file", `{"path":"....//outside/secret.txt"}`, fs.ErrNotExist, "no such file"},
	// Absolute and Windows paths.
	{"read_file", `{"path":"/etc/passwd"}`, ErrPathNotAllowed, "absolute"},
	{"read_file", `{"path":"/"}`, ErrPathNotAllowed, "absolute"},
	{"read_file", `{"path":"//etc/passwd"}`, ErrPathNotAllowed, "absolute"},
	{"read_file", `{"path":"BASE/outside/secret.txt"}`, ErrPathNotAllowed, "absolute"},
	{"read_file", `{"path":"C:\\Windows\\win.ini"}`, ErrPathNotAllowed, "backslash"},
	{"read_file", `{"path":"C:/Windows/win.ini"}`, ErrPathNotAllowed, "drive letter"},
	{"read_file", `{"path":"c:secret.txt"}`, ErrPathNotAllowed, "drive letter"},
	{"read_file", `{"path":"\\\\server\\share\\secret.txt"}`, ErrPathNotAllowed, "backslash"},
	{"read_file", `{"path":"..\\outside\\secret.txt"}`, ErrPathNotAllowed, "backslash"},
	{"read_file", `{"path":"sub\\..\\..\\outside"}`, ErrPathNotAllowed, "backslash"},
	// Control characters and empty paths.
	{"read_file", `{"path":"hello.txt\u0000.png"}`, ErrPathNotAllowed, "control character"},
	{"read_file", `{"path":"\u0000"}`, ErrPathNotAllowed, "control character"},
	{"read_file", `{"path":"hello.txt\n"}`, ErrPathNotAllowed, "control character"},
	{"read_file", `{"path":""}`, ErrPathNotAllowed, "empty"},
	{"read_file", `{}`, ErrPathNotAllowed, "empty"},
	{"read_file", `null`, ErrPathNotAllowed, "empty"},
	// Symlinks leading out, and loops.
	{"read_file", `{"path":"link-etc/passwd"}`, ErrPathNotAllowed, "escapes"},
	{"read_file", `{"path":"link-etc"}`, ErrPathNotAllowed, "escapes"},
	{"read_file", `{"path":"link-outside/secret.txt"}`, ErrPathNotAllowed, "escapes"},
	{"read_file", `{"path":"link-abs-secret"}`, ErrPathNotAllowed, "escapes"},
	{"read_file", `{"path":"link-rel-secret"}`, ErrPathNotAllowed, "escapes"},
	{"read_file", `{"path":"loop1"}`, ErrPathNotAllowed, "too many levels of symbolic links"},
	{"read_file", `{"path":"self"}`, ErrPathNotAllowed, "too many levels of symbolic links"},
	{"read_file", `{"path":"self/x"}`, ErrPathNotAllowed, "too many levels of symbolic links"},
	// Special files and limits.
	{"read_file", `{"path":"devnull"}`, ErrPathNotAllowed, "escapes"},
	{"read_file", `{"path":"fifo"}`, ErrPathNotAllowed, "is a named pipe"},
	{"read_file", `{"path":"link-fifo"}`, ErrPathNotAllowed, "is a named pipe"},
	{"read_file", `{"path":"sock"}`, ErrPathNotAllowed, "is a socket"},
	{"read_file", `{"path":"sub"}`, ErrPathNotAllowed, "is a directory"},
	{"read_file", `{"path":"."}`, ErrPathNotAllowed, "is a directory"},
	{"read_file", `{"path":"big.txt"}`, ErrTooLarge, `"big.txt" is 65 bytes; the limit is 64`},
	{"read_file", `{"path":"hello.txt/x"}`, ErrPathNotAllowed, "not a directory"},
	// Malformed input.
	{"read_file", `not json`, ErrInvalidInput, "invalid character"},
	{"read_file", `{"path":"hello.txt","extra":1}`, ErrInvalidInput, "unknown field"},
	{"read_file", `{"path":5}`, ErrInvalidInput, "cannot unmarshal"},
	{"read_file", `{"path":"hello.txt"} {"path":"../x"}`, ErrInvalidInput, "after the JSON object"},
	{"read_file", `["hello.txt"]`, ErrInvalidInput, "cannot unmarshal"},

	{"list_files", `{"path":".."}`, ErrPathNotAllowed, "'..' element"},
	{"list_files", `{"path":"../outside"}`, ErrPathNotAllowed, "'..' element"},
	{"list_files", `{"path":"sub/../.."}`, ErrPathNotAllowed, "'..' element"},
	{"list_files", `{"path":"/"}`, ErrPathNotAllowed, "absolute"},
	{"list_files", `{"path":"/etc"}`, ErrPathNotAllowed, "absolute"},
	{"list_files", `{"path":"C:\\"}`, ErrPathNotAllowed, "backslash"},
	{"list_files", `{"path":"sub\u0000"}`, ErrPathNotAllowed, "control character"},
	{"list_files", `{"path":"link-etc"}`, ErrPathNotAllowed, "escapes"},
	{"list_files", `{"path":"link-outside"}`, ErrPathNotAllowed, "escapes"},
	{"list_files", `{"path":"loop1"}`, ErrPathNotAllowed, "too many levels of symbolic links"},
	{"list_files", `{"path":"hello.txt"}`, ErrPathNotAllowed, "is a regular file, not a directory"},
	{"list_files", `{"path":"fifo"}`, ErrPathNotAllowed, "is a named pipe, not a directory"},
	{"list_files", `{"path":"many"}`, ErrTooLarge, `"many" has more than 20 entries`},
	{"list_files", `{"path":""}`, ErrPathNotAllowed, "empty"},

	{"write_file", `{"path":"../outside/secret.txt","content":"pwned"}`, ErrPathNotAllowed, "'..' element"},
	{"write_file", `{"path":"../outside/new.txt","content":"pwned"}`, ErrPathNotAllowed, "'..' element"},
	{"write_file", `{"path":"../new.txt","content":"pwned"}`, ErrPathNotAllowed, "'..' element"},
	{"write_file", `{"path":"BASE/outside/new.txt","content":"pwned"}`, ErrPathNotAllowed, "absolute"},
	{"write_file", `{"path":"/tmp/new.txt","content":"pwned"}`, ErrPathNotAllowed, "absolute"},
	{"write_file", `{"path":"C:\\new.txt","content":"pwned"}`, ErrPathNotAllowed, "backslash"},
	{"write_file", `{"path":"new.txt\u0000","content":"pwned"}`, ErrPathNotAllowed, "control character"},
	{"write_file", `{"path":"","content":"pwned"}`, ErrPathNotAllowed, "empty"},
	{"write_file", `{"path":"link-outside/new.txt","content":"pwned"}`, ErrPathNotAllowed, "escapes"},
	{"write_file", `{"path":"link-outside/secret.txt","content":"pwned"}`, ErrPathNotAllowed, "escapes"},
	{"write_file", `{"path":"link-etc/passwd","content":"pwned"}`, ErrPathNotAllowed, "escapes"},
	{"write_file", `{"path":"link-abs-secret","content":"pwned"}`, ErrPathNotAllowed, "is a symbolic link"},
	{"write_file", `{"path":"link-rel-secret","content":"pwned"}`, ErrPathNotAllowed, "is a symbolic link"},
	{"write_file", `{"path":"link-inside","content":"pwned"}`, ErrPathNotAllowed, "is a symbolic link"},
	{"write_file", `{"path":"devnull","content":"pwned"}`, ErrPathNotAllowed, "is a symbolic link"},
	{"write_file", `{"path":"loop1","content":"pwned"}`, ErrPathNotAllowed, "is a symbolic link"},
	{"write_file", `{"path":"sub","content":"pwned"}`, ErrPathNotAllowed, "is a directory"},
	{"write_file", `{"path":".","content":"pwned"}`, ErrPathNotAllowed, "is a directory"},
	{"write_file", `{"path":"fifo","content":"pwned"}`, ErrPathNotAllowed, "is a named pipe"},
	{"write_file", `{"path":"sock","content":"pwned"}`, ErrPathNotAllowed, "is a socket"},
	{"write_file", `{"path":"hello.txt/new.txt","content":"pwned"}`, ErrPathNotAllowed, "the parent of \"hello.txt/new.txt\" is a regular file"},
	{"write_file", `{"path":"missing/new.txt","content":"pwned"}`, fs.ErrNotExist, "no such file"},
	{"write_file", `{"path":"hello.txt","content":"` + strings.Repeat("x", testMaxWrite+1) + `"}`, ErrTooLarge, "content is 65 bytes; the limit is 64"},
	{"write_file", `{"path":"hello.txt"}`, ErrInvalidInput, "content is required"},
	{"write_file", `{"path":"hello.txt","content":"x","mode":"0777"}`, ErrInvalidInput, "unknown field"},
	{"write_file", `{"path":"hello.txt","content":5}`, ErrInvalidInput, "cannot unmarshal"},
}

func TestFilesCorpus(t *testing.T) {
	t.Parallel()
	for _, c := range filesCorpus {
		t.Run(c.tool+" "+c.input, func(t *testing.T) {
			t.Parallel()
			fx := newFilesFixture(t, true)
			before := snapshot(t, fx.base)
			out, err := fx.run(t, c.tool, strings.ReplaceAll(c.input, "BASE", fx.base))
			checkRefused(t, out, err, c.want, c.msg)
			if err != nil && !strings.Contains(c.input, "BASE") && strings.Contains(err.Error(), fx.base) {
				t.Errorf("error %q reveals the root's location", err)
			}
			after := snapshot(t, fx.base)
			for p, desc := range after {
				if before[p] != desc {
					t.Errorf("%s changed: %q -> %q", p, before[p], desc)
				}
			}
			for p := range before {
				if _, ok := after[p]; !ok {
					t.Errorf("%s was removed", p)
				}
			}
		})
	}
}

func TestFilesRead(t *testing.T) {
	t.Parallel()
	fx := newFilesFixture(t, false)
	for path, want := range map[string]string{
		"hello.txt":       "hello\n",
		"./hello.txt":     "hello\n",
		"sub//nested.txt": "nested\n",
		"sub/nested.txt/": "nested\n",
		"link-inside":     "hello\n", // a symlink that stays inside the root
	} {
		got, err := fx.run(t, "read_file", fmt.Sprintf(`{"path":%q}`, path))
		if err != nil || got != want {
			t.Errorf("read_file %q = %q, %v; want %q", path, got, err, want)
		}
	}
}

func TestFilesList(t *testing.T) {
	t.Parallel()
	fx := newFilesFixture(t, false)
	for path, want := range map[string]string{
		".":   "big.txt\ndevnull\nfifo\nhello.txt\nlink-abs-secret\nlink-etc\nlink-fifo\nlink-inside\nlink-outside\nlink-rel-secret\nloop1\nloop2\nmany/\nself\nsock\nsub/",
		"sub": "nested.txt",
	} {
		got, err := fx.run(t, "list_files", fmt.Sprintf(`{"path":%q}`, path))
		if err != nil || got != want {
			t.Errorf("list_files %q = %q, %v; want %q", path, got, err, want)
		}
	}
}

func TestFilesWrite(t *testing.T) {
	t.Parallel()
	fx := newFilesFixture(t, true)
	for _, c := range []struct{ path, content string }{
		{"new.txt", "fresh"},
		{"hello.txt", "replaced"},
		{"sub/nested.txt", ""},
	} {
		out, err := fx.run(t, "write_file", fmt.Sprintf(`{"path":%q,"content":%q}`, c.path, c.content))
		if err != nil {
			t.Fatalf("write_file %q: %v", c.path, err)
		}
		if want := fmt.Sprintf("wrote %d bytes to %s", len(c.content), c.path); out != want {
			t.Errorf("write_file %q = %q, want %q", c.path, out, want)
		}
		full := filepath.Join(fx.root, c.path)
		if data, err := os.ReadFile(full); err != nil || string(data) != c.content {
			t.Errorf("%s holds %q, %v; want %q", c.path, data, err, c.content)
		}
		if info, err := os.Lstat(full); err != nil || info.Mode() != 0o600 {
			t.Errorf("%s: mode %v, %v; want a regular file with mode 0600", c.path, info.Mode(), err)
		}
	}
	for _, dir := range []string{fx.root, filepath.Join(fx.root, "sub")} {
		tmps, _ := filepath.Glob(filepath.Join(dir, ".*.tmp"))
		if len(tmps) > 0 {
			t.Errorf("temporary files left behind: %v", tmps)
		}
	}
}

func TestFilesTools(t *testing.T) {
	t.Parallel()
	for allowWrite, want := range map[bool][]string{
		false: {"read_file", "list_files"},
		true:  {"read_file", "list_files", "write_file"},
	} {
		f, err := NewFiles(FilesConfig{Root: t.TempDir(), AllowWrite: allowWrite})
		mustDo(t, err)
		var names []string
		for _, tl := range f.Tools() {
			names = append(names, tl.Name())
			if it, ok := tl.(tool.IdempotentTool); !ok || !it.Idempotent() {
				t.Errorf("%s is not idempotent", tl.Name())
			}
		}
		if fmt.Sprint(names) != fmt.Sprint(want) {
			t.Errorf("AllowWrite=%v: tools %v, want %v", allowWrite, names, want)
		}
		mustDo(t, f.Close())
	}
}

func TestNewFilesRefusesBadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	mustDo(t, os.WriteFile(file, nil, 0o644))
	for _, c := range []struct {
		cfg FilesConfig
		msg string
	}{
		{FilesConfig{}, "Root is required"},
		{FilesConfig{Root: filepath.Join(dir, "missing")}, "no such file"},
		{FilesConfig{Root: file}, "not a directory"},
		{FilesConfig{Root: dir, MaxReadBytes: -1}, "negative"},
		{FilesConfig{Root: dir, MaxWriteBytes: -1}, "negative"},
		{FilesConfig{Root: dir, MaxListEntries: -1}, "negative"},
	} {
		f, err := NewFiles(c.cfg)
		if f != nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("NewFiles(%+v) = %v, %v; want an error mentioning %q", c.cfg, f, err, c.msg)
		}
	}
}

func TestFilesReadBinary(t *testing.T) {
	t.Parallel()
	fx := newFilesFixture(t, false)
	for name, content := range map[string]string{
		"nul.bin":      "PK\x03\x04\x00\x00text after a NUL",
		"controls.bin": "\x01\x02\x03\x04\x05\x06\x0e\x0f\x10\x11abcdefgh",
		"utf16.txt":    "h\x00i\x00\n\x00",
	} {
		mustDo(t, os.WriteFile(filepath.Join(fx.root, name), []byte(content), 0o644))
		out, err := fx.run(t, "read_file", fmt.Sprintf(`{"path":%q}`, name))
		checkStorable(t, "read_file "+name, out)
		want := fmt.Sprintf("[file %q is binary data of %d bytes; its content is not shown]", name, len(content))
		if err != nil || out != want {
			t.Errorf("read_file %s = %q, %v; want %q", name, out, err, want)
		}
	}
}

func TestFilesReadInvalidUTF8(t *testing.T) {
	t.Parallel()
	fx := newFilesFixture(t, false)
	mustDo(t, os.WriteFile(filepath.Join(fx.root, "latin1.txt"), []byte("caf\xe9 cr\xe8me, 20\xb0C\n"), 0o644))
	out, err := fx.run(t, "read_file", `{"path":"latin1.txt"}`)
	checkStorable(t, "read_file latin1.txt", out)
	want := "[file \"latin1.txt\" is not valid UTF-8: each invalid byte sequence is shown as U+FFFD (\uFFFD)]\n" +
		"caf\uFFFD cr\uFFFDme, 20\uFFFDC\n"
	if err != nil || out != want {
		t.Errorf("read_file latin1.txt = %q, %v; want %q", out, err, want)
	}
}

func TestFilesListEscapesNames(t *testing.T) {
	t.Parallel()
	fx := newFilesFixture(t, false)
	dir := filepath.Join(fx.root, "sub")
	// Each pair could be confused if only the odd name were escaped.
	for _, name := range []string{
		"bad\xffname", `"bad\xffname"`, // invalid UTF-8, and its escaped form
		"evil\nname", `"evil\nname"`, // a control character
		"\u202egnp.exe", // a bidirectional override
		"trailing ", "trailing",
		"\u00a0nbsp",
	} {
		mustDo(t, os.WriteFile(filepath.Join(dir, name), nil, 0o644))
	}
	mustDo(t, os.Mkdir(filepath.Join(dir, "dir\xfe"), 0o755))
	out, err := fx.run(t, "list_files", `{"path":"sub"}`)
	checkStorable(t, "list_files", out)
	if err != nil {
		t.Fatal(err)
	}
	listing, note, ok := strings.Cut(out, "\n\n")
	if !ok || !strings.Contains(note, "escaped") {
		t.Errorf("list_files = %q; want the listing, an empty line and a note on escaped names", out)
	}
	want := []string{
		`"\"bad\\xffname\""`,
		`"\"evil\\nname\""`,
		`"\u00a0nbsp"`,
		`"\u202egnp.exe"`,
		`"bad\xffname"`,
		`"dir\xfe"/`,
		`"evil\nname"`,
		`"trailing "`,
		"nested.txt",
		"trailing",
	}
	if got := strings.Split(listing, "\n"); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("listing:\n%s\nwant:\n%s", listing, strings.Join(want, "\n"))
	}
}
