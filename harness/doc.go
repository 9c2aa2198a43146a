// Package harness owns one run's life: lay out and start the cluster (or reach one the team already
// runs), wait until it is ready, warm up, drive the load with the watcher and prober beside it, fire
// and heal the faults on schedule behind the quorum guard, stop at once when a stop condition trips,
// measure recovery, hold the thresholds, and tear everything down on a context that survives
// cancellation. It also plans a run without touching anything (DryRun), serves live Prometheus
// metrics, and heals what a killed harness left (chaos heal).
//
// Preflight (preflight*.go) is the pre-launch checklist against a live cluster: it gathers each
// member's status, member list entry, /metrics and /health once, then runs ten checks that each
// return findings (pass, warn, fail, skipped) with their evidence; the backup check restores a
// snapshot with etcd's own code into a member embedded in this process.
//
// Sweep (sweep.go) is chaos sweep: PlanSweep loads the scenario for every combination of the
// --vary values (the refused ones skipped), names the cells and orders them by the seed; RunSweep
// runs each cell's repeats through Run, resuming from the run folders a stopped sweep left, and
// rewrites the sweep's files (reports.WriteSweep) after every run.
//
// A provider sits behind the Cluster interface (cluster.go): local.go (member processes, with
// proc_*.go), container.go (testcontainers-go, with dockernet.go, its network backend without root),
// remote.go (endpoints, TLS, auth; no process control). What every provider shares lives in base,
// and each member's process control in a runner; heal.go heals what a killed harness left, for
// every provider. The registry in cluster.go says what each provider can do (Capabilities: whether
// the harness starts the members, whether the cluster is the team's own); the run, the dry run, the
// sweep and chaos heal ask those, never a provider's name.
//
// It sits above faults, loadgen, reports and scenarios, and below cmd/chaos only.
package harness
