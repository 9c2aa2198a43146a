// Package loadgen owns the load and the measurements beside it: the KV workload and the workload
// blocks (lease, lock, election, watch, a second kv group with its own retry policy, the leak
// negative control, and the register load for the linearizability check), open- and closed-loop
// pacing, the retry policy, the recorder (HDR histograms per op, phase and second, an HdrHistogram
// interval log), the leader watcher, the failover prober and its monitor (which paces both: full rate
// while a fault is measured or a change is suspected, idle otherwise), the recovery probes and the
// safety checks (kv-safety's log, lock and election overlaps, watch order and gaps). Conn says how
// every client reaches the members (a dialer, TLS, credentials); every key is under the run's prefix.
//
// Each workload kind is one unit in its own file (lease.go, lock.go, election.go, watchload.go,
// kvgroup.go, leak.go): its block fields, their defaults and checks, the target word for its holder
// (lock-holder, election-leader) and its constructor, listed once in the registry of workload.go,
// which registers the rules with the scenario schema when the package is initialised.
//
// It imports reports and scenarios of etcd-chaos, never faults, harness or cmd.
package loadgen
