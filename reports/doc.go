// Package reports owns the result model (result.json, versioned), the event log (events.jsonl),
// threshold evaluation against measured distributions, and the renderers (text for now).
//
// It imports only package scenarios of etcd-chaos; loadgen, faults, harness and cmd sit above it.
package reports
