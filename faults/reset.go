package faults

import (
	"fmt"

	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// reset closes every connection carrying its links at once; only the proxy holds connections, so
// between members it needs network: proxy. It is instantaneous: the clients and peers dial again.
var resetAction = Action{
	ActionRules: scenarios.ActionRules{Name: "reset", Instant: true,
		Selections: onLinks,
		Available: func(p scenarios.Place, selection string, f scenarios.Fault) error {
			if p.Network == "agent" && selection != "client" {
				return fmt.Errorf("reset closes a link's connections, which only the proxy holds; through chaos agent, reset client links (client: TARGET)")
			}
			if p.Network == "netns" && selection != "client" {
				return fmt.Errorf("reset closes a link's connections, which only the proxy holds; use cluster.network: proxy, or reset client links")
			}
			return dockerIsolatesOnly(p, selection, f)
		},
	},
	Does: func(_ scenarios.Fault, links string) string { return "close every connection on " + links },
}
