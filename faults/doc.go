// Package faults owns the fault kinds (kill, stop, pause, restart: one file each, listed in one
// registry) and the network faults (partition, delay, bandwidth, loss, reset) over two backends, the
// per-link userspace proxy and Linux network namespaces through netlink; their lifecycle (planned ->
// applied -> healed, each step proven and written to a ledger that is synced to disk before the
// fault is applied) and target selection from the live cluster with seeded randomness.
//
// It acts on the Member and Cluster interfaces that harness implements; it must not import harness
// or cmd.
package faults
