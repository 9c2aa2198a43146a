package faults

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"syscall"
	"time"
)

// ProcState is what the operating system says of a member's process.
type ProcState string

// Process states.
const (
	Running ProcState = "running"
	Stopped ProcState = "stopped" // SIGSTOP: state T in /proc
	Exited  ProcState = "exited"
)

// Member is one etcd member as faults see it: a process that can be signalled and started again on
// the same data dir.
type Member interface {
	Name() string
	PID() int
	Signal(sig syscall.Signal) error
	// WaitExit returns when the process has exited, or with ctx's error.
	WaitExit(ctx context.Context) error
	// Start starts the member again on its data dir and ports; it returns once the process runs.
	Start(ctx context.Context) error
	State() (ProcState, error)
}

// Cluster is the live cluster faults act on.
type Cluster interface {
	Members() []Member // sorted by name
	// Leader asks the members now which is the leader and in what term.
	Leader(ctx context.Context) (name string, term uint64, err error)
}

// Kind is one fault kind: how to apply it to a member, how to heal it, and how to prove each took
// effect. One file per kind, one line in the registry.
type Kind interface {
	Name() string
	Inject(ctx context.Context, m Member) error
	VerifyInjected(ctx context.Context, m Member) error
	Heal(ctx context.Context, m Member) error
	VerifyHealed(ctx context.Context, m Member) error
}

// registry lists the fault kinds; a name must appear once (TestRegistry checks it, and that it
// matches scenarios.Actions).
var registry = []Kind{kill{}, stop{}, pause{}, restart{}}

// Lookup finds a fault kind by name.
func Lookup(name string) (Kind, error) {
	for _, k := range registry {
		if k.Name() == name {
			return k, nil
		}
	}
	return nil, fmt.Errorf("no fault kind %q; valid: %v", name, Names())
}

// Names lists the registered fault kinds.
func Names() []string {
	var out []string
	for _, k := range registry {
		out = append(out, k.Name())
	}
	sort.Strings(out)
	return out
}

// State of an injection.
type State int

// The lifecycle: Planned -> Applied -> Healed. Inject and Heal refuse steps out of order.
const (
	Planned State = iota
	Applied
	Healed
)

func (s State) String() string { return [...]string{"planned", "applied", "healed"}[s] }

// ErrNotPlanned is returned by Inject on an injection that already ran.
var ErrNotPlanned = errors.New("fault was already injected")

// Injection is one fault applied to resolved members, with its ledger. It is safe for concurrent use:
// Heal may race with Inject's failure path or with an interrupt.
type Injection struct {
	Index  int
	Kind   Kind
	Target string
	ledger *Ledger

	mu      sync.Mutex
	state   State
	members []Member
	hit     []Member // members the fault was applied to (so far)
}

// NewInjection plans a fault on members.
func NewInjection(index int, kind Kind, target string, members []Member, ledger *Ledger) *Injection {
	return &Injection{Index: index, Kind: kind, Target: target, members: members, ledger: ledger}
}

// State returns where the injection is in its lifecycle.
func (in *Injection) State() State {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.state
}

// MemberNames names the members the fault is planned for.
func (in *Injection) MemberNames() []string { return names(in.members) }

func pids(ms []Member) []int {
	var out []int
	for _, m := range ms {
		out = append(out, m.PID())
	}
	return out
}

// Inject records the fault in the ledger (synced to disk) and then applies it to each member, proving
// that it took effect. If it fails part-way, the members already hit stay recorded, and Heal heals them.
func (in *Injection) Inject(ctx context.Context) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.state != Planned {
		return fmt.Errorf("fault #%d %s: %w (state %s)", in.Index, in.Kind.Name(), ErrNotPlanned, in.state)
	}
	in.state = Applied // from here on Heal must run, whatever happens below
	if err := in.ledger.Append(LedgerEntry{Fault: in.Index, Action: in.Kind.Name(), Step: StepInject, Members: in.MemberNames(), PIDs: pids(in.members)}); err != nil {
		return fmt.Errorf("fault #%d: writing the ledger before injecting: %w", in.Index, err)
	}
	for _, m := range in.members {
		in.hit = append(in.hit, m)
		if err := in.Kind.Inject(ctx, m); err != nil {
			return fmt.Errorf("fault #%d: %s %s: %w", in.Index, in.Kind.Name(), m.Name(), err)
		}
		if err := in.Kind.VerifyInjected(ctx, m); err != nil {
			return fmt.Errorf("fault #%d: %s %s did not take effect: %w", in.Index, in.Kind.Name(), m.Name(), err)
		}
	}
	return in.ledger.Append(LedgerEntry{Fault: in.Index, Action: in.Kind.Name(), Step: StepApplied, Members: in.MemberNames(), PIDs: pids(in.hit)})
}

// Heal undoes the fault on every member it hit and proves it healed. It is idempotent: a second call,
// or a call on a fault never injected, does nothing. by says who healed: "schedule", "interrupt",
// "error", "teardown".
func (in *Injection) Heal(ctx context.Context, by string) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.state != Applied {
		return nil
	}
	in.state = Healed
	var errs []error
	for _, m := range in.hit {
		if err := in.Kind.Heal(ctx, m); err != nil {
			errs = append(errs, fmt.Errorf("healing %s on %s: %w", in.Kind.Name(), m.Name(), err))
			continue
		}
		if err := in.Kind.VerifyHealed(ctx, m); err != nil {
			errs = append(errs, fmt.Errorf("%s on %s did not heal: %w", in.Kind.Name(), m.Name(), err))
		}
	}
	e := LedgerEntry{Fault: in.Index, Action: in.Kind.Name(), Step: StepHealed, Members: names(in.hit), PIDs: pids(in.hit), By: by}
	if err := errors.Join(errs...); err != nil {
		e.Step, e.Error = StepHealFailed, err.Error()
		_ = in.ledger.Append(e)
		return err
	}
	return in.ledger.Append(e)
}

func names(ms []Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name())
	}
	return out
}

// waitState polls a member's process state until want, for at most d.
func waitState(ctx context.Context, m Member, want ProcState, d time.Duration) error {
	deadline := time.Now().Add(d)
	var last ProcState
	for {
		st, err := m.State()
		if err != nil {
			return err
		}
		if st == want {
			return nil
		}
		last = st
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d is %s after %s, want %s", m.PID(), last, d, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}
