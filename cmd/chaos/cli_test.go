package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"

	"github.com/etcd-chaos/etcd-chaos/cluster"
	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/internal/testbin"
	"github.com/etcd-chaos/etcd-chaos/reports"
)

var chaosBin string

func TestMain(m *testing.M) { testbin.Main(m, &chaosBin) }

// chaos runs the real binary and returns its exit code, stdout and stderr.
func chaos(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return chaosEnv(t, nil, args...)
}

func writeScenario(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "s.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const good = `name: quick
cluster:
  size: 3
  etcd: {heartbeat-interval: 50ms, election-timeout: 250ms}
workload:
  duration: 6s
  warmup: 1s
  rate: 100
  mix: [{op: put, keys: 10}]
faults:
  - {at: 2s, action: kill, target: leader, duration: 2s}
thresholds:
  latency.put: ["p(99) < 10s"]
`

func TestBadInputExits2(t *testing.T) {
	cases := []struct {
		name, from, to string
		want           []string
	}{
		{"unknown key", "  size: 3", "  size: 3\n  sise: 3", []string{"s.yaml:4:", "cluster.sise", "unknown field"}},
		{"bad duration", "duration: 6s", "duration: 6 s", []string{"s.yaml:6:", "workload.duration", "not a duration"}},
		{"member out of range", "target: leader", "target: member-7", []string{"s.yaml:11:", "faults[0].target", "member-7"}},
		{"fault after the run ends", "at: 2s", "at: 60s", []string{"s.yaml:11:", "faults[0].at", "after the run ends"}},
		{"negative rate", "rate: 100", "rate: -100", []string{"s.yaml:8:", "workload.rate", "negative"}},
		{"malformed threshold", "p(99) < 10s", "p99 < soon", []string{"s.yaml:13:", "thresholds.latency.put", "is not a threshold"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeScenario(t, strings.Replace(good, c.from, c.to, 1))
			for _, sub := range []string{"run", "validate"} {
				code, stdout, stderr := chaos(t, sub, p, "--out", filepath.Join(t.TempDir(), "r"))
				if sub == "validate" {
					code, stdout, stderr = chaos(t, sub, p)
				}
				if code != 2 {
					t.Fatalf("%s: exit %d, want 2; stderr: %s", sub, code, stderr)
				}
				if stdout != "" {
					t.Errorf("%s: stdout should be empty on bad input, got %q", sub, stdout)
				}
				for _, w := range c.want {
					if !strings.Contains(stderr, w) {
						t.Errorf("%s: stderr %q does not contain %q", sub, stderr, w)
					}
				}
			}
		})
	}
	if code, _, stderr := chaos(t, "run", "no-such-scenario"); code != 2 || !strings.Contains(stderr, "chaos list") {
		t.Errorf("unknown built-in: exit %d, stderr %q", code, stderr)
	}
	if code, _, _ := chaos(t, "run", "leader-kill", "--bogus-flag"); code != 2 {
		t.Errorf("unknown flag: exit %d, want 2", code)
	}
}

func TestListAndValidate(t *testing.T) {
	code, out, _ := chaos(t, "list")
	for _, name := range []string{"leader-kill", "follower-kill", "leader-pause", "graceful-leader-stop", "rolling-restart"} {
		if code != 0 || !strings.Contains(out, name) {
			t.Errorf("chaos list (exit %d) lacks %s:\n%s", code, name, out)
		}
	}
	code, out, stderr := chaos(t, "validate", "leader-kill", "--set", "workload.duration=1m")
	if code != 0 || !strings.Contains(out, "duration: 1m0s") {
		t.Errorf("validate: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
}

func TestFailedThresholdExits1(t *testing.T) {
	out := filepath.Join(t.TempDir(), "r")
	p := writeScenario(t, strings.Replace(good, `latency.put: ["p(99) < 10s"]`, `latency.put: ["p(99) < 10s", "p(50) < 1us"]`, 1))
	code, stdout, stderr := chaos(t, "run", p, "--out", out)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "FAIL  latency.put  p(50) < 1us") || !strings.Contains(stdout, "verdict: FAIL") {
		t.Errorf("stdout does not show the failed threshold:\n%s", stdout)
	}
	res, err := reports.ReadResult(out)
	if err != nil {
		t.Fatal(err)
	}
	if res.Passed || res.Verdict != "fail" || len(res.Thresholds) != 2 {
		t.Fatalf("result: passed=%v verdict=%s thresholds=%+v", res.Passed, res.Verdict, res.Thresholds)
	}
	bad := res.Thresholds[1]
	if bad.Passed || bad.Metric != "latency.put" || bad.Condition != "p(50) < 1us" || bad.Value == nil || *bad.Value <= 0.001 {
		t.Errorf("failed threshold recorded as %+v", bad)
	}
	if !res.Thresholds[0].Passed {
		t.Errorf("the holding threshold is recorded as failed: %+v", res.Thresholds[0])
	}
	assertGone(t, readCluster(t, out))
	for _, f := range []string{"report.html", "junit.xml", "summary.md", "summary.txt", "histograms.hlog"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s not written by the run: %v", f, err)
		}
	}
	// A failed run keeps the data dirs for a post-mortem.
	if _, err := os.Stat(filepath.Join(out, "members", "member-1", "data")); err != nil {
		t.Errorf("data dir not kept after a failure: %v", err)
	}
}

// readLedgerUntil polls the ledger until it has an entry with the given step.
func waitLedger(t *testing.T, dir, step string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		entries, _ := faults.ReadLedger(filepath.Join(dir, "ledger.jsonl"))
		for _, e := range entries {
			if e.Step == step {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the ledger has no %q entry after %v", step, timeout)
}

func readCluster(t *testing.T, dir string) cluster.File {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "cluster.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cf cluster.File
	if err := json.Unmarshal(b, &cf); err != nil {
		t.Fatal(err)
	}
	return cf
}

// assertGone checks that nothing of a run outlived it: member processes, proxies, namespaces.
func assertGone(t *testing.T, cf cluster.File) {
	t.Helper()
	for _, m := range cf.Members {
		if syscall.Kill(m.PID, 0) == nil {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.PID))
			t.Errorf("member %s (pid %d) is still there: %s", m.Name, m.PID, b)
		}
		for _, u := range []string{m.ClientURL, m.PeerURL} {
			if a, ok := strings.CutPrefix(u, "http://127.0.0.1:"); ok {
				if c, err := net.DialTimeout("tcp", "127.0.0.1:"+a, 200*time.Millisecond); err == nil {
					c.Close()
					t.Errorf("%s (%s) still accepts connections", u, m.Name)
				}
			}
		}
	}
	for _, ns := range cf.Namespaces {
		if _, err := os.Stat(filepath.Join(faults.NetnsDir, ns)); err == nil {
			t.Errorf("network namespace %s is still there", ns)
		}
	}
}

// waitGone polls until the members of a run are gone: the kernel delivers the parent-death signal
// to them a moment after the harness dies.
func waitGone(t *testing.T, cf cluster.File) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		alive := 0
		for _, m := range cf.Members {
			if syscall.Kill(m.PID, 0) == nil {
				alive++
			}
		}
		if alive == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const longPause = `name: long-pause
cluster:
  size: 3
  etcd: {heartbeat-interval: 50ms, election-timeout: 250ms}
workload:
  duration: 60s
  warmup: 1s
  rate: 100
  mix: [{op: put, keys: 10}]
faults:
  - {at: 2s, action: pause, target: follower, duration: 50s}
`

func TestInterruptHealsAndCleansUp(t *testing.T) {
	out := filepath.Join(t.TempDir(), "r")
	cmd := exec.Command(chaosBin, "run", writeScenario(t, longPause), "--out", out)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitLedger(t, out, faults.StepApplied, 30*time.Second)
	cf := readCluster(t, out)
	entries, _ := faults.ReadLedger(filepath.Join(out, "ledger.jsonl"))
	paused := entries[0].PIDs[0]
	if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", paused)); !strings.Contains(string(st), ") T ") {
		t.Fatalf("the paused member (pid %d) is not stopped: %s", paused, st)
	}
	start := time.Now()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("exit after SIGINT: %v, want code 3; stderr:\n%s", err, stderr.String())
	}
	t.Logf("the harness healed and stopped in %v after SIGINT", time.Since(start).Round(time.Millisecond))
	assertGone(t, cf)
	entries, _ = faults.ReadLedger(filepath.Join(out, "ledger.jsonl"))
	last := entries[len(entries)-1]
	if last.Step != faults.StepHealed || last.By != "interrupt" {
		t.Errorf("last ledger entry = %+v, want healed by interrupt", last)
	}
	res, err := reports.ReadResult(out)
	if err != nil || res.Verdict != "interrupted" {
		t.Fatalf("result verdict: %v %v", res, err)
	}
	if len(res.Faults) != 1 || res.Faults[0].HealedAtS == nil {
		t.Errorf("result.json does not record the heal: %+v", res.Faults)
	}
}

func TestHealAfterHarnessKilled(t *testing.T) {
	out := filepath.Join(t.TempDir(), "r")
	cmd := exec.Command(chaosBin, "run", writeScenario(t, longPause), "--out", out)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitLedger(t, out, faults.StepApplied, 30*time.Second)
	cf := readCluster(t, out)
	// While the harness lives, chaos heal refuses: the harness heals its own faults.
	if code, _, stderr := chaos(t, "heal", out); code != 2 || !strings.Contains(stderr, "still running") {
		t.Errorf("heal beside a live harness: exit %d, %s", code, stderr)
	}
	_ = cmd.Process.Kill() // no chance to heal anything
	_ = cmd.Wait()
	code, stdout, stderr := chaos(t, "heal", out)
	if code != 0 {
		t.Fatalf("chaos heal: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "fault #0 pause on") || !strings.Contains(stdout, "healed") {
		t.Errorf("chaos heal output: %q", stdout)
	}
	waitGone(t, cf)
	assertGone(t, cf)
	entries, _ := faults.ReadLedger(filepath.Join(out, "ledger.jsonl"))
	if u := faults.Unhealed(entries); len(u) != 0 {
		t.Errorf("still unhealed after chaos heal: %+v", u)
	}
	if code, stdout, _ := chaos(t, "heal", out); code != 0 || !strings.Contains(stdout, "nothing to heal") {
		t.Errorf("second heal: exit %d, %q", code, stdout)
	}
}

// A cluster that cannot start is the harness's failure (exit 3), and the error shows the member's log.
func TestClusterThatCannotStartExits3(t *testing.T) {
	out := filepath.Join(t.TempDir(), "r")
	code, stdout, stderr := chaos(t, "run", writeScenario(t, good), "--out", out, "--set", "cluster.etcd.quota-backend-bytes=lots")
	if code != 3 {
		t.Fatalf("exit %d, want 3; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "exited while starting") || !strings.Contains(stderr, "quota-backend-bytes") {
		t.Errorf("stderr does not explain the failure:\n%s", stderr)
	}
	if !strings.Contains(stdout, "verdict: ERROR") {
		t.Errorf("stdout: %q", stdout)
	}
	res, err := reports.ReadResult(out)
	if err != nil || res.Verdict != "error" {
		t.Errorf("result: %+v, %v", res, err)
	}
}

const longPartition = `name: long-partition
cluster:
  size: 3
  network: NETWORK
  etcd: {heartbeat-interval: 50ms, election-timeout: 250ms}
workload:
  duration: 60s
  warmup: 1s
  rate: 100
  mix: [{op: put, keys: 10}]
faults:
  - {at: 2s, action: partition, isolate: leader, duration: 50s}
`

// TestInterruptHealsPartition: SIGINT in the middle of a partition heals it and leaves no member,
// proxy or namespace behind, with either backend.
func TestInterruptHealsPartition(t *testing.T) {
	for _, network := range []string{"proxy", "netns"} {
		t.Run(network, func(t *testing.T) {
			if network == "netns" {
				testbin.NeedRoot(t)
			}
			out := filepath.Join(t.TempDir(), "r")
			cmd := exec.Command(chaosBin, "run", writeScenario(t, strings.Replace(longPartition, "NETWORK", network, 1)), "--out", out)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitLedger(t, out, faults.StepApplied, 30*time.Second)
			cf := readCluster(t, out)
			if network == "netns" {
				// The cut is in the kernel while it holds: the isolated member's namespace drops both peers.
				entries, _ := faults.ReadLedger(filepath.Join(out, "ledger.jsonl"))
				isolated := entries[0].Members[0]
				routes, err := faults.BlackholeRoutes(cf.Namespaces[0][:strings.LastIndex(cf.Namespaces[0], "-hub")] + "-" + isolated)
				if err != nil || len(routes) != 2 {
					t.Errorf("blackhole routes in %s's namespace: %v, %v; want 2", isolated, routes, err)
				}
			}
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 3 {
				t.Fatalf("exit after SIGINT: %v, want code 3; stderr:\n%s", err, stderr.String())
			}
			assertGone(t, cf)
			entries, _ := faults.ReadLedger(filepath.Join(out, "ledger.jsonl"))
			if last := entries[len(entries)-1]; last.Step != faults.StepHealed || last.By != "interrupt" || last.Network != network {
				t.Errorf("last ledger entry = %+v, want healed by interrupt through %s", last, network)
			}
		})
	}
}

// TestHealRemovesNamespacesOfAKilledHarness: a harness killed outright cannot remove its namespaces;
// chaos heal does.
func TestHealRemovesNamespacesOfAKilledHarness(t *testing.T) {
	testbin.NeedRoot(t)
	out := filepath.Join(t.TempDir(), "r")
	cmd := exec.Command(chaosBin, "run", writeScenario(t, strings.Replace(longPartition, "NETWORK", "netns", 1)), "--out", out)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitLedger(t, out, faults.StepApplied, 30*time.Second)
	cf := readCluster(t, out)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	for _, ns := range cf.Namespaces {
		if _, err := os.Stat(filepath.Join(faults.NetnsDir, ns)); err != nil {
			t.Fatalf("namespace %s already gone after SIGKILL of the harness: %v (nothing left for heal to do?)", ns, err)
		}
	}
	code, stdout, stderr := chaos(t, "heal", out)
	if code != 0 {
		t.Fatalf("chaos heal: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "fault #0 partition") || strings.Count(stdout, "network namespace") != 4 {
		t.Errorf("chaos heal output:\n%s", stdout)
	}
	waitGone(t, cf)
	assertGone(t, cf)
}

// copyFixture copies the reports package's fixture run folder (a real partition-leader run).
func copyFixture(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"result.json", "events.jsonl", "latency.hlog", "histograms.hlog"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "reports", "testdata", "partition-leader", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestReportAndCompare(t *testing.T) {
	base := copyFixture(t)
	code, stdout, stderr := chaos(t, "report", base)
	if code != 0 {
		t.Fatalf("chaos report: exit %d: %s", code, stderr)
	}
	for _, f := range []string{"summary.txt", "summary.md", "junit.xml", "report.html"} {
		if !strings.Contains(stdout, f) {
			t.Errorf("chaos report did not list %s: %q", f, stdout)
		}
		if st, err := os.Stat(filepath.Join(base, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s not rebuilt: %v", f, err)
		}
	}
	if code, _, stderr := chaos(t, "report", t.TempDir()); code != 2 || !strings.Contains(stderr, "not a run folder") {
		t.Errorf("report of an empty folder: exit %d, %s", code, stderr)
	}

	if code, stdout, _ := chaos(t, "compare", base, base); code != 0 || !strings.Contains(stdout, "no regression") {
		t.Errorf("compare with itself: exit %d\n%s", code, stdout)
	}
	// A copy whose writes took 4s longer to come back after the failover: beyond what the
	// randomized timeouts of one election move a single run (3 election timeouts, 3s here).
	worse := copyFixture(t)
	res, err := reports.ReadResult(worse)
	if err != nil {
		t.Fatal(err)
	}
	slow := *res.Failovers[0].WriteRestoredMs + 4000
	res.Failovers[0].WriteRestoredMs = &slow
	if err := res.WriteJSON(worse); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ = chaos(t, "compare", base, filepath.Join(worse, "result.json"), "--tolerance", "10%")
	if code != 1 || !strings.Contains(stdout, "failover.write_restored max") || !strings.Contains(stdout, "REGRESSION") {
		t.Errorf("compare against a slower failover: exit %d\n%s", code, stdout)
	}
	if code, _, _ := chaos(t, "compare", base, worse, "--tolerance", "300%"); code != 0 {
		t.Errorf("a 276%% slower failover at 300%% tolerance: exit %d, want 0", code)
	}
	if code, _, stderr := chaos(t, "compare", base, worse, "--tolerance", "lots"); code != 2 || !strings.Contains(stderr, "10%") {
		t.Errorf("bad tolerance: exit %d, %s", code, stderr)
	}
}

// labelled counts what the Docker engine still holds of a run.
func labelled(t *testing.T, dc *testcontainers.DockerClient, prefix string) int {
	t.Helper()
	ctx := context.Background()
	f := make(client.Filters).Add("label", cluster.Label+"="+prefix)
	cs, _ := dc.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	ns, _ := dc.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	vs, _ := dc.VolumeList(ctx, client.VolumeListOptions{Filters: f})
	return len(cs.Items) + len(ns.Items) + len(vs.Items)
}

const containerPause = `name: container-pause
cluster:
  provider: container
  size: 3
  network: direct
  etcd: {heartbeat-interval: 50ms, election-timeout: 250ms}
workload:
  duration: 60s
  warmup: 1s
  rate: 50
  mix: [{op: put, keys: 10}]
faults:
  - {at: 2s, action: pause, target: leader, duration: 50s}
`

// TestContainersInterruptAndHeal: SIGINT in the middle of a container pause heals it and removes
// every container, network and volume; a harness killed outright leaves them, and chaos heal
// removes them.
func TestContainersInterruptAndHeal(t *testing.T) {
	dc := testbin.NeedDocker(t)
	for _, how := range []string{"interrupt", "kill"} {
		t.Run(how, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "r")
			cmd := exec.Command(chaosBin, "run", writeScenario(t, containerPause), "--out", out)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitLedger(t, out, faults.StepApplied, 60*time.Second)
			cf := readCluster(t, out)
			if n := labelled(t, dc, cf.Prefix); n < 7 {
				t.Fatalf("%d containers, networks and volumes labelled %s while running, want 7", n, cf.Prefix)
			}
			if how == "interrupt" {
				_ = cmd.Process.Signal(os.Interrupt)
				err := cmd.Wait()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 3 {
					t.Fatalf("exit after SIGINT: %v, want 3; stderr:\n%s", err, stderr.String())
				}
			} else {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				if n := labelled(t, dc, cf.Prefix); n == 0 {
					t.Fatal("a killed harness left nothing: nothing for chaos heal to do?")
				}
				code, stdout, stderr := chaos(t, "heal", out)
				if code != 0 || !strings.Contains(stdout, "container "+cf.Prefix) || !strings.Contains(stdout, "fault #0 pause") {
					t.Fatalf("chaos heal: exit %d\n%s\n%s", code, stdout, stderr)
				}
			}
			if n := labelled(t, dc, cf.Prefix); n != 0 {
				t.Errorf("%d containers, networks or volumes left after %s", n, how)
			}
			entries, _ := faults.ReadLedger(filepath.Join(out, "ledger.jsonl"))
			if u := faults.Unhealed(entries); len(u) != 0 {
				t.Errorf("unhealed after %s: %+v", how, u)
			}
		})
	}
}

// chaos run --repeat 3 writes three runs and their aggregate; compare judges distributions: pairwise
// compares of runs of one build pass, the same runs with every failover doctored to twice as long
// regress, and runs of another scenario are refused.
func TestRepeatAndCompareDistributions(t *testing.T) {
	sc := writeScenario(t, `name: repeat-kill
cluster:
  size: 3
  etcd: {heartbeat-interval: 50ms, election-timeout: 250ms}
workload:
  duration: 5s
  warmup: 1s
  rate: 100
  mix: [{op: put, weight: 1, keys: 50}]
faults:
  - {at: 2s, action: kill, target: leader, duration: 1500ms}
thresholds:
  failover.write_restored: ["max < 3s"]
`)
	out := filepath.Join(t.TempDir(), "rep")
	code, stdout, stderr := chaos(t, "run", sc, "--repeat", "3", "--seed", "11", "--out", out)
	if code != 0 {
		t.Fatalf("run --repeat 3: exit %d\n%s\n%s", code, stdout, stderr)
	}
	top, err := reports.ReadResult(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Repeats) != 3 || top.Repeats[0].Seed != 11 || top.Repeats[2].Seed != 13 || !top.Passed {
		t.Fatalf("repeats = %+v, passed %v", top.Repeats, top.Passed)
	}
	agg, ok := top.Aggregate["failover.write_restored max"]
	if !ok || len(agg.Values) != 3 {
		t.Fatalf("aggregate = %+v", top.Aggregate)
	}
	t.Logf("failover.write_restored over 3 runs: %v ms (median %.1f)", agg.Values, agg.Median)
	if _, err := os.Stat(filepath.Join(out, "summary.txt")); err != nil {
		t.Error(err)
	}
	for i := 1; i <= 3; i++ {
		for j := 1; j <= 3; j++ {
			if i == j {
				continue
			}
			a, b := filepath.Join(out, fmt.Sprintf("repeat-%d", i)), filepath.Join(out, fmt.Sprintf("repeat-%d", j))
			if code, stdout, _ := chaos(t, "compare", a, b); code != 0 {
				t.Errorf("compare repeat-%d repeat-%d (one build): exit %d\n%s", i, j, code, stdout)
			}
		}
	}
	if code, stdout, _ := chaos(t, "compare", out, out); code != 0 {
		t.Errorf("a repeat folder against itself: exit %d\n%s", code, stdout)
	}
	// Doctor a copy: every failover longer by a factor that puts each doctored run beyond every
	// measured one (at least 2x; more when an election took a second draw and spread the runs).
	factor := 2.0
	if lo, hi := slices.Min(agg.Values), slices.Max(agg.Values); lo > 0 {
		factor = max(factor, 2*hi/lo)
	}
	doc := filepath.Join(t.TempDir(), "doctored")
	if err := os.MkdirAll(doc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := top.WriteJSON(doc); err != nil {
		t.Fatal(err)
	}
	for _, rr := range top.Repeats {
		r, err := reports.ReadResult(filepath.Join(out, rr.Dir))
		if err != nil {
			t.Fatal(err)
		}
		for k := range r.Failovers {
			for _, p := range []**float64{&r.Failovers[k].LeaderElectedMs, &r.Failovers[k].WriteRestoredMs} {
				v := **p * factor
				*p = &v
			}
		}
		dir := filepath.Join(doc, rr.Dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := r.WriteJSON(dir); err != nil {
			t.Fatal(err)
		}
	}
	code, stdout, _ = chaos(t, "compare", out, doc)
	if code != 1 || !strings.Contains(stdout, "REGRESSION") || !strings.Contains(stdout, "failover.write_restored max") {
		t.Errorf("doctored %.1fx failovers over 3 runs: exit %d\n%s", factor, code, stdout)
	}
	t.Logf("compare against the doctored runs:\n%s", stdout)
	// Another scenario is refused.
	other := filepath.Join(t.TempDir(), "other")
	_ = os.MkdirAll(other, 0o755)
	r1, _ := reports.ReadResult(filepath.Join(out, "repeat-1"))
	r1.Scenario = "another"
	_ = r1.WriteJSON(other)
	if code, _, stderr := chaos(t, "compare", filepath.Join(out, "repeat-1"), other); code != 2 || !strings.Contains(stderr, "different scenarios") {
		t.Errorf("different scenarios: exit %d, %s", code, stderr)
	}
}

// A nightly job compares its run with the passing runs of its history folder.
func TestCompareWithHistory(t *testing.T) {
	hist := t.TempDir()
	for i := 0; i < 3; i++ {
		dir := copyFixture(t)
		res, err := reports.ReadResult(dir)
		if err != nil {
			t.Fatal(err)
		}
		res.StartedAt = res.StartedAt.Add(time.Duration(i) * 24 * time.Hour)
		res.Passed, res.Verdict = true, reports.VerdictPass // the fixture's own run failed a threshold
		if err := res.WriteJSON(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(dir, filepath.Join(hist, fmt.Sprintf("night-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	tonight := copyFixture(t)
	code, stdout, stderr := chaos(t, "compare", "--history", hist, tonight)
	if code != 0 || !strings.Contains(stdout, "history: 3 passing runs") || !strings.Contains(stdout, "no regression") {
		t.Fatalf("compare with a history of the same night: exit %d\n%s%s", code, stdout, stderr)
	}
	res, _ := reports.ReadResult(tonight)
	res.Throughput.Avg /= 2
	if err := res.WriteJSON(tonight); err != nil {
		t.Fatal(err)
	}
	if code, stdout, _ := chaos(t, "compare", "--history", hist, "--last", "2", tonight); code != 1 || !strings.Contains(stdout, "throughput avg") || !strings.Contains(stdout, "REGRESSION") {
		t.Errorf("half the throughput of every night: exit %d\n%s", code, stdout)
	}
	// A history not begun (an empty folder: the first night) is exit 4, not bad input; a folder
	// that holds things but no run is a wrong folder (2).
	if code, _, stderr := chaos(t, "compare", "--history", t.TempDir(), tonight); code != 4 || !strings.Contains(stderr, "no passing run of partition-leader") {
		t.Errorf("an empty history: exit %d, %s", code, stderr)
	}
	notRuns := t.TempDir()
	_ = os.WriteFile(filepath.Join(notRuns, "notes.txt"), []byte("x"), 0o644)
	if code, _, stderr := chaos(t, "compare", "--history", notRuns, tonight); code != 2 || !strings.Contains(stderr, "neither a run folder nor a folder of run folders") {
		t.Errorf("a folder of no runs: exit %d, %s", code, stderr)
	}
	failedNight := t.TempDir()
	if err := os.Rename(copyFixture(t), filepath.Join(failedNight, "night-0")); err != nil { // the fixture's run failed a threshold
		t.Fatal(err)
	}
	if code, _, stderr := chaos(t, "compare", "--history", failedNight, tonight); code != 4 || !strings.Contains(stderr, "1 that did not pass") {
		t.Errorf("a history of failed nights only: exit %d, %s", code, stderr)
	}
	if code, _, stderr := chaos(t, "compare", "--history", hist, tonight, tonight); code != 2 || !strings.Contains(stderr, "one NEW run") {
		t.Errorf("two runs with --history: exit %d, %s", code, stderr)
	}
}
