package faults

import (
	"context"
	"errors"
	"fmt"
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

// Kind is how an action on member processes applies to a member, heals, and proves each took
// effect. Its Action (action.go) registers it.
type Kind interface {
	Name() string
	Inject(ctx context.Context, m Member) error
	VerifyInjected(ctx context.Context, m Member) error
	Heal(ctx context.Context, m Member) error
	VerifyHealed(ctx context.Context, m Member) error
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

// effect is what an injection does: to member processes (a Kind) or to network links.
type effect interface {
	// apply applies the fault, remembering what it hit so far, and proves it took effect. It calls
	// st.call around the first call that acts (the signal, the route change, the API call).
	apply(ctx context.Context, st *Stamp) error
	// heal undoes whatever apply hit and proves it healed, stamping its first acting call likewise.
	heal(ctx context.Context, st *Stamp) error
	// entry fills the ledger fields that say what the fault touches.
	entry(e *LedgerEntry, onlyHit bool)
}

// Stamp is when a fault's first acting call (a signal, a route change, a Docker API call) began and
// returned: the fault took effect between the two. The ledger's fsync, which comes before it, and
// the proof that it took effect, which comes after, are outside it.
type Stamp struct {
	Start, End time.Time
}

// call runs f and stamps it, the first time only.
func (s *Stamp) call(f func() error) error {
	if !s.Start.IsZero() {
		return f()
	}
	s.Start = time.Now()
	err := f()
	s.End = time.Now()
	return err
}

// Injection is one fault applied to resolved members or links, with its ledger. It is safe for
// concurrent use: Heal may race with Inject's failure path or with an interrupt.
type Injection struct {
	Index  int
	Action string
	Target string
	ledger *Ledger

	mu       sync.Mutex
	state    State
	effect   effect
	names    []string
	injected Stamp
	healed   Stamp
}

// Injected is when the fault's first acting call ran (zero if it never did).
func (in *Injection) Injected() Stamp {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.injected
}

// HealedStamp is when the heal's first acting call ran (zero if it never did).
func (in *Injection) HealedStamp() Stamp {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.healed
}

// NewInjection plans a process fault on members.
func NewInjection(index int, kind Kind, target string, members []Member, ledger *Ledger) *Injection {
	return &Injection{Index: index, Action: kind.Name(), Target: target, ledger: ledger, names: names(members),
		effect: &memberEffect{kind: kind, members: members}}
}

// NewNetInjection plans a network fault: shape on links (or, with reset, closing their connections)
// through a network backend. members names the members the fault is about, for the result.
func NewNetInjection(index int, action, target string, nw Network, links []Link, shape Shape, reset bool, members []string, ledger *Ledger) *Injection {
	return &Injection{Index: index, Action: action, Target: target, ledger: ledger, names: members,
		effect: &netEffect{nw: nw, links: links, shape: shape, reset: reset}}
}

// Network names the backend of a network fault ("" for a process fault).
func (in *Injection) Network() string {
	if ne, ok := in.effect.(*netEffect); ok {
		return ne.nw.Name()
	}
	return ""
}

// State returns where the injection is in its lifecycle.
func (in *Injection) State() State {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.state
}

// DiskReports are what a disk fault did to each member it hit, once injected (and healed).
func (in *Injection) DiskReports() []DiskReport {
	in.mu.Lock()
	defer in.mu.Unlock()
	if me, ok := in.effect.(*memberEffect); ok {
		return me.sink.list()
	}
	return nil
}

// MemberNames names the members the fault is planned for.
func (in *Injection) MemberNames() []string { return in.names }

func (in *Injection) entry(step string, onlyHit bool) LedgerEntry {
	e := LedgerEntry{Fault: in.Index, Action: in.Action, Step: step, Members: in.names}
	in.effect.entry(&e, onlyHit)
	return e
}

// Inject records the fault in the ledger (synced to disk) and then applies it, proving that it took
// effect. If it fails part-way, what was already hit stays recorded, and Heal heals it.
func (in *Injection) Inject(ctx context.Context) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.state != Planned {
		return fmt.Errorf("fault #%d %s: %w (state %s)", in.Index, in.Action, ErrNotPlanned, in.state)
	}
	in.state = Applied // from here on Heal must run, whatever happens below
	if err := in.ledger.Append(in.entry(StepInject, false)); err != nil {
		return fmt.Errorf("fault #%d: writing the ledger before injecting: %w", in.Index, err)
	}
	if err := in.effect.apply(ctx, &in.injected); err != nil {
		return fmt.Errorf("fault #%d: %w", in.Index, err)
	}
	return in.ledger.Append(in.entry(StepApplied, true))
}

// Heal undoes the fault and proves it healed. It is idempotent: a second call, or a call on a fault
// never injected, does nothing. by says who healed: "schedule", "interrupt", "error", "teardown".
func (in *Injection) Heal(ctx context.Context, by string) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.state != Applied {
		return nil
	}
	in.state = Healed
	e := in.entry(StepHealed, true)
	e.By = by
	if err := in.effect.heal(ctx, &in.healed); err != nil {
		e.Step, e.Error = StepHealFailed, err.Error()
		_ = in.ledger.Append(e)
		return err
	}
	return in.ledger.Append(e)
}

