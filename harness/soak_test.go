package harness

import (
	"math"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/reports"
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
  growth-min-span: 12s
workload:
  duration: 20s
  warmup: 3s
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
		// 17s after the warm-up at one scrape a second.
		if h.Fitted < 14 || h.Failed > 0 {
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
		if w.Kind == "leak" && (w.Stats["leaked"] < 9*17 || w.Stats["failed"] > 0) {
			t.Errorf("leak workload stats %v", w.Stats)
		}
	}
	samples, err := reports.ReadMembers(out)
	if err != nil || len(samples) < 3*17 {
		t.Fatalf("members.jsonl: %d samples, %v", len(samples), err)
	}
}
