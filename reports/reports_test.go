package reports

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

func th(t *testing.T, metric, expr string) scenarios.Threshold {
	t.Helper()
	x, err := scenarios.ParseThreshold(metric, expr)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func TestEvaluate(t *testing.T) {
	m := Metrics{
		Trends: map[string]Dist{
			"failover.write_restored": Samples{float64(900 * time.Millisecond), math.Inf(1)},
			"failover.leader_elected": Samples{float64(800 * time.Millisecond)},
			"recovery.caught_up":      Samples{},
		},
		Ops: 1000, Failed: 5, LeaderChanges: 1, Throughput: []float64{100, 300},
		Retries: map[string]RetryStats{"put": {Ops: 10, Attempts: 12, PerOp: 1.2, MaxAttempts: 3}},
	}
	cases := []struct {
		metric, expr string
		pass         bool
		observed     string
	}{
		{"failover.write_restored", "max < 3s", false, "not seen"}, // a failover that never restored writes
		{"failover.write_restored", "p(50) < 1s", true, "900ms"},   // nearest rank: the lower of two
		{"failover.leader_elected", "max < 1s", true, "800ms"},
		{"recovery.caught_up", "max < 1s", false, "no samples"}, // nothing to check is not a pass
		{"errors", "rate < 0.01", true, "0.0050 (5 of 1000)"},
		{"errors", "count == 0", false, "5"},
		{"leader_changes", "count <= 0", false, "1"},
		{"throughput", "min > 150", false, "100.0 ops/s"},
		{"throughput", "avg >= 200", true, "200.0 ops/s"},
		{"retries.put", "avg < 1.5", true, "1.200 attempts/op"},
		{"retries.put", "max <= 2", false, "3 attempts"},
		{"latency.get", "p(99) < 1s", false, "no samples"},
	}
	for _, c := range cases {
		r := Evaluate(scenarios.Thresholds{th(t, c.metric, c.expr)}, m)[0]
		if r.Passed != c.pass || !strings.Contains(r.Observed, c.observed) {
			t.Errorf("%s %s: passed=%v observed=%q, want %v %q", c.metric, c.expr, r.Passed, r.Observed, c.pass, c.observed)
		}
	}
}

func TestWriteText(t *testing.T) {
	v, o, short := 1137.0, 2500.0, 12.0
	r := &Result{Scenario: "s", Verdict: VerdictFail, Reason: "threshold failed", Latency: map[string]LatencyStats{"put": {Count: 3, P50: 1.5, Failed: 2}},
		Faults: []FaultRecord{{Index: 0, Action: "kill", Members: []string{"member-2"}, Election: true, OutageWriteMs: &o},
			{Index: 1, Action: "pause", Members: []string{"member-1"}, OutageWriteMs: &short}},
		Failovers:  []Failover{{Fault: 0, Action: "kill", Member: "member-2", LeaderElectedMs: &v, LeaderElectedBy: "status"}},
		Thresholds: []ThresholdResult{{Metric: "failover.write_restored", Condition: "max < 3s", Observed: "not seen (never completed)"}}}
	var b strings.Builder
	if err := WriteText(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"leader elected 1.137s (status)", "writes restored not seen", "write outage 2.500s", "#1 pause member-1  no election", "write outage 12.0ms",
		"put  3      2", "FAIL  failover.write_restored", "verdict: FAIL (threshold failed)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
}
