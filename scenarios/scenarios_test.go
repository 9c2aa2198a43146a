package scenarios_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/etcd-chaos/etcd-chaos/faults"  // registers the fault actions' rules
	_ "github.com/etcd-chaos/etcd-chaos/loadgen" // registers the workload kinds' rules
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

func TestBuiltinsParse(t *testing.T) {
	list, err := scenarios.Builtins()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"client-delay", "defrag-under-load", "disaster-recovery", "disk-stall-follower", "election-failover", "flaky-network", "follower-kill",
		"graceful-leader-stop", "leader-kill", "leader-pause", "lease-churn", "lock-contention", "lock-pause", "member-replace", "one-way-leader", "partition-leader",
		"partition-minority", "power-loss-minority", "rolling-restart", "rolling-upgrade", "slow-disk-leader", "slow-follower", "slow-leader", "soak", "watch-under-kill"}
	var got []string
	for _, b := range list {
		got = append(got, b.Name)
		if b.Description == "" {
			t.Errorf("%s has no description", b.Name)
		}
		// Every built-in validates; rolling-upgrade with the previous release where make
		// etcd-previous puts it (here a stand-in that says its version).
		if _, err := scenarios.LoadBuiltin(b.Name, BuiltinSets(t, b.Name)); err != nil {
			t.Errorf("%s: %v", b.Name, err)
		}
	}
	// Without it, rolling-upgrade says how to get it.
	if _, err := scenarios.LoadBuiltin("rolling-upgrade", nil); err == nil || !strings.Contains(err.Error(), "make etcd-previous builds it") {
		t.Errorf("rolling-upgrade without %s: %v", scenarios.PreviousEtcdBinary, err)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("builtins = %v, want %v", got, want)
	}
}

const base = `name: t
cluster:
  size: 3
workload:
  duration: 20s
  warmup: 1s
faults:
  - {at: 5s, action: kill, target: leader, duration: 2s}
thresholds:
  latency.put: ["p(99) < 50ms"]
`

