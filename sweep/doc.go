// Package sweep is chaos sweep: NewPlan loads the scenario for every combination of the --vary
// values (the refused ones skipped), names the cells and orders them by the seed; Run runs each
// cell's repeats through harness.Run, resuming from the run folders a stopped sweep left, and
// rewrites the sweep's files (reports.WriteSweep: the grid, the recommendation) after every run.
//
// It sits above harness and below cmd/chaos.
package sweep
