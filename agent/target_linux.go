package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/moby/client"

	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/internal/proc"
)

// etcdTarget is the one etcd the agent was started for: by pid file, systemd unit or container.
type etcdTarget interface {
	describe() string
	// current is the process now: its PID (0: none) and state.
	current(ctx context.Context) (int, faults.ProcState, error)
	kill(ctx context.Context, sig syscall.Signal) error
	pause(ctx context.Context) error
	resume(ctx context.Context) error
	start(ctx context.Context) error
	// names says whether a request's pid, unit or container names this target ("" and 0 name nothing).
	names(pid int, unit, container string) error
}

// pidTarget is etcd named by a pid file; startCmd (a shell command) starts it again, and the agent
// writes the PID of what it started to the pid file (a command that forks should exec etcd).
type pidTarget struct {
	file, startCmd, logPath string
}

func (t *pidTarget) describe() string { return "pid file " + t.file }

func (t *pidTarget) pid() int {
	b, err := os.ReadFile(t.file)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n <= 0 {
		return 0
	}
	return n
}

func (t *pidTarget) current(context.Context) (int, faults.ProcState, error) {
	pid := t.pid()
	if pid == 0 {
		return 0, faults.Exited, nil
	}
	st, err := proc.State(pid)
	return pid, st, err
}

func (t *pidTarget) signal(sig syscall.Signal) error {
	pid := t.pid()
	if pid == 0 || !proc.Alive(pid) {
		return fmt.Errorf("etcd (%s) is not running", t.describe())
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("sending %s to etcd (pid %d): %w", sig, pid, err)
	}
	return nil
}

func (t *pidTarget) kill(_ context.Context, sig syscall.Signal) error { return t.signal(sig) }
func (t *pidTarget) pause(context.Context) error                      { return t.signal(syscall.SIGSTOP) }
func (t *pidTarget) resume(context.Context) error                     { return t.signal(syscall.SIGCONT) }

func (t *pidTarget) start(ctx context.Context) error {
	if t.startCmd == "" {
		return errors.New("the agent was started without --etcd-start: it cannot start etcd again after a kill or a stop")
	}
	logf, err := os.OpenFile(t.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command("/bin/sh", "-c", t.startCmd)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session: etcd outlives the agent, as it would outlive any shell that started it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("--etcd-start: %w", err)
	}
	logf.Close()
	go func() { _ = cmd.Wait() }() // reaped here while the agent lives; init's after
	if err := writeFileSync(t.file, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing the pid file: %w", err)
	}
	return nil
}

func (t *pidTarget) names(pid int, unit, container string) error {
	switch {
	case unit != "":
		return fmt.Errorf("this agent manages etcd by %s, not systemd unit %q", t.describe(), unit)
	case container != "":
		return fmt.Errorf("this agent manages etcd by %s, not container %q", t.describe(), container)
	case pid != 0 && pid != t.pid():
		return fmt.Errorf("this agent manages etcd by %s (pid %d), not pid %d", t.describe(), t.pid(), pid)
	}
	return nil
}

// unitTarget is etcd as a systemd unit: signals go to its main PID, start is systemctl start.
type unitTarget struct{ unit string }

func (t *unitTarget) describe() string { return "systemd unit " + t.unit }

