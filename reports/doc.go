// Package reports owns the result model (result.json, versioned), the event log (events.jsonl),
// threshold evaluation against measured distributions, the renderers (text, Markdown, JUnit, HTML
// with plots), --repeat aggregates and the comparison of runs by their distributions; and the
// preflight checklist's model (Preflight) with its text and JUnit renderers; and the sweep's model
// (Sweep: cells, spreads over repeats, the recommendation with its margin) with its JSON, CSV, text
// and HTML heatmap renderers.
//
// It imports only package scenarios of etcd-chaos; loadgen, cluster, harness, preflight, sweep and
// cmd sit above it.
package reports
