package faults

import (
	"fmt"

	"github.com/etcd-chaos/etcd-chaos/faults/diskfs"

	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// Action is one fault action as a unit: its rules as the scenario schema reads them (the fields it
// takes, whether it is instantaneous, what its values must be, what it needs of the cluster and
// of its links' backend, whether it cuts the quorum), its line in the dry run, and how it is
// injected, proved and healed: on member processes through a Kind, or on links through a Network
// with a Shape. Each action is one file (kill.go, partition.go, ...) and one entry of the registry
// below; validation, the dry run, the quorum guard, repeating faults, the plan and the reports
// read it from there, so a new action is picked up everywhere.
//
// It is a struct of values and funcs rather than an interface, as analysis.Analyzer is in
// golang.org/x/tools: most rules are data, and an action states only what differs.
type Action struct {
	scenarios.ActionRules
	// Kind injects, proves and heals the action on member processes; nil for an action on links
	// or an operation.
	Kind Kind
	// Op, for an operation (compact, defrag, member-replace, disaster), makes the operation a
	// fault of the action runs.
	Op func(f scenarios.Fault) Operation
	// Shape is what an action on links does to them; nil for one that closes their connections.
	Shape func(f scenarios.Fault) Shape
	// KindOf, for an action on members whose Kind depends on the fault's own fields (a disk
	// fault's latency, ops, errno), makes its Kind for a fault (nil: Kind serves every fault).
	KindOf func(f scenarios.Fault) Kind
	// LosesWrites: the action restores a backup, losing what was acknowledged after it; kv-safety
	// keeps every acknowledged write's revision to count them (disaster).
	LosesWrites bool
	// Layer says what the action needs of the disk layer under the members' data dirs: a mount
	// (the harness serves one only for a scenario that needs it), and Unsynced, a record of what
	// was never synced (power loss), which costs a read before each write over synced data.
	Layer, Unsynced bool
	// IO is the I/O classes a fault of the action needs the layer to see (nil: all of them). A
	// scenario whose faults need fsyncs alone lets the kernel read and write past the layer.
	IO func(f scenarios.Fault) diskfs.Op
	// Does says in one line what injecting and healing does, for the dry run; links names the
	// links ("the peer links", "the links from the load").
	Does func(f scenarios.Fault, links string) string
}

// registry lists the fault actions, each defined in its own file. Their rules are registered with
// the scenario schema when this package is initialised, so every program that runs faults
// validates them (TestActionRegistry checks each action's rules).
var registry = []*Action{&killAction, &stopAction, &pauseAction, &restartAction, &crashAction,
	&partitionAction, &delayAction, &bandwidthAction, &lossAction, &resetAction,
	&diskDelayAction, &diskStallAction, &diskErrorAction, &diskFullAction, &powerLossAction, &corruptAction,
	&compactAction, &defragAction, &memberReplaceAction, &memberAddAction, &memberRemoveAction, &disasterAction,
	&upgradeAction, &downgradeAction}

func init() {
	for _, a := range registry {
		a.OnLinks = a.Kind == nil && a.Op == nil
		a.Operation = a.Op != nil
		scenarios.RegisterAction(a.ActionRules)
	}
}

// Actions lists the fault actions in the registry's order.
func Actions() []*Action { return append([]*Action(nil), registry...) }

// LookupAction finds an action by name (nil: there is none).
func LookupAction(name string) *Action {
	for _, a := range registry {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// Lookup finds the Kind of an action on member processes by name.
func Lookup(name string) (Kind, error) {
	if a := LookupAction(name); a != nil && a.Kind != nil {
		return a.Kind, nil
	}
	return nil, fmt.Errorf("no fault kind %q; valid: %v", name, Names())
}

// Names lists the actions on member processes.
func Names() []string {
	var out []string
	for _, a := range registry {
		if a.Kind != nil {
			out = append(out, a.Name)
		}
	}
	return out
}

// KindFor is the Kind that applies fault f (nil for an action on links).
func (a *Action) KindFor(f scenarios.Fault) Kind {
	if a.KindOf != nil {
		return a.KindOf(f)
	}
	return a.Kind
}

// ShapeOf is what the action does to its links (zero for one that closes their connections).
func (a *Action) ShapeOf(f scenarios.Fault) Shape {
	if a.Shape == nil {
		return Shape{}
	}
	return a.Shape(f)
}

// Resets says whether the action closes its links' connections rather than shaping them.
func (a *Action) Resets() bool { return a.OnLinks && a.Shape == nil }

// always is a Cuts for actions whose members stop serving while the fault holds.
func always(scenarios.Fault) bool { return true }

// onMembers is the selection of an action on member processes.
var onMembers = []string{"target"}

// onLinks is the selections of an action that shapes links: every peer link of a target (both
// ways), one way between two targets, or the links from the load to a target.
var onLinks = []string{"target", "one-way", "client"}

// dockerIsolatesOnly is the rule of the docker backend (docker network disconnect): it can only
// cut a whole member off, which no action on links but partition does.
func dockerIsolatesOnly(p scenarios.Place, selection string, _ scenarios.Fault) error {
	if p.Network == "docker" && selection != "client" {
		return fmt.Errorf("network: docker (docker network disconnect) can only isolate one member (partition with isolate: TARGET); use network: netns (root) for anything finer")
	}
	return nil
}
