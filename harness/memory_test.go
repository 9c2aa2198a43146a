package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// memSample is the harness process's memory at one moment: its RSS, and its live heap right after
// a collection (what it retains, without the garbage a collection has not yet taken).
type memSample struct {
	t         time.Duration
	at        time.Time
	rss, live float64 // bytes
}

func rssBytes() float64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseFloat(f[1], 64)
	return pages * float64(os.Getpagesize())
}

// soakScenarioText is an accelerated soak: a kill, a pause or an isolation of a random member every
// `every` under an open-loop KV load at rate, with the members scraped every second and kv-safety on.
func soakScenarioText(duration, every time.Duration, rate int) string {
	return fmt.Sprintf(`
name: memory-soak
seed: 9
cluster:
  size: 3
  scrape-interval: 1s
  etcd: {heartbeat-interval: 50ms, election-timeout: 250ms, auto-compaction-mode: periodic, auto-compaction-retention: 1m}
workload:
  duration: %s
  warmup: 5s
  rate: %d
  mix: [{op: put, weight: 60, keys: 1000, distribution: zipf}, {op: get, weight: 40, keys: 1000}]
faults:
  - {every: %s, start: 8s, action: [kill, pause, partition], target: random, duration: 3s}
`, duration, rate, every)
}

// runSoakSampled runs an accelerated soak in this process and samples its memory every interval.
func runSoakSampled(tb testing.TB, duration, every time.Duration, rate int, interval time.Duration) (*reports.Result, string, []memSample) {
	tb.Helper()
	sc, err := scenarios.Parse("soak.yaml", []byte(soakScenarioText(duration, every, rate)), nil)
	if err != nil {
		tb.Fatal(err)
	}
	out := filepath.Join(tb.TempDir(), "run")
	ctx, cancel := context.WithCancel(context.Background())
	var samples []memSample
	var wg sync.WaitGroup
	wg.Add(1)
	start := time.Now()
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			samples = append(samples, memSample{t: time.Since(start), at: time.Now(), rss: rssBytes(), live: float64(ms.HeapAlloc)})
		}
	}()
	res, err := Run(ctx, sc, Options{Out: out, NodeCommand: []string{chaosBin, "node"}})
	cancel()
	wg.Wait()
	if err != nil {
		tb.Fatalf("run: %v", err)
	}
	// The claim is about the load: what the run keeps while it goes. The cluster's start before it,
	// and the checks and reports after it (kv-safety reads every key's final state) are not in it;
	// the last fifth of the samples once reached into them.
	loadEnd := res.LoadStartedAt.Add(duration)
	var during []memSample
	for _, m := range samples {
		if !m.at.Before(res.LoadStartedAt) && !m.at.After(loadEnd) {
			during = append(during, m)
		}
	}
	return res, out, during
}

// secondHalfGrowth is how much a measure grew over the second half of the samples: the least-squares
// line through them, from its value at the half's first sample to its value at the last. A line,
// not the means of two slices: phases and fault trackers are freed in steps (each phase's
// histograms, a few hundred KB, go when no op due in it can end), which move either end's mean by
// a few percent depending on where the steps fall.
func secondHalfGrowth(s []memSample, get func(memSample) float64) (from, to, growth float64) {
	h := s[len(s)/2:]
	var n, st, sy, stt, sty float64
	for _, x := range h {
		t, y := x.t.Seconds(), get(x)
		n, st, sy, stt, sty = n+1, st+t, sy+y, stt+t*t, sty+t*y
	}
	slope := 0.0
	if d := n*stt - st*st; d > 0 {
		slope = (n*sty - st*sy) / d
	}
	icept := (sy - slope*st) / n
	from, to = icept+slope*h[0].t.Seconds(), icept+slope*h[len(h)-1].t.Seconds()
	return from, to, (to - from) / from
}

func mb(v float64) string { return fmt.Sprintf("%.1fMB", v/1e6) }

