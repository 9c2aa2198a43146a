package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/internal/testbin"
	"github.com/etcd-chaos/etcd-chaos/reports"
)

// A short leader kill: the failover of an election timeout of 1s ends well inside the load.
const sweepScenario = `name: sweep-kill
seed: 3
cluster:
  size: 3
  ready-timeout: 6s
workload:
  duration: 5500ms
  warmup: 1s
  recovery: 3s
  clients: 8
  rate: 40
  mix: [{op: put, keys: 100}]
faults:
  - {at: 2500ms, action: kill, target: leader, duration: 1500ms}
`

var sweepGrid = []string{
	"--vary", "cluster.etcd.heartbeat-interval=10ms,100ms",
	"--vary", "cluster.etcd.election-timeout=50ms,1000ms",
	"--vary", "cluster.peer-delay.latency=0ms,30ms",
	"--repeat", "2",
}

func cellByValues(s *reports.Sweep, hb, et, lat string) *reports.SweepCell {
	for i := range s.Cells {
		v := s.Cells[i].Values
		if v["cluster.etcd.heartbeat-interval"] == hb && v["cluster.etcd.election-timeout"] == et && v["cluster.peer-delay.latency"] == lat {
			return &s.Cells[i]
		}
	}
	return nil
}

// TestSweepPlanIsTheSeeds: the same seed gives the same plan (cells, order, seeds); another seed
// another order; combinations etcd refuses are listed, not planned; bad values are bad input.
func TestSweepPlanIsTheSeeds(t *testing.T) {
	file := writeScenario(t, sweepScenario)
	plan := func(seed string) string {
		t.Helper()
		code, stdout, stderr := chaos(t, append([]string{"sweep", file, "--dry-run", "--seed", seed}, sweepGrid...)...)
		if code != 0 {
			t.Fatalf("sweep --dry-run: exit %d: %s", code, stderr)
		}
		return stdout
	}
	a, b, c := plan("5"), plan("5"), plan("6")
	if a != b {
		t.Errorf("the same seed gave two plans:\n%s\n%s", a, b)
	}
	if a == c {
		t.Errorf("seeds 5 and 6 gave the same plan:\n%s", a)
	}
	if !strings.Contains(a, "6 cells × 2 repeats = 12 runs, seed 5") || strings.Count(a, "seeds [5 6]") != 6 || strings.Count(a, "skipped heartbeat-interval 100ms, election-timeout 50ms") != 2 ||
		!strings.Contains(a, "must be at least 5 times heartbeat-interval") {
		t.Errorf("plan:\n%s", a)
	}
	for _, bad := range [][]string{
		{"--vary", "cluster.etcd.heartbeat-interval=10ms,fast"},
		{"--vary", "cluster.etcd.heartbeat-interval=10ms,10ms"},
		{"--vary", "cluster.etcd.heartbeat-interval"},
		{"--vary", "cluster.etcd.heartbeat-interval=100ms", "--vary", "cluster.etcd.election-timeout=50ms"},
		{"--vary", "workload.clients=4", "--repeat", "0"},
	} {
		code, _, stderr := chaos(t, append([]string{"sweep", file, "--dry-run"}, bad...)...)
		if code != 2 || !strings.Contains(stderr, "valid") && !strings.Contains(stderr, "fits no cell") {
			t.Errorf("sweep %v: exit %d, %s; want 2 and what would be valid", bad, code, stderr)
		}
	}
}

