// Package builtin provides tools an agent can offer the model to reach the
// outside world: files under one directory (Files), HTTP GET requests
// (HTTPFetch) and a fixed set of programs (Command).
//
// # Deny by default
//
// Each tool does nothing until its configuration names what it may do, and
// its constructor refuses a configuration that does not make sense:
//
//   - Files needs a Root directory; it reads, lists and, only with
//     AllowWrite, writes regular files inside it, and nothing else.
//   - HTTPFetch fetches https URLs of the hosts in AllowedHosts; with an
//     empty list it fetches nothing. Whatever the list, it only connects to
//     public unicast addresses.
//   - Command runs the executables named in Actions, with arguments that
//     pass each action's rules; nothing else can be run.
//
// Every input from the model is treated as hostile. Execute decodes it
// strictly (unknown fields and trailing data are refused) and checks it
// again even if the caller already validated it against InputSchema. A
// refusal has no effect: a refused write never touches the file system, a
// refused host or address is never connected to, and a refused command never
// starts. It is returned as an error
// wrapping one of the package's sentinel errors (ErrPathNotAllowed,
// ErrAddressNotAllowed, ...), which a tool executor reports to the model as
// an error tool_result, with a message saying what was refused and why.
//
// Limits are hard: a file, directory or response over its limit is refused
// with ErrTooLarge rather than truncated. Only command output, which exists
// once the command has run, is truncated, and marked as such.
//
// Everything the tools return, output and error text alike, is valid UTF-8
// without NUL bytes, as PostgreSQL needs to store it. File content, response
// bodies and command output that look binary (a NUL byte, or many control
// characters, as git and file(1) decide) are described rather than returned;
// in other text, invalid UTF-8 (Latin-1, say) is replaced with U+FFFD after a
// note saying so; and list_files escapes names that are not plain text.
//
// # Defences
//
// Files confines every access to an os.Root, so neither '..' nor a symbolic
// link can lead outside the root, whatever the path. Paths with '..',
// absolute or Windows-style paths and control characters are refused with a
// clear message before reaching it. Only regular files are read or replaced
// (never devices, FIFOs, sockets, directories or symlinks), and writes are
// atomic: a temporary file in the same directory is renamed over the target.
//
// HTTPFetch refuses, before any request, URLs with a scheme other than https
// (and http if allowed), with user information, or with a host that is
// denied, not allowed, or an IP address in a non-standard notation such as
// 0x7f.1. Against server-side request forgery it resolves host names itself,
// refuses a host if any of its addresses is not public (loopback, private,
// link-local including cloud metadata, CGNAT, multicast, documentation and
// other special-purpose ranges, IPv4-mapped and NAT64 forms of those), and
// checks the address again in net.Dialer.Control, just before connect(2).
// Every redirect is checked in the same way. No proxy is taken from the
// environment.
//
// Command runs the configured absolute path directly, never through a
// shell, with the configured environment only, and on Linux kills every
// process it started, in a cgroup of its own where possible, when it exits
// or times out (see Command). Arguments are refused if they contain
// control characters or a path element ending in '..', look like options
// (unless the action allows them), or do not match the action's pattern,
// which by default leaves out every shell metacharacter and anything that
// could name a location outside the working directory: absolute paths, also
// after '=', '@' or ',' or attached to an option, '~', URLs and host:path
// forms (see DefaultArgPattern).
//
// This package is part of the security core and is written by hand on the
// standard library on purpose: every line that decides what is allowed is
// here to be read.
package builtin
