package builtin

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Scripts for /bin/sh -c, run with a PID file as $0. Each starts a process
// that writes its PID to the file and sleeps for a minute, waits until the
// file is written, then goes on.
const (
	// setsidChild's sleeper calls setsid(2), leaving the command's session
	// and process group, but stays the child of the command.
	setsidChild = `/usr/bin/setsid /bin/sh -c 'echo $$ >"$0"; exec /bin/sleep 60' "$0" & ` + waitForPIDFile
	// setsidOrphan's sleeper calls setsid(2) in a child of setsid(1), which
	// exits at once, as daemons do: re-parented, the sleeper is no longer a
	// descendant of the command.
	setsidOrphan = `/usr/bin/setsid -f /bin/sh -c 'echo $$ >"$0"; exec /bin/sleep 60' "$0"; ` + waitForPIDFile
	// background's sleeper stays in the session and holds stdout open.
	background     = `/bin/sleep 60 & echo $! >"$0"; `
	waitForPIDFile = `while [ ! -s "$0" ]; do /bin/sleep 0.01; done; `
)

// sleeper is a process a test started and must see killed.
type sleeper struct {
	pidFile string
	marker  string // in its environment, so cleanup kills only ours
}

// newSleeper returns a sleeper whose PID file is in a new directory, and
// makes sure, at the end of the test, that the process it names is killed.
func newSleeper(t *testing.T) *sleeper {
	dir := t.TempDir()
	s := &sleeper{pidFile: filepath.Join(dir, "pid"), marker: "AGENTPG_TEST_SLEEPER=" + dir}
	t.Cleanup(func() {
		if pid, err := s.pid(); err == nil && s.isOurs(pid) && alive(pid) {
			t.Errorf("process %d is still alive; killing it", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return s
}

func (s *sleeper) pid() (int, error) {
	data, err := os.ReadFile(s.pidFile)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

func (s *sleeper) isOurs(pid int) bool {
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	return err == nil && bytes.Contains(env, []byte(s.marker))
}

// checkKilled fails t unless the sleeper was started and is dead within a
// second.
func (s *sleeper) checkKilled(t *testing.T) {
	t.Helper()
	pid, err := s.pid()
	if err != nil {
		t.Fatalf("the sleeper did not start: %v", err)
	}
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if !alive(pid) {
			return
		}
	}
	t.Errorf("process %d outlived the command", pid)
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, after, _ := bytes.Cut(data, []byte(") "))
	return len(after) > 0 && after[0] != 'Z' && after[0] != 'X'
}

// requireCgroup skips t unless commands can run in cgroups of their own:
// without, a process that called setsid(2) and lost its parent is not found.
func requireCgroup(t *testing.T) {
	t.Helper()
	cg := newCgroup()
	if cg == nil {
		t.Skip("cgroup v2 cannot be used here")
	}
	mustDo(t, cg.remove())
}

func TestCommandTimeoutKillsEveryDescendant(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, script string
		needsCgroup  bool
	}{
		{"setsid child", setsidChild, false},
		{"setsid orphan", setsidOrphan, true},
		{"background", background + waitForPIDFile, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if c.needsCgroup {
				requireCgroup(t)
			}
			s := newSleeper(t)
			cmd, err := NewCommand(CommandConfig{
				Actions: map[string]Action{"hang": {Path: "/bin/sh", FixedArgs: []string{"-c", c.script + "exec /bin/sleep 30", s.pidFile}}},
				Timeout: time.Second,
				Env:     []string{s.marker},
			})
			mustDo(t, err)
			start := time.Now()
			out, err := runCommand(cmd, `{"action":"hang"}`)
			if elapsed := time.Since(start); elapsed > time.Second+waitDelay/2 {
				t.Errorf("the timed-out command took %v to stop", elapsed)
			}
			if !errors.Is(err, context.DeadlineExceeded) || out != "" {
				t.Errorf("got %q, %v; want a timeout error", out, err)
			}
			s.checkKilled(t)
		})
	}
}

func TestCommandKillsWhatOutlivesIt(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, script string
		needsCgroup  bool
	}{
		{"setsid child", setsidChild, true}, // an orphan once the command exits
		{"setsid orphan", setsidOrphan, true},
		{"background", background, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if c.needsCgroup {
				requireCgroup(t)
			}
			s := newSleeper(t)
			cmd, err := NewCommand(CommandConfig{
				Actions: map[string]Action{"start": {Path: "/bin/sh", FixedArgs: []string{"-c", c.script + "echo started", s.pidFile}}},
				Env:     []string{s.marker},
			})
			mustDo(t, err)
			start := time.Now()
			out, err := runCommand(cmd, `{"action":"start"}`)
			if elapsed := time.Since(start); elapsed > waitDelay/2 {
				t.Errorf("the command took %v to return", elapsed)
			}
			if err != nil || out != "started\n" {
				t.Errorf("got %q, %v; want %q", out, err, "started\n")
			}
			s.checkKilled(t)
		})
	}
}

// TestRunInTree runs commands both in a cgroup and, as where cgroups cannot
// be used, in their session alone.
func TestRunInTree(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"cgroup", "session"} {
		for _, c := range []struct {
			name, script string
			timeout      bool
		}{
			{"setsid child, timeout", setsidChild + "exec /bin/sleep 30", true},
			{"background, exit", background + "echo started", false},
			{"setsid orphan, timeout", setsidOrphan + "exec /bin/sleep 30", true},
		} {
			t.Run(mode+" "+c.name, func(t *testing.T) {
				t.Parallel()
				var cg *cgroup
				switch {
				case mode == "cgroup":
					if cg = newCgroup(); cg == nil {
						t.Skip("cgroup v2 cannot be used here")
					}
				case strings.Contains(c.name, "orphan"):
					t.Skip("only a cgroup finds an orphan that called setsid(2)")
				}
				s := newSleeper(t)
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				defer cancel()
				var out bytes.Buffer
				err := runInTree(func() *exec.Cmd {
					cmd := exec.CommandContext(ctx, "/bin/sh", "-c", c.script, s.pidFile)
					cmd.Env = []string{s.marker}
					cmd.Stdout = &out
					cmd.WaitDelay = waitDelay
					return cmd
				}, cg)
				if c.timeout && (err == nil || ctx.Err() == nil) {
					t.Errorf("got %q, %v; want the command stopped", &out, err)
				}
				if !c.timeout && (err != nil || out.String() != "started\n") {
					t.Errorf("got %q, %v; want %q", &out, err, "started\n")
				}
				s.checkKilled(t)
				if cg != nil {
					if _, err := os.Stat(cg.path); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("the cgroup is still there: %v", err)
					}
				}
			})
		}
	}
}

func TestRunInTreeStartsWithoutACgroupItCannotUse(t *testing.T) {
	t.Parallel()
	// A directory that is not a cgroup: starting a process in it fails.
	path := filepath.Join(t.TempDir(), "not-a-cgroup")
	mustDo(t, os.Mkdir(path, 0o755))
	dir, err := os.Open(path)
	mustDo(t, err)
	var out bytes.Buffer
	starts := 0
	err = runInTree(func() *exec.Cmd {
		starts++
		cmd := exec.CommandContext(context.Background(), "/bin/echo", "ran")
		cmd.Stdout = &out
		return cmd
	}, &cgroup{path: path, dir: dir})
	if err != nil || out.String() != "ran\n" || starts != 2 {
		t.Errorf("got %q, %v after %d starts; want %q after 2", &out, err, starts, "ran\n")
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the unusable cgroup was not removed: %v", err)
	}
}
