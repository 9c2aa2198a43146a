package faults

import (
	"fmt"

	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// delay holds every byte on its links for a latency with jitter (each draw following the last by
// correlation), byte order kept. Heal removes it.
var delayAction = Action{
	ActionRules: scenarios.ActionRules{Name: "delay",
		Selections: onLinks,
		Fields:     []string{"latency", "jitter", "correlation"},
		Check: func(f scenarios.Fault) []scenarios.FieldProblem {
			var out []scenarios.FieldProblem
			if f.Latency <= 0 {
				out = append(out, scenarios.FieldProblem{Field: "latency", Msg: "delay needs a latency such as 100ms"})
			}
			if f.Jitter > f.Latency {
				out = append(out, scenarios.FieldProblem{Field: "jitter", Msg: fmt.Sprintf("%s is more than the latency %s (a negative delay)", f.Jitter, f.Latency)})
			}
			if f.Correlation < 0 || f.Correlation > 1 {
				out = append(out, scenarios.FieldProblem{Field: "correlation", Msg: fmt.Sprintf("%v: valid: 0 to 1", f.Correlation)})
			}
			return out
		},
		Available: dockerIsolatesOnly,
	},
	Shape: func(f scenarios.Fault) Shape {
		return Shape{Delay: f.Latency.D(), Jitter: f.Jitter.D(), Correlation: f.Correlation}
	},
	Does: func(f scenarios.Fault, links string) string {
		return fmt.Sprintf("delay %s (jitter %s) on %s; heal: remove it", f.Latency, f.Jitter, links)
	},
}
