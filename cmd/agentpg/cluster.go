//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// clusterUser is the superuser of a throwaway cluster.
const clusterUser = "agentpg"

// cluster is a throwaway PostgreSQL cluster in a temporary directory, which
// holds its data and the Unix socket it listens on: it opens no TCP port.
type cluster struct {
	dir    string
	dsn    string
	server *exec.Cmd
	exited chan struct{} // closed once the server has exited
}

// startCluster creates and starts a throwaway cluster with trust
// authentication, with the binaries findPostgres finds. As initdb and
// postgres refuse to run as root, it runs them as the OS user postgres when
// agentpg runs as root. The server runs in a process group of its own, so
// that Ctrl-C reaches agentpg only, which then stops it.
func startCluster(ctx context.Context) (_ *cluster, err error) {
	bin, err := findPostgres()
	if err != nil {
		return nil, err
	}
	cred, err := clusterCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "agentpg-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	attr := &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	data := filepath.Join(dir, "data")

	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "--pgdata", data,
		"--username", clusterUser, "--auth", "trust", "--encoding", "UTF8", "--locale", "C", "--no-sync")
	initdb.Dir, initdb.SysProcAttr = dir, attr
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}

	logPath := filepath.Join(dir, "postgres.log")
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	server := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-k", dir,
		"-c", "listen_addresses=", "-c", "fsync=off")
	server.Dir, server.SysProcAttr, server.Stdout, server.Stderr = dir, attr, log, log
	if err := server.Start(); err != nil {
		return nil, fmt.Errorf("starting postgres: %w", err)
	}
	cl := &cluster{
		dir:    dir,
		dsn:    (&url.URL{Scheme: "postgres", User: url.User(clusterUser), Path: "/postgres", RawQuery: url.Values{"host": {dir}}.Encode()}).String(),
		server: server,
		exited: make(chan struct{}),
	}
	go func() {
		server.Wait()
		close(cl.exited)
	}()
	if err := cl.waitReady(ctx); err != nil {
		out, _ := os.ReadFile(logPath)
		cl.stop()
		return nil, fmt.Errorf("starting postgres: %w\n%s", err, out)
	}
	return cl, nil
}

// waitReady waits for the server to accept connections.
func (cl *cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, cl.dsn)
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-cl.exited:
			return errors.New("postgres exited")
		case <-ctx.Done():
			return fmt.Errorf("postgres is not ready: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop shuts the server down and removes the cluster's directory.
func (cl *cluster) stop() error {
	cl.server.Process.Signal(syscall.SIGINT) // PostgreSQL's fast shutdown
	select {
	case <-cl.exited:
	case <-time.After(10 * time.Second):
		syscall.Kill(-cl.server.Process.Pid, syscall.SIGKILL) // its whole process group
		<-cl.exited
	}
	return os.RemoveAll(cl.dir)
}

// findPostgres returns the directory of initdb and postgres: that of initdb
// in PATH, or else the newest /usr/lib/postgresql/*/bin (Debian's layout)
// holding both.
func findPostgres() (string, error) {
	var dirs []string
	if initdb, err := exec.LookPath("initdb"); err == nil {
		dirs = append(dirs, filepath.Dir(initdb))
	}
	versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin") // sorted, and the major versions have two digits
	slices.Reverse(versions)
	for _, dir := range append(dirs, versions...) {
		_, errInitdb := exec.LookPath(filepath.Join(dir, "initdb"))
		_, errPostgres := exec.LookPath(filepath.Join(dir, "postgres"))
		if errInitdb == nil && errPostgres == nil {
			return dir, nil
		}
	}
	return "", errors.New("found no initdb and postgres in PATH or /usr/lib/postgresql/*/bin")
}

// clusterCredential returns the credential initdb and postgres run with: nil,
// agentpg's own, unless agentpg runs as root, which they refuse; then that of
// the OS user postgres.
func clusterCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("initdb and postgres refuse to run as root, and there is no postgres user to run them as: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}
