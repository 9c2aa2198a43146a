package harness

import (
	"strings"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/reports"
)

// Every workload at once, beside the KV load, through a leader kill: each check must pass on what
// etcd really did, and each workload must report its numbers. (The negative controls, which feed
// each checker a broken history, are in package loadgen.)
const allWorkloads = `
cluster:
  size: 3
  etcd: {heartbeat-interval: 50ms, election-timeout: 250ms}
workload:
  duration: 16s
  warmup: 2s
  rate: 150
  mix:
    - {op: put, weight: 50, keys: 100}
    - {op: get, weight: 30, keys: 100}
    - {op: delete, weight: 10, keys: 100}
    - {op: txn, weight: 10, keys: 100}
workloads:
  - {kind: lease, clients: 4, ttl: 2s, keys: 2, rate: 4}
  - {kind: lock, clients: 4, locks: 2, hold: 20ms, session-ttl: 2s}
  - {kind: election, clients: 3, hold: 500ms, session-ttl: 2s}
  - {kind: watch, clients: 4, prefixes: 2, rate: 50}
  - {kind: kv, name: no-retry, clients: 4, rate: 50, retry: {attempts: 1}, mix: [{op: put, keys: 50}]}
  - {kind: kv, name: patient, clients: 4, rate: 50, retry: {attempts: 8, backoff: 20ms, deadline: 5s, on: [deadline, unavailable, no_leader, leader_changed, server_timeout]}, mix: [{op: put, keys: 50}]}
checks:
  linearizability: {enabled: true, keys: 3, clients: 4, rate: 50, max-ops: 800}
faults:
  - {at: 6s, action: kill, target: leader, duration: 4s}
thresholds:
  failover.election_handover: ["count >= 1"]
  latency.lock_acquire: ["count >= 1"]
  latency.lease_grant: ["count >= 1"]
  latency.lease_keepalive: ["count >= 1"]
  latency.watch: ["count >= 1"]
  latency.campaign: ["count >= 1"]
`

func TestWorkloadsUnderLeaderKill(t *testing.T) {
	res, out := runScenario(t, allWorkloads)
	want := []string{"lease-revoke", "lease-kept-alive", "lease-expiry", "lock-exclusion", "election-exclusion",
		"watch-order", "watch-complete", "linearizability", "kv-safety"}
	got := map[string]reports.Check{}
	for _, c := range res.Checks {
		got[c.Name] = c
		t.Logf("check %-18s %-7s %s", c.Name, c.Status, c.Summary)
	}
	for _, name := range want {
		c, ok := got[name]
		if !ok {
			t.Errorf("check %s did not run", name)
			continue
		}
		if c.Status != reports.CheckPass {
			t.Errorf("check %s: %s: %s %v", name, c.Status, c.Summary, c.Examples)
		}
	}
	for _, th := range res.Thresholds {
		if !th.Passed {
			t.Errorf("threshold %s %s: observed %s", th.Metric, th.Condition, th.Observed)
		}
	}
	stats := map[string]reports.WorkloadResult{}
	for _, w := range res.Workloads {
		stats[w.Name] = w
		t.Logf("workload %s: %v", w.Name, w.Stats)
	}
	if s := stats["lease"].Stats; s["granted"] < 4 || s["revoked"] < 1 || s["expired"] < 1 {
		t.Errorf("lease workload did too little: %v", s)
	}
	if s := stats["lock"].Stats; s["acquired"] < 10 {
		t.Errorf("lock workload: %v", s)
	}
	if s := stats["watch"].Stats; s["events"] < 100 {
		t.Errorf("watch workload: %v", s)
	}
	if s := stats["linearizability"].Stats; s["operations"] < 100 {
		t.Errorf("linearizability history: %v", s)
	}
	// Two KV groups with different retry policies under the same kill, each measured on its own.
	noRetry, patient := stats["no-retry"], stats["patient"]
	if noRetry.Ops == 0 || patient.Ops == 0 {
		t.Fatalf("kv groups: %+v %+v", noRetry, patient)
	}
	t.Logf("retry policies under the kill: no-retry %d of %d failed (%.4f attempts/op); patient %d of %d failed (%.4f attempts/op, %.4f attempts/success)",
		noRetry.Failed, noRetry.Ops, noRetry.Retries["all"].PerOp, patient.Failed, patient.Ops, patient.Retries["all"].PerOp, patient.Retries["all"].PerSuccess)
	if noRetry.Retries["all"].MaxAttempts != 1 {
		t.Errorf("the no-retry group retried: %+v", noRetry.Retries["all"])
	}
	if patient.Failed > noRetry.Failed {
		t.Errorf("the patient group failed more ops (%d) than the one that never retries (%d)", patient.Failed, noRetry.Failed)
	}
	if len(res.AttemptCodes) == 0 && res.FailedOps > 0 {
		t.Errorf("failed attempts not counted by code")
	}
	// latency.watch counts from the put's send time: an event cannot arrive before its put was
	// committed (an fsync on a majority), so nothing is near zero (from the acknowledgement, an event
	// that beat the writer's ack used to record 0).
	if w := res.Latency["watch"]; w.Count == 0 || w.Min < 0.1 {
		t.Errorf("latency.watch %+v: an event faster than a commit", w)
	}
	// The run's totals are the KV load's: watch deliveries, campaigns and lease ops are not ops.
	var kvOps int64
	for _, op := range []string{"put", "get", "delete", "txn"} {
		kvOps += res.Retries[op].Ops
	}
	if res.Ops != kvOps {
		t.Errorf("ops %d, KV ops %d: the totals mix in other workloads", res.Ops, kvOps)
	}
	if !res.Passed {
		t.Errorf("verdict %s: %s", res.Verdict, res.Reason)
	}
	assertNoLeftovers(t, out)
}

// TestLockPause pauses the member the lock holder talks to past its session TTL while the holder
// means to hold on: the run must finish, heal, and report what happened to exclusion (a finding,
// whichever way it goes).
func TestLockPause(t *testing.T) {
	res, out := runScenario(t, `
cluster:
  size: 3
  etcd: {heartbeat-interval: 50ms, election-timeout: 250ms}
workload:
  duration: 16s
  warmup: 2s
  rate: 20
  mix: [{op: get, keys: 10}]
workloads:
  - {kind: lock, clients: 3, locks: 1, hold: 6s, session-ttl: 1s}
faults:
  - {at: 5s, action: pause, target: lock-holder, duration: 4s}
`)
	if len(res.Faults) != 1 || res.Faults[0].Error != "" || res.Faults[0].HealedAtS == nil {
		t.Fatalf("the pause did not run and heal: %+v", res.Faults)
	}
	var lock *reports.Check
	for i := range res.Checks {
		if res.Checks[i].Name == "lock-exclusion" {
			lock = &res.Checks[i]
		}
	}
	if lock == nil {
		t.Fatalf("no lock-exclusion check: %+v", res.Checks)
	}
	t.Logf("lock-pause: %s: %s %v", lock.Status, lock.Summary, lock.Examples)
	if lock.Status == reports.CheckFail && !strings.Contains(strings.Join(lock.Examples, " "), "acquired it at") {
		t.Errorf("a failed exclusion check must say who held it when: %v", lock.Examples)
	}
	if res.Verdict == reports.VerdictError {
		t.Errorf("the run errored: %s", res.Reason)
	}
	assertNoLeftovers(t, out)
}
