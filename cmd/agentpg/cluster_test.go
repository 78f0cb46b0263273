//go:build unix

package main

import (
	"context"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// requireClusterSupport skips the test where no throwaway cluster can start
// (no PostgreSQL binaries), except in CI, which installs them: there it
// fails.
func requireClusterSupport(t *testing.T) {
	t.Helper()
	_, err := findPostgres()
	if err == nil {
		_, err = clusterCredential()
	}
	switch {
	case err == nil:
	case os.Getenv("CI") == "true":
		t.Fatalf("CI must be able to start a throwaway cluster: %v", err)
	default:
		t.Skip(err)
	}
}

var clusterNotice = regexp.MustCompile(`No PostgreSQL answered on \S+: started a throwaway cluster in (\S+); it is removed on exit\.`)

// wantRemoved checks that the cluster named in stderr is gone.
func wantRemoved(t *testing.T, stderr string) {
	t.Helper()
	m := clusterNotice.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no throwaway cluster was announced:\n%s", stderr)
	}
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("the cluster's directory %s is still there (%v)", m[1], err)
	}
}

func TestDemoStartsThrowawayCluster(t *testing.T) {
	requireClusterSupport(t)
	t.Parallel()
	addr := closedAddr(t)

	res := invocation{localServer: addr, env: map[string]string{"DATABASE_URL": ""}}.run(t, "demo")
	wantCode(t, res, 0)
	wantContains(t, "stderr", res.stderr, "No PostgreSQL answered on "+addr)
	wantContains(t, "stdout", res.stdout, `Migrated schema "agentpg" in postgres://agentpg@/postgres?host=`, "agent: Your name is Ada")
	if strings.Contains(res.stdout, "See it again") {
		t.Errorf("the demo points to a session that is removed with its cluster:\n%s", res.stdout)
	}
	wantRemoved(t, res.stderr)
}

// TestThrowawayClusterInterrupted stops the demo as Ctrl-C would, once the
// cluster has started: the cluster is removed all the same.
func TestThrowawayClusterInterrupted(t *testing.T) {
	requireClusterSupport(t)
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout strings.Builder
	stderr := &interrupter{cancel: cancel, when: "started a throwaway cluster"}
	c := &cli{
		stdin:       strings.NewReader(""),
		stdout:      &stdout,
		stderr:      stderr,
		getenv:      func(string) string { return "" },
		localServer: closedAddr(t),
	}

	if code := c.run(ctx, []string{"demo"}); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	wantContains(t, "stderr", stderr.String(), "agentpg: interrupted")
	wantRemoved(t, stderr.String())
}

// interrupter is a writer that calls cancel once it is written when.
type interrupter struct {
	mu     sync.Mutex
	b      strings.Builder
	cancel func()
	when   string
}

func (w *interrupter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if strings.Contains(string(p), w.when) {
		w.cancel()
	}
	return w.b.Write(p)
}

func (w *interrupter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