// TestSweepResumesAndRecommends runs a 2x2x2 grid with 2 repeats, kills the sweep (SIGKILL) after
// its first cell, reruns it and holds: finished cells are not rerun, nothing of the killed run is
// left, the tight cell at 60ms of round trip shows spurious elections while a generous one shows
// none, etcd measures the injected round trip, and sweep.html renders in headless Chromium.
func TestSweepResumesAndRecommends(t *testing.T) {
	file := writeScenario(t, sweepScenario)
	out := filepath.Join(t.TempDir(), "sweep")
	args := append([]string{"sweep", file, "--out", out, "--seed", "11"}, sweepGrid...)
	start := time.Now()

	cmd := exec.Command(chaosBin, args...)
	var stderr1 bytes.Buffer
	cmd.Stderr = &stderr1
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var first *reports.SweepCell
	deadline := time.Now().Add(90 * time.Second)
	for first == nil && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		if s, err := reports.ReadSweep(out); err == nil {
			for i := range s.Cells {
				if s.Cells[i].Status != reports.CellPending {
					first = &s.Cells[i]
				}
			}
		}
	}
	if first == nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("no cell finished in 90s; stderr:\n%s", stderr1.String())
	}
	// Let the next run start, then kill the sweep with no chance to clean up.
	var inflight string
	for time.Now().Before(deadline) && inflight == "" {
		time.Sleep(100 * time.Millisecond)
		m, _ := filepath.Glob(filepath.Join(out, "cells", "*", "repeat-*", "cluster.json"))
		for _, p := range m {
			if _, err := os.Stat(filepath.Join(filepath.Dir(p), "result.json")); err != nil {
				inflight = filepath.Dir(p)
			}
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if inflight == "" {
		t.Fatalf("no run was in flight when the sweep was killed; stderr:\n%s", stderr1.String())
	}
	cf := readCluster(t, inflight)
	waitGone(t, cf)
	assertGone(t, cf)
	finished := map[string]time.Time{}
	for _, r := range first.Runs {
		res, err := reports.ReadResult(filepath.Join(out, r.Dir))
		if err != nil {
			t.Fatal(err)
		}
		finished[r.Dir] = res.StartedAt
	}
	t.Logf("killed the sweep after cell %s (%d runs) with %s in flight, at %v", first.ID, len(first.Runs), filepath.Base(filepath.Dir(inflight)), time.Since(start).Round(time.Second))

	// Another sweep's arguments are refused in this folder: resuming them would mix two plans.
	if code, _, stderr := chaos(t, "sweep", file, "--out", out, "--seed", "12", "--vary", "cluster.etcd.heartbeat-interval=10ms,100ms"); code != 2 || !strings.Contains(stderr, "holds another sweep") {
		t.Errorf("a different sweep into the same folder: exit %d, %s", code, stderr)
	}

	code, stdout, stderr := chaos(t, args...)
	t.Logf("the resumed sweep ended with exit %d after %v in all:\n%s", code, time.Since(start).Round(time.Second), stdout)
	if code != 0 {
		t.Fatalf("resumed sweep: exit %d, want 0 (complete, with a recommendation); stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "sweep: cells 1/6 done") || !strings.Contains(stderr, "ETA") {
		t.Errorf("no progress line with cells done and an ETA:\n%s", stderr)
	}
	s, err := reports.ReadSweep(out)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Complete || len(s.Cells) != 6 || len(s.Skipped) != 2 {
		t.Fatalf("sweep: complete %v, %d cells, %d skipped; want complete, 6 and 2", s.Complete, len(s.Cells), len(s.Skipped))
	}
	for dir, at := range finished {
		res, err := reports.ReadResult(filepath.Join(out, dir))
		if err != nil || !res.StartedAt.Equal(at) {
			t.Errorf("%s was run again on resume (started %v, then %v)", dir, at, res.StartedAt)
		}
	}
	if strings.Contains(stderr, first.ID+", repeat") {
		t.Errorf("the resumed sweep ran the finished cell %s again:\n%s", first.ID, stderr)
	}

	// The negative control: 10ms/50ms cannot hold a leader across 60ms of round trip; 100ms/1000ms can.
	tight, generous := cellByValues(s, "10ms", "50ms", "30ms"), cellByValues(s, "100ms", "1000ms", "30ms")
	if tight == nil || tight.SpuriousElections == 0 {
		t.Errorf("heartbeat 10ms, election 50ms at 60ms injected RTT: %+v; want spurious elections", tight)
	}
	if generous == nil || generous.Status != reports.CellDone || generous.SpuriousElections != 0 || generous.Failover == nil || len(generous.Runs) != 2 {
		t.Errorf("heartbeat 100ms, election 1000ms at 60ms injected RTT: %+v; want 2 runs, a failover each, no spurious election", generous)
	}
	for _, c := range s.Cells {
		if c.Status != reports.CellDone || c.MeasuredRTTMs == nil {
			continue
		}
		// etcd's probe crosses the two delayed links: never under the injected 60ms; on a busy
		// machine a little over it.
		lo, hi := 0.0, 20.0
		if c.InjectedRTTMs == 60 {
			lo, hi = 58, 150
		}
		if *c.MeasuredRTTMs < lo || *c.MeasuredRTTMs > hi {
			t.Errorf("%s: etcd measured a peer round trip of %.1fms, injected %gms", c.ID, *c.MeasuredRTTMs, c.InjectedRTTMs)
		}
		// A put commits only once a follower acknowledged it: at least one injected round trip.
		// The steady state's p99 holds no op the kill delayed (it would be over a second).
		if c.PutP99Ms == nil || *c.PutP99Ms < c.InjectedRTTMs || *c.PutP99Ms > lo+500 {
			t.Errorf("%s: put p99 in steady state %v, injected RTT %gms", c.ID, c.PutP99Ms, c.InjectedRTTMs)
		}
	}
	if r := s.Recommendation; r == nil || r.Values["cluster.etcd.election-timeout"] != "1000ms" || len(r.Evidence) != 2 || r.Margin == "" || r.RuleOfThumb == "" {
		t.Errorf("recommendation: %+v (none because: %s)", s.Recommendation, s.NoRecommendation)
	}

	f, err := os.Open(filepath.Join(out, "sweep.csv"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) != 7 {
		t.Errorf("sweep.csv: %d rows, %v; want a header and 6 cells", len(rows), err)
	}

	// The heatmap renders: one panel per injected RTT, each drawn in colour.
	ctx := testbin.Browser(t)
	abs, _ := filepath.Abs(filepath.Join(out, "sweep.html"))
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+abs), chromedp.WaitReady(chromedp.CSS("body"))); err != nil {
		t.Fatal(err)
	}
	panels, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("figure.heatmap").length`))
	if err != nil {
		t.Fatal(err)
	}
	spurious, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("td.h.spurious").length`))
	if err != nil {
		t.Fatal(err)
	}
	if panels != 2 || spurious == 0 {
		t.Errorf("sweep.html: %d heatmap panels, %d cells marked spurious; want 2 and at least 1", panels, spurious)
	}
	for i := 1; i <= panels; i++ {
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		shot, err := chromedp.Run(sctx, chromedp.Screenshot(chromedp.CSS(fmt.Sprintf("#heatmap-%d", i))))
		cancel()
		if err != nil {
			t.Fatalf("heatmap %d: %v", i, err)
		}
		img, err := png.Decode(bytes.NewReader(shot))
		if err != nil {
			t.Fatal(err)
		}
		share, colours := testbin.Inked(img)
		t.Logf("heatmap %d: %dx%d px, %.0f%% inked, %d colours", i, img.Bounds().Dx(), img.Bounds().Dy(), share*100, colours)
		if img.Bounds().Dx() < 200 || share < 0.2 || colours < 6 {
			t.Errorf("heatmap %d is blank or too small", i)
		}
	}
}

