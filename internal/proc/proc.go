// Package proc reads what the operating system says of a process: whether it is alive, its state
// (running, stopped, exited), its command line and its start time (which, with the pid, names one
// process even after the pid is reused), and how member processes are started (their own process
// group; on Linux, killed with the harness). The cluster providers, chaos heal, preflight's scratch
// member and the sweep's lock ask it; it imports faults only, for ProcState.
package proc

import "syscall"

// Alive says whether a process with the pid exists (signal 0 reaches it).
func Alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }
