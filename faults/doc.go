// Package faults owns the fault actions, each one unit in a file of its own (kill.go, crash.go,
// partition.go, ...) listed once in the registry of action.go: its name, fields, rules, what it
// needs of the cluster and the network backend, whether it cuts the quorum, its dry-run line, and
// how it is injected, proved and healed: on member processes through a Kind, or on links through a
// Network backend (network.go) with a Shape. The backends: the per-link userspace proxy (proxy.go;
// the one that delivers delay where the kernel has no sch_netem), Linux network namespaces through
// netlink (netns_linux.go: blackhole routes, htb and tbf qdiscs) and, for containers without root,
// docker network disconnect (in harness). It owns the lifecycle (planned -> applied -> healed, each
// step proven and written to a ledger synced to disk before the fault is applied) and target
// selection from the live cluster with seeded randomness; owner_linux.go names the member behind a
// proxied connection from /proc.
//
// It registers each action's rules with the scenario schema when it is initialised, so that
// scenarios.Parse checks a fault with them; harness plans a fault with its action's Kind or Shape.
// It imports scenarios only, never loadgen, harness or cmd.
package faults
