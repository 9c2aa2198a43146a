// Package cluster owns the cluster providers behind one Cluster interface (cluster.go): local.go
// (member processes of the chaos binary or an etcd binary, started through internal/proc),
// container.go (testcontainers-go, with dockernet.go, its network backend without root) and
// remote.go (a cluster the team already runs: endpoints, TLS, auth; no process control). What every
// provider shares lives in base, and each member's process control in a runner. The registry in
// cluster.go says what each provider can do (Capabilities: whether the harness starts the members,
// whether the cluster is the team's own); the run, the dry run, the sweep and chaos heal ask those,
// never a provider's name. heal.go is chaos heal: it heals what a killed harness left, for every
// provider, from the run folder's cluster.json and ledger, and deletes a remote run's keys.
//
// It sits above faults, loadgen, reports and scenarios, and below harness, preflight and cmd/chaos.
package cluster
