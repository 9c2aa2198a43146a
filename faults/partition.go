package faults

import "github.com/etcd-chaos/etcd-chaos/scenarios"

// partition drops every byte on the links it chooses; the connections stay open, as behind a
// firewall that drops. Heal restores the links. Its members are cut out of the quorum.
var partitionAction = Action{
	ActionRules: scenarios.ActionRules{Name: "partition",
		Selections: []string{"isolate", "groups", "one-way", "majorities-ring", "client"},
		Cuts:       always,
		Available: func(p scenarios.Place, selection string, f scenarios.Fault) error {
			if selection == "isolate" && len(f.Isolate) == 1 {
				return nil // docker network disconnect does exactly this
			}
			return dockerIsolatesOnly(p, selection, f)
		},
	},
	Shape: func(scenarios.Fault) Shape { return Shape{Blackhole: true} },
	Does: func(_ scenarios.Fault, links string) string {
		return "drop every byte on " + links + "; heal: restore them"
	},
}
