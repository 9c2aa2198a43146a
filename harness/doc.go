// Package harness owns one run's life, read top-down in Run (run.go) as its steps, each in a file
// of its own: start.go lays out and starts the cluster (or reaches one the team already runs),
// waits until it is ready, and tears everything down on a context that survives cancellation;
// observe.go runs the leader watcher, the failover prober, the member scraper and the live
// Prometheus metrics; load.go drives the load and its clock (warm-up, progress line) beside the
// fault schedule (schedule.go: guard, plan, inject, hold, heal, recovery probes for each fault)
// and the stop conditions (abort.go); measure.go settles each fault's window; workloads.go holds
// the safety checks; result.go assembles the result and decides the verdict. It also plans a run
// without touching anything (DryRun) and heals what a killed harness left (chaos heal).
//
// The cluster it runs on comes from package cluster (a provider by cluster.provider), and what it
// asks of one is by capability, never a provider's name. Preflight and sweep are packages of their
// own above it.
//
// It sits above cluster, faults, loadgen, reports and scenarios, and below sweep and cmd/chaos.
package harness
