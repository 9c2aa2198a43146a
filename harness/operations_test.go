package harness

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/internal/testbin"
	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// Operations under load, each held against etcd's own record of it: its log lines (scheduled
// compaction, defragmentation, promotion, removal, the restored cluster's compaction at the bumped
// revision, the elections after a restore) and what each member reported.

// etcdLogLines are the JSON lines of every member's etcd.log whose msg is msg.
func etcdLogLines(t *testing.T, dir, msg string) map[string][]map[string]any {
	t.Helper()
	out := map[string][]map[string]any{}
	logs, _ := filepath.Glob(filepath.Join(dir, "members", "*", "etcd.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, `"msg":"`+msg+`"`) {
				continue
			}
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil {
				out[filepath.Base(filepath.Dir(l))] = append(out[filepath.Base(filepath.Dir(l))], m)
			}
		}
	}
	return out
}

func logTime(t *testing.T, m map[string]any) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(m["ts"]))
	if err != nil {
		t.Fatalf("log time %v: %v", m["ts"], err)
	}
	return ts
}

// One cluster, under load: a compaction, a defragmentation of the leader, a follower replaced,
// a learner added and promoted, and a member removed.
const operationsUnderLoad = `
name: operations
seed: 5
cluster:
  size: 3
workload:
  duration: 21s
  warmup: 1s
  rate: 300
  mix: [{op: put, weight: 1, keys: 300, value-size: 512}]
checks: {kv-safety: true}
faults:
  - {at: 2s, action: compact, keep: 50}
  - {at: 3s, action: defrag, target: leader}
  - {at: 4s, action: member-replace, target: follower}
  - {at: 7s, action: member-add, learner: true}
  - {at: 19s, action: member-remove, target: member-1}
thresholds:
  defrag.duration: ["max < 5s"]
  learner.caught_up: ["max < 10s"]
  compact.duration: ["max < 5s"]
`

