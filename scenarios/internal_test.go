package scenarios

import (
	"strings"
	"testing"
)

// A misspelt etcd flag is answered with the nearest flag etcd has, and a name like none with none.
// (Moved from TestEtcdFlagsKnown, which runs outside the package to validate faults with their
// actions' registered rules.)
func TestNearestFlagName(t *testing.T) {
	if nearest("election-timout", embeddedEtcdFlags()) != "election-timeout" || nearest("zzzzzzzzzzzzzzzzzzz", embeddedEtcdFlags()) != "" {
		t.Fatal("nearest name is off")
	}
}

// Without package faults linked in, no action's rules are registered: a scenario with faults is
// refused, loudly, rather than validated without them.
func TestFaultsNeedTheirActionsRegistered(t *testing.T) {
	registered := actions.items // the external tests link faults into this test binary
	actions.items = nil
	defer func() { actions.items = registered }()
	_, err := Parse("x.yaml", []byte("name: x\nworkload: {duration: 10s, warmup: 1s}\nfaults:\n  - {at: 5s, action: kill, target: leader, duration: 1s}\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "no fault action is registered") {
		t.Fatalf("got %v", err)
	}
}

// Without package loadgen linked in, no workload kind's rules are registered: a scenario with
// workload blocks is refused, loudly.
func TestWorkloadsNeedTheirKindsRegistered(t *testing.T) {
	registered := workloadKinds.items
	workloadKinds.items = nil
	defer func() { workloadKinds.items = registered }()
	_, err := Parse("x.yaml", []byte("name: x\nworkload: {duration: 10s, warmup: 1s}\nworkloads:\n  - {kind: lease}\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "no workload kind is registered") {
		t.Fatalf("got %v", err)
	}
}
