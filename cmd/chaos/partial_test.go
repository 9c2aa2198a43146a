package main

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/reports"
)

// A soak with a fault every 5s, its members scraped every second.
const killedSoak = `name: killed-soak
seed: 5
cluster:
  size: 3
  scrape-interval: 1s
  growth-min-span: 5s
  etcd: {heartbeat-interval: 50ms, election-timeout: 250ms}
workload:
  duration: 120s
  warmup: 2s
  rate: 200
  mix: [{op: put, keys: 100}]
faults:
  - {every: 5s, start: 4s, action: [kill, pause], target: follower, duration: 2s}
thresholds:
  latency.put: ["p(99) < 10s"]
  failover.write_restored: ["max < 5s"]
  member.fds_growth: ["max < 1000000/h"]
`

// countEvents counts a run folder's events of one kind so far.
func countEvents(dir, kind string) int {
	b, _ := os.ReadFile(filepath.Join(dir, "events.jsonl"))
	return strings.Count(string(b), `"kind":"`+kind+`"`)
}

// A harness SIGKILLed in the middle of a soak loses at most its last second: chaos report renders
// the run from what it appended (marked partial), while it runs and after it died, and chaos heal
// still heals. The partial's numbers are held against what the run was told to do: the load's
// rate, the faults that fired by the events, three members scraped.
func TestPartialReportAfterSIGKILL(t *testing.T) {
	out := filepath.Join(t.TempDir(), "r")
	cmd := exec.Command(chaosBin, "run", writeScenario(t, killedSoak), "--out", out)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for countEvents(out, "fault_healed") < 3 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if n := countEvents(out, "fault_healed"); n < 3 {
		t.Fatalf("only %d faults healed after 60s", n)
	}
	// The third fault is a pause: ops due while it stood wait out their timeout and queue (a
	// backlog of ~340 at 200/s, the last completing ~1.9s after the heal). Those are in flight,
	// not lost by the kill, so the kill comes once they have drained, before the fourth fault (a
	// kill, which leaves no backlog) and its own.
	calm := time.Now().Add(2500 * time.Millisecond)
	// While it runs: the report shows it so far, and result.json stays the harness's to write.
	code, _, stderr := chaos(t, "report", out)
	if code != 0 || !strings.Contains(stderr, "still going") {
		t.Fatalf("report of a live run: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(out, "result.json")); err == nil {
		t.Fatal("chaos report wrote result.json into a live run")
	}
	if b, err := os.ReadFile(filepath.Join(out, "summary.txt")); err != nil || !strings.Contains(string(b), "PARTIAL") {
		t.Fatalf("live summary: %v\n%s", err, b)
	}
	cf := readCluster(t, out)
	time.Sleep(time.Until(calm))
	_ = cmd.Process.Kill() // in the middle of the soak: no chance to write anything more
	_ = cmd.Wait()
	killedAt := time.Now()
	waitGone(t, cf)
	if code, _, stderr := chaos(t, "heal", out); code != 0 {
		t.Fatalf("chaos heal after SIGKILL: exit %d: %s", code, stderr)
	}
	assertGone(t, cf)

	code, stdout, stderr := chaos(t, "report", out)
	if code != 0 || !strings.Contains(stderr, "stopped at") || !strings.Contains(stdout, "report.html") {
		t.Fatalf("report after SIGKILL: exit %d\n%s\n%s", code, stdout, stderr)
	}
	res, err := reports.ReadResult(out)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Partial || res.Verdict != reports.VerdictPartial || res.Passed {
		t.Fatalf("result: partial %v, verdict %s", res.Partial, res.Verdict)
	}
	stopped := killedAt.Sub(res.LoadStartedAt).Seconds()
	injected := countEvents(out, "fault_injected")
	if len(res.Faults) != injected || injected < 3 {
		t.Fatalf("%d faults in the partial result, %d injected by the events", len(res.Faults), injected)
	}
	for _, f := range res.Faults[:len(res.Faults)-1] {
		if f.HealedAtS == nil || (f.Action != "kill" && f.Action != "pause") || f.Occurrence == 0 {
			t.Errorf("fault %+v", f)
		}
	}
	// The open-loop load was told 200 puts a second: the partial counts that many after the
	// warm-up up to the kill, less at most the last second the kill cut short (and the few that failed).
	put := res.Latency["put"]
	want := 200 * (stopped - 2)
	t.Logf("partial: %d puts (p99 %.1fms) over %.1fs after the warm-up (%.0f due); throughput avg %.0f ops/s; %d faults", put.Count, put.P99, stopped-2, want, res.Throughput.Avg, len(res.Faults))
	if math.Abs(float64(put.Count)-want) > 0.1*want+200 {
		t.Errorf("%d puts, %.0f were due", put.Count, want)
	}
	if math.Abs(res.Throughput.Avg-200) > 20 {
		t.Errorf("throughput avg %.0f ops/s, the load's rate is 200", res.Throughput.Avg)
	}
	if len(res.MemberHealth) != 3 {
		t.Errorf("member health %+v", res.MemberHealth)
	}
	status := map[string]string{}
	for _, th := range res.Thresholds {
		status[th.Metric] = th.Status
	}
	if status["latency.put"] != reports.ThresholdPass || status["failover.write_restored"] != reports.ThresholdUnknown || status["member.fds_growth"] != reports.ThresholdPass {
		t.Errorf("thresholds %v", status)
	}
	html, err := os.ReadFile(filepath.Join(out, "report.html"))
	if err != nil || !strings.Contains(string(html), "PARTIAL") || !strings.Contains(string(html), "member RSS") {
		t.Fatalf("report.html: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "junit.xml")); err != nil || !strings.Contains(string(b), `type="partial"`) {
		t.Errorf("junit.xml has no partial error: %v", err)
	}
}