// A 70-second accelerated soak (a fault every 10s at 400 ops/s, each drawn by the seed from kill,
// pause and partition of a random member). Every occurrence fires as scheduled, heals and is
// measured; the members' own restart counts and missed scrapes witness the kills and the pauses;
// and the harness's live heap over the second half stays within 5%: what a run keeps does not grow
// with its length (phases settle, fault trackers are released, kv-safety keeps a bounded record per
// key). RSS is shown beside it.
func TestSoakMemoryIsFlat(t *testing.T) {
	sc, err := scenarios.Parse("soak.yaml", []byte(soakScenarioText(70*time.Second, 10*time.Second, 400)), nil)
	if err != nil {
		t.Fatal(err)
	}
	res, out, samples := runSoakSampled(t, 70*time.Second, 10*time.Second, 400, 2*time.Second)
	assertNoLeftovers(t, out)
	// 8s, 18s, ... 58s: each heals by the load's end at 70s (shortened from 120s to pay for
	// the disk tests, then from 100s for the operations'; at 50s a 1.2MB step of the heap fell in
	// a second half too short to hold 5%; the memory claim at length is BenchmarkSoakMemory's,
	// make bench-soak).
	if len(res.Faults) != 6 || len(sc.Faults) != 6 {
		t.Fatalf("%d faults ran, %d scheduled, want 6", len(res.Faults), len(sc.Faults))
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
		t.Logf("%s: %d faults, %d elections, leader elected %s, writes restored %s, outage %s (ms, p50 / p99 / max)", st.Action, st.Faults, st.Elections,
			st.LeaderElected.Text(), st.WriteRestored.Text(), st.OutageWrite.Text())
		if st.Action == "all" {
			all = &res.FaultStats[i]
		}
	}
	if all == nil || all.Faults != 6 || all.Measured != 6 || all.Elections != len(res.Failovers) || all.OutageWrite.N != 6 {
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
	if res.Verdict != reports.VerdictPass {
		t.Fatalf("verdict %s: %s", res.Verdict, res.Reason)
	}
	if len(samples) < 30 {
		t.Fatalf("%d memory samples", len(samples))
	}
	n := len(samples)
	t.Logf("RSS start %s, middle %s, end %s; live heap start %s, middle %s, end %s; %d ops, %d faults",
		mb(samples[0].rss), mb(samples[n/2].rss), mb(samples[n-1].rss), mb(samples[0].live), mb(samples[n/2].live), mb(samples[n-1].live), res.Ops, len(res.Faults))
	from, to, g := secondHalfGrowth(samples, func(m memSample) float64 { return m.live })
	rf, rt, rg := secondHalfGrowth(samples, func(m memSample) float64 { return m.rss })
	t.Logf("second half: live heap %s -> %s (%+.1f%%), RSS %s -> %s (%+.1f%%)", mb(from), mb(to), g*100, mb(rf), mb(rt), rg*100)
	// The live heap after a collection moves by up to about 1.2MB from one sample to the next with
	// nothing retained: gRPC's buffer pools, the gzip readers of the member scrapes, and phases
	// freed in steps of a few hundred KB (a heap profile at 60s and at 117s differed by -190KB in
	// use). A leak the size of the one this test caught (32 -> 42MB, +31.5%) is beyond both bounds;
	// 100 bytes kept per op would be 2.4MB over the half.
	if g > 0.05 && to-from > 2e6 {
		t.Errorf("the harness's live heap grew %.1f%% (%s) over the second half of the soak (%s -> %s): more than 5%% and 2MB", g*100, mb(to-from), mb(from), mb(to))
	}
	if err := reports.WriteReports(out); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkSoakMemory is the accelerated soak of the memory claim: 10 minutes (CHAOS_SOAK_DURATION)
// at 1,000 ops/s with a fault every 30s, the harness's RSS sampled every 5s; it fails when RSS over
// the second half grows by more than 5%. Run it alone: go test -run '^$' -bench SoakMemory -benchtime 1x ./harness
func BenchmarkSoakMemory(b *testing.B) {
	d := 10 * time.Minute
	if v := os.Getenv("CHAOS_SOAK_DURATION"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			b.Fatalf("CHAOS_SOAK_DURATION=%q: %v", v, err)
		}
	}
	for i := 0; i < b.N; i++ {
		res, _, samples := runSoakSampled(b, d, 30*time.Second, 1000, 5*time.Second)
		n := len(samples)
		if n < 10 {
			b.Fatalf("%d samples", n)
		}
		_, _, rg := secondHalfGrowth(samples, func(m memSample) float64 { return m.rss })
		_, _, lg := secondHalfGrowth(samples, func(m memSample) float64 { return m.live })
		b.ReportMetric(samples[0].rss/1e6, "MB-rss-start")
		b.ReportMetric(samples[n/2].rss/1e6, "MB-rss-middle")
		b.ReportMetric(samples[n-1].rss/1e6, "MB-rss-end")
		b.ReportMetric(rg*100, "%-rss-growth-2nd-half")
		b.ReportMetric(lg*100, "%-live-growth-2nd-half")
		b.ReportMetric(float64(res.Ops), "ops")
		b.Logf("%s at 1000 ops/s, %d faults: RSS %s, %s, %s (start, middle, end); second half RSS %+.1f%%, live heap %+.1f%%",
			d, len(res.Faults), mb(samples[0].rss), mb(samples[n/2].rss), mb(samples[n-1].rss), rg*100, lg*100)
		if rg > 0.05 {
			b.Errorf("RSS grew %.1f%% over the second half: more than 5%%", rg*100)
		}
	}
}
