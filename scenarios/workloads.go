package scenarios

import (
	"fmt"
	"strings"
)

// WorkloadRules are a workload kind's rules as the schema reads them: the block fields of its
// own, their defaults, and what is wrong with their values. Each kind is a unit of package loadgen
// (one file each, with its constructor), which registers its rules here when it is linked in, as
// every program that runs a load does; defaults and validation read them, so the schema itself
// names no workload kind.
type WorkloadRules struct {
	Kind string
	// Clients is the default number of clients.
	Clients int
	// Fields are the block fields of this kind's own (rate, ttl, keys, ...), in the order messages
	// list them; clients, timeout, retry and name belong to every kind.
	Fields []string
	// Defaults fills what the block left out: def(field, set) calls set when the block does not
	// give field ("ttl", "mix[0].weight").
	Defaults func(b *Block, def func(field string, set func()))
	// Check reports what is wrong with the block's values through c, which locates each problem.
	Check func(b Block, c BlockChecker)
	// Ops are the ops the kind records, each with a latency.<op> and a retries.<op> metric.
	Ops []string
	// Trends are the threshold trend metrics the kind reports (lock_hold), in its Outcome's Trends.
	Trends []string
	// Holder is the target word for the member its current holder's client talks to
	// (lock-holder), when a fault can aim at it; the workload then implements loadgen.Holder.
	Holder string
}

// MetricOps are the ops with a latency.<op> and a retries.<op> metric: the KV load's (OpNames),
// then each registered workload kind's, in the registry's order (loadgen's Op constants follow it).
func MetricOps() []string {
	out := append([]string(nil), OpNames...)
	for _, k := range workloadKinds.items {
		out = append(out, k.Ops...)
	}
	return out
}

// TargetKinds are the words a target can be, besides a member name and {count: N} / {percent: P}:
// the members by their place in the cluster, and the holders of the registered workloads.
func TargetKinds() []string {
	out := append([]string(nil), memberTargets...)
	for _, k := range workloadKinds.items {
		if k.Holder != "" {
			out = append(out, k.Holder)
		}
	}
	return out
}

// HolderKind is the workload kind whose holder a target word names ("" for none).
func HolderKind(target string) string {
	for _, k := range workloadKinds.items {
		if k.Holder != "" && k.Holder == target {
			return k.Kind
		}
	}
	return ""
}

// BlockChecker reports the problems of one workload block, each at its field's line.
type BlockChecker struct {
	v    *validator
	path string
}

// Bad reports a problem with one of the block's fields.
func (c BlockChecker) Bad(field, format string, args ...any) {
	c.v.bad(c.path+"."+field, format, args...)
}

// OneOf reports a field whose value is not one of valid.
func (c BlockChecker) OneOf(field, val string, valid []string) {
	c.v.oneOf(c.path+"."+field, val, valid)
}

// Mix checks an operation mix, as workload.mix is checked.
func (c BlockChecker) Mix(field string, mix []Op) { c.v.mix(c.path+"."+field, mix) }

// Shared says whether the cluster is one the team already runs (provider remote).
func (c BlockChecker) Shared() bool { return c.v.sc.Cluster.shared() }

// workloadKinds are the registered rules, in the order of loadgen's registry.
var workloadKinds = registry[WorkloadRules]{what: "workload kind", name: func(r *WorkloadRules) string { return r.Kind }}

// RegisterWorkload adds a workload kind's rules; package loadgen calls it once per kind when it
// is initialised. A kind registered twice is a programming error.
func RegisterWorkload(r WorkloadRules) { workloadKinds.add(r) }

// WorkloadKinds names the registered workload kinds in the registry's order.
func WorkloadKinds() []string { return workloadKinds.names() }

// WorkloadOf finds a workload kind's rules (nil: none is registered by that name).
func WorkloadOf(kind string) *WorkloadRules { return workloadKinds.of(kind) }

// blockFields are the fields some kind has of its own, each once, in the order kinds list them.
func blockFields() []string {
	var out []string
	for _, k := range workloadKinds.items {
		for _, f := range k.Fields {
			if !contains(out, f) {
				out = append(out, f)
			}
		}
	}
	return out
}

// DefaultMix is the default of an operation mix: puts and gets, half and half.
func DefaultMix() []Op { return []Op{{Op: "put", Weight: 50}, {Op: "get", Weight: 50}} }

func (v *validator) workloads() {
	if len(v.sc.Workloads) > 0 && len(workloadKinds.items) == 0 {
		v.bad("workloads", "no workload kind is registered here (internal: this program does not link package loadgen, whose kinds register their rules)")
		return
	}
	names := map[string]int{}
	for i, b := range v.sc.Workloads {
		p := fmt.Sprintf("workloads[%d]", i)
		k := WorkloadOf(b.Kind)
		if k == nil {
			v.bad(p+".kind", "%q is not a workload; valid: %s", b.Kind, strings.Join(WorkloadKinds(), ", "))
			continue
		}
		if prev, ok := names[b.Name]; ok {
			v.bad(p+".name", "%q is also workloads[%d]'s name; names must differ", b.Name, prev)
		}
		names[b.Name] = i
		for _, f := range blockFields() {
			if _, given := v.present[p+"."+f]; given && !contains(k.Fields, f) {
				v.bad(p+"."+f, "does not apply to a %s workload; it takes %s", b.Kind, strings.Join(k.Fields, ", "))
			}
		}
		if b.Clients < 1 || b.Clients > 1000 {
			v.bad(p+".clients", "%d: valid: 1 to 1000", b.Clients)
		}
		if b.Timeout <= 0 {
			v.bad(p+".timeout", "must be more than 0")
		}
		if b.Rate < 0 {
			v.bad(p+".rate", "%v is negative", b.Rate)
		} else if !finite(b.Rate) {
			v.bad(p+".rate", "%v is not a number per second", b.Rate)
		}
		v.retry(p+".retry", b.Retry)
		if k.Check != nil {
			k.Check(b, BlockChecker{v: v, path: p})
		}
	}
}
