package faults

import (
	"fmt"

	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// bandwidth limits its links to a rate in bytes per second. Heal removes the limit.
var bandwidthAction = Action{
	ActionRules: scenarios.ActionRules{Name: "bandwidth",
		Selections: onLinks,
		Fields:     []string{"rate"},
		Check: func(f scenarios.Fault) []scenarios.FieldProblem {
			if f.Rate <= 0 {
				return []scenarios.FieldProblem{{Field: "rate", Msg: "bandwidth needs a rate such as 1mbit or 2MB/s"}}
			}
			return nil
		},
		Available: dockerIsolatesOnly,
	},
	Shape: func(f scenarios.Fault) Shape { return Shape{Rate: int64(f.Rate)} },
	Does: func(f scenarios.Fault, links string) string {
		return fmt.Sprintf("limit %s to %v; heal: remove it", links, f.Rate)
	},
}
