package faults

import (
	"fmt"

	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// loss drops a percent of the packets on its links (netns: a kernel qdisc; a TCP proxy has no
// packets to drop). At 100% it is a partition, and the quorum guard counts it as one.
var lossAction = Action{
	ActionRules: scenarios.ActionRules{Name: "loss",
		Selections: onLinks,
		Fields:     []string{"percent"},
		Check: func(f scenarios.Fault) []scenarios.FieldProblem {
			if f.Percent <= 0 || f.Percent > 100 {
				return []scenarios.FieldProblem{{Field: "percent", Msg: fmt.Sprintf("%v: valid: more than 0, up to 100", f.Percent)}}
			}
			return nil
		},
		Available: func(p scenarios.Place, selection string, f scenarios.Fault) error {
			if p.Network == "proxy" || selection == "client" {
				return fmt.Errorf("packet loss is not a TCP proxy's to give (client links always go through the proxy); use cluster.network: netns for loss between members (root, Linux, a kernel with sch_netem)")
			}
			return dockerIsolatesOnly(p, selection, f)
		},
		Cuts: func(f scenarios.Fault) bool { return f.Percent >= 100 },
	},
	Shape: func(f scenarios.Fault) Shape { return Shape{Loss: f.Percent} },
	Does: func(f scenarios.Fault, links string) string {
		return fmt.Sprintf("drop %.0f%% of packets on %s; heal: remove it", f.Percent, links)
	},
}
