package scenarios

import (
	"fmt"
	"slices"
	"strings"
)

// ActionRules are a fault action's rules as the schema reads them: what it takes, whether it is
// instantaneous, what is wrong with its values, where it can run and whether it cuts the quorum.
// Each action is a unit of package faults (one file each), which registers its rules here when
// it is linked in, as every program that runs faults does; validation, repeating faults and the
// quorum guard read them, so the schema itself names no action.
type ActionRules struct {
	Name string
	// Instant actions take no duration: they are over once injected (restart, reset).
	Instant bool
	// OnLinks: the action acts on links through the network backend, not on member processes.
	OnLinks bool
	// Operation: the action is an operation (compact, defrag, member-replace, disaster) that runs
	// to its end within its injection; it is measured as a fault is, from its start to its end.
	Operation bool
	// AddsMember: the action adds a member (member-add), whom later faults may name: member-N+1
	// of an N-member cluster.
	AddsMember bool
	// Each: the action goes member by member (upgrade, downgrade), so it takes target each.
	Each bool
	// ThroughAPI: the action needs nothing but etcd's API, so it runs on any cluster the harness
	// reaches (compact, defrag).
	ThroughAPI bool
	// Selections are the fields by which the action chooses what it hits: "target" for an action
	// on members; for one on links, some of target, isolate, groups, one-way, majorities-ring, client.
	Selections []string
	// Fields are the fault's fields that belong to this action alone (delay: latency, jitter, correlation).
	Fields []string
	// Check names what is wrong with the values of the action's own fields.
	Check func(f Fault) []FieldProblem
	// Requires names what the action needs of the rest of the scenario (a disaster: backups and
	// kv-safety), each problem with its full field path.
	Requires func(f Fault, sc *Scenario) []FieldProblem
	// Available says why the action cannot run at p on links chosen by selection (nil: it can).
	Available func(p Place, selection string, f Fault) error
	// Cuts says whether the members the fault is about are out of the quorum while it holds.
	Cuts func(f Fault) bool
}

// Place is where a fault is to run: what the harness can do to the cluster, and the backend its
// links go through.
type Place struct {
	// Signals: the harness starts the members and can signal their processes.
	Signals bool
	// Provider is the scenario's cluster.provider; Files, that the harness reaches the members'
	// data dirs and flags (it started them as processes of this machine).
	Provider string
	Files    bool
	// Network is the backend of the fault's links: proxy, netns, docker or direct.
	Network string
	// Disk is why the harness cannot put its disk layer under the members' data dirs (nil: it can).
	Disk error
}

// FieldProblem is what an action's rules find wrong with one field of a fault.
type FieldProblem struct {
	Field, Msg string
}

// actions are the registered rules, in the order of faults' registry.
var actions = registry[ActionRules]{what: "fault action", name: func(r *ActionRules) string { return r.Name }}

// RegisterAction adds an action's rules; package faults calls it once per action when it is
// initialised. A name registered twice is a programming error.
func RegisterAction(r ActionRules) { actions.add(r) }

// ActionNames names the registered fault actions in the registry's order.
func ActionNames() []string { return actions.names() }

// ActionOf finds an action's rules by name (nil: none is registered by that name).
func ActionOf(name string) *ActionRules { return actions.of(name) }

// Takes says whether the fault's field (a selection or a field of its own) belongs to the action.
func (r *ActionRules) Takes(field string) bool {
	return slices.Contains(r.Selections, field) || slices.Contains(r.Fields, field)
}

// CutsQuorum says whether the members the fault is about are out of the quorum while it holds.
func (r *ActionRules) CutsQuorum(f Fault) bool { return r.Cuts != nil && r.Cuts(f) }

// reachable says why the harness cannot reach what the action acts on at p (nil: it can): of a
// cluster it did not start it signals no process and shapes no peer link, only the links from its
// own load.
func (r *ActionRules) reachable(p Place, f Fault) error {
	if p.Signals || (r.OnLinks && f.Client.Kind != "") || r.ThroughAPI {
		return nil
	}
	if r.Available != nil {
		// What agents could not do either says so, rather than asking for agents.
		if err := r.Available(Place{Signals: true, Network: "agent", Provider: p.Provider, Disk: p.Disk}, "", f); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s on a remote cluster needs an agent on each node (cluster.agents: member name to chaos agent's URL); without agents the harness reaches only a remote cluster's client links: use a network fault with client: TARGET", r.Name)
}

// availableAt says why the action cannot run at p on links chosen by selection (nil: it can): an
// action on links needs a backend with a hold on them (on a cluster the harness did not start,
// network direct is the default and a client fault gets a proxy of its own), and then whatever
// the action needs of it.
func (r *ActionRules) availableAt(p Place, selection string, f Fault) error {
	if r.OnLinks && p.Network == "direct" && p.Signals {
		return fmt.Errorf("%s needs cluster.network proxy or netns (direct has no hold on the links)", r.Name)
	}
	if r.Available == nil {
		return nil
	}
	return r.Available(p, selection, f)
}

// ownerOf names the actions a field of their own belongs to.
func ownerOf(field string) string {
	var out []string
	for _, a := range actions.items {
		if slices.Contains(a.Fields, field) {
			out = append(out, a.Name)
		}
	}
	switch len(out) {
	case 0:
		return "none"
	case 1:
		return out[0]
	}
	return strings.Join(out[:len(out)-1], ", ") + " or " + out[len(out)-1]
}
