// Package loadgen owns the load and the measurements beside it: the KV workload and the lease, lock,
// election, watch and register workloads, open- and closed-loop pacing, the retry policy, the
// recorder (HDR histograms per op, phase and second, an HdrHistogram interval log), the leader
// watcher, the failover prober, the recovery probes and the safety checks. Conn says how every
// client reaches the members (a dialer, TLS, credentials); every key is under the run's prefix.
//
// It imports reports and scenarios of etcd-chaos, never faults, harness or cmd.
package loadgen