// Ctrl-C stops a sweep the way it stops a run: the run in flight heals its fault and stops its
// cluster, the sweep's files say what finished, and the exit is 3 (rerun to resume).
func TestSweepInterruptHeals(t *testing.T) {
	out := filepath.Join(t.TempDir(), "sweep")
	cmd := exec.Command(chaosBin, "sweep", writeScenario(t, longPause), "--vary", "workload.clients=2,4", "--repeat", "1", "--out", out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var run string
	deadline := time.Now().Add(30 * time.Second)
	for run == "" && time.Now().Before(deadline) {
		m, _ := filepath.Glob(filepath.Join(out, "cells", "*", "repeat-1"))
		if len(m) > 0 {
			run = m[0]
		}
		time.Sleep(50 * time.Millisecond)
	}
	if run == "" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("no run started; stderr:\n%s", stderr.String())
	}
	waitLedger(t, run, faults.StepApplied, 30*time.Second)
	cf := readCluster(t, run)
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(stderr.String(), "rerun the same command to resume") {
		t.Fatalf("exit after SIGINT: %v, want 3; stderr:\n%s", err, stderr.String())
	}
	assertGone(t, cf)
	entries, _ := faults.ReadLedger(filepath.Join(run, "ledger.jsonl"))
	if u := faults.Unhealed(entries); len(u) != 0 || entries[len(entries)-1].By != "interrupt" {
		t.Errorf("ledger after SIGINT: %+v", entries)
	}
	s, err := reports.ReadSweep(out)
	if err != nil {
		t.Fatal(err)
	}
	if s.Complete || len(s.Cells) != 2 || s.Cells[0].Status != reports.CellPending || len(s.Cells[0].Runs) != 0 {
		t.Errorf("sweep.json after SIGINT: complete %v, cells %+v", s.Complete, s.Cells)
	}
}
