package builtin

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// On Linux, run_command makes sure that nothing a command started outlives
// it, whether it times out or exits by itself: not even a process that left
// the command's session with setsid(2) and was re-parented when its parent
// exited, as daemons do.
//
// The robust way is cgroup v2. Each run gets a cgroup of its own, created
// under the agent's own cgroup; the command starts in it (clone3 with
// CLONE_INTO_CGROUP, through SysProcAttr.UseCgroupFD, so that it never runs
// anywhere else); every process it starts stays in it; and writing "1" to
// its cgroup.kill kills them all at once. This needs Linux 5.14, cgroup v2
// mounted at /sys/fs/cgroup (or /sys/fs/cgroup/unified on hybrid systems),
// and the right to create cgroups in the agent's own: root, or a cgroup
// delegated to the agent, as systemd does for a service with Delegate=yes.
//
// As well, and alone where cgroups cannot be used, the command runs in a new
// session, and killing it means killing, until none is left, every process
// in its session or process group and every descendant of one, found in
// /proc. Without the cgroup, that misses a process that both called
// setsid(2) and lost its parent before the kill.
//
// Other ways were rejected: PR_SET_CHILD_SUBREAPER applies to the whole
// agent process, which would then have to reap every orphan; a PID
// namespace makes the command an init process, which changes how it handles
// signals, and needs privileges; a supervisor process would be a second
// executable to ship.
//
// The command's first process is not reaped until everything is killed, so
// its PID, which is also its session and process group ID, cannot be taken by
// another process in between. Processes found in /proc are killed by PID,
// with the usual, tiny, risk that one exits and its PID is reused between the
// reading and the kill. A command running as root can still escape, by
// moving itself to another cgroup and calling setsid(2) in an orphan.

const (
	// cgroup2Magic is the file system type of cgroup v2, CGROUP2_SUPER_MAGIC.
	cgroup2Magic = 0x63677270
	// killWait bounds how long killing goes on looking for processes, and
	// how long removing a cgroup waits for the processes killed in it.
	killWait = 500 * time.Millisecond
)

// runTree runs the command newCmd returns, in a cgroup of its own if
// possible, and once it exits or its context is done, kills every process
// it started.
func runTree(newCmd func() *exec.Cmd) error {
	return runInTree(newCmd, newCgroup())
}

// runInTree is runTree with the cgroup to run in, nil for none. If the
// command cannot be started in the cgroup, newCmd is called again and the
// new command started without one.
func runInTree(newCmd func() *exec.Cmd, cg *cgroup) error {
	cmd := newCmd()
	err := startInTree(cmd, cg)
	if err != nil && cg != nil {
		// A sandbox may refuse clone3 or moving processes between cgroups
		// although it let the cgroup be created: do without.
		cg.remove() // best effort: it is empty
		cg = nil
		cmd = newCmd()
		err = startInTree(cmd, nil)
	}
	if err != nil {
		return err
	}
	waitExit(cmd.Process.Pid)
	killTree(cmd.Process.Pid, cg)
	return errors.Join(cmd.Wait(), cg.remove())
}

// startInTree starts cmd in a new session and, unless cg is nil, in cg, and
// makes cancelling cmd kill the tree.
func startInTree(cmd *exec.Cmd, cg *cgroup) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if cg != nil {
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = int(cg.dir.Fd())
	}
	cmd.Cancel = func() error {
		killTree(cmd.Process.Pid, cg)
		return nil
	}
	return cmd.Start()
}

// killTree kills every process of the command whose first process is pid:
// the whole cgroup, unless cg is nil, then whatever is left in its session.
func killTree(pid int, cg *cgroup) {
	cg.kill()
	killSession(pid)
}

// waitExit waits until process pid, a child of ours, has exited, without
// reaping it (waitid with WNOWAIT), so that its PID stays taken.
func waitExit(pid int) {
	const pPID = 1     // P_PID of <sys/wait.h>
	var info [128]byte // a siginfo_t, unused
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info)), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		if errno != syscall.EINTR {
			return // exited, or not our child: cmd.Wait will tell
		}
	}
}