func TestBadInput(t *testing.T) {
	cases := []struct {
		name, yaml string
		sets       []string
		want       []string // substrings of the error
	}{
		{"unknown key", strings.Replace(base, "  size: 3", "  size: 3\n  sise: 5", 1), nil, []string{"x.yaml:4:", "cluster.sise", "unknown field", "valid at cluster:", "size"}},
		{"bad duration", strings.Replace(base, "duration: 20s", "duration: 20 seconds", 1), nil, []string{"x.yaml:5:", "workload.duration", "not a duration"}},
		{"missing unit", strings.Replace(base, "duration: 20s", "duration: 20", 1), nil, []string{"x.yaml:5:", "workload.duration", "with a unit"}},
		{"member out of range", strings.Replace(base, "target: leader", "target: member-7", 1), nil, []string{"x.yaml:8:", "faults[0].target", `"member-7" is not a member`, "member-1, member-2, member-3"}},
		{"fault after end", strings.Replace(base, "at: 5s", "at: 25s", 1), nil, []string{"x.yaml:8:", "faults[0].at", "after the run ends"}},
		{"heals after end", strings.Replace(base, "duration: 2s", "duration: 19s", 1), nil, []string{"faults[0].duration", "after the load ends"}},
		{"negative rate", strings.Replace(base, "  warmup: 1s", "  warmup: 1s\n  rate: -5", 1), nil, []string{"x.yaml:7:", "workload.rate", "negative"}},
		{"malformed threshold", strings.Replace(base, "p(99) < 50ms", "p99 less than 50ms", 1), nil, []string{"x.yaml:10:", "thresholds.latency.put", "is not a threshold"}},
		{"unknown metric", strings.Replace(base, "latency.put", "latency.pot", 1), nil, []string{"x.yaml:10:", "unknown metric", "latency.put"}},
		{"wrong aggregation", strings.Replace(base, "p(99) < 50ms", "rate < 0.1", 1), nil, []string{"aggregation rate does not apply"}},
		{"set bad duration", base, []string{"workload.duration=soon"}, []string{"x.yaml (--set)", "workload.duration", "not a duration"}},
		{"set bad path", base, []string{"faults[3].at=1s"}, []string{"(--set)", "no element 3"}},
		{"count too big", strings.Replace(base, "target: leader", "target: {count: 4}", 1), nil, []string{"faults[0].target.count", "1 to 3"}},
		{"minority of one", strings.Replace(strings.Replace(base, "size: 3", "size: 1", 1), "target: leader", "target: minority", 1), nil, []string{"no minority"}},
		{"harness flag", strings.Replace(base, "  size: 3", "  size: 3\n  etcd: {data-dir: /tmp/x}", 1), nil, []string{"cluster.etcd.data-dir", "set by the harness"}},
		{"loss through the proxy", strings.Replace(base, "action: kill, target: leader", "action: loss, target: leader, percent: 5", 1), nil, []string{"x.yaml:8:", "faults[0].action", "not a TCP proxy's to give", "network: netns"}},
		{"network fault on direct", strings.Replace(strings.Replace(base, "action: kill, target: leader", "action: partition, isolate: leader", 1), "  size: 3", "  size: 3\n  network: direct", 1), nil, []string{"faults[0].action", "needs cluster.network proxy or netns"}},
		{"reset between members in netns", strings.Replace(strings.Replace(base, "action: kill, target: leader, duration: 2s", "action: reset, target: leader", 1), "  size: 3", "  size: 3\n  network: netns", 1), nil, []string{"faults[0].action", "use cluster.network: proxy"}},
		{"partition with target", strings.Replace(base, "action: kill", "action: partition", 1), nil, []string{"faults[0].target", "does not apply to partition", "isolate, groups, one-way, majorities-ring, client"}},
		{"two selections", strings.Replace(base, "action: kill, target: leader", "action: partition, isolate: leader, client: leader", 1), nil, []string{"faults[0].client", "give only one of"}},
		{"group misses a member", strings.Replace(base, "action: kill, target: leader", "action: partition, groups: [[member-1], [member-2]]", 1), nil, []string{"faults[0].groups", "member-3 is in no group"}},
		{"member in two groups", strings.Replace(base, "action: kill, target: leader", "action: partition, groups: [[member-1, member-2], [member-2, member-3]]", 1), nil, []string{"faults[0].groups[1]", "already in faults[0].groups[0]"}},
		{"ring of three", strings.Replace(base, "action: kill, target: leader", "action: partition, majorities-ring: true", 1), nil, []string{"faults[0].majorities-ring", "at least 5 members"}},
		{"isolate all", strings.Replace(base, "action: kill, target: leader", "action: partition, isolate: all", 1), nil, []string{"faults[0].isolate", "cuts nothing"}},
		{"delay without latency", strings.Replace(base, "action: kill", "action: delay", 1), nil, []string{"faults[0].latency", "needs a latency"}},
		{"latency on kill", strings.Replace(base, "target: leader,", "target: leader, latency: 5ms,", 1), nil, []string{"faults[0].latency", "applies only to action delay"}},
		{"bad rate", strings.Replace(base, "action: kill, target: leader", "action: bandwidth, target: leader, rate: fast", 1), nil, []string{"x.yaml:8:", "faults[0].rate", "1mbit"}},
		{"disk fault on containers", strings.Replace(strings.Replace(base, "action: kill", "action: disk-stall", 1), "  size: 3", "  size: 3\n  provider: container", 1), nil, []string{"x.yaml:9:", "faults[0].action", "disk-stall needs the harness's disk layer", "provider container", "use provider local"}},
		{"disk fault on remote", remoteBase + "faults: [{at: 3s, action: disk-full, target: leader, duration: 2s}]\n", nil, []string{"faults[0].action", "disk-full on a remote cluster needs an agent"}},
		{"disk-delay without latency", strings.Replace(base, "action: kill", "action: disk-delay", 1), nil, []string{"faults[0].latency", "disk-delay needs a latency"}},
		{"disk ops unknown", strings.Replace(base, "action: kill, target: leader", "action: disk-delay, target: leader, latency: 10ms, ops: [sync]", 1), nil, []string{"x.yaml:8:", "faults[0].ops", `"sync" is not an op`, "fsync, write, read, all"}},
		{"disk errno unknown", strings.Replace(base, "action: kill, target: leader", "action: disk-error, target: leader, errno: EAGAIN", 1), nil, []string{"faults[0].errno", "EIO, ENOSPC, EROFS"}},
		{"disk percent", strings.Replace(base, "action: kill, target: leader", "action: disk-error, target: leader, percent: 150", 1), nil, []string{"faults[0].percent", "up to 100"}},
		{"ops on kill", strings.Replace(base, "action: kill, target: leader", "action: kill, target: leader, ops: [fsync]", 1), nil, []string{"faults[0].ops", "applies only to action disk-delay or disk-error"}},
		{"power loss takes no duration", strings.Replace(base, "action: kill", "action: power-loss", 1), nil, []string{"faults[0].duration", "power-loss is instantaneous"}},
		{"power loss of a majority", strings.Replace(base, "action: kill, target: leader, duration: 2s", "action: power-loss, target: majority", 1), nil, []string{"faults[0]", "quorum guard refuses it", "allow-quorum-loss"}},
		{"corrupt file", strings.Replace(base, "action: kill, target: leader, duration: 2s", "action: corrupt, target: follower, file: log", 1), nil, []string{"faults[0].file", "wal, snap, db"}},
		{"disk-delay on containers", strings.Replace(base, "  size: 3", "  size: 3\n  provider: container\n  disk-delay: {fsync: 10ms}", 1), nil, []string{"cluster.disk-delay", "provider container"}},
		{"disk-delay negative", strings.Replace(base, "  size: 3", "  size: 3\n  disk-delay: {fsync: -1ms}", 1), nil, []string{"x.yaml:4:", "cluster.disk-delay.fsync", "negative"}},
		{"disk-delay unknown op", strings.Replace(base, "  size: 3", "  size: 3\n  disk-delay: {sync: 1ms}", 1), nil, []string{"cluster.disk-delay.sync", "unknown field"}},
		{"one-way without to", strings.Replace(base, "action: kill, target: leader", "action: partition, one-way: {from: leader}", 1), nil, []string{"faults[0].one-way", "needs both from and to"}},
		{"peer-delay jitter over latency", strings.Replace(base, "  size: 3", "  size: 3\n  peer-delay: {latency: 5ms, jitter: 10ms}", 1), nil, []string{"cluster.peer-delay.jitter", "exceeds the latency 5ms"}},
		{"peer-delay on direct", strings.Replace(base, "  size: 3", "  size: 3\n  network: direct\n  peer-delay: {latency: 5ms}", 1), nil, []string{"cluster.peer-delay", "needs provider local with network proxy", "network direct"}},
		{"peer-delay bad value", strings.Replace(base, "  size: 3", "  size: 3\n  peer-delay: {latency: far}", 1), nil, []string{"cluster.peer-delay.latency", "not a duration"}},
		{"bad subnet", strings.Replace(base, "  size: 3", "  size: 3\n  subnet: 10.0.0.1", 1), nil, []string{"cluster.subnet", "not an IPv4 CIDR", "198.18.0.0/15"}},
		{"unknown workload", base + "workloads: [{kind: queue}]\n", nil, []string{"x.yaml:11:", "workloads[0].kind", `"queue" is not a workload`, "lease, lock, election, watch, kv"}},
		{"field of another kind", base + "workloads: [{kind: lock, ttl: 5s}]\n", nil, []string{"workloads[0].ttl", "does not apply to a lock workload", "locks, hold, session-ttl"}},
		{"lease ttl not whole seconds", base + "workloads: [{kind: lease, ttl: 1500ms}]\n", nil, []string{"workloads[0].ttl", "whole seconds"}},
		{"two workloads one name", base + "workloads: [{kind: watch}, {kind: lease, name: watch}]\n", nil, []string{"workloads[1].name", "also workloads[0]"}},
		{"bad retry class", base + "workloads: [{kind: kv, retry: {on: [timeouts]}}]\n", nil, []string{"workloads[0].retry.on[0]", `"timeouts"`, "deadline, unavailable"}},
		{"lock-holder without a lock workload", strings.Replace(base, "target: leader", "target: lock-holder", 1), nil, []string{"faults[0].target", "lock-holder needs a lock workload"}},
		{"linearizability history too small", base + "checks: {linearizability: {enabled: true, max-ops: 2}}\n", nil, []string{"checks.linearizability.max-ops", "10 to 100000"}},
		{"docker network on local members", strings.Replace(base, "  size: 3", "  size: 3\n  network: docker", 1), nil, []string{"cluster.network", "docker (network disconnect) needs provider container"}},
		{"docker network cannot delay", strings.Replace(strings.Replace(base, "action: kill, target: leader", "action: delay, target: leader, latency: 10ms", 1), "  size: 3", "  size: 3\n  provider: container\n  network: docker", 1), nil, []string{"faults[0].action", "can only isolate one member"}},
		{"proxy on containers", strings.Replace(base, "  size: 3", "  size: 3\n  provider: container\n  network: proxy", 1), nil, []string{"cluster.network", "proxy needs members that are local processes"}},
		{"image on local", strings.Replace(base, "  size: 3", "  size: 3\n  image: quay.io/coreos/etcd", 1), nil, []string{"cluster.image", "applies only to provider container"}},
		{"name escapes the results folder", strings.Replace(base, "name: t", "name: ../../escaped", 1), nil, []string{"x.yaml:1:", "name", `"../../escaped"`, "letters, digits"}},
		{"name of dots", strings.Replace(base, "name: t", "name: ..", 1), nil, []string{"x.yaml:1:", "only dots"}},
		{"name with a space", base, []string{"name=a b"}, []string{"(--set)", "name", "letters, digits"}},
		{"misspelt etcd flag", strings.Replace(base, "  size: 3", "  size: 3\n  etcd: {heartbeat-intervall: 100ms}", 1), nil, []string{"x.yaml:4:", "cluster.etcd.heartbeat-intervall", "not a flag of etcd", "did you mean heartbeat-interval?"}},
		{"flag etcd ignores", strings.Replace(base, "  size: 3", "  size: 3\n  etcd: {snapshot: 'true'}", 1), nil, []string{"cluster.etcd.snapshot", "not a flag of etcd"}},
		{"rate nan", strings.Replace(base, "  warmup: 1s", "  warmup: 1s\n  rate: nan", 1), nil, []string{"x.yaml:7:", "workload.rate", "not a number of ops/s"}},
		{"rate inf", base, []string{"workload.rate=inf"}, []string{"workload.rate", "not a number of ops/s"}},
		{"block rate nan", base + "workloads: [{kind: watch, rate: NaN}]\n", nil, []string{"workloads[0].rate", "not a number"}},
		{"recovery 0s", strings.Replace(base, "  warmup: 1s", "  warmup: 1s\n  recovery: 0s", 1), nil, []string{"x.yaml:7:", "workload.recovery", "more than 0"}},
		{"explicit zero clients", strings.Replace(base, "  warmup: 1s", "  warmup: 1s\n  clients: 0", 1), nil, []string{"workload.clients", "at least 1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := scenarios.Parse("x.yaml", []byte(c.yaml), c.sets)
			if err == nil {
				t.Fatal("no error")
			}
			if _, ok := err.(scenarios.Problems); !ok {
				t.Fatalf("error is %T, want scenarios.Problems: %v", err, err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestEtcdFlagsKnown: every flag etcd 3.7 really has passes, as the built-ins' flags do.
func TestEtcdFlagsKnown(t *testing.T) {
	y := strings.Replace(base, "  size: 3", "  size: 3\n  etcd: {heartbeat-interval: 50ms, election-timeout: 500ms, snapshot-count: '1000', auto-compaction-retention: 1m, quota-backend-bytes: '1000000'}", 1)
	if _, err := scenarios.Parse("x.yaml", []byte(y), nil); err != nil {
		t.Fatal(err)
	}
}

// remoteBase reaches a cluster the team runs: a client: fault only.
const remoteBase = `name: r
cluster:
  provider: remote
  endpoints: [http://127.0.0.1:2379]
workload:
  duration: 20s
  warmup: 1s
`

// TestRemoteRefusals: what must never reach a cluster the team runs, and secrets that must never be
// echoed in the error that refuses them.
func TestRemoteRefusals(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
		secret     string
	}{
		{"credentials in the URL", strings.Replace(remoteBase, "http://127.0.0.1:2379", "https://root:hunter2@127.0.0.1:2379", 1),
			[]string{"x.yaml:4:", "cluster.endpoints[0]", "holds credentials"}, "hunter2"},
		{"a password as password-env", strings.Replace(remoteBase, "  endpoints:", "  auth: {user: root, password-env: 'hunter2!x'}\n  endpoints:", 1),
			[]string{"cluster.auth.password-env", "not an environment variable's name"}, "hunter2"},
		{"leak workload", remoteBase + "workloads: [{kind: leak}]\n", []string{"workloads[0].kind", "never on a cluster the team runs"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := scenarios.Parse("x.yaml", []byte(c.yaml), nil)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if c.secret != "" && strings.Contains(err.Error(), c.secret) {
				t.Errorf("the error echoes the secret: %q", err)
			}
		})
	}
	if _, err := scenarios.Parse("x.yaml", []byte(remoteBase), nil); err != nil {
		t.Fatalf("the remote base itself: %v", err)
	}
}

func TestSetAndDefaults(t *testing.T) {
	sc, err := scenarios.Parse("x.yaml", []byte(base), []string{"workload.duration=30s", "faults[0].at=7s", "cluster.etcd.heartbeat-interval=50ms", "cluster.etcd.election-timeout=250"})
	if err != nil {
		t.Fatal(err)
	}
	if sc.Workload.Duration.D() != 30*time.Second || sc.Faults[0].At.D() != 7*time.Second {
		t.Fatalf("overrides not applied: %+v", sc.Workload)
	}
	if sc.Cluster.Etcd["heartbeat-interval"] != "50ms" || sc.Workload.Clients != 16 || sc.Workload.Retry.Attempts != 5 {
		t.Fatalf("defaults or set wrong: %+v %+v", sc.Cluster, sc.Workload)
	}
	if sc.Faults[0].Target.Kind != "leader" || sc.Faults[0].Line != 8 {
		t.Fatalf("fault = %+v", sc.Faults[0])
	}
}

// null removes a key, as if the file had left it out: a built-in runs against a remote cluster
// once what describes a cluster the harness starts is gone; without that, validation says why.
func TestSetNullRemoves(t *testing.T) {
	remote := []string{"cluster.provider=remote", "cluster.endpoints=[http://127.0.0.1:2379]", "faults=[]"}
	if _, err := scenarios.LoadBuiltin("leader-kill", remote); err == nil || !strings.Contains(err.Error(), "cluster.size: is read from the cluster's member list") {
		t.Fatalf("leader-kill against a remote cluster with its size: %v", err)
	}
	sc, err := scenarios.LoadBuiltin("leader-kill", append(remote, "cluster.size=null", "cluster.etcd=~", "cluster.not-there=null"))
	if err != nil {
		t.Fatalf("with cluster.size and cluster.etcd removed: %v", err)
	}
	if len(sc.Cluster.Etcd) != 0 || sc.Cluster.Provider != "remote" {
		t.Errorf("cluster %+v", sc.Cluster)
	}
	// A removed key takes its default.
	sc, err = scenarios.Parse("x.yaml", []byte(base), []string{"workload.duration=null"})
	if err != nil || sc.Workload.Duration.D() != 30*time.Second {
		t.Errorf("workload.duration removed: %v, %v", err, sc.Workload.Duration)
	}
	if _, err := scenarios.Parse("x.yaml", []byte(base), []string{"faults[0]=null"}); err == nil || !strings.Contains(err.Error(), "is a list element") {
		t.Errorf("a list element set to null: %v", err)
	}
}

func TestThresholdGrammar(t *testing.T) {
	cases := []struct {
		metric, expr string
		observed     float64
		holds        bool
	}{
		{"latency.put", "p(99) < 50ms", float64(49 * time.Millisecond), true},
		{"latency.put", "p(99.9) < 50ms", float64(50 * time.Millisecond), false},
		{"failover.write_restored", "max < 3s", float64(2999 * time.Millisecond), true},
		{"latency.get", "avg <= 10", float64(10 * time.Millisecond), true},
		{"errors", "rate < 0.01", 0.02, false},
		{"errors", "rate < 1%", 0.005, true},
		{"leader_changes", "count <= 2", 2, true},
		{"throughput", "min > 100", 50, false},
	}
	for _, c := range cases {
		th, err := scenarios.ParseThreshold(c.metric, c.expr)
		if err != nil {
			t.Fatalf("%s %q: %v", c.metric, c.expr, err)
		}
		if th.Holds(c.observed) != c.holds {
			t.Errorf("%s %q on %v: holds=%v, want %v", c.metric, c.expr, c.observed, !c.holds, c.holds)
		}
	}
}

// TestEtcdBinaryFlags: with etcd-binary, the flags are the binary's own (its --help), so a flag
// 3.5 had and 3.7 renamed is judged against the etcd that will run.
func TestEtcdBinaryFlags(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "etcd")
	help := "#!/bin/sh\ncat <<'X'\nUsage:\n"
	for i := range 25 {
		help += fmt.Sprintf("  --flag-%d 'x'\n", i)
	}
	help += "  --experimental-snapshot-catchup-entries '5000'\n  --heartbeat-interval '100'\n  --election-timeout '1000'\nX\n"
	if err := os.WriteFile(bin, []byte(help), 0o755); err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(base, "  size: 3", "  size: 3\n  etcd-binary: "+bin+"\n  etcd: {experimental-snapshot-catchup-entries: '100'}", 1)
	if _, err := scenarios.Parse("x.yaml", []byte(y), nil); err != nil {
		t.Fatalf("a flag the binary lists: %v", err)
	}
	y = strings.Replace(y, "experimental-snapshot-catchup-entries", "snapshot-catchup-entries", 1)
	_, err := scenarios.Parse("x.yaml", []byte(y), nil)
	if err == nil || !strings.Contains(err.Error(), "not a flag of etcd-binary") || !strings.Contains(err.Error(), "did you mean experimental-snapshot-catchup-entries?") {
		t.Fatalf("a flag the binary lacks: %v", err)
	}
}

// TestAgentFields: cluster.agents makes process and peer-link faults valid on a remote cluster,
// and what reaches the agents is checked; without agents those faults are refused.
func TestAgentFields(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"ca.pem", "c.pem", "k.pem", "token"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(dir, "x.yaml")
	agents := "  agents: {member-1: https://10.0.0.1:7070, member-2: https://10.0.0.2:7070, member-3: https://10.0.0.3:7070}\n" +
		"  agent-tls: {ca: ca.pem, cert: c.pem, key: k.pem}\n"
	withAgents := strings.Replace(remoteBase, "  endpoints:", agents+"  endpoints:", 1)
	faults := "faults:\n  - {at: 2s, action: kill, target: leader, duration: 2s}\n  - {at: 5s, action: partition, isolate: leader, duration: 2s}\n" +
		"  - {at: 8s, action: bandwidth, one-way: {from: leader, to: follower}, rate: 500kbit, duration: 2s}\n  - {at: 11s, action: restart, target: follower}\n"
	if _, err := scenarios.Parse(file, []byte(withAgents+faults), nil); err != nil {
		t.Fatalf("faults through agents: %v", err)
	}
	if _, err := scenarios.Parse(file, []byte(remoteBase+faults), nil); err == nil || !strings.Contains(err.Error(), "needs an agent on each node") {
		t.Errorf("without agents: %v, want refused", err)
	}
	for _, c := range []struct {
		name, yaml string
		want       []string
	}{
		{"agents on a local cluster", "name: l\ncluster: {size: 3, agents: {member-1: https://10.0.0.1:7070}}\nworkload: {duration: 5s}\n",
			[]string{"cluster.agents", "applies only to provider remote"}},
		{"plaintext agent", strings.Replace(withAgents, "https://10.0.0.2:7070", "http://10.0.0.2:7070", 1),
			[]string{"cluster.agents.member-2", "is plaintext"}},
		{"not a URL", strings.Replace(withAgents, "https://10.0.0.3:7070", "10.0.0.3", 1), []string{"cluster.agents.member-3", "not an agent URL"}},
		{"no credentials", strings.Replace(withAgents, ", cert: c.pem, key: k.pem", "", 1), []string{"cluster.agent-tls", "authenticated"}},
		{"cert without key", strings.Replace(withAgents, ", key: k.pem", "", 1), []string{"cluster.agent-tls", "cert and key go together"}},
		{"missing CA file", strings.Replace(withAgents, "ca: ca.pem", "ca: nope.pem", 1), []string{"cluster.agent-tls.ca", "cannot read"}},
		{"ttl", strings.Replace(withAgents, "  endpoints:", "  agent-ttl: 100ms\n  endpoints:", 1), []string{"cluster.agent-ttl", "1s to 5m"}},
		{"ttl without agents", strings.Replace(remoteBase, "  endpoints:", "  agent-ttl: 5s\n  endpoints:", 1), []string{"cluster.agent-ttl", "only with cluster.agents"}},
		{"reset between members", withAgents + "faults:\n  - {at: 2s, action: reset, target: leader}\n", []string{"faults[0]", "reset", "client links"}},
		{"disk fault", withAgents + "faults:\n  - {at: 2s, action: disk-stall, target: leader, duration: 2s}\n", []string{"faults[0]", "disk layer"}},
	} {
		_, err := scenarios.Parse(file, []byte(c.yaml), nil)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", c.name, err, w)
			}
		}
	}
}

// TestOperationFields: each operation's own fields, what it needs of the rest of the scenario, and
// where it can run, each refusal naming the file, line and field, and what would be valid.
func TestOperationFields(t *testing.T) {
	dir := t.TempDir()
	fake := func(name, version string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\necho 'etcd Version: "+version+"'\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	e35, e36, e34 := fake("etcd35", "3.5.21"), fake("etcd36", "3.6.8"), fake("etcd34", "3.4.30")
	base := "name: o\ncluster:\n  size: 3\n  backup: {every: 2s}\nworkload: {duration: 30s, warmup: 1s}\nchecks: {kv-safety: true}\nfaults:\n"
	ok := []string{
		"  - {at: 2s, action: compact, keep: 10}\n  - {at: 3s, action: defrag, target: all}\n  - {at: 4s, action: member-replace, target: follower}\n" +
			"  - {at: 6s, action: member-add, learner: true}\n  - {at: 8s, action: member-remove, target: member-4}\n  - {at: 10s, action: disaster, target: majority, restore: previous-snapshot}\n",
		"  - {at: 2s, action: upgrade, target: each, to: builtin, gap: 1s}\n  - {at: 20s, action: downgrade, to: " + e36 + "}\n",
	}
	for _, f := range ok {
		if _, err := scenarios.Parse(filepath.Join(dir, "ok.yaml"), []byte(strings.Replace(base, "  size: 3\n", "  size: 3\n  etcd-binary: "+e36+"\n", 1)+f), nil); err != nil {
			t.Errorf("valid operations refused: %v\n%s", err, f)
		}
	}
	for _, c := range []struct {
		name, yaml string
		want       []string
	}{
		{"disaster without backups", strings.Replace(base, "  backup: {every: 2s}\n", "", 1) + "  - {at: 2s, action: disaster, target: majority}\n",
			[]string{"x.yaml:3: cluster.backup.every", "faults[0] (disaster) restores the harness's last backup"}},
		{"disaster without kv-safety", strings.Replace(base, "kv-safety: true", "kv-safety: false", 1) + "  - {at: 2s, action: disaster, target: majority}\n",
			[]string{"checks.kv-safety", "recovery.rpo_writes"}},
		{"disaster of a minority", base + "  - {at: 2s, action: disaster, target: follower, restore: yesterday}\n",
			[]string{"faults[0].target", "loses a quorum", "faults[0].restore", `"yesterday"`, "latest-snapshot"}},
		{"backup too often", strings.Replace(base, "every: 2s", "every: 100ms", 1) + "  - {at: 2s, action: compact}\n", []string{"cluster.backup.every", "1s and more"}},
		{"negative keep", base + "  - {at: 2s, action: compact, keep: -1}\n", []string{"x.yaml:8: faults[0].keep", "valid: 0"}},
		{"keep on defrag", base + "  - {at: 2s, action: defrag, target: leader, keep: 5}\n", []string{"faults[0].keep", "applies only to action compact"}},
		{"each on kill", base + "  - {at: 2s, action: kill, target: each, duration: 1s}\n", []string{"faults[0].target", "each applies to the operations that go member by member"}},
		{"replace two", base + "  - {at: 2s, action: member-replace, target: majority}\n", []string{"faults[0].target", "one member at a time"}},
		{"upgrade skipping a minor", strings.Replace(base, "  size: 3\n", "  size: 3\n  etcd-binary: "+e35+"\n", 1) + "  - {at: 2s, action: upgrade, to: builtin}\n",
			[]string{"faults[0].to", "runs etcd 3.5.21", "one minor version at a time (3.6 first)"}},
		{"upgrade to an older one", strings.Replace(base, "  size: 3\n", "  size: 3\n  etcd-binary: "+e36+"\n", 1) + "  - {at: 2s, action: upgrade, to: " + e35 + "}\n",
			[]string{"faults[0].to", "older: use action downgrade"}},
		{"downgrade after an upgrade skips", strings.Replace(base, "  size: 3\n", "  size: 3\n  etcd-binary: "+e36+"\n", 1) +
			"  - {at: 2s, action: upgrade, to: builtin}\n  - {at: 10s, action: downgrade, to: " + e34 + "}\n",
			[]string{"faults[1].to", "runs etcd 3.7.3", "3.6 first"}},
		{"upgrade without to", base + "  - {at: 2s, action: upgrade, gap: 20m}\n", []string{"faults[0].to", "is missing", "faults[0].gap", "0s to 10m"}},
		{"a member binary of no member", strings.Replace(base, "  size: 3\n", "  size: 3\n  member-binaries: {member-7: builtin}\n", 1) + "  - {at: 2s, action: compact}\n",
			[]string{"cluster.member-binaries.member-7", "not a member"}},
		{"member-add through namespaces", strings.Replace(base, "  size: 3\n", "  size: 3\n  network: netns\n", 1) + "  - {at: 2s, action: member-add}\n",
			[]string{"faults[0].action", "member-add needs cluster.network direct (or proxy for local processes"}},
		{"an upgrade of an image's members", strings.Replace(base, "  size: 3\n", "  size: 3\n  provider: container\n  image: quay.io/coreos/etcd:v3.6.5\n", 1) + "  - {at: 2s, action: upgrade, to: builtin}\n",
			[]string{"faults[0].to", "the members run the image quay.io/coreos/etcd:v3.6.5", "cluster.etcd-binary"}},
		{"an image and a binary", strings.Replace(base, "  size: 3\n", "  size: 3\n  provider: container\n  image: quay.io/coreos/etcd:v3.6.5\n  etcd-binary: "+e36+"\n  member-binaries: {member-2: builtin}\n", 1) + "  - {at: 2s, action: compact}\n",
			[]string{"cluster.etcd-binary", "set one", "cluster.member-binaries", "does not apply with cluster.image"}},
	} {
		_, err := scenarios.Parse(filepath.Join(dir, "x.yaml"), []byte(c.yaml), nil)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v\nwant %q", c.name, err, w)
			}
		}
	}
	// Containers: a disaster and a member replaced (their data dirs are in the volumes).
	if _, err := scenarios.Parse(filepath.Join(dir, "c.yaml"), []byte(strings.Replace(base, "  size: 3\n", "  size: 3\n  provider: container\n", 1)+
		"  - {at: 2s, action: member-replace, target: follower}\n  - {at: 6s, action: disaster, target: majority}\n"), nil); err != nil {
		t.Errorf("operations on containers: %v", err)
	}
	// On a cluster the team runs: compact and defrag need only the API; a disaster needs the
	// members' data, which no agent restores yet.
	if _, err := scenarios.Parse(filepath.Join(dir, "r.yaml"), []byte(remoteBase+"faults:\n  - {at: 2s, action: compact, keep: 100}\n  - {at: 4s, action: defrag, target: follower}\n"), nil); err != nil {
		t.Errorf("compact and defrag on a remote cluster: %v", err)
	}
	// Without agents, the refusal says that agents would not do it either (not "needs an agent").
	if _, err := scenarios.Parse(filepath.Join(dir, "r.yaml"), []byte(remoteBase+"faults:\n  - {at: 2s, action: member-replace, target: follower}\n"), nil); err == nil || !strings.Contains(err.Error(), "rewrites members' data dirs and flags") || strings.Contains(err.Error(), "needs an agent on each node") {
		t.Errorf("member-replace on a remote cluster: %v", err)
	}
}

// BuiltinSets are the overrides a built-in needs in a test: rolling-upgrade's previous etcd release
// as a stand-in script that says its version (validation asks no more of it).
func BuiltinSets(t *testing.T, name string) []string {
	t.Helper()
	if name != "rolling-upgrade" {
		return nil
	}
	p := filepath.Join(t.TempDir(), "etcd-v3.6.8")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho 'etcd Version: 3.6.8'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return []string{"cluster.etcd-binary=" + p, "faults[1].to=" + p}
}
