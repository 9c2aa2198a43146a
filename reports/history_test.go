package reports

import (
	"bytes"
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
	runs, left, err := ReadHistory([]string{hist}, "soak", 5)
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
	if _, _, err := ReadHistory([]string{filepath.Join(hist, "notes.txt")}, "soak", 5); err == nil {
		t.Error("a file as history: no error")
	}
}
