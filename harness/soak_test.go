package harness

import (
	"math"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// A leak workload opening 9 connections a second, spread over 3 members, leaves each member 3 more
// open fds a second: 10,800 an hour. etcd's own process_open_fds, scraped every second, must show
// that rate, and the fds threshold must trip on it.
const leakScenario = `
name: leak-connections
seed: 3
cluster:
  size: 3
  scrape-interval: 1s
workload:
  duration: 30s
  warmup: 5s
  rate: 100
  mix: [{op: put, weight: 1, keys: 100}]
workloads:
  - {kind: leak, leaks: connections, rate: 9}
thresholds:
  member.fds_growth: ["max < 1000/h"]
  member.db_size: ["max < 1GB"]
`

func TestMemberGrowthTripsOnALeak(t *testing.T) {
	res, out := runScenario(t, leakScenario)
	assertNoLeftovers(t, out)
	if len(res.MemberHealth) != 3 {
		t.Fatalf("member health %+v", res.MemberHealth)
	}
	const want = 3 * 3600.0 // fds per hour per member
	for _, h := range res.MemberHealth {
		t.Logf("%s: %s", h.Member, reports.MemberHealthText(h))
		if h.FDsGrowthPerH == nil {
			t.Fatalf("%s: no fds growth fitted", h.Member)
		}
		if g := *h.FDsGrowthPerH; math.Abs(g-want)/want > 0.15 {
			t.Errorf("%s: fds growth %.0f/h, want %.0f/h within 15%% (3 leaked connections a second)", h.Member, g, want)
		}
		// 25s after the warm-up at one scrape a second.
		if h.Fitted < 20 || h.Failed > 0 {
			t.Errorf("%s: %d scrapes fitted, %d failed", h.Member, h.Fitted, h.Failed)
		}
	}
	var fds, db *reports.ThresholdResult
	for i, th := range res.Thresholds {
		switch th.Metric {
		case "member.fds_growth":
			fds = &res.Thresholds[i]
		case "member.db_size":
			db = &res.Thresholds[i]
		}
	}
	if fds == nil || fds.Status != reports.ThresholdFail || res.Verdict != reports.VerdictFail {
		t.Fatalf("the fds threshold did not trip on the leak: %+v, verdict %s", fds, res.Verdict)
	}
	if db == nil || db.Status != reports.ThresholdPass {
		t.Fatalf("db size threshold %+v", db)
	}
	t.Logf("threshold: %s %s observed %s", fds.Metric, fds.Condition, fds.Observed)
	// The leak workload counted what it leaked: every one of them, none failed.
	for _, w := range res.Workloads {
		if w.Kind == "leak" && (w.Stats["leaked"] < 9*25 || w.Stats["failed"] > 0) {
			t.Errorf("leak workload stats %v", w.Stats)
		}
	}
	samples, err := reports.ReadMembers(out)
	if err != nil || len(samples) < 3*25 {
		t.Fatalf("members.jsonl: %d samples, %v", len(samples), err)
	}
}

// An accelerated soak: a fault every 12s for 96s, each drawn from [kill, pause, partition] by the
// seed, on one cluster. Every occurrence fires, heals and is measured; the members' own restart
// counts and failed scrapes witness the kills and the pauses.
const soakScenario = `
name: soak-short
seed: 11
cluster:
  size: 3
  scrape-interval: 1s
  etcd: {heartbeat-interval: 50ms, election-timeout: 250ms}
workload:
  duration: 96s
  warmup: 4s
  rate: 200
  mix: [{op: put, weight: 1, keys: 100}]
faults:
  - {every: 12s, start: 8s, action: [kill, pause, partition], target: random, duration: 3s}
thresholds:
  failover.write_restored: ["max < 5s"]
  member.fds_growth: ["max < 5000/h"]
`

func TestShortSoakRepeatingFaults(t *testing.T) {
	sc, err := scenarios.Parse("test.yaml", []byte(soakScenario), nil)
	if err != nil {
		t.Fatal(err)
	}
	res, out := runScenario(t, soakScenario)
	assertNoLeftovers(t, out)
	if len(res.Faults) != len(sc.Faults) || len(res.Faults) != 8 {
		t.Fatalf("%d faults ran, %d scheduled, want 8", len(res.Faults), len(sc.Faults))
	}
	kills, pauses := map[string]int{}, map[string]int{}
	for i, f := range res.Faults {
		if f.Action != sc.Faults[i].Action || f.Occurrence != i+1 || f.Template != 0 {
			t.Errorf("fault %d: %s occurrence %d, scheduled %s", i, f.Action, f.Occurrence, sc.Faults[i].Action)
		}
		if f.Error != "" || f.Skipped != "" || f.HealedAtS == nil || f.OutageWriteMs == nil {
			t.Errorf("fault %d not measured: %+v", i, f)
		}
		switch f.Action {
		case "kill":
			kills[f.Members[0]]++
		case "pause":
			pauses[f.Members[0]]++
		}
	}
	if len(kills) == 0 || len(pauses) == 0 {
		t.Fatalf("the seed drew kills %v, pauses %v: choose a seed that draws both", kills, pauses)
	}
	var all *reports.FaultStat
	for i, st := range res.FaultStats {
		t.Logf("%s: %d faults, %d elections, leader elected %s, writes restored %s, outage %s", st.Action, st.Faults, st.Elections,
			st.LeaderElected.Text(), st.WriteRestored.Text(), st.OutageWrite.Text())
		if st.Action == "all" {
			all = &res.FaultStats[i]
		}
	}
	if all == nil || all.Faults != 8 || all.Measured != 8 || all.Elections != len(res.Failovers) || all.OutageWrite.N != 8 {
		t.Fatalf("fault stats %+v, failovers %d", all, len(res.Failovers))
	}
	for _, h := range res.MemberHealth {
		t.Logf("%s: %s", h.Member, reports.MemberHealthText(h))
		// Each kill restarts the member: etcd's process_start_time_seconds says so.
		if h.Restarts != kills[h.Member] {
			t.Errorf("%s: %d restarts seen in its metrics, %d kills", h.Member, h.Restarts, kills[h.Member])
		}
		// A member paused for 3s misses at least one scrape a second (each times out after 2s).
		if h.Failed < pauses[h.Member] {
			t.Errorf("%s: %d failed scrapes, %d pauses", h.Member, h.Failed, pauses[h.Member])
		}
	}
	for _, th := range res.Thresholds {
		t.Logf("threshold %s %s: %s (%s)", th.Metric, th.Condition, th.Status, th.Observed)
	}
	if res.Verdict != reports.VerdictPass {
		t.Fatalf("verdict %s: %s", res.Verdict, res.Reason)
	}
	if err := reports.WriteReports(out); err != nil {
		t.Fatal(err)
	}
}
