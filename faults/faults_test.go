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

// Each action is one unit of the registry: a name once, registered with the scenario schema, on
// members through a Kind of the same name or on links through a shape or a reset, each field of
// its own owned by it alone, and a line for the dry run.
func TestActionRegistry(t *testing.T) {
	selections := []string{"target", "isolate", "groups", "one-way", "majorities-ring", "client"}
	seen, owner := map[string]bool{}, map[string]string{}
	for _, a := range Actions() {
		if seen[a.Name] || a.Name == "" {
			t.Errorf("action %q is registered twice or has no name", a.Name)
		}
		seen[a.Name] = true
		if a.Kind != nil && (a.Kind.Name() != a.Name || a.Shape != nil || a.OnLinks || !slices.Equal(a.Selections, []string{"target"})) {
			t.Errorf("%s: an action on members has its Kind's name, no shape, and target as its selection", a.Name)
		}
		if a.Op != nil && (a.Kind != nil || a.Shape != nil || a.OnLinks || !a.Operation || !a.Instant || len(a.Selections) > 1) {
			t.Errorf("%s: an operation has no Kind and no shape, is instantaneous (it runs to its end) and has target at most", a.Name)
		}
		if (len(a.Selections) == 0 && a.Op == nil) || slices.ContainsFunc(a.Selections, func(s string) bool { return !slices.Contains(selections, s) }) {
			t.Errorf("%s: selections %v; valid: %v", a.Name, a.Selections, selections)
		}
		for _, f := range a.Fields {
			owner[f] += " " + a.Name // a field may be several actions' own (latency: delay and disk-delay)
		}
		if a.Layer && (a.Kind == nil || a.Available == nil || a.Available(scenarios.Place{Signals: true, Disk: errors.New("no layer")}, "target", scenarios.Fault{Action: a.Name}) == nil) {
			t.Errorf("%s needs the disk layer, and its rules must refuse a place without one", a.Name)
		}
		if a.Unsynced && !a.Layer {
			t.Errorf("%s tracks unsynced writes without the disk layer", a.Name)
		}
		if a.Does == nil || a.Does(scenarios.Fault{}, "the peer links") == "" {
			t.Errorf("%s says nothing for the dry run", a.Name)
		}
		if r := scenarios.ActionOf(a.Name); r == nil || r.OnLinks != (a.Kind == nil && a.Op == nil) || r.Operation != (a.Op != nil) || r.Instant != a.Instant {
			t.Errorf("%s: the schema has its rules as %+v", a.Name, r)
		}
		if LookupAction(a.Name) != a {
			t.Errorf("LookupAction(%q) finds another", a.Name)
		}
	}
	if LookupAction("nope") != nil || scenarios.ActionOf("nope") != nil {
		t.Error("found an action that is not registered")
	}
	if got := scenarios.ActionNames(); len(got) != len(Actions()) {
		t.Errorf("the schema knows %v", got)
	}
	if owner["latency"] != " delay disk-delay" || owner["ops"] != " disk-delay disk-error" {
		t.Errorf("fields' owners: %v", owner)
	}
	if want := []string{"kill", "stop", "pause", "restart", "crash", "disk-delay", "disk-stall", "disk-error", "disk-full", "power-loss", "corrupt"}; !slices.Equal(Names(), want) {
		t.Errorf("actions on members %v, want %v", Names(), want)
	}
}

// The rules of where an action can run say no where it cannot: each refusal is one a scenario's
// validation shows its user (scenarios' tests hold the messages).
func TestActionsSayWhereTheyCannotRun(t *testing.T) {
	one := scenarios.Targets{{Kind: "leader"}}
	two := scenarios.Targets{{Kind: "leader"}, {Kind: "follower"}}
	cases := []struct {
		action, network, selection string
		isolate                    scenarios.Targets
		ok                         bool
	}{
		{"delay", "docker", "target", nil, false},
		{"delay", "docker", "client", nil, true},
		{"delay", "netns", "target", nil, true},
		{"partition", "docker", "isolate", one, true},
		{"partition", "docker", "isolate", two, false},
		{"loss", "proxy", "target", nil, false},
		{"loss", "netns", "client", nil, false},
		{"loss", "netns", "target", nil, true},
		{"reset", "netns", "target", nil, false},
		{"reset", "netns", "client", nil, true},
		{"reset", "proxy", "target", nil, true},
	}
	for _, c := range cases {
		a := LookupAction(c.action)
		err := a.Available(scenarios.Place{Signals: true, Network: c.network}, c.selection, scenarios.Fault{Isolate: c.isolate})
		if (err == nil) != c.ok {
			t.Errorf("%s on %s by %s (isolate %v): %v", c.action, c.network, c.selection, c.isolate, err)
		}
	}
	loss, delay := LookupAction("loss"), LookupAction("delay")
	if loss.CutsQuorum(scenarios.Fault{Percent: 50}) || !loss.CutsQuorum(scenarios.Fault{Percent: 100}) || delay.CutsQuorum(scenarios.Fault{}) {
		t.Error("loss cuts the quorum only at 100%, delay never")
	}
	if p := delay.Check(scenarios.Fault{Latency: 10, Jitter: 20, Correlation: 2}); len(p) != 2 {
		t.Errorf("delay with jitter over latency and correlation 2: %v", p)
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
	// The disk actions and corrupt act on a member's data dir: harness/disk_test.go runs them on etcd.
	for _, name := range []string{"kill", "stop", "pause", "restart", "crash"} {
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
			case "restart", "crash":
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
		ms = append(ms, &proc{name: fmt.Sprintf("member-%d", i+1)})
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
