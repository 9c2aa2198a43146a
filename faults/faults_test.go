package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

func TestRegistryMatchesSchema(t *testing.T) {
	names := Names()
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			t.Errorf("fault kind %q is registered twice", n)
		}
		seen[n] = true
	}
	// Every action is a process kind of the registry or a network action, never both.
	var want []string
	for _, a := range scenarios.Actions {
		if !slices.Contains(scenarios.NetworkActions, a) {
			want = append(want, a)
		}
	}
	for _, a := range scenarios.NetworkActions {
		if !slices.Contains(scenarios.Actions, a) {
			t.Errorf("network action %q is not in scenarios.Actions", a)
		}
	}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("registry %v != the process actions of scenarios.Actions %v", names, want)
	}
}

// proc is a Member backed by a real child process (sleep), so the fault kinds are tested with real
// signals and the kernel's own process states.
type proc struct {
	name string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	// failSignal makes Signal fail, to test a fault that breaks part-way.
	failSignal bool
}

func (p *proc) Name() string { return p.name }
func (p *proc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}
func (p *proc) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cmd = exec.Command("sleep", "60")
	if err := p.cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	p.done = done
	cmd := p.cmd
	go func() { _ = cmd.Wait(); close(done) }()
	return nil
}
func (p *proc) Signal(sig syscall.Signal) error {
	if p.failSignal {
		return errors.New("refused")
	}
	return syscall.Kill(p.PID(), sig)
}
func (p *proc) WaitExit(ctx context.Context) error {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (p *proc) State() (ProcState, error) {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return Exited, nil
	default:
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID()))
	if err != nil {
		return Exited, nil
	}
	s := string(b)
	if st := s[strings.LastIndexByte(s, ')')+2]; st == 'T' {
		return Stopped, nil
	}
	return Running, nil
}

func newProc(t *testing.T, name string) *proc {
	p := &proc{name: name}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(p.PID(), syscall.SIGKILL) })
	return p
}

func ledger(t *testing.T) (*Ledger, string) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	l, err := OpenLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, path
}

func TestKindsWithRealProcesses(t *testing.T) {
	ctx := context.Background()
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			p := newProc(t, "m1")
			pid := p.PID()
			l, path := ledger(t)
			kind, _ := Lookup(name)
			in := NewInjection(0, kind, "m1", []Member{p}, l)
			if err := in.Inject(ctx); err != nil {
				t.Fatal(err)
			}
			st, _ := p.State()
			switch name {
			case "kill", "stop":
				if st != Exited {
					t.Errorf("after %s the process is %s", name, st)
				}
			case "pause":
				if st != Stopped {
					t.Errorf("after pause the process is %s", st)
				}
			case "restart":
				if st != Running || p.PID() == pid {
					t.Errorf("after restart: %s, pid %d (was %d)", st, p.PID(), pid)
				}
			}
			if err := in.Inject(ctx); !errors.Is(err, ErrNotPlanned) {
				t.Errorf("second inject: %v, want ErrNotPlanned", err)
			}
			if err := in.Heal(ctx, "schedule"); err != nil {
				t.Fatal(err)
			}
			if err := in.Heal(ctx, "schedule"); err != nil {
				t.Errorf("a second heal must do nothing: %v", err)
			}
			if st, _ := p.State(); st != Running {
				t.Errorf("after heal the process is %s", st)
			}
			entries, err := ReadLedger(path)
			if err != nil {
				t.Fatal(err)
			}
			var steps []string
			for _, e := range entries {
				steps = append(steps, e.Step)
			}
			if strings.Join(steps, ",") != "inject,applied,healed" {
				t.Errorf("ledger steps %v", steps)
			}
			if u := Unhealed(entries); len(u) != 0 {
				t.Errorf("unhealed: %+v", u)
			}
		})
	}
}

// A fault that fails on its second member still heals the first.
func TestPartialInjectIsHealed(t *testing.T) {
	ctx := context.Background()
	a, b := newProc(t, "a"), newProc(t, "b")
	b.failSignal = true
	l, path := ledger(t)
	kind, _ := Lookup("pause")
	in := NewInjection(3, kind, "all", []Member{a, b}, l)
	if err := in.Inject(ctx); err == nil {
		t.Fatal("inject should fail on b")
	}
	if st, _ := a.State(); st != Stopped {
		t.Fatalf("a is %s, want stopped", st)
	}
	entries, _ := ReadLedger(path)
	if u := Unhealed(entries); len(u) != 1 || u[0].Step != StepInject {
		t.Errorf("ledger before heal: %+v", entries)
	}
	b.failSignal = false
	_ = in.Heal(ctx, "error")
	if st, _ := a.State(); st != Running {
		t.Errorf("a is %s after heal, want running", st)
	}
}

// A no-op control: a kind that claims to pause but does nothing must fail its own verification.
func TestVerificationCatchesNoop(t *testing.T) {
	p := newProc(t, "m")
	l, _ := ledger(t)
	in := NewInjection(0, noopPause{}, "m", []Member{p}, l)
	if err := in.Inject(context.Background()); err == nil || !strings.Contains(err.Error(), "did not take effect") {
		t.Fatalf("a no-op pause passed verification: %v", err)
	}
}

type noopPause struct{ pause }

func (noopPause) Inject(ctx context.Context, m Member) error { return nil }

// staticCluster is a fixed membership for testing target selection by itself.
type staticCluster struct {
	members []Member
	leader  string
}

func (c staticCluster) Members() []Member { return append([]Member(nil), c.members...) }
func (c staticCluster) Leader(context.Context) (string, uint64, error) {
	return c.leader, 5, nil
}

func TestResolveIsSeeded(t *testing.T) {
	var ms []Member
	for i := 0; i < 5; i++ {
		ms = append(ms, &proc{name: scenarios.MemberName(i)})
	}
	c := staticCluster{members: ms, leader: "member-3"}
	targets := []scenarios.Target{{Kind: "random"}, {Kind: "follower"}, {Kind: "count", Count: 2}, {Kind: "minority"},
		{Kind: "majority"}, {Kind: "percent", Percent: 40}, {Kind: "leader"}, {Kind: "member", Member: "member-5"}, {Kind: "all"}}
	choose := func(seed int64) []string {
		var out []string
		for i, tg := range targets {
			r, err := Resolve(context.Background(), c, tg, RNG(seed, i))
			if err != nil {
				t.Fatalf("%s: %v", tg, err)
			}
			var names []string
			for _, m := range r.Members {
				names = append(names, m.Name())
			}
			out = append(out, tg.String()+"="+strings.Join(names, ","))
		}
		return out
	}
	a, b := choose(42), choose(42)
	if !slices.Equal(a, b) {
		t.Fatalf("same seed, different choices:\n%v\n%v", a, b)
	}
	differs := false
	for s := int64(1); s < 20 && !differs; s++ {
		differs = !slices.Equal(a, choose(s))
	}
	if !differs {
		t.Error("choices never change with the seed")
	}
	sizes := map[string]int{"count:2": 2, "minority": 2, "majority": 3, "percent:40": 2, "leader": 1, "all": 5}
	for _, c := range a {
		name, members, _ := strings.Cut(c, "=")
		if n, ok := sizes[name]; ok && len(strings.Split(members, ",")) != n {
			t.Errorf("%s picked %s, want %d members", name, members, n)
		}
		if name == "follower" && strings.Contains(members, "member-3") {
			t.Errorf("follower picked the leader")
		}
		if name == "leader" && members != "member-3" {
			t.Errorf("leader picked %s", members)
		}
	}
	t.Logf("seed 42: %v", a)
}
