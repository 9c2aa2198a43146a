package proc

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/etcd-chaos/etcd-chaos/faults"
)

// SysProcAttr puts each member in its own process group (a Ctrl-C on the terminal reaches the
// harness, which heals and stops members in order, not the members directly) and has the kernel
// SIGKILL the member if the harness dies, so no member outlives it.
func SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// State reads the process state from /proc/PID/stat (the field after the command name).
func State(pid int) (faults.ProcState, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		if os.IsNotExist(err) || errors.Is(err, syscall.ESRCH) {
			return faults.Exited, nil // gone, or going: a dying process's stat reads ESRCH
		}
		return "", fmt.Errorf("reading the state of pid %d: %w", pid, err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return "", fmt.Errorf("cannot parse /proc/%d/stat", pid)
	}
	switch s[i+2] {
	case 'T', 't':
		return faults.Stopped, nil
	case 'Z', 'X':
		return faults.Exited, nil
	}
	return faults.Running, nil
}

// Cmdline returns a process's command line, or "" if it is gone.
func Cmdline(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	return strings.ReplaceAll(string(b), "\x00", " ")
}

// StartTime is a process's start time (clock ticks since boot, /proc/PID/stat's 22nd field): with
// the pid it names one process, even after the pid is reused. "" when it is gone.
func StartTime(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return ""
	}
	return f[19]
}
