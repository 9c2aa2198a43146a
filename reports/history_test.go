package reports

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// night writes a run folder of one night: a failover whose writes came back after restoredMs.
func night(t *testing.T, dir, scenario string, day int, restoredMs float64, passed bool) {
	t.Helper()
	r := &Result{Version: ResultVersion, Scenario: scenario, Passed: passed, Verdict: VerdictPass,
		StartedAt: time.Date(2026, 11, day, 2, 0, 0, 0, time.UTC), Cluster: Cluster{Etcd: map[string]string{"election-timeout": "1000"}},
		Latency: map[string]LatencyStats{"put": {Count: 1000, P99: 20}}, Throughput: Throughput{Avg: 500}, Ops: 1000}
	if !passed {
		r.Verdict = VerdictFail
	}
	v := restoredMs
	r.Faults = []FaultRecord{{Index: 0, Action: "kill", Election: true, OutageWriteMs: &v}}
	r.Failovers = []Failover{{Fault: 0, Action: "kill", WriteRestoredMs: &v, LeaderElectedMs: &v}}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJSON(dir); err != nil {
		t.Fatal(err)
	}
}

func TestHistoryIsTheLastPassingNights(t *testing.T) {
	hist := t.TempDir()
	// Six passing nights (1.1s to 1.9s: one election's randomized timeouts at ET 1s), one failed
	// night that must not count, one night of another scenario, and a stray file.
	for i, ms := range []float64{1500, 1100, 1900, 1300, 1700, 1400} {
		night(t, filepath.Join(hist, "night-"+string(rune('a'+i))), "soak", i+1, ms, true)
	}
	night(t, filepath.Join(hist, "night-failed"), "soak", 20, 9000, false)
	night(t, filepath.Join(hist, "other"), "leader-kill", 21, 100, true)
	if err := os.WriteFile(filepath.Join(hist, "notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	runs, left, err := ReadHistory([]string{hist}, "soak", "", 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 5 || runs[0].StartedAt.Day() != 2 || runs[4].StartedAt.Day() != 6 {
		t.Fatalf("%d runs (%v): want the last 5 passing nights, oldest first", len(runs), left)
	}
	for _, w := range []string{"1 that did not pass", "1 of other scenarios", "1 older than the last 5"} {
		if !strings.Contains(left, w) {
			t.Errorf("left out %q, want it to say %q", left, w)
		}
	}
	// Within the history's spread: no regression, though beyond 10% of the median.
	cur := t.TempDir()
	night(t, cur, "soak", 28, 1850, true)
	news, _ := ReadRuns(cur)
	ds, err := Compare(runs, news, 0.1)
	if err != nil {
		t.Fatal(err)
	}
	if Regressed(ds) {
		t.Fatalf("a night within the history's spread regressed: %+v", ds)
	}
	// Worse than every night, but one election can draw that: 2.4s is within [ET, 4ET) at ET 1s.
	night(t, cur, "soak", 28, 2400, true)
	news, _ = ReadRuns(cur)
	ds, _ = Compare(runs, news, 0.1)
	if Regressed(ds) {
		t.Fatalf("one unlucky election (2.4s at ET 1s) failed the night: %+v", ds)
	}
	// Beyond every night and 3 election timeouts beyond their median (1.4s): a regression.
	night(t, cur, "soak", 28, 4600, true)
	news, _ = ReadRuns(cur)
	ds, _ = Compare(runs, news, 0.1)
	if !Regressed(ds) {
		t.Fatalf("a failover 3.2s beyond the median night did not regress: %+v", ds)
	}
	// A metric no election moves is held to the history's spread alone.
	night(t, cur, "soak", 28, 1500, true)
	r, _ := ReadResult(cur)
	r.Throughput.Avg = 400 // every night did 500 ops/s
	if err := r.WriteJSON(cur); err != nil {
		t.Fatal(err)
	}
	news, _ = ReadRuns(cur)
	ds, _ = Compare(runs, news, 0.1)
	for _, d := range ds {
		if d.Regression != (d.Metric == "throughput avg") {
			t.Errorf("%s: regression %v (%s)", d.Metric, d.Regression, d.Why)
		}
	}
	night(t, cur, "soak", 28, 4600, true)
	news, _ = ReadRuns(cur)
	ds, _ = Compare(runs, news, 0.1)
	var b bytes.Buffer
	if err := WriteCompare(&b, runs, news, ds, 0.1); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "worse than every one of the 5 baseline runs") || !strings.Contains(b.String(), "one new run against 5 baseline runs") {
		t.Errorf("compare text:\n%s", b.String())
	}
	if _, _, err := ReadHistory([]string{filepath.Join(hist, "notes.txt")}, "soak", "", 5); err == nil {
		t.Error("a file as history: no error")
	}
}