// killSession kills every process in session or process group sid, and
// every descendant of one, until none is left or killWait has passed. Each
// round finds them all before killing any: killing a parent first would
// re-parent its children, which would then no longer be found as its
// descendants.
func killSession(sid int) {
	for deadline := time.Now().Add(killWait); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		pids := sessionProcesses(sid)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	syscall.Kill(-sid, syscall.SIGKILL) // the process group, should /proc be unreadable
}

// sessionProcesses returns the live processes in session or process group
// sid, and their descendants, as /proc shows them.
func sessionProcesses(sid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var found []int
	others := make(map[int][]int) // the other processes, by parent
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue // not a process
		}
		st, err := readProcStat(pid)
		switch {
		case err != nil || st.state == 'Z' || st.state == 'X':
			continue // gone, or dead and waiting to be reaped
		case st.session == sid || st.pgrp == sid:
			found = append(found, pid)
		default:
			others[st.ppid] = append(others[st.ppid], pid)
		}
	}
	for i := 0; i < len(found); i++ {
		found = append(found, others[found[i]]...)
	}
	return found
}

// procStat holds the fields of /proc/PID/stat that sessionProcesses needs.
type procStat struct {
	state               byte
	ppid, pgrp, session int
}

func readProcStat(pid int) (procStat, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// The fields follow the command name, in parentheses, which may hold
	// anything, parentheses and spaces included.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(fields) < 4 || len(fields[0]) != 1 {
		return procStat{}, fmt.Errorf("parsing /proc/%d/stat: too few fields", pid)
	}
	st := procStat{state: fields[0][0]}
	for i, field := range []*int{&st.ppid, &st.pgrp, &st.session} {
		if *field, err = strconv.Atoi(fields[i+1]); err != nil {
			return procStat{}, fmt.Errorf("parsing /proc/%d/stat: %w", pid, err)
		}
	}
	return st, nil
}

// cgroup is a cgroup v2 made for one run of a command. The methods of a nil
// *cgroup do nothing.
type cgroup struct {
	path string
	dir  *os.File // for SysProcAttr.CgroupFD
}

// newCgroup creates a cgroup for one run under the agent's own, or returns
// nil if it cannot be done here: cgroup v2 is not mounted where expected,
// the agent may not create cgroups, or the kernel has no cgroup.kill (before
// Linux 5.14).
func newCgroup() *cgroup {
	parent, ok := ownCgroup()
	if !ok {
		return nil
	}
	path := filepath.Join(parent, "agentpg-command-"+rand.Text())
	if os.Mkdir(path, 0o755) != nil {
		return nil
	}
	if _, err := os.Stat(filepath.Join(path, "cgroup.kill")); err == nil {
		if dir, err := os.Open(path); err == nil {
			return &cgroup{path: path, dir: dir}
		}
	}
	os.Remove(path) // best effort: it is empty
	return nil
}

// ownCgroup returns the directory of the agent's own cgroup v2: its path in
// /proc/self/cgroup, under the mount point of cgroup v2 on systems with only
// cgroup v2 (/sys/fs/cgroup) or with both versions (/sys/fs/cgroup/unified).
func ownCgroup() (string, bool) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", false
	}
	for line := range strings.Lines(string(data)) {
		rel, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "0::")
		if !ok {
			continue
		}
		for _, mount := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
			var fs syscall.Statfs_t
			if syscall.Statfs(mount, &fs) == nil && fs.Type == cgroup2Magic {
				return filepath.Join(mount, rel), true
			}
		}
	}
	return "", false
}

// kill kills every process in the cgroup.
func (cg *cgroup) kill() {
	if cg != nil {
		// If this fails, killSession still finds what it can.
		os.WriteFile(filepath.Join(cg.path, "cgroup.kill"), []byte("1"), 0)
	}
}

// remove deletes the cgroup, waiting up to killWait for the processes
// killed in it to be gone.
func (cg *cgroup) remove() error {
	if cg == nil {
		return nil
	}
	cg.dir.Close()
	for deadline := time.Now().Add(killWait); ; time.Sleep(time.Millisecond) {
		err := os.Remove(cg.path)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("removing the command's cgroup: %w", err)
		}
	}
}
