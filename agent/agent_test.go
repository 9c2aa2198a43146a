package agent

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/internal/proc"
)

const testToken = "0123456789abcdef-test-token"

// stand is a real process the agent manages in these tests, in etcd's place (the agents' tests
// in cmd/chaos manage real etcd members on hosts of their own).
func stand(t *testing.T, pidFile string) int {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait() }()
	t.Cleanup(func() { _ = syscall.Kill(cmd.Process.Pid, syscall.SIGCONT); _ = cmd.Process.Kill() })
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// serve starts an agent on 127.0.0.1 (plaintext, with a token) over the state dir, and a client.
func serve(t *testing.T, cfg Config) (*Client, *syncBuf, func()) {
	t.Helper()
	logs := &syncBuf{}
	cfg.Listen, cfg.InsecureLoopback, cfg.Log = "127.0.0.1:0", true, slog.New(slog.NewTextHandler(logs, nil))
	if cfg.TokenFile == "" {
		cfg.TokenFile = filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(cfg.TokenFile, []byte(testToken+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	cl, err := NewClient("http://"+srv.Addr(), nil, testToken)
	if err != nil {
		t.Fatal(err)
	}
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the agent's exit: %v", err)
		}
		cl.Close()
	}
	return cl, logs, stop
}

func state(t *testing.T, pid int) faults.ProcState {
	t.Helper()
	st, err := proc.State(pid)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// waitState waits up to d for the process to reach want and says how long it took.
func waitState(t *testing.T, pid int, want faults.ProcState, d time.Duration) (time.Duration, bool) {
	t0 := time.Now()
	for time.Since(t0) < d {
		if state(t, pid) == want {
			return time.Since(t0), true
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(t0), false
}

func TestConfigRefusesWhatIsUnsafe(t *testing.T) {
	ok := Config{Listen: "10.0.0.1:7070", PIDFile: "/run/etcd.pid", CertFile: "c", KeyFile: "k", ClientCA: "ca", StateDir: "/var/lib/chaos-agent"}
	if err := ok.Check(); err != nil {
		t.Fatalf("a good config: %v", err)
	}
	for _, c := range []struct {
		says  string
		spoil func(c *Config)
	}{
		{"exactly one of --etcd-pid-file", func(c *Config) { c.PIDFile = "" }},
		{"exactly one of --etcd-pid-file", func(c *Config) { c.Unit = "etcd" }},
		{"--etcd-start goes with --etcd-pid-file", func(c *Config) { c.PIDFile, c.Unit, c.StartCommand = "", "etcd", "etcd" }},
		{"not all interfaces", func(c *Config) { c.Listen = "0.0.0.0:7070" }},
		{"not a name", func(c *Config) { c.Listen = "node-1:7070" }},
		{"--listen ADDR is required", func(c *Config) { c.Listen = "" }},
		{"--tls-cert and --tls-key are required", func(c *Config) { c.CertFile = "" }},
		{"every request must be authenticated", func(c *Config) { c.ClientCA = "" }},
		{"127.0.0.1 only", func(c *Config) {
			c.InsecureLoopback, c.CertFile, c.KeyFile, c.ClientCA, c.TokenFile = true, "", "", "", "t"
		}},
		{"still authenticates every request", func(c *Config) {
			c.Listen, c.InsecureLoopback, c.CertFile, c.KeyFile, c.ClientCA = "127.0.0.1:7070", true, "", "", ""
		}},
		{"--state-dir is required", func(c *Config) { c.StateDir = "" }},
	} {
		cfg := ok
		c.spoil(&cfg)
		if err := cfg.Check(); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%+v: %v, want it to say %q", cfg, err, c.says)
		}
	}
}

// A request without the token, or with another, is refused, and the token reaches no log.
func TestTokenIsRequired(t *testing.T) {
	dir := t.TempDir()
	pid := stand(t, filepath.Join(dir, "etcd.pid"))
	cl, logs, stop := serve(t, Config{PIDFile: filepath.Join(dir, "etcd.pid"), StateDir: filepath.Join(dir, "state")})
	defer stop()
	for _, tok := range []string{"", "wrong-token-wrong-token"} {
		bad, _ := NewClient(cl.URL, nil, tok)
		_, err := bad.Process(context.Background(), ProcRequest{Op: OpPause, Lease: Lease{TTLMs: 1000}})
		var r *RefusedError
		if !IsRefused(err) || !strings.Contains(err.Error(), "bearer token") {
			t.Errorf("token %q: %v, want refused", tok, err)
		} else if errors.As(err, &r) && r.Code != 401 {
			t.Errorf("token %q: code %d, want 401", tok, r.Code)
		}
	}
	if state(t, pid) != faults.Running {
		t.Error("a refused request paused the process")
	}
	if _, err := cl.State(context.Background()); err != nil {
		t.Errorf("with the token: %v", err)
	}
	if strings.Contains(logs.String(), testToken) {
		t.Error("the token is in the agent's log")
	}
}

// A pause is held while the controller renews it, and healed by the agent within the TTL of the
// last renewal once it stops; a scheduled end heals without any renewal.
func TestDeadMansSwitchAndScheduledEnd(t *testing.T) {
	dir := t.TempDir()
	pid := stand(t, filepath.Join(dir, "etcd.pid"))
	cl, logs, stop := serve(t, Config{PIDFile: filepath.Join(dir, "etcd.pid"), StateDir: filepath.Join(dir, "state")})
	defer stop()
	ctx := context.Background()
	const ttl = 300 * time.Millisecond
	if _, err := cl.Process(ctx, ProcRequest{Op: OpPause, Lease: Lease{Owner: "run-1", TTLMs: ttl.Milliseconds()}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8; i++ { // 0.8s of renewals: over twice the TTL
		time.Sleep(100 * time.Millisecond)
		if err := cl.Renew(ctx, "run-1", ttl); err != nil {
			t.Fatal(err)
		}
		if state(t, pid) != faults.Stopped {
			t.Fatalf("healed after %d renewals: the renewals did not hold it", i)
		}
	}
	// Another owner's renewal does not hold it.
	_ = cl.Renew(ctx, "run-2", ttl)
	took, ok := waitState(t, pid, faults.Running, 2*time.Second)
	t.Logf("renewals stopped: healed %s later (TTL %s)", took.Round(time.Millisecond), ttl)
	if !ok || took > ttl+100*time.Millisecond {
		t.Errorf("healed after %s (ok %v), want within the TTL %s", took, ok, ttl)
	}
	if !strings.Contains(logs.String(), "by=ttl") {
		t.Errorf("no heal by ttl logged:\n%s", logs.String())
	}
	until := time.Now().Add(400 * time.Millisecond)
	if _, err := cl.Process(ctx, ProcRequest{Op: OpPause, Lease: Lease{Owner: "run-1", TTLMs: 60_000, Until: until}}); err != nil {
		t.Fatal(err)
	}
	_, ok = waitState(t, pid, faults.Running, 2*time.Second)
	late := time.Since(until)
	t.Logf("scheduled end: healed %s after it", late.Round(time.Millisecond))
	if !ok || late > 100*time.Millisecond || late < -5*time.Millisecond {
		t.Errorf("healed %s after the scheduled end (ok %v)", late, ok)
	}
	if holds, _ := cl.Holds(ctx); len(holds) != 0 {
		t.Errorf("still held: %+v", holds)
	}
}

// What a crashed agent's ledger records is healed when the next one starts, before it serves;
// an agent that stops heals what it holds.
func TestLedgerIsHealedAtStart(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "etcd.pid")
	pid := stand(t, pidFile)
	cfg := Config{PIDFile: pidFile, StateDir: filepath.Join(dir, "state"), StartCommand: "exec sleep 60"}
	// The first agent pauses and is never stopped: as if SIGKILLed, it heals nothing.
	cfg1 := cfg
	cfg1.Listen, cfg1.InsecureLoopback, cfg1.Log = "127.0.0.1:0", true, slog.New(slog.DiscardHandler)
	cfg1.TokenFile = filepath.Join(dir, "token")
	if err := os.WriteFile(cfg1.TokenFile, []byte(testToken), 0o600); err != nil {
		t.Fatal(err)
	}
	crashed, err := New(cfg1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := crashed.proc(context.Background(), ProcRequest{Op: OpPause, Lease: Lease{TTLMs: 60_000}}); err != nil {
		t.Fatal(err)
	}
	crashed.ln.Close()
	if state(t, pid) != faults.Stopped {
		t.Fatal("not paused")
	}
	cfg.TokenFile = cfg1.TokenFile
	cl, logs, stop := serve(t, cfg)
	if state(t, pid) != faults.Running || !strings.Contains(logs.String(), "healed at start") {
		t.Errorf("the next agent did not heal the ledger's pause at start: %s\n%s", state(t, pid), logs.String())
	}
	// Killed, then the agent stops: it starts etcd again (--etcd-start) on its way out.
	if _, err := cl.Process(context.Background(), ProcRequest{Op: OpKill, Lease: Lease{TTLMs: 60_000}}); err != nil {
		t.Fatal(err)
	}
	if st := state(t, pid); st != faults.Exited {
		t.Fatalf("killed: %s", st)
	}
	stop()
	b, _ := os.ReadFile(pidFile)
	again, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	// The started shell execs sleep: until it has, its command line may read empty.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) && !strings.Contains(proc.Cmdline(again), "sleep"); {
		time.Sleep(10 * time.Millisecond)
	}
	if again == pid || state(t, again) != faults.Running || !strings.Contains(proc.Cmdline(again), "sleep") {
		t.Errorf("the stopping agent did not start it again: pid %d (was %d), %s", again, pid, proc.Cmdline(again))
	}
	_ = syscall.Kill(again, syscall.SIGKILL)
	if b, _ := os.ReadFile(filepath.Join(dir, "state", "holds.json")); strings.TrimSpace(string(b)) != "[]" {
		t.Errorf("the ledger still holds %s", b)
	}
}

// disk-full fills the data dir's filesystem (a 32 MiB tmpfs here) to the free space asked,
// measured by statfs, and the heal (or the TTL) frees it.
func TestDiskFill(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("REQUIRE_ROOT") == "1" {
			t.Fatal("REQUIRE_ROOT=1 but not running as root")
		}
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", data, "tmpfs", 0, "size=32m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(data, unix.MNT_DETACH)
	stand(t, filepath.Join(dir, "etcd.pid"))
	cl, _, stop := serve(t, Config{PIDFile: filepath.Join(dir, "etcd.pid"), StateDir: filepath.Join(dir, "state"), DataDir: data})
	defer stop()
	ctx := context.Background()
	res, err := cl.Disk(ctx, DiskRequest{Op: "fill", FreeBytes: 1 << 20, Lease: Lease{TTLMs: 60_000}})
	if err != nil {
		t.Fatal(err)
	}
	free, _, _ := freeBytes(data)
	t.Logf("filled: the agent says %d bytes free, statfs %d", res.FreeBytes, free)
	if free > 2<<20 || free != res.FreeBytes {
		t.Errorf("free after the fill: %d (agent says %d), want about 1 MiB", free, res.FreeBytes)
	}
	if err := os.WriteFile(filepath.Join(data, "big"), make([]byte, 4<<20), 0o600); err == nil {
		t.Error("a 4 MiB write succeeded on the full disk")
	}
	_ = os.Remove(filepath.Join(data, "big"))
	if _, err := cl.Disk(ctx, DiskRequest{Op: "heal"}); err != nil {
		t.Fatal(err)
	}
	if free, _, _ := freeBytes(data); free < 30<<20 {
		t.Errorf("after the heal %d bytes free", free)
	}
	// The TTL frees it too.
	if _, err := cl.Disk(ctx, DiskRequest{Op: "fill", FreeBytes: 0, Lease: Lease{TTLMs: 200}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(data, fillName)); !os.IsNotExist(err) {
		t.Errorf("the fill outlived its TTL: %v", err)
	}
}
