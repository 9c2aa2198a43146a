// Package preflight is chaos preflight, the pre-launch checklist against a live cluster: it gathers
// each member's status, member list entry, /metrics and /health once, then runs ten checks that
// each return findings (pass, warn, fail, skipped) with their evidence; the backup check restores a
// snapshot with etcd's own code into a scratch member embedded in this process (scratch.go), which
// takes only its own client and is removed even after a crash.
//
// It sits above harness (whose remote provider reaches the cluster: TLS, auth, diagnosis of a
// refused connection) and below cmd/chaos.
package preflight
