package builtin

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"unicode"
)

// cleanPath checks a path supplied by the model and returns it cleaned. Paths
// are relative to the root and use '/' separators. The checks give clear
// errors for inputs that os.Root would refuse anyway (absolute paths, '..').
func cleanPath(p string) (string, error) {
	switch {
	case p == "":
		return "", fmt.Errorf("%w: path is empty", ErrPathNotAllowed)
	case strings.ContainsFunc(p, unicode.IsControl):
		return "", fmt.Errorf("%w: path %q contains a control character", ErrPathNotAllowed, p)
	case strings.Contains(p, `\`):
		return "", fmt.Errorf("%w: path %q contains a backslash; separate elements with '/'", ErrPathNotAllowed, p)
	case path.IsAbs(p):
		return "", fmt.Errorf("%w: path %q is absolute; paths are relative to the root", ErrPathNotAllowed, p)
	case hasDriveLetter(p):
		return "", fmt.Errorf("%w: path %q starts with a Windows drive letter", ErrPathNotAllowed, p)
	case slices.Contains(strings.Split(p, "/"), ".."):
		return "", fmt.Errorf("%w: path %q contains a '..' element", ErrPathNotAllowed, p)
	}
	return path.Clean(p), nil
}

// hasDriveLetter reports whether p starts like a Windows path such as "C:".
func hasDriveLetter(p string) bool {
	return len(p) >= 2 && p[1] == ':' && ('a' <= p[0]|0x20 && p[0]|0x20 <= 'z')
}

// rootError classifies an error from resolving a path through the root. A
// missing file is reported as such; any other failure (a symlink leading out
// of the root, a symlink loop, a parent that is not a directory) is a
// refusal.
func rootError(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrPathNotAllowed, err)
}

// open opens name through the root, for reading, if it is of the wanted type
// (0 for a regular file, fs.ModeDir for a directory). The type is checked
// before opening, so devices and FIFOs are never opened, and again on the
// open file, to catch a swap in between; O_NONBLOCK keeps a FIFO swapped in
// from blocking the open.
func (f *Files) open(name string, want fs.FileMode) (*os.File, fs.FileInfo, error) {
	info, err := f.root.Stat(name)
	if err != nil {
		return nil, nil, rootError(err)
	}
	if err := checkType(name, info, want); err != nil {
		return nil, nil, err
	}
	file, err := f.root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, rootError(err)
	}
	if info, err = file.Stat(); err == nil {
		err = checkType(name, info, want)
	}
	if err != nil {
		file.Close()
		return nil, nil, err
	}
	return file, info, nil
}

// checkType refuses info unless its file type is want.
func checkType(name string, info fs.FileInfo, want fs.FileMode) error {
	if got := info.Mode().Type(); got != want {
		return fmt.Errorf("%w: %q is a %s, not a %s", ErrPathNotAllowed, name, describeType(got), describeType(want))
	}
	return nil
}

// describeType names a file type for error messages.
func describeType(t fs.FileMode) string {
	switch {
	case t.IsRegular():
		return "regular file"
	case t.IsDir():
		return "directory"
	case t&fs.ModeSymlink != 0:
		return "symbolic link"
	case t&fs.ModeNamedPipe != 0:
		return "named pipe"
	case t&fs.ModeSocket != 0:
		return "socket"
	case t&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}
