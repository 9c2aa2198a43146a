// Package scenarios owns the scenario schema: strict YAML decoding with file:line errors, --set
// overrides, defaults, validation, the threshold grammar (k6's), and the built-in scenario library
// embedded from builtin/*.yaml.
//
// It is the leaf of the project: it imports no other package of etcd-chaos. A fault's own rules
// (the fields it takes, what it needs of the cluster and the backend, whether it is instantaneous
// or cuts the quorum) are its action's: package faults registers them here (RegisterAction), and
// Parse checks every fault with them right after decoding, for validate and run alike.
package scenarios