func TestOperationsUnderLoad(t *testing.T) {
	res, out := runScenario(t, operationsUnderLoad)
	// A new member may serve clients only after etcd's 7s request timeout (its first publish):
	// member-add can take 10s, and the remove waits for it.
	if len(res.Faults) != 5 {
		t.Fatalf("%d of 5 operations ran: %+v", len(res.Faults), res.Faults)
	}
	for _, f := range res.Faults {
		b, _ := json.Marshal(f.Operation)
		t.Logf("#%d %s %v: outage %v ms, election %v: %s", f.Index, f.Action, f.Members, deref(f.OutageWriteMs), f.Election, b)
		if f.Error != "" || f.Skipped != "" || f.Operation == nil {
			t.Fatalf("#%d %s: error %q, skipped %q", f.Index, f.Action, f.Error, f.Skipped)
		}
	}
	if !res.Passed {
		t.Fatalf("verdict %s: %s", res.Verdict, res.Reason)
	}
	// compact: the revision every member's log says it compacted to.
	op := res.Faults[0].Operation
	if op.CompactRevision != op.Revision-50 || op.CompactMs == nil {
		t.Errorf("compact: revision %d compacted to %d, want %d", op.Revision, op.CompactRevision, op.Revision-50)
	}
	compacted := etcdLogLines(t, out, "finished scheduled compaction")
	for _, name := range []string{"member-1", "member-2", "member-3"} {
		if len(compacted[name]) == 0 || compacted[name][0]["compact-revision"] != float64(op.CompactRevision) {
			t.Errorf("%s's log: compactions %v, want the first at %d", name, compacted[name], op.CompactRevision)
		}
	}
	// defrag: the sizes etcd logged before and after, and the time it took.
	d := res.Faults[1].Operation.Defrag
	if len(d) != 1 || res.Faults[1].Members[0] != d[0].Member || !res.Faults[1].WasLeader {
		t.Fatalf("defrag of the leader: %+v", d)
	}
	before, after := etcdLogLines(t, out, "defragmenting")[d[0].Member], etcdLogLines(t, out, "finished defragmenting directory")[d[0].Member]
	if len(before) != 1 || len(after) != 1 {
		t.Fatalf("%s's log: %d defragmentations begun, %d finished", d[0].Member, len(before), len(after))
	}
	// Status asked just before and just after: the load's writes may move the size by a few pages.
	lb, la := before[0]["current-db-size-bytes"].(float64), after[0]["current-db-size-bytes"].(float64)
	if math.Abs(float64(d[0].DBSizeBefore)-lb) > 64<<10 || float64(d[0].DBSizeAfter) < la || float64(d[0].DBSizeAfter) > la+64<<10 {
		t.Errorf("defrag db size %d -> %d; etcd logged %.0f -> %.0f", d[0].DBSizeBefore, d[0].DBSizeAfter, lb, la)
	}
	if d[0].DBSizeAfter >= d[0].DBSizeBefore {
		t.Errorf("a defragmentation after a compaction freed nothing: %d -> %d", d[0].DBSizeBefore, d[0].DBSizeAfter)
	}
	took, err := time.ParseDuration(fmt.Sprint(after[0]["took"]))
	if err != nil || float64(took)/1e6 > d[0].Ms || d[0].Ms > float64(took)/1e6+200 {
		t.Errorf("defrag call %.1fms; etcd's own defragmentation took %v (%v)", d[0].Ms, after[0]["took"], err)
	}
	// The member's reads waited through it: the probes saw at least most of etcd's own time.
	if d[0].Probes < 1 || d[0].MemberLatencyMs < 0.5*float64(took)/1e6 {
		t.Errorf("defrag: %d probes, longest %.1fms, while etcd defragmented for %v", d[0].Probes, d[0].MemberLatencyMs, took)
	}
	// member-replace and member-add: the new ids, promoted in every member's log, in order.
	promoted := etcdLogLines(t, out, "promote member")
	for _, f := range res.Faults[2:4] {
		mb := f.Operation.Membership
		if mb == nil || mb.NewID == "" || mb.NewID == mb.OldID || !mb.Learner {
			t.Fatalf("#%d %s: %+v", f.Index, f.Action, mb)
		}
		id, _ := strconv.ParseUint(mb.NewID, 16, 64)
		n := 0
		for _, lines := range promoted {
			for _, l := range lines {
				if p, _ := strconv.ParseUint(fmt.Sprint(l["promoted-member-id"]), 16, 64); p == id {
					n++
				}
			}
		}
		if n < 3 {
			t.Errorf("#%d %s: %d members logged the promotion of %s", f.Index, f.Action, n, mb.NewID)
		}
		if !(mb.AddedMs <= mb.StartedMs && mb.StartedMs <= mb.PromotedMs && mb.PromotedMs <= mb.ServingMs) || mb.CaughtUpMs <= 0 {
			t.Errorf("#%d %s: steps out of order: %+v", f.Index, f.Action, mb)
		}
	}
	if mb := res.Faults[2].Operation.Membership; mb.SizeBefore != 3 || mb.SizeAfter != 3 || mb.RemovedMs > mb.AddedMs {
		t.Errorf("member-replace: %+v", mb)
	}
	if mb := res.Faults[3].Operation.Membership; mb.Member != "member-4" || mb.SizeBefore != 3 || mb.SizeAfter != 4 {
		t.Errorf("member-add: %+v", mb)
	}
	// member-remove: etcd's own word on the removed member.
	rm := res.Faults[4].Operation.Membership
	if rm.Member != "member-1" || rm.SizeBefore != 4 || rm.SizeAfter != 3 {
		t.Errorf("member-remove: %+v", rm)
	}
	n := 0
	for _, lines := range etcdLogLines(t, out, "removed member") {
		for _, l := range lines {
			if fmt.Sprint(l["removed-remote-peer-id"]) == rm.OldID {
				n++
			}
		}
	}
	if n < 3 {
		t.Errorf("%d members logged the removal of %s (%s)", n, rm.Member, rm.OldID)
	}
	// The end-of-run HashKV covers the members as they are: the one added among them.
	for _, c := range res.Checks {
		if c.Name == "hashkv" && (c.Status != reports.CheckPass || !strings.Contains(c.Summary, "3 of 3")) {
			t.Errorf("hashkv: %s %s", c.Status, c.Summary)
		}
	}
	assertNoLeftovers(t, out)
}

// The disaster drill, twice in one run: a majority lost and restored from the latest backup, then
// again from the one before it (the negative control: an older snapshot must lose more).
const disasterDrill = `
name: disaster
seed: 9
cluster:
  size: 3
  backup: {every: 2s, keep: 3}
workload:
  duration: 20s
  warmup: 1s
  rate: 300
  mix: [{op: put, weight: 1, keys: 500}]
workloads:
  - {kind: watch, clients: 2, prefixes: 2, rate: 50}
checks: {kv-safety: true}
faults:
  - {at: 7s, action: disaster, target: majority}
  - {at: 15s, action: disaster, target: majority, restore: previous-snapshot}
thresholds:
  recovery.rto: ["max < 10s"]
  recovery.rpo_writes: ["max < 5000"]
`