// TestCompareAvailabilityInItsUnit: the allowance an election gives availability is a fraction of
// the probes (3 election timeouts of a run's span), not 3,000 "ms" against a fraction: 0.99 -> 0.10
// is a regression, 0.99 -> 0.95 over a 40s run with one election is not.
func TestCompareAvailabilityInItsUnit(t *testing.T) {
	run := func(avail float64) *Result {
		v := 1400.0
		start := time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC)
		return &Result{Scenario: "s", Passed: true, Verdict: VerdictPass, LoadStartedAt: start, EndedAt: start.Add(40 * time.Second),
			Cluster:   Cluster{Etcd: map[string]string{"election-timeout": "1000"}},
			Failovers: []Failover{{WriteRestoredMs: &v, LeaderElectedMs: &v}}, Prober: ProberStats{Sent: 4000, Acked: int64(avail * 4000), Availability: avail}}
	}
	for _, c := range []struct {
		to      float64
		regress bool
	}{{0.10, true}, {0.80, true}, {0.95, false}} {
		ds, err := Compare([]*Result{run(0.99)}, []*Result{run(c.to)}, 0.1)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if d.Metric == "availability" && d.Regression != c.regress {
				t.Errorf("availability 0.99 -> %.2f: regression %v, want %v (allowed %v: %s)", c.to, d.Regression, c.regress, d.Allowed, d.Why)
			}
		}
	}
}

// soakNight is a night of 20 faults whose failovers took ms[i] each.
func soakNight(t *testing.T, dir string, day int, ms []float64) {
	t.Helper()
	r := &Result{Version: ResultVersion, Scenario: "soak", Fingerprint: "f1", Passed: true, Verdict: VerdictPass,
		StartedAt: time.Date(2026, 11, day, 2, 0, 0, 0, time.UTC), Cluster: Cluster{Etcd: map[string]string{"election-timeout": "1000"}}}
	for i, v := range ms {
		v := v
		r.Faults = append(r.Faults, FaultRecord{Index: i, Action: "kill", Election: true, OutageWriteMs: &v})
		r.Failovers = append(r.Failovers, Failover{Fault: i, Action: "kill", WriteRestoredMs: &v, LeaderElectedMs: &v})
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJSON(dir); err != nil {
		t.Fatal(err)
	}
}

// TestHistorySeesASoakTwiceSlower: a soak's 20 faults a night are a sample. A night whose every
// failover took twice as long (about 2.8s at ET 1s, inside the 3 election timeouts one draw may
// move a single failover) regresses by the rank test over the faults; a night of the same
// distribution does not.
func TestHistorySeesASoakTwiceSlower(t *testing.T) {
	draw := func(seed uint64, scale float64) []float64 {
		rng := rand.New(rand.NewPCG(seed, 7))
		out := make([]float64, 20)
		for i := range out {
			out[i] = scale * (1000 + 1000*rng.Float64()) // one draw from [ET, 2ET)
		}
		return out
	}
	hist := t.TempDir()
	for d := 1; d <= 5; d++ {
		soakNight(t, filepath.Join(hist, fmt.Sprint("n", d)), d, draw(uint64(d), 1))
	}
	runs, _, err := ReadHistory([]string{hist}, "soak", "f1", 10)
	if err != nil || len(runs) != 5 {
		t.Fatalf("%d runs: %v", len(runs), err)
	}
	for _, c := range []struct {
		scale   float64
		regress bool
	}{{1, false}, {2, true}} {
		cur := t.TempDir()
		soakNight(t, cur, 28, draw(99, c.scale))
		news, _ := ReadRuns(cur)
		ds, err := Compare(runs, news, 0.1)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, d := range ds {
			found = found || d.Metric == "failover.write_restored per fault"
			if d.Metric == "failover.write_restored per fault" && d.Regression != c.regress {
				t.Errorf("x%v: regression %v, want %v (p=%v, %s)", c.scale, d.Regression, c.regress, d.P, d.Why)
			}
			if d.Metric == "failover.write_restored max" && c.scale == 2 && d.Regression {
				t.Logf("the max alone also regressed: %s", d.Why)
			}
		}
		if !found {
			t.Fatalf("no per-fault distribution compared: %+v", ds)
		}
	}
	// A night of another fingerprint (another rate, duration or --set) is not part of the history.
	soakNight(t, filepath.Join(hist, "other-set"), 27, draw(5, 1))
	r, _ := ReadResult(filepath.Join(hist, "other-set"))
	r.Fingerprint = "f2"
	if err := r.WriteJSON(filepath.Join(hist, "other-set")); err != nil {
		t.Fatal(err)
	}
	runs, left, _ := ReadHistory([]string{hist}, "soak", "f1", 10)
	if len(runs) != 5 || !strings.Contains(left, "1 of another fingerprint than f1") {
		t.Fatalf("%d runs, left out %q: want the other fingerprint left out and said", len(runs), left)
	}
}
