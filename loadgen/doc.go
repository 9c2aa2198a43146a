// Package loadgen owns the load and the measurements beside it: the KV workload with open- and
// closed-loop pacing and a retry policy, the recorder (HDR histograms per op, phase and second, an
// HdrHistogram interval log), the leader watcher, the failover prober and the recovery probes.
//
// It imports reports and scenarios of etcd-chaos, never faults, harness or cmd.
package loadgen