// untilKey carries a fault's scheduled end on the context of its injection.
type untilKey struct{}

// WithUntil says on ctx when the fault being injected is scheduled to heal: a backend that holds
// faults on its own (chaos agent, on a node) heals it then even if it never hears from the harness
// again.
func WithUntil(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, untilKey{}, t)
}

// UntilOf is the scheduled end WithUntil put on ctx (zero: none).
func UntilOf(ctx context.Context) time.Time {
	t, _ := ctx.Value(untilKey{}).(time.Time)
	return t
}

// Scheduled is a member that is told, before a fault acts on it, when that fault is scheduled to
// heal (zero: no end of its own, such as a restart's).
type Scheduled interface {
	HoldUntil(t time.Time)
}

type memberEffect struct {
	kind    Kind
	members []Member
	hit     []Member // members the fault was applied to (so far)
	sink    reportSink
}

func (me *memberEffect) apply(ctx context.Context, st *Stamp) error {
	ctx = context.WithValue(ctx, sinkKey{}, &me.sink)
	for _, m := range me.members {
		me.hit = append(me.hit, m)
		if s, ok := m.(Scheduled); ok {
			s.HoldUntil(UntilOf(ctx))
		}
		if err := st.call(func() error { return me.kind.Inject(ctx, m) }); err != nil {
			return fmt.Errorf("%s %s: %w", me.kind.Name(), m.Name(), err)
		}
		if err := me.kind.VerifyInjected(ctx, m); err != nil {
			return fmt.Errorf("%s %s did not take effect: %w", me.kind.Name(), m.Name(), err)
		}
	}
	return nil
}

func (me *memberEffect) heal(ctx context.Context, st *Stamp) error {
	ctx = context.WithValue(ctx, sinkKey{}, &me.sink)
	var errs []error
	for _, m := range me.hit {
		if err := st.call(func() error { return me.kind.Heal(ctx, m) }); err != nil {
			errs = append(errs, fmt.Errorf("healing %s on %s: %w", me.kind.Name(), m.Name(), err))
			continue
		}
		if err := me.kind.VerifyHealed(ctx, m); err != nil {
			errs = append(errs, fmt.Errorf("%s on %s did not heal: %w", me.kind.Name(), m.Name(), err))
		}
	}
	return errors.Join(errs...)
}

func (me *memberEffect) entry(e *LedgerEntry, onlyHit bool) {
	ms := me.members
	if onlyHit {
		ms = me.hit
	}
	e.Members, e.PIDs = names(ms), pids(ms)
}

func pids(ms []Member) []int {
	var out []int
	for _, m := range ms {
		out = append(out, m.PID())
	}
	return out
}

type netEffect struct {
	nw      Network
	links   []Link
	shape   Shape
	reset   bool
	applied bool
}

func (ne *netEffect) apply(ctx context.Context, st *Stamp) error {
	if ne.reset {
		return st.call(func() error { return ne.nw.Reset(ctx, ne.links) })
	}
	ne.applied = true // a part-way Apply is healed in full
	if err := st.call(func() error { return ne.nw.Apply(ctx, ne.links, ne.shape) }); err != nil {
		return fmt.Errorf("%s on %d links through %s: %w", ne.shape, len(ne.links), ne.nw.Name(), err)
	}
	if err := ne.nw.Verify(ctx, ne.links, ne.shape); err != nil {
		return fmt.Errorf("%s through %s did not take effect: %w", ne.shape, ne.nw.Name(), err)
	}
	return nil
}

func (ne *netEffect) heal(ctx context.Context, st *Stamp) error {
	if !ne.applied {
		return nil
	}
	if err := st.call(func() error { return ne.nw.Heal(ctx, ne.links) }); err != nil {
		return fmt.Errorf("healing %d links through %s: %w", len(ne.links), ne.nw.Name(), err)
	}
	if err := ne.nw.VerifyHealed(ctx, ne.links); err != nil {
		return fmt.Errorf("links through %s did not heal: %w", ne.nw.Name(), err)
	}
	return nil
}

func (ne *netEffect) entry(e *LedgerEntry, onlyHit bool) {
	e.Network = ne.nw.Name()
	for _, l := range ne.links {
		e.Links = append(e.Links, l.String())
	}
	if !ne.reset {
		s := ne.shape
		e.Shape = &s
	}
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
