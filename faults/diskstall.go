package faults

import (
	"github.com/etcd-chaos/etcd-chaos/faults/diskfs"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// diskStall blocks every I/O on the member's data dir until the heal, as EBS's pause-volume-io
// does: the process runs, its disk does not answer. The member is out of the quorum meanwhile.
var diskStallAction = Action{Layer: true,
	Kind:        diskKind{name: "disk-stall", fault: diskfs.Fault{Ops: diskfs.All, Stall: true}},
	ActionRules: scenarios.ActionRules{Name: "disk-stall", Selections: onMembers, Cuts: always, Available: needsDiskLayer},
	Does: func(scenarios.Fault, string) string {
		return "block every I/O on its data dir; heal: release it"
	},
}