func (t *unitTarget) current(ctx context.Context) (int, faults.ProcState, error) {
	out, err := exec.CommandContext(ctx, "systemctl", "show", "--property=MainPID", "--value", t.unit).Output()
	if err != nil {
		return 0, "", fmt.Errorf("systemctl show %s: %w", t.unit, err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	if pid == 0 {
		return 0, faults.Exited, nil
	}
	st, err := proc.State(pid)
	return pid, st, err
}

func (t *unitTarget) signal(ctx context.Context, sig syscall.Signal) error {
	pid, st, err := t.current(ctx)
	if err != nil {
		return err
	}
	if pid == 0 || st == faults.Exited {
		return fmt.Errorf("etcd (%s) is not running", t.describe())
	}
	return syscall.Kill(pid, sig)
}

func (t *unitTarget) kill(ctx context.Context, sig syscall.Signal) error { return t.signal(ctx, sig) }
func (t *unitTarget) pause(ctx context.Context) error                    { return t.signal(ctx, syscall.SIGSTOP) }
func (t *unitTarget) resume(ctx context.Context) error                   { return t.signal(ctx, syscall.SIGCONT) }
func (t *unitTarget) start(ctx context.Context) error {
	if out, err := exec.CommandContext(ctx, "systemctl", "start", t.unit).CombinedOutput(); err != nil {
		return fmt.Errorf("systemctl start %s: %v: %s", t.unit, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (t *unitTarget) names(pid int, unit, container string) error {
	switch {
	case unit != "" && unit != t.unit:
		return fmt.Errorf("this agent manages etcd as %s, not systemd unit %q", t.describe(), unit)
	case container != "":
		return fmt.Errorf("this agent manages etcd as %s, not container %q", t.describe(), container)
	case pid != 0:
		if cur, _, _ := t.current(context.Background()); cur != pid {
			return fmt.Errorf("this agent manages etcd as %s (pid %d), not pid %d", t.describe(), cur, pid)
		}
	}
	return nil
}

// containerTarget is etcd in a container, through the Docker Engine API (kill, pause/unpause,
// start, inspect): the engine's socket (DOCKER_HOST), no CLI needed.
type containerTarget struct {
	name string
	once sync.Once
	dc   *client.Client
	err  error
}

func (t *containerTarget) describe() string { return "container " + t.name }

func (t *containerTarget) docker() (*client.Client, error) {
	t.once.Do(func() { t.dc, t.err = client.New(client.FromEnv) })
	return t.dc, t.err
}

func (t *containerTarget) current(ctx context.Context) (int, faults.ProcState, error) {
	dc, err := t.docker()
	if err != nil {
		return 0, "", err
	}
	res, err := dc.ContainerInspect(ctx, t.name, client.ContainerInspectOptions{})
	if err != nil {
		return 0, "", fmt.Errorf("inspecting container %s: %w", t.name, err)
	}
	st := res.Container.State
	switch {
	case st == nil:
		return 0, faults.Exited, nil
	case st.Paused:
		return st.Pid, faults.Stopped, nil
	case st.Running:
		return st.Pid, faults.Running, nil
	}
	return 0, faults.Exited, nil
}

func (t *containerTarget) kill(ctx context.Context, sig syscall.Signal) error {
	dc, err := t.docker()
	if err != nil {
		return err
	}
	_, err = dc.ContainerKill(ctx, t.name, client.ContainerKillOptions{Signal: strconv.Itoa(int(sig))})
	return err
}

func (t *containerTarget) pause(ctx context.Context) error {
	dc, err := t.docker()
	if err != nil {
		return err
	}
	_, err = dc.ContainerPause(ctx, t.name, client.ContainerPauseOptions{})
	return err
}

func (t *containerTarget) resume(ctx context.Context) error {
	dc, err := t.docker()
	if err != nil {
		return err
	}
	_, err = dc.ContainerUnpause(ctx, t.name, client.ContainerUnpauseOptions{})
	return err
}

func (t *containerTarget) start(ctx context.Context) error {
	dc, err := t.docker()
	if err != nil {
		return err
	}
	_, err = dc.ContainerStart(ctx, t.name, client.ContainerStartOptions{})
	return err
}

func (t *containerTarget) names(pid int, unit, container string) error {
	switch {
	case container != "" && container != t.name:
		return fmt.Errorf("this agent manages etcd in %s, not container %q", t.describe(), container)
	case unit != "":
		return fmt.Errorf("this agent manages etcd in %s, not systemd unit %q", t.describe(), unit)
	case pid != 0:
		if cur, _, _ := t.current(context.Background()); cur != pid {
			return fmt.Errorf("this agent manages etcd in %s (pid %d), not pid %d", t.describe(), cur, pid)
		}
	}
	return nil
}

// writeFileSync writes a file whole through a temporary file, synced and renamed into place.
func writeFileSync(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// waitFor polls the target until cond holds or d passes.
func waitFor(ctx context.Context, t etcdTarget, d time.Duration, cond func(pid int, st faults.ProcState) bool) (int, faults.ProcState, error) {
	deadline := time.Now().Add(d)
	for {
		pid, st, err := t.current(ctx)
		if err == nil && cond(pid, st) {
			return pid, st, nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("etcd is %s (pid %d) after %s", st, pid, d)
			}
			return pid, st, err
		}
		select {
		case <-ctx.Done():
			return pid, st, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}
