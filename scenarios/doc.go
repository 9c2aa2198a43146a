// Package scenarios owns the scenario schema: strict YAML decoding with file:line errors, --set
// overrides, defaults, validation, the threshold grammar (k6's), and the built-in scenario library
// embedded from builtin/*.yaml.
//
// It is the leaf of the project: it must not import any other package of etcd-chaos.
package scenarios
