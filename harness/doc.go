// Package harness owns one run's life: lay out and start the cluster (local member processes),
// wait until it is ready, warm up, drive the load with the watcher and prober beside it, fire and
// heal the faults on schedule, measure recovery, hold the thresholds, and tear everything down on
// a context that survives cancellation. It also heals what a killed harness left (chaos heal).
//
// It sits above faults, loadgen, reports and scenarios, and below cmd/chaos only.
package harness
