//go:build !linux

package proc

import (
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/etcd-chaos/etcd-chaos/faults"
)

// SysProcAttr puts each member in its own process group. Without Linux's parent-death signal,
// chaos heal DIR is what ends members a killed harness left.
func SysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// State asks ps for the process state.
func State(pid int) (faults.ProcState, error) {
	out, err := exec.Command("ps", "-o", "state=", "-p", strconv.Itoa(pid)).Output()
	s := strings.TrimSpace(string(out))
	if err != nil || s == "" {
		return faults.Exited, nil
	}
	switch s[0] {
	case 'T':
		return faults.Stopped, nil
	case 'Z':
		return faults.Exited, nil
	}
	return faults.Running, nil
}

// Cmdline returns a process's command line, or "" if it is gone.
func Cmdline(pid int) string {
	out, err := exec.Command("ps", "-o", "command=", "-p", strconv.Itoa(pid)).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// StartTime asks ps for a process's start time ("" when it is gone).
func StartTime(pid int) string {
	out, err := exec.Command("ps", "-o", "lstart=", "-p", strconv.Itoa(pid)).Output()
	if err != nil {
		return ""
	}
	return strings.Join(strings.Fields(string(out)), "_")
}