func TestDisasterRecoveryRTOAndRPO(t *testing.T) {
	res, out := runScenario(t, disasterDrill)
	if !res.Passed {
		t.Fatalf("verdict %s: %s", res.Verdict, res.Reason)
	}
	var ds []*reports.Disaster
	for _, f := range res.Faults {
		if f.Error != "" || f.Operation == nil || f.Operation.Disaster == nil {
			t.Fatalf("#%d: %+v", f.Index, f)
		}
		ds = append(ds, f.Operation.Disaster)
	}
	// Puts acknowledged per second around each loss, from the load's own count.
	rate := float64(res.Ops) / 19
	compacted := etcdLogLines(t, out, "finished scheduled compaction")
	for k, d := range ds {
		f := res.Faults[k]
		lossAt := res.LoadStartedAt.Add(time.Duration(f.AtS * float64(time.Second)))
		want := rate * d.SnapshotAgeMs / 1000
		t.Logf("#%d disaster from %s (revision %d, %.0fms old): RTO %.0fms, RPO %d writes (about %.0f expected at %.0f puts/s), restored in %.0fms",
			k, d.Snapshot, d.SnapshotRevision, d.SnapshotAgeMs, d.RTOMs, d.RPOWrites, want, rate, d.RestoredMs)
		if len(d.Lost) != 2 || d.LostBeforeSnapshot != 0 || d.RevisionBump != 1_000_000_000 {
			t.Errorf("#%d: %+v", k, d)
		}
		if float64(d.RPOWrites) < 0.5*want-20 || float64(d.RPOWrites) > 1.5*want+20 {
			t.Errorf("#%d: RPO %d writes, but %.0f puts/s were acknowledged for the %.0fms since the snapshot", k, d.RPOWrites, rate, d.SnapshotAgeMs)
		}
		// The restored members compacted at the snapshot's revision, bumped: etcd's own record of
		// which snapshot came back.
		n := 0
		for _, lines := range compacted {
			for _, l := range lines {
				if l["compact-revision"] == float64(d.SnapshotRevision+d.RevisionBump) {
					n++
				}
			}
		}
		if n < 3 {
			t.Errorf("#%d: %d members logged a compaction at %d (snapshot %d + bump)", k, n, d.SnapshotRevision+d.RevisionBump, d.SnapshotRevision)
		}
		// RTO against the restored cluster's own log: its first election after the loss comes
		// before the first write it took, and not long before.
		var elected time.Time
		for _, e := range etcdElections(t, out, lossAt, lossAt.Add(30*time.Second)) {
			elected = e
			break
		}
		if elected.IsZero() {
			t.Fatalf("#%d: no member logged an election after the loss at %v", k, lossAt)
		}
		fromLog := float64(elected.Sub(lossAt)) / 1e6
		if d.RTOMs < fromLog || d.RTOMs > fromLog+500 {
			t.Errorf("#%d: RTO %.0fms; the restored cluster elected its leader %.0fms after the loss (etcd's log)", k, d.RTOMs, fromLog)
		}
	}
	// The older snapshot loses more: by about the backup interval's worth of writes.
	if ds[1].RPOWrites <= ds[0].RPOWrites || ds[1].SnapshotAgeMs < 2000 {
		t.Errorf("previous-snapshot lost %d writes (%.0fms old); latest-snapshot %d (%.0fms old)", ds[1].RPOWrites, ds[1].SnapshotAgeMs, ds[0].RPOWrites, ds[0].SnapshotAgeMs)
	}
	got := map[string]reports.ThresholdResult{}
	for _, th := range res.Thresholds {
		got[th.Metric] = th
	}
	if th := got["recovery.rpo_writes"]; th.Status != reports.ThresholdPass || th.Value == nil || *th.Value != float64(max(ds[0].RPOWrites, ds[1].RPOWrites)) {
		t.Errorf("recovery.rpo_writes: %+v", th)
	}
	if th := got["recovery.rto"]; th.Status != reports.ThresholdPass || th.Value == nil || math.Abs(*th.Value-max(ds[0].RTOMs, ds[1].RTOMs)) > 0.01 {
		t.Errorf("recovery.rto: %+v", th)
	}
	for _, c := range res.Checks {
		if c.Name == "kv-safety" && (c.Status != reports.CheckPass || !strings.Contains(c.Summary, "2 restores")) {
			t.Errorf("kv-safety: %s %s", c.Status, c.Summary)
		}
		// The watchers met the restored cluster's compaction, resumed there, and got every put
		// acknowledged after it.
		if c.Name == "watch-complete" && (c.Status != reports.CheckPass || !strings.Contains(c.Summary, "2 watchers met a compaction")) {
			t.Errorf("watch-complete: %s %s %v", c.Status, c.Summary, c.Examples)
		}
	}
	// The backups are in the run folder, the newest kept, the older removed.
	kept := 0
	for _, b := range res.Backups {
		if _, err := os.Stat(filepath.Join(out, b.Path)); (err == nil) != !b.Removed {
			t.Errorf("backup %s: removed %v, on disk: %v", b.Path, b.Removed, err)
		}
		if !b.Removed {
			kept++
		}
	}
	if kept != 3 || len(res.Backups) < 8 {
		t.Errorf("%d backups, %d kept: %+v", len(res.Backups), kept, res.Backups)
	}
	text := readText(t, res)
	if i := strings.Index(text, "#0 disaster: RTO"); i < 0 || i > strings.Index(text, "faults") {
		t.Errorf("the text report does not open with the disaster's RTO and RPO:\n%.600s", text)
	}
	if err := reports.WriteReports(out); err != nil {
		t.Fatal(err)
	}
	if html, _ := os.ReadFile(filepath.Join(out, "report.html")); !strings.Contains(string(html), "<h2>Operations</h2>") || !strings.Contains(string(html), "#1 disaster: RTO") {
		t.Error("report.html does not show the operations")
	}
	assertNoLeftovers(t, out)
}

