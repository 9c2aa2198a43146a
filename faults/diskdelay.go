package faults

import (
	"fmt"

	"github.com/etcd-chaos/etcd-chaos/faults/diskfs"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// diskDelay makes the named ops on the member's data dir wait (fsync by default: the WAL's fsync
// latency is what etcd's leader liveness hangs on). The member keeps serving, slowly.
var diskDelayAction = Action{Layer: true,
	IO:   func(f scenarios.Fault) diskfs.Op { return diskOps(f, diskfs.Fsync) },
	Kind: diskKind{name: "disk-delay"},
	KindOf: func(f scenarios.Fault) Kind {
		return diskKind{name: "disk-delay", fault: diskfs.Fault{Ops: diskOps(f, diskfs.Fsync), Delay: f.Latency.D(), Jitter: f.Jitter.D(), Percent: f.Percent}}
	},
	ActionRules: scenarios.ActionRules{Name: "disk-delay", Selections: onMembers,
		Fields: []string{"latency", "jitter", "percent", "ops"},
		Check: func(f scenarios.Fault) []scenarios.FieldProblem {
			out := append(checkOps(f), checkPercent(f)...)
			if f.Latency <= 0 {
				out = append(out, scenarios.FieldProblem{Field: "latency", Msg: "disk-delay needs a latency such as 200ms"})
			}
			if f.Jitter > f.Latency {
				out = append(out, scenarios.FieldProblem{Field: "jitter", Msg: fmt.Sprintf("%s is more than the latency %s (a negative delay)", f.Jitter, f.Latency)})
			}
			return out
		},
		Available: needsDiskLayer},
	Does: func(f scenarios.Fault, _ string) string {
		return fmt.Sprintf("delay %s%s on its data dir by %s (jitter %s); heal: remove it", percentText(f), diskOps(f, diskfs.Fsync), f.Latency, f.Jitter)
	},
}
