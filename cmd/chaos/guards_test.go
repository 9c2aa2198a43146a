package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/faults"
)

const quorumScenario = `name: quorum
cluster:
  size: 3
  etcd: {heartbeat-interval: 50ms, election-timeout: 250ms}
workload:
  duration: 9s
  warmup: 1s
  rate: 200
  mix: [{op: put, keys: 50}]
faults:
  - {at: 3s, action: kill, target: majority, duration: 3s%s}
`

// scrape reads the live metrics once: name{labels} -> value.
func scrape(addr string) (map[string]float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

func TestQuorumGuardAndLiveMetrics(t *testing.T) {
	refused := writeScenario(t, fmt.Sprintf(quorumScenario, ""))
	code, _, stderr := chaos(t, "validate", refused)
	if code != 2 || !strings.Contains(stderr, "faults[0]") || !strings.Contains(stderr, "quorum guard refuses it") || !strings.Contains(stderr, "allow-quorum-loss") {
		t.Fatalf("a fault killing a majority: exit %d, stderr:\n%s", code, stderr)
	}
	if code, _, stderr := chaos(t, "run", refused, "--out", filepath.Join(t.TempDir(), "run")); code != 2 {
		t.Fatalf("chaos run of it: exit %d, want 2\n%s", code, stderr)
	}

	// With the allow it runs; its live metrics are scraped while the majority is down.
	allowed := writeScenario(t, fmt.Sprintf(quorumScenario, ", allow-quorum-loss: true"))
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	out := filepath.Join(t.TempDir(), "run")
	done := startChaos(t, "run", allowed, "--out", out, "--no-progress", "--metrics-addr", addr)
	var during, before map[string]float64
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && during == nil {
		m, err := scrape(addr)
		if err == nil {
			for k, v := range m {
				if strings.HasPrefix(k, `etcd_chaos_fault_active{action="kill"`) && v == 1 {
					during = m
				}
			}
			if during == nil && m[`etcd_chaos_ops_total{op="put"}`] > 0 {
				before = m
			}
		}
		select {
		case err := <-done:
			t.Fatalf("the run ended before a scrape saw the fault: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if during == nil || before == nil {
		t.Fatalf("no scrape saw the load and then the fault (before %v)", before != nil)
	}
	if err := <-done; err != nil {
		t.Fatalf("the run with the allow: %v", err)
	}
	res := readResult(t, out)
	if len(res.Faults) != 1 || len(res.Faults[0].Members) != 2 || res.Faults[0].Error != "" {
		t.Fatalf("faults: %+v", res.Faults)
	}
	// What the scrape said agrees with the result: ops are counted up to the end, the leader is a member.
	if got, final := during[`etcd_chaos_ops_total{op="put"}`], res.Latency["put"].Count+res.Latency["put"].Failed; got <= 0 || got > float64(final) {
		t.Errorf("live put count %v, final %d", got, final)
	}
	if during["etcd_chaos_faults_injected_total"] != 1 {
		t.Errorf("faults injected: %v", during["etcd_chaos_faults_injected_total"])
	}
	leaders := 0
	for k := range before {
		if strings.HasPrefix(k, "etcd_chaos_leader{member=") {
			leaders++
		}
	}
	if leaders != 1 || before[`etcd_chaos_latency_seconds_count{op="put"}`] <= 0 {
		t.Errorf("leader series %d, put latency count %v", leaders, before[`etcd_chaos_latency_seconds_count{op="put"}`])
	}
	if _, err := scrape(addr); err == nil {
		t.Errorf("the metrics server outlived the run")
	}
}

func TestQuorumGuardSkipsAFaultIntoAnUnhealthyCluster(t *testing.T) {
	sc := writeScenario(t, `name: skip
cluster:
  size: 3
  etcd: {heartbeat-interval: 50ms, election-timeout: 250ms}
workload:
  duration: 10s
  warmup: 1s
  rate: 100
  mix: [{op: put, keys: 50}]
faults:
  - {at: 5s, action: kill, target: leader, duration: 2s}
`)
	out := filepath.Join(t.TempDir(), "run")
	done := startChaos(t, "run", sc, "--out", out, "--no-progress")
	// Once the load runs, freeze member-3 from outside the harness: it stops answering.
	waitEvent(t, out, "load_started", 60*time.Second)
	cf := readCluster(t, out)
	var pid int
	for _, m := range cf.Members {
		if m.Name == "member-3" {
			pid = m.PID
		}
	}
	if pid == 0 || !strings.Contains(cmdline(pid), filepath.Join(out, "members")) {
		t.Fatalf("no member-3 process of this run (pid %d)", pid)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, out, "fault_skipped", 30*time.Second)
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Logf("run: %v", err)
	}
	res := readResult(t, out)
	if len(res.Faults) != 1 || !strings.Contains(res.Faults[0].Skipped, "member-3 does not answer") || res.Faults[0].Members != nil {
		t.Fatalf("the fault was not skipped for member-3: %+v", res.Faults)
	}
	if len(res.Failovers) != 0 {
		t.Errorf("a skipped fault has a failover: %+v", res.Failovers)
	}
	// Its only fault never fired: the run proved nothing about it, so it cannot pass (nor become a
	// baseline), though no threshold failed.
	if res.Verdict != "unknown" || res.Passed || !strings.Contains(res.Reason, "1 of 1 faults were skipped by the quorum guard (max-skipped: 0)") {
		t.Errorf("verdict %s (passed %v): %s; want unknown", res.Verdict, res.Passed, res.Reason)
	}
	entries, _ := faults.ReadLedger(filepath.Join(out, "ledger.jsonl"))
	if len(entries) != 0 {
		t.Errorf("a skipped fault reached the ledger: %+v", entries)
	}
}

func TestAbortHealsEveryFaultAtOnce(t *testing.T) {
	sc := writeScenario(t, `name: abort
cluster:
  size: 3
  etcd: {heartbeat-interval: 50ms, election-timeout: 250ms}
workload:
  duration: 30s
  warmup: 1s
  rate: 200
  timeout: 500ms
  retry: {attempts: 1}
  mix: [{op: put, keys: 50}]
faults:
  - {at: 3s, action: partition, client: all, duration: 20s, allow-quorum-loss: true}
abort: ["errors: rate > 0.5 over 2s", "alarm: NOSPACE"]
`)
	out := filepath.Join(t.TempDir(), "run")
	start := time.Now()
	code, stdout, stderr := chaos(t, "run", sc, "--out", out, "--no-progress")
	took := time.Since(start)
	t.Logf("stdout:\n%s", stdout)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
	}
	res := readResult(t, out)
	a := res.Aborted
	if res.Verdict != "aborted" || a == nil || a.Condition != "errors: rate > 0.5 over 2s" {
		t.Fatalf("verdict %s, aborted %+v", res.Verdict, a)
	}
	f := res.Faults[0]
	if f.HealedAtS == nil {
		t.Fatal("the partition was not healed")
	}
	// Tripped after the partition, healed within a second of tripping, long before its schedule.
	if a.AtS < f.AtS || *f.HealedAtS-a.AtS > 1.0 || *f.HealedAtS > 20 {
		t.Errorf("fault at %.2fs, tripped at %.2fs, healed at %.2fs", f.AtS, a.AtS, *f.HealedAtS)
	}
	if a.HealedWithinMs == nil || *a.HealedWithinMs > 1000 {
		t.Errorf("healed within %v ms", a.HealedWithinMs)
	}
	if took > 25*time.Second {
		t.Errorf("the aborted run took %s: the load did not stop", took)
	}
	entries, err := faults.ReadLedger(filepath.Join(out, "ledger.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	healedBy := ""
	for _, e := range entries {
		if e.Step == faults.StepHealed {
			healedBy = e.By
		}
	}
	if healedBy != "abort" {
		t.Errorf("the ledger says the fault was healed by %q", healedBy)
	}
	for _, f := range []string{"report.html", "junit.xml", "summary.md", "events.jsonl"} {
		if b, err := os.ReadFile(filepath.Join(out, f)); err != nil || !strings.Contains(strings.ToLower(string(b)), "abort") {
			t.Errorf("%s does not say aborted (%v)", f, err)
		}
	}
	// The observed rate is etcd's side of it too: the partition let no put through meanwhile.
	if !strings.Contains(a.Observed, "ops failed") {
		t.Errorf("observed %q", a.Observed)
	}
}

// waitEvent waits until events.jsonl holds an event of kind.
func waitEvent(t *testing.T, dir, kind string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(filepath.Join(dir, "events.jsonl"))
		for _, line := range strings.Split(string(b), "\n") {
			var e struct {
				Kind string `json:"kind"`
			}
			if json.Unmarshal([]byte(line), &e) == nil && e.Kind == kind {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no %s event within %s", kind, timeout)
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(string(b), "\x00", " ")
}

// startChaos starts the binary in the background; the channel gets how it ended.
func startChaos(t *testing.T, args ...string) <-chan error {
	t.Helper()
	cmd := exec.Command(chaosBin, args...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done, exited := make(chan error, 1), make(chan struct{})
	go func() { done <- cmd.Wait(); close(exited) }()
	// A test that fails half-way ends the run (by the PID the test started) before its folder goes.
	t.Cleanup(func() { _ = cmd.Process.Signal(os.Interrupt); <-exited })
	return done
}

// A --metrics-addr whose port is taken stops the run before anything starts (its port is bound
// first, so no member started later can take it either): exit 3, no member, no cluster.json.
func TestMetricsAddrTakenStartsNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out := filepath.Join(t.TempDir(), "run")
	code, _, stderr := chaos(t, "run", writeScenario(t, fmt.Sprintf(quorumScenario, ", allow-quorum-loss: true")), "--out", out, "--no-progress", "--metrics-addr", ln.Addr().String())
	if code != 3 || !strings.Contains(stderr, "--metrics-addr "+ln.Addr().String()) {
		t.Fatalf("exit %d, want 3 naming the address:\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(out, "cluster.json")); err == nil {
		t.Error("a cluster was laid out although the run could not serve its metrics")
	}
}