func readText(t *testing.T, res *reports.Result) string {
	t.Helper()
	var b strings.Builder
	if err := reports.WriteText(&b, res); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// A rolling upgrade from the previous minor version (an official release, started through
// cluster.etcd-binary) to the etcd built into chaos, and a downgrade back through etcd's
// downgrade API, under load; every step against the version each member reported and logged.
const rollingUpgrade = `
name: rolling-upgrade
seed: 4
cluster:
  size: 3
workload:
  duration: 22s
  warmup: 1s
  rate: 200
  mix: [{op: put, weight: 1, keys: 200}]
checks: {kv-safety: true}
faults:
  - {at: 2s, action: upgrade, target: each, to: builtin, gap: 300ms}
  - {at: 12s, action: downgrade, target: each, gap: 300ms}
thresholds:
  upgrade.member_healthy: ["max < 10s"]
  downgrade.member_healthy: ["max < 10s"]
  upgrade.mixed_window: ["max < 30s"]
`

func TestRollingUpgradeAndDowngrade(t *testing.T) {
	old := testbin.EtcdRelease(t, testbin.PreviousEtcd)
	oldV := strings.TrimPrefix(testbin.PreviousEtcd, "v")
	res, out := runScenario(t, rollingUpgrade, "cluster.etcd-binary="+old, "faults[1].to="+old)
	for _, f := range res.Faults {
		b, _ := json.Marshal(f.Operation)
		t.Logf("#%d %s: outage %v ms, election %v: %s", f.Index, f.Action, deref(f.OutageWriteMs), f.Election, b)
	}
	if !res.Passed {
		t.Fatalf("verdict %s: %s", res.Verdict, res.Reason)
	}
	if res.Cluster.EtcdVersion != oldV {
		t.Errorf("the cluster started on %q, want %s", res.Cluster.EtcdVersion, oldV)
	}
	up, down := res.Faults[0].Operation, res.Faults[1].Operation
	for k, op := range []*reports.Operation{up, down} {
		from, to := oldV, "3.7.3"
		if k == 1 {
			from, to = to, from
		}
		if len(op.Versions) != 3 || op.MixedWindowMs == nil || *op.MixedWindowMs < 1000 {
			t.Fatalf("#%d: %+v", k, op)
		}
		seen := map[string]bool{}
		for _, v := range op.Versions {
			seen[v.Member] = true
			if v.From != from || v.To != to || v.HealthyMs <= 0 {
				t.Errorf("#%d %s: %s -> %s in %.0fms, want %s -> %s", k, v.Member, v.From, v.To, v.HealthyMs, from, to)
			}
		}
		if len(seen) != 3 {
			t.Errorf("#%d moved %v", k, op.Versions)
		}
	}
	if d := down.Downgrade; d == nil || d.Target != scenarios.MinorOf(oldV) || d.Refused != "" || d.Cancelled != "" || d.StorageMs < d.EnabledMs {
		t.Errorf("downgrade API steps: %+v", d)
	}
	// Each member's log: started on the old version, then the new, then the old again.
	for _, name := range []string{"member-1", "member-2", "member-3"} {
		var versions []string
		for _, l := range etcdLogLines(t, out, "starting an etcd server")[name] {
			versions = append(versions, fmt.Sprint(l["etcd-version"]))
		}
		if strings.Join(versions, " ") != oldV+" 3.7.3 "+oldV {
			t.Errorf("%s started on %v", name, versions)
		}
	}
	// etcd's cluster version follows once every member runs the new version, by its own clock:
	// after the last member was healthy on it, and no later than the operation saw it.
	opStart := res.LoadStartedAt.Add(time.Duration(res.Faults[0].AtS * float64(time.Second)))
	last := up.Versions[2]
	lastHealthy := opStart.Add(time.Duration((last.StoppedMs + last.HealthyMs) * float64(time.Millisecond)))
	if up.ClusterVersion != "3.7" || up.ClusterVersionMs == nil || down.ClusterVersion != scenarios.MinorOf(oldV) || down.ClusterVersionMs == nil {
		t.Fatalf("cluster versions: upgrade %q at %v, downgrade %q at %v", up.ClusterVersion, deref(up.ClusterVersionMs), down.ClusterVersion, deref(down.ClusterVersionMs))
	}
	seen := opStart.Add(time.Duration(*up.ClusterVersionMs * float64(time.Millisecond)))
	var moved []time.Time
	for _, lines := range etcdLogLines(t, out, "updated cluster version") {
		for _, l := range lines {
			if l["from"] == "3.6" && l["to"] == "3.7" {
				moved = append(moved, logTime(t, l))
			}
		}
	}
	if len(moved) < 3 {
		t.Fatalf("%d members logged the cluster version going to 3.7", len(moved))
	}
	for _, m := range moved {
		if m.Before(lastHealthy.Add(-time.Second)) || m.After(seen) {
			t.Errorf("etcd moved the cluster version to 3.7 at %v; the last member was healthy at %v, the operation saw it at %v", m, lastHealthy, seen)
		}
	}
	t.Logf("cluster version 3.7 %.0fms after the last member was healthy (etcd's log), seen %.0fms after", float64(moved[0].Sub(lastHealthy))/1e6, float64(seen.Sub(lastHealthy))/1e6)
	// etcd's word that the downgrade was under way when the members started on the old version.
	if n := len(etcdLogLines(t, out, "cluster is downgrading to target version")); n < 3 {
		t.Errorf("%d members logged the downgrade under way on the old version", n)
	}

	// The negative control: a cluster whose version is already the previous minor (member-3 alone
	// runs the new one) cannot be downgraded to it; etcd refuses, and nothing moves.
	res, out, err := runScenarioErr(t, `
name: downgrade-refused
cluster:
  size: 3
workload:
  duration: 3s
  warmup: 1s
  rate: 100
  mix: [{op: put, weight: 1, keys: 50}]
faults:
  - {at: 1s, action: downgrade, target: member-3}
`, "cluster.etcd-binary="+old, "cluster.member-binaries.member-3=builtin", "faults[0].to="+old)
	f := res.Faults[0]
	if err == nil || res.Verdict != reports.VerdictError || f.Error == "" || f.Operation == nil || f.Operation.Downgrade == nil || f.Operation.Downgrade.Refused == "" || len(f.Operation.Versions) != 0 {
		t.Fatalf("a downgrade etcd refuses: verdict %s, fault %+v, operation %+v", res.Verdict, f, f.Operation)
	}
	t.Logf("etcd refused: %s", f.Operation.Downgrade.Refused)
	var versions []string
	for _, l := range etcdLogLines(t, out, "starting an etcd server")["member-3"] {
		versions = append(versions, fmt.Sprint(l["etcd-version"]))
	}
	if strings.Join(versions, " ") != "3.7.3" {
		t.Errorf("member-3 started on %v after a refused downgrade", versions)
	}
	assertNoLeftovers(t, out)
}
