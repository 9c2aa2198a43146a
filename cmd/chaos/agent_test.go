package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/agent"
	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/internal/proc"
	"github.com/etcd-chaos/etcd-chaos/reports"
)

// agentFaults are leader-kill, leader-pause and partition-leader in one run: the same faults run
// through the agents and on a local cluster with the same timeouts.
const agentFaults = `workload:
  duration: 15s
  warmup: 1s
  rate: 200
  timeout: 2s
  mix: [{op: put, weight: 70, keys: 200}, {op: get, weight: 30}]
faults:
  - {at: 2s, action: kill, target: leader, duration: 2s}
  - {at: 5.5s, action: pause, target: leader, duration: 2s}
  - {at: 9s, action: partition, isolate: leader, duration: 2s}
  - {at: 12.5s, action: restart, target: follower}
`

// runIn runs the binary in the hosts' hub namespace and returns its exit code and output.
func runIn(t *testing.T, ah *agentHosts, args ...string) (int, string) {
	t.Helper()
	cmd := ah.chaosInHub(args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if err != nil {
		code = cmd.ProcessState.ExitCode()
	}
	return code, out.String()
}

// TestAgents starts three hosts, each its own network namespace with one etcd member and one
// chaos agent (member-2 runs another heartbeat and member-3's data dir is 0755, for preflight),
// and puts the agents through what a game day asks of them.
func TestAgents(t *testing.T) {
	ah := startAgentHosts(t, 3, map[string]hostSpec{"member-2": {extra: []string{"--heartbeat-interval", "150"}}, "member-3": {dirMode: 0o755}})
	t.Run("dry-run", func(t *testing.T) { testAgentsDryRun(t, ah) })
	t.Run("faults", func(t *testing.T) { testFaultsThroughAgents(t, ah) })
	t.Run("controller-killed", func(t *testing.T) { testControllerKilled(t, ah) })
	t.Run("agent-restarted", func(t *testing.T) { testAgentRestarted(t, ah) })
	t.Run("refusals", func(t *testing.T) { testAgentRefusals(t, ah) })
	t.Run("heal-all", func(t *testing.T) { testHealAll(t, ah) })
	t.Run("preflight", func(t *testing.T) { testPreflightWithAgents(t, ah) })
}

// assertHostsClean proves from each host's kernel and process table that nothing is held: no
// agent hold, no blackhole route, etcd running.
func assertHostsClean(t *testing.T, ah *agentHosts) {
	t.Helper()
	for _, h := range ah.hosts {
		cl := ah.client(t, h, true, true)
		holds, err := cl.Holds(context.Background())
		cl.Close()
		if err != nil || len(holds) != 0 {
			t.Errorf("%s's agent still holds %v (%v)", h.name, holds, err)
		}
		if bh, err := faults.BlackholeRoutes(filepath.Base(h.ns)); err != nil || len(bh) != 0 {
			t.Errorf("%s has blackhole routes %v (%v)", h.name, bh, err)
		}
		if _, err := os.Stat(filepath.Join(h.dataDir, ".chaos-agent-fill")); !os.IsNotExist(err) {
			t.Errorf("%s's disk still holds the agent's fill (%v)", h.name, err)
		}
		if st, err := proc.State(h.etcdPID()); err != nil || st != faults.Running {
			t.Errorf("%s's etcd (pid %d) is %s (%v)", h.name, h.etcdPID(), st, err)
		}
	}
}

// testFaultsThroughAgents runs leader-kill, leader-pause and partition-leader through the agents,
// and the same faults on a local cluster with the same timeouts, and holds the agents' failovers
// to the local ones.
func testFaultsThroughAgents(t *testing.T, ah *agentHosts) {
	dir := t.TempDir()
	// Through the agents only: disk-full fills the node's data dir filesystem.
	file := ah.scenario(t, dir, "3s", strings.Replace(agentFaults, "duration: 15s", "duration: 17s", 1)+
		"  - {at: 15s, action: disk-full, target: follower, duration: 1s}\n")
	out := filepath.Join(dir, "run")
	code, text := runIn(t, ah, "run", file, "--out", out, "--yes", "--no-progress")
	if code != 0 {
		t.Fatalf("run through agents: exit %d\n%s", code, text)
	}
	res := readResult(t, out)
	assertHostsClean(t, ah)
	if res.Cluster.PeerPath != "agent" {
		t.Errorf("the result says the peer links went through %q, want agent", res.Cluster.PeerPath)
	}
	local := filepath.Join(dir, "local")
	lfile := writeScenario(t, "name: agents-local\ncluster: {size: 3, network: proxy, etcd: {heartbeat-interval: 100ms, election-timeout: 1000ms}}\n"+agentFaults)
	if code, stdout, stderr := chaos(t, "run", lfile, "--out", local, "--no-progress"); code != 0 {
		t.Fatalf("local run: exit %d\n%s%s", code, stdout, stderr)
	}
	compareFailovers(t, res, readResult(t, local))
}

// compareFailovers holds the agents' failovers to the local ones: the same faults, each electing
// a new leader, within etcd's own window (an election timeout of 1s, randomised up to 2s, plus
// the time to notice), and the agent's acting call a small part of it.
func compareFailovers(t *testing.T, agents, local *reports.Result) {
	t.Helper()
	if len(agents.Faults) != 5 || len(local.Faults) != 4 {
		t.Fatalf("want 5 faults through the agents and 4 locally, got %d and %d", len(agents.Faults), len(local.Faults))
	}
	if r := agents.Faults[4]; r.Action != "disk-full" || r.Error != "" || r.Skipped != "" || r.CallMs == nil {
		t.Errorf("disk-full through the agent: %+v", r)
	} else {
		t.Logf("disk-full on %v through the agent: acting call %.1f ms, disk %+v", r.Members, *r.CallMs, r.Disk)
	}
	if r := agents.Faults[3]; r.Action != "restart" || r.Error != "" || r.Skipped != "" || r.CallMs == nil {
		t.Errorf("restart through the agent: %+v", r)
	}
	byFault := func(r *reports.Result) map[int]reports.Failover {
		out := map[int]reports.Failover{}
		for _, f := range r.Failovers {
			out[f.Fault] = f
		}
		return out
	}
	af, lf := byFault(agents), byFault(local)
	var sumA, sumL float64
	for i := range 3 {
		fa := agents.Faults[i]
		if fa.Error != "" || fa.Skipped != "" || !fa.WasLeader || fa.Network == "" && fa.Action == "partition" {
			t.Errorf("fault %d through agents: %+v", i, fa)
		}
		a, ok := af[i]
		l, lok := lf[i]
		if !ok || !lok || a.LeaderElectedMs == nil || l.LeaderElectedMs == nil || a.WriteRestoredMs == nil || l.WriteRestoredMs == nil {
			t.Errorf("fault %d (%s): failover through agents %+v, locally %+v", i, fa.Action, a, l)
			continue
		}
		t.Logf("%s: leader elected %.0f ms through agents, %.0f ms locally; writes restored %.0f / %.0f ms; acting call %.1f ms through the agent",
			fa.Action, *a.LeaderElectedMs, *l.LeaderElectedMs, *a.WriteRestoredMs, *l.WriteRestoredMs, deref(fa.CallMs))
		// One draw of the randomised timeout is 1-2s; a pre-vote the other follower refuses (it heard
		// the leader a tick too recently) waits for another draw: seen once locally at 2,791 ms for
		// a pause in a full run. More than two draws is not etcd's window.
		for _, v := range []float64{*a.LeaderElectedMs, *l.LeaderElectedMs} {
			if v < 900 || v > 4200 {
				t.Errorf("%s: leader elected after %.0f ms, outside etcd's window (1s election timeout, randomised up to 2s, at most two draws)", fa.Action, v)
			}
		}
		if fa.CallMs == nil || *fa.CallMs > 200 {
			t.Errorf("%s: the agent's acting call took %v ms", fa.Action, fa.CallMs)
		}
		sumA += *a.LeaderElectedMs
		sumL += *l.LeaderElectedMs
	}
	t.Logf("mean leader election: %.0f ms through agents, %.0f ms locally (ratio %.2f)", sumA/3, sumL/3, sumA/sumL)
}

func deref(p *float64) float64 {
	if p == nil {
		return -1
	}
	return *p
}

// testAgentsDryRun: the dry run reaches each agent read-only and says what it manages and holds.
func testAgentsDryRun(t *testing.T, ah *agentHosts) {
	dir := t.TempDir()
	file := ah.scenario(t, dir, "3s", agentFaults)
	code, text := runIn(t, ah, "run", file, "--dry-run")
	t.Logf("dry run:\n%s", text)
	if code != 0 || !strings.Contains(text, "agents (faults held with a 3s TTL the run renews every 750ms)") {
		t.Fatalf("dry run: exit %d\n%s", code, text)
	}
	for _, h := range ah.hosts {
		if !strings.Contains(text, fmt.Sprintf("pid %d running", h.etcdPID())) || !strings.Contains(text, h.url) {
			t.Errorf("the dry run does not show %s's agent with etcd pid %d", h.name, h.etcdPID())
		}
	}
	assertHostsClean(t, ah)
}

// testControllerKilled SIGKILLs the controller while a fault holds (a pause, then a partition) and
// times, from the host's own process table and routes, how long the agent takes to heal it: its
// dead man's switch must fire within the TTL of the last renewal.
func testControllerKilled(t *testing.T, ah *agentHosts) {
	const ttl = 2 * time.Second
	cases := []struct {
		name, fault string
		held        func(h *agentHost) bool
	}{
		{"pause", "{at: 2s, action: pause, target: leader, duration: 20s}", func(h *agentHost) bool {
			st, _ := proc.State(h.etcdPID())
			return st == faults.Stopped
		}},
		{"partition", "{at: 2s, action: partition, isolate: leader, duration: 20s}", func(h *agentHost) bool {
			bh, _ := faults.BlackholeRoutes(filepath.Base(h.ns))
			return len(bh) > 0
		}},
	}
	for _, c := range append(cases, struct {
		name, fault string
		held        func(h *agentHost) bool
	}{"partition (Ctrl-C)", cases[1].fault, cases[1].held}) {
		interrupt := strings.HasSuffix(c.name, "(Ctrl-C)")
		dir := t.TempDir()
		file := ah.scenario(t, dir, ttl.String(), "workload:\n  duration: 25s\n  warmup: 1s\n  rate: 100\n  timeout: 2s\nfaults:\n  - "+c.fault+"\n")
		out := filepath.Join(dir, "run")
		cmd := ah.chaosInHub("run", file, "--out", out, "--yes", "--no-progress")
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Once the fault is applied (and proven) on every host it touches, per the run's ledger.
		var held []*agentHost
		for deadline := time.Now().Add(20 * time.Second); held == nil && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if !strings.Contains(readFile(filepath.Join(out, "ledger.jsonl")), `"step":"applied"`) {
				continue
			}
			for _, h := range ah.hosts {
				if c.held(h) {
					held = append(held, h)
				}
			}
		}
		if held == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("%s: no host held the fault\n%s", c.name, buf.String())
		}
		killed := time.Now()
		if interrupt {
			_ = cmd.Process.Signal(syscall.SIGINT)
		} else {
			_ = cmd.Process.Kill()
		}
		// Each host that held it, timed from its own process table or routes.
		healedIn := map[*agentHost]time.Duration{}
		for len(healedIn) < len(held) && time.Since(killed) < ttl+5*time.Second {
			for _, h := range held {
				if _, done := healedIn[h]; !done && !c.held(h) {
					healedIn[h] = time.Since(killed)
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
		_ = cmd.Wait()
		var times []string
		var slowest time.Duration
		for _, h := range held {
			d, ok := healedIn[h]
			if !ok {
				d = ttl + 5*time.Second
			}
			slowest = max(slowest, d)
			times = append(times, fmt.Sprintf("%s %s", h.name, d.Round(time.Millisecond)))
			if interrupt {
				continue
			}
			if d > ttl+500*time.Millisecond {
				t.Errorf("%s: %s's agent healed %s after the controller died (%s: not within 5s more), want within the TTL %s", c.name, h.name, d, ttl+5*time.Second, ttl)
			}
			if d < ttl/2 {
				t.Errorf("%s: %s healed %s after the controller died, before the TTL %s could lapse: not the dead man's switch", c.name, h.name, d, ttl)
			}
		}
		if interrupt {
			// The harness heals through the agents as it winds down: well within the TTL.
			t.Logf("%s: the controller interrupted; it healed through the agents: %s", c.name, strings.Join(times, ", "))
			if slowest > ttl/2 {
				t.Errorf("%s: healed %s after the interrupt, want the harness's own heal, well within the TTL %s\n%s", c.name, slowest, ttl, buf.String())
			}
			if cmd.ProcessState.ExitCode() == 0 || !strings.Contains(readFile(filepath.Join(out, "ledger.jsonl")), `"by":"interrupt"`) {
				t.Errorf("%s: exit %d, ledger:\n%s", c.name, cmd.ProcessState.ExitCode(), readFile(filepath.Join(out, "ledger.jsonl")))
			}
			assertHostsClean(t, ah)
			continue
		}
		t.Logf("%s: the controller SIGKILLed; each agent healed it on its own after: %s (TTL %s, renewed every %s)", c.name,
			strings.Join(times, ", "), ttl, ttl/4)
		for _, held := range held {
			if !waitLog(held.stateDir+".log", "by=ttl") {
				t.Errorf("%s: %s's agent did not log a heal by its TTL", c.name, held.name)
			}
		}
		assertHostsClean(t, ah)
		// chaos heal on the killed run's folder: the agents hold nothing of it; the run's keys go.
		hc := ah.chaosInHub("heal", out)
		b, err := hc.CombinedOutput()
		if err != nil || !strings.Contains(string(b), "keys under chaos/") {
			t.Errorf("%s: chaos heal: %v\n%s", c.name, err, b)
		}
	}
}

// testAgentRestarted kills an agent holding a fault (etcd killed, then etcd paused): nothing heals
// it while the agent is down; the agent restarted heals it from its ledger before it serves.
func testAgentRestarted(t *testing.T, ah *agentHosts) {
	h := ah.hosts[0]
	for _, op := range []string{agent.OpKill, agent.OpPause} {
		cl := ah.client(t, h, true, true)
		before := h.etcdPID()
		if _, err := cl.Process(context.Background(), agent.ProcRequest{Op: op, Lease: agent.Lease{Owner: "test", TTLMs: 60_000}}); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		cl.Close()
		want := map[string]faults.ProcState{agent.OpKill: faults.Exited, agent.OpPause: faults.Stopped}[op]
		if st, _ := proc.State(before); st != want {
			t.Fatalf("%s: etcd (pid %d) is %s, want %s", op, before, st, want)
		}
		_ = h.agent.Process.Kill()
		<-h.agentDone
		time.Sleep(300 * time.Millisecond)
		if st, _ := proc.State(h.etcdPID()); st != want {
			t.Fatalf("%s: with its agent dead, etcd is %s, want still %s", op, st, want)
		}
		t0 := time.Now()
		ah.startAgent(t, h)
		ah.waitAgent(t, h)
		st, _ := proc.State(h.etcdPID())
		t.Logf("%s held while the agent was SIGKILLed: its restart healed it from the ledger, answering %s after it started (etcd pid %d, %s)",
			op, time.Since(t0).Round(time.Millisecond), h.etcdPID(), st)
		if st != faults.Running {
			t.Errorf("%s: after the agent's restart etcd is %s", op, st)
		}
		if op == agent.OpKill && h.etcdPID() == before {
			t.Errorf("kill: etcd was not started again (pid %d)", before)
		}
		if !waitLog(h.stateDir+".log", "healed at start") {
			t.Errorf("%s: the agent did not log the heal at start", op)
		}
	}
	assertHostsClean(t, ah)
}

// testAgentRefusals: requests without a valid certificate or token are refused, and so are
// requests that name another process, unit or data dir; nothing happens to etcd.
func testAgentRefusals(t *testing.T, ah *agentHosts) {
	h := ah.hosts[1]
	ctx := context.Background()
	noCert := ah.client(t, h, false, true)
	if _, err := noCert.State(ctx); err == nil {
		t.Error("a request without a client certificate was served")
	}
	noCert.Close()
	stranger := newPKI(t, t.TempDir(), "stranger")
	strangerCl := ah.clientWith(t, h, stranger.Client, true)
	if _, err := strangerCl.State(ctx); err == nil {
		t.Error("a request with a certificate from another CA was served")
	}
	strangerCl.Close()
	noToken := ah.client(t, h, true, false)
	if _, err := noToken.Process(ctx, agent.ProcRequest{Op: agent.OpKill, Lease: agent.Lease{TTLMs: 1000}}); !agent.IsRefused(err) || !strings.Contains(err.Error(), "token") {
		t.Errorf("a request without the token: %v, want refused", err)
	}
	noToken.Close()
	cl := ah.client(t, h, true, true)
	defer cl.Close()
	pid := h.etcdPID()
	for _, req := range []agent.ProcRequest{
		{Op: agent.OpPause, PID: os.Getpid(), Lease: agent.Lease{TTLMs: 1000}},
		{Op: agent.OpKill, Unit: "etcd.service", Lease: agent.Lease{TTLMs: 1000}},
		{Op: agent.OpKill, Container: "etcd", Lease: agent.Lease{TTLMs: 1000}},
		{Op: agent.OpKill}, // no TTL: every fault has one
	} {
		_, err := cl.Process(ctx, req)
		if !agent.IsRefused(err) {
			t.Errorf("%+v: %v, want refused", req, err)
		} else {
			t.Logf("refused: %v", err)
		}
	}
	if _, err := cl.Disk(ctx, agent.DiskRequest{Op: "fill", Path: "/", Lease: agent.Lease{TTLMs: 1000}}); !agent.IsRefused(err) {
		t.Errorf("a disk fill of / : %v, want refused", err)
	}
	if st, _ := proc.State(pid); st != faults.Running || h.etcdPID() != pid {
		t.Errorf("after the refusals etcd is %s (pid %d, was %d)", st, h.etcdPID(), pid)
	}
	if strings.Contains(readFile(h.stateDir+".log"), ah.token) {
		t.Error("the agent logged its token")
	}
}

// testHealAll holds a partition and a pause through the agents' API, then pulls the lever:
// chaos agent heal-all on every agent.
func testHealAll(t *testing.T, ah *agentHosts) {
	ctx := context.Background()
	lease := agent.Lease{Owner: "game-day", TTLMs: 60_000}
	c1 := ah.client(t, ah.hosts[0], true, true)
	defer c1.Close()
	peers := []agent.Peer{{Name: "member-2", Host: ah.hosts[1].ip}, {Name: "member-3", Host: ah.hosts[2].ip}}
	if _, err := c1.Net(ctx, agent.NetRequest{Op: "apply", Peers: peers, Shape: faults.Shape{Blackhole: true}, Lease: lease}); err != nil {
		t.Fatal(err)
	}
	c3 := ah.client(t, ah.hosts[2], true, true)
	defer c3.Close()
	if _, err := c3.Process(ctx, agent.ProcRequest{Op: agent.OpPause, Lease: lease}); err != nil {
		t.Fatal(err)
	}
	if bh, _ := faults.BlackholeRoutes(filepath.Base(ah.hosts[0].ns)); len(bh) != 2 {
		t.Fatalf("member-1's blackhole routes: %v", bh)
	}
	var urls []string
	for _, h := range ah.hosts {
		urls = append(urls, h.url)
	}
	args := append([]string{"agent", "heal-all", "--ca", ah.pki.CA, "--cert", ah.pki.Client[0], "--key", ah.pki.Client[1],
		"--token-file", filepath.Join(ah.dir, "token")}, urls...)
	b, err := ah.chaosInHub(args...).CombinedOutput()
	t.Logf("chaos agent heal-all:\n%s", b)
	if err != nil || strings.Count(string(b), ": healed") != 2 || !strings.Contains(string(b), "held nothing") {
		t.Errorf("heal-all: %v\n%s", err, b)
	}
	assertHostsClean(t, ah)
}

// testPreflightWithAgents: preflight with agents reads each host's facts, against hosts set up
// to differ (member-2 another heartbeat, member-3 a data dir of 0755), and swap as this machine
// has it (/proc/meminfo).
func testPreflightWithAgents(t *testing.T, ah *agentHosts) {
	dir := t.TempDir()
	var agents []string
	for _, h := range ah.hosts {
		agents = append(agents, h.name+"="+h.url)
	}
	jsonOut := filepath.Join(dir, "preflight.json")
	cmd := ah.chaosInHub("preflight", "--endpoints", strings.ReplaceAll(ah.endpoints(), " ", ""), "--agents", strings.Join(agents, ","),
		"--agent-ca", ah.pki.CA, "--agent-cert", ah.pki.Client[0], "--agent-key", ah.pki.Client[1], "--agent-token-file", filepath.Join(ah.dir, "token"),
		"--json", jsonOut, "--scratch-dir", dir)
	b, err := cmd.CombinedOutput()
	t.Logf("chaos preflight with agents:\n%s", b)
	if cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("preflight: exit %d (%v), want 1 (the flags and datadir checks fail)", cmd.ProcessState.ExitCode(), err)
	}
	var res reports.Preflight
	raw, err := os.ReadFile(jsonOut)
	if err != nil || json.Unmarshal(raw, &res) != nil {
		t.Fatalf("preflight.json: %v", err)
	}
	get := func(id string) reports.PreflightCheck {
		c := res.Check(id)
		if c == nil {
			t.Fatalf("no %s check", id)
		}
		return *c
	}
	swap := swapTotal(t)
	host := get("host")
	if swap > 0 && host.Status != reports.CheckFail || swap == 0 && !strings.Contains(host.Evidence, "member-1: swap off") {
		t.Errorf("host check with SwapTotal %d here: %s\n%s", swap, host.Status, host.Evidence)
	}
	if !strings.Contains(host.Evidence, fmt.Sprintf("%d CPUs", runtime.NumCPU())) {
		t.Errorf("host check does not say this machine's %d CPUs:\n%s", runtime.NumCPU(), host.Evidence)
	}
	dd := get("datadir")
	if dd.Status != reports.CheckFail || !strings.Contains(dd.Evidence, "member-3: "+ah.hosts[2].dataDir+" has mode 0755, want 0700") ||
		!strings.Contains(dd.Evidence, "member-1: "+ah.hosts[0].dataDir+" has mode 0700, owned by etcd's user") || strings.Count(dd.Evidence, "want 0700") != 1 {
		t.Errorf("datadir check: %s\n%s", dd.Status, dd.Evidence)
	}
	fl := get("flags")
	if fl.Status != reports.CheckFail || !strings.Contains(fl.Evidence, "member-2: heartbeat 150ms, election timeout 1000ms") ||
		!strings.Contains(fl.Evidence, "member-1, member-3: heartbeat 100ms") || !strings.Contains(fl.Evidence, "--client-cert-auth is off") {
		t.Errorf("flags check: %s\n%s", fl.Status, fl.Evidence)
	}
	clock := get("clock")
	if clock.Status != reports.CheckPass || !strings.Contains(clock.Evidence, "spread between nodes") {
		t.Errorf("clock check: %s\n%s", clock.Status, clock.Evidence)
	}
	to := get("timeouts")
	if !strings.Contains(to.Evidence, "heartbeat 150ms and election timeout 1s (from the members' flags") {
		t.Errorf("timeouts check does not judge the members' flags:\n%s", to.Evidence)
	}
}

func swapTotal(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "SwapTotal:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n * 1024
		}
	}
	return 0
}

// waitLog waits (up to a second) for a line with what in an agent's log: the agent logs a heal
// just after the heal shows on the host.
func waitLog(path, what string) bool {
	for deadline := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
		if strings.Contains(readFile(path), what) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
