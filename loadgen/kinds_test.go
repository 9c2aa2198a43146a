package loadgen

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// Each workload kind is one unit of the registry: a kind once, its rules registered with the
// schema, its own fields real fields of a block, a default for what it leaves out, a constructor.
// A scenario that names it gets its defaults and its checks, and one that gives another kind's
// field is told which fields the kind takes.
func TestWorkloadRegistry(t *testing.T) {
	var blockFields []string
	bt := reflect.TypeOf(scenarios.Block{})
	for i := 0; i < bt.NumField(); i++ {
		blockFields = append(blockFields, strings.Split(bt.Field(i).Tag.Get("yaml"), ",")[0])
	}
	seen := map[string]bool{}
	for _, k := range kinds {
		if seen[k.Kind] || k.Kind == "" {
			t.Errorf("workload kind %q is registered twice or has no name", k.Kind)
		}
		seen[k.Kind] = true
		if r := scenarios.WorkloadOf(k.Kind); r == nil || r.Clients != k.Clients {
			t.Errorf("%s: the schema has its rules as %+v", k.Kind, r)
		}
		if k.Clients < 1 || k.new == nil || k.Defaults == nil || k.Check == nil {
			t.Errorf("%s: clients %d, constructor, defaults and checks all needed", k.Kind, k.Clients)
		}
		for _, m := range k.Trends {
			if scenarios.MetricKindOf(m) != scenarios.Trend {
				t.Errorf("%s: its trend %q is not a threshold trend metric", k.Kind, m)
			}
		}
		for _, f := range k.Fields {
			if !slices.Contains(blockFields, f) {
				t.Errorf("%s: field %q is not a field of a block (%v)", k.Kind, f, blockFields)
			}
		}
	}
	// The recorder's Op constants take their names from the registry: each kind's ops in order.
	for op, want := range map[Op]string{OpTxn: "txn", OpLeaseGrant: "lease_grant", OpLeaseRevoke: "lease_revoke", OpLockAcquire: "lock_acquire", OpCampaign: "campaign", OpWatch: "watch"} {
		if op.String() != want || scenarios.MetricKindOf("latency."+want) != scenarios.Trend || scenarios.MetricKindOf("retries."+want) != scenarios.Gauge {
			t.Errorf("op %d is %q, want %q with latency.%s and retries.%s metrics", op, op.String(), want, want, want)
		}
	}
	if scenarios.MetricKindOf("lock_hold") != scenarios.Trend || scenarios.MetricKindOf("failover.election_handover") != scenarios.Trend {
		t.Error("the lock's and the election's trends are not threshold metrics")
	}
	if got := scenarios.WorkloadKinds(); len(got) != len(kinds) || len(got) != 6 {
		t.Errorf("the schema knows %v", got)
	}
	sc, err := scenarios.Parse("x.yaml", []byte("name: x\nworkload: {duration: 10s, warmup: 1s}\nworkloads:\n  - {kind: lease}\n  - {kind: watch}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if l, w := sc.Workloads[0], sc.Workloads[1]; l.Clients != 4 || l.TTL.D().Seconds() != 5 || l.Keys != 2 || w.Prefixes != 2 || w.Rate != 100 {
		t.Errorf("defaults: lease %+v, watch %+v", l, w)
	}
	_, err = scenarios.Parse("x.yaml", []byte("name: x\nworkload: {duration: 10s, warmup: 1s}\nworkloads:\n  - {kind: election, locks: 2, hold: 0s}\n"), nil)
	for _, want := range []string{"x.yaml:4: workloads[0].locks: does not apply to a election workload; it takes hold, session-ttl", "workloads[0].hold: must be more than 0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
}
