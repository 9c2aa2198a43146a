package faults

import (
	"github.com/etcd-chaos/etcd-chaos/faults/diskfs"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// diskFull makes the member's disk full: every write that would allocate space fails with
// ENOSPC and statfs reports no free block, until the heal. Reads and fsyncs still work.
var diskFullAction = Action{Layer: true,
	Kind:        diskKind{name: "disk-full", fault: diskfs.Fault{Full: true}},
	ActionRules: scenarios.ActionRules{Name: "disk-full", Selections: onMembers, Cuts: always, Available: needsDiskLayer},
	Does: func(scenarios.Fault, string) string {
		return "fail every write that allocates with ENOSPC (statfs: no free block); heal: free it, and start the member again if it exited"
	},
}
