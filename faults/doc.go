// Package faults owns the fault kinds on member processes (kill, stop, pause, restart: one file
// each, listed in one registry) and the network faults (partition, delay, bandwidth, loss, reset)
// over three backends behind the Network interface (network.go): the per-link userspace proxy
// (proxy.go; the one that delivers delay where the kernel has no sch_netem), Linux network
// namespaces through netlink (netns_linux.go: blackhole routes, htb and tbf qdiscs) and, for
// containers without root, docker network disconnect (in harness). It owns their lifecycle
// (planned -> applied -> healed, each step proven and written to a ledger that is synced to disk
// before the fault is applied) and target selection from the live cluster with seeded randomness;
// owner_linux.go names the member behind a proxied connection from /proc.
//
// It acts on the Member and Cluster interfaces that harness implements; it imports scenarios only
// (for Target), never loadgen, harness or cmd.
package faults
