package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/faults/diskfs"
	"github.com/etcd-chaos/etcd-chaos/internal/proc"
	"github.com/etcd-chaos/etcd-chaos/internal/testbin"
	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// Every disk fault on one cluster, each held against etcd's own account: a 200ms fsync delay on
// the leader shows in its etcd_disk_wal_fsync_duration_seconds (and not in the others'); a stall
// longer than the election timeout on a follower costs no election in etcd's logs, on the leader
// one; a power loss of a minority, of a majority and of every member loses no acknowledged write,
// and the replicas hash the same at the end.
const diskFaults = `
name: disk-faults
seed: 11
cluster:
  size: 3
  etcd: {heartbeat-interval: 100ms, election-timeout: 1000ms}
  scrape-interval: 1s
workload:
  duration: 30s
  warmup: 2s
  rate: 200
  mix: [{op: put, weight: 1, keys: 500}]
faults:
  - {at: 3s, action: disk-delay, target: leader, latency: 200ms, ops: [fsync], duration: 4s}
  - {at: 7500ms, action: disk-stall, target: follower, duration: 2500ms}
  - {at: 11s, action: disk-stall, target: leader, duration: 2500ms}
  - {at: 15500ms, action: power-loss, target: minority}
  - {at: 21s, action: power-loss, target: majority, allow-quorum-loss: true}
  - {at: 27s, action: power-loss, target: all, allow-quorum-loss: true}
checks: {kv-safety: true}
`

// etcdElections lists when any member's etcd logged an election between from and to.
func etcdElections(t *testing.T, dir string, from, to time.Time) []time.Time {
	t.Helper()
	var out []time.Time
	logs, _ := filepath.Glob(filepath.Join(dir, "members", "*", "etcd.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range electedRe.FindAllStringSubmatch(string(b), -1) {
			ts, err := time.Parse(time.RFC3339Nano, m[1])
			if err == nil && !ts.Before(from) && !ts.After(to) {
				out = append(out, ts)
			}
		}
	}
	// Every member logs each election, the stalled one only once its disk answers again: the
	// first line is when it happened.
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

func TestDiskFaultsOnEtcd(t *testing.T) {
	testbin.NeedFUSE(t)
	res, dir := runScenario(t, diskFaults)
	if !res.Passed || res.Cluster.DiskPath != "fuse" { // a stall and power loss: every op through the layer
		var skipped []string
		for _, f := range res.Faults {
			if f.Skipped != "" {
				skipped = append(skipped, fmt.Sprintf("#%d %s at %.1fs: %s", f.Index, f.Action, f.AtS, f.Skipped))
			}
		}
		t.Fatalf("verdict %s (%s), disk path %q; skipped: %v", res.Verdict, res.Reason, res.Cluster.DiskPath, skipped)
	}
	checks := map[string]reports.Check{}
	for _, c := range res.Checks {
		checks[c.Name] = c
	}
	if c := checks["hashkv"]; c.Status != reports.CheckPass || !strings.HasPrefix(c.Summary, "3 of 3 members hash") {
		t.Errorf("hashkv: %s %s", c.Status, c.Summary)
	}
	if c := checks["kv-safety"]; c.Status != reports.CheckPass {
		t.Errorf("kv-safety: %s %s", c.Status, c.Summary)
	}
	f := res.Faults
	if len(f) != 6 {
		t.Fatalf("%d faults", len(f))
	}
	for i, fr := range f {
		t.Logf("#%d %s %v election %v outage %v disk %+v", i, fr.Action, fr.Members, fr.Election, deref(fr.OutageWriteMs), fr.Disk)
		if len(fr.Disk) != len(fr.Members) || fr.Error != "" {
			t.Fatalf("#%d: disk effects %+v for members %v (error %q)", i, fr.Disk, fr.Members, fr.Error)
		}
	}

	// The delay, against etcd's own WAL fsync histogram, scraped every second.
	delayed := f[0].Members[0]
	if d := f[0].Disk[0]; d.Delayed < 3 || d.DelayedForMs < 600 || f[0].Election {
		t.Errorf("disk-delay: %+v, election %v: want several fsyncs delayed, and no election", d, f[0].Election)
	}
	b, err := os.ReadFile(filepath.Join(dir, "members.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var inside, control []float64
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var s reports.MemberSample
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatal(err)
		}
		// Each scrape's p99 covers the second before it: windows wholly inside the delay.
		if s.WALFsyncP99Ms == nil || s.T < f[0].AtS+1.2 || s.T > f[0].AtS+4 {
			continue
		}
		if s.Member == delayed {
			inside = append(inside, *s.WALFsyncP99Ms)
		} else {
			control = append(control, *s.WALFsyncP99Ms)
		}
	}
	t.Logf("etcd's WAL fsync p99 during the 200ms delay: %s %v ms; the others %v ms", delayed, inside, control)
	if len(inside) < 2 || len(control) < 2 {
		t.Fatalf("too few scrapes inside the delay: %v, %v", inside, control)
	}
	for _, v := range inside {
		if v < 200 {
			t.Errorf("etcd measured a WAL fsync p99 of %.1fms under a 200ms delay", v)
		}
	}
	// The control: the members without the delay. Their fsyncs go through the same layer, served
	// by this (race-instrumented) process beside the load, and their p99 over one second can
	// reach tens of ms, late in the full suite over a hundred (122ms in two of four seconds once);
	// their median stays under the injected delay and under every second of the delayed member's.
	slices.Sort(control)
	if med := control[len(control)/2]; med >= 200 || med >= slices.Min(inside) {
		t.Errorf("the members without the delay measured a median WAL fsync p99 of %.1fms (%v), not under the delayed member's %v", med, control, inside)
	}

	// Stalls longer than the election timeout: a follower's costs no election, the leader's one,
	// as etcd's own logs tell.
	for _, k := range []int{1, 2} {
		at := eventTime(t, dir, "fault_injected", k)
		healed := eventTime(t, dir, "fault_healed", k)
		el := etcdElections(t, dir, at, healed.Add(time.Second))
		if d := f[k].Disk[0]; d.Stalled < 1 {
			t.Errorf("#%d disk-stall touched no I/O: %+v", k, d)
		}
		switch {
		case k == 1 && (len(el) > 0 || f[k].Election):
			t.Errorf("a stalled follower cost an election: etcd logged %v, the harness saw %v", el, f[k].Election)
		case k == 2 && (len(el) == 0 || !f[k].Election):
			t.Errorf("a stalled leader cost no election: etcd logged %v, the harness saw %v", el, f[k].Election)
		case k == 2:
			if d := el[0].Sub(at); d < 500*time.Millisecond || d > 2500*time.Millisecond {
				t.Errorf("etcd elected a leader %s after the leader's disk stalled (election timeout 1s)", d)
			}
		}
	}
	for _, k := range []int{3, 4, 5} {
		for _, d := range f[k].Disk {
			if d.DroppedBytes == nil || d.Exited != "" {
				t.Errorf("#%d power-loss on %s: %+v", k, d.Member, d)
			}
		}
	}
}

// The negative control: members that never fsync (--unsafe-no-fsync) lose what they were told
// to keep when they all lose power; the run must not pass, and says how the members ended. (With
// a majority, a survivor that leads can repair the others: whether writes are lost is a race.)
func TestPowerLossWithoutFsyncIsCaught(t *testing.T) {
	testbin.NeedFUSE(t)
	res, dir := runScenario(t, `
name: unsafe-power-loss
seed: 3
cluster:
  size: 3
  etcd: {heartbeat-interval: 100ms, election-timeout: 1000ms, unsafe-no-fsync: "true"}
workload:
  duration: 7s
  warmup: 2s
  rate: 200
  timeout: 500ms
  recovery: 1s
  mix: [{op: put, weight: 1, keys: 500}]
faults:
  - {at: 4s, action: power-loss, target: all, allow-quorum-loss: true}
checks: {kv-safety: true}
`)
	if res.Passed || res.Verdict != reports.VerdictFail {
		t.Fatalf("verdict %s (%s): a power loss of unsynced members passed", res.Verdict, res.Reason)
	}
	var dropped int64
	for _, d := range res.Faults[0].Disk {
		if d.DroppedBytes != nil {
			dropped += *d.DroppedBytes
		}
	}
	if dropped < 10_000 {
		t.Errorf("the layer dropped %d bytes of members that never fsync", dropped)
	}
	caught := ""
	for _, c := range res.Checks {
		if c.Status != reports.CheckPass && c.Status != reports.CheckSkipped {
			caught += c.Name + ": " + c.Summary + " " + strings.Join(c.Examples, "; ") + "\n"
		}
	}
	if caught == "" {
		t.Fatalf("no check caught it: %+v", res.Checks)
	}
	t.Logf("dropped %d bytes; caught by:\n%s", dropped, caught)
	assertNoLeftovers(t, dir)
}

// A follower's WAL corrupted between a kill and its start: etcd refuses to start on it, and the run
// says so with etcd's own words (its fatal "discovery failed"); the member stays down, so hashkv cannot vouch for the cluster.
func TestCorruptWALIsReported(t *testing.T) {
	testbin.NeedFUSE(t)
	res, dir := runScenario(t, `
name: corrupt-wal
seed: 2
cluster: {size: 3, etcd: {heartbeat-interval: 100ms, election-timeout: 1000ms}}
workload: {duration: 8s, warmup: 1s, rate: 200, recovery: 2s, mix: [{op: put, weight: 1, keys: 200}]}
faults:
  - {at: 3s, action: corrupt, target: follower, file: wal}
`)
	f := res.Faults[0]
	if len(f.Disk) != 1 || f.Error != "" {
		t.Fatalf("corrupt: %+v (error %q)", f.Disk, f.Error)
	}
	d := f.Disk[0]
	t.Logf("corrupted %s; start: %s", d.Corrupted, d.Start)
	// etcd's reason depends on what the flip hit: a record's CRC ("walpb: crc mismatch"), its
	// framing ("proto: cannot parse invalid wire-format data"), or a tail it cut, after which raft
	// panics on the lost log ("tocommit(882) is out of range"); each time the member exits.
	if !strings.Contains(d.Corrupted, ".wal: 8 bytes at offset") || !strings.HasPrefix(d.Start, "exit status") {
		t.Errorf("corrupt: %+v: want the WAL named and etcd's refusal to start on it", d)
	}
	var hk reports.Check
	for _, c := range res.Checks {
		if c.Name == "hashkv" {
			hk = c
		}
	}
	if res.Passed || hk.Status != reports.CheckUnknown || !strings.Contains(strings.Join(hk.Examples, " "), d.Member+" did not answer") {
		t.Errorf("verdict %s (%s); hashkv %s %s %v", res.Verdict, res.Reason, hk.Status, hk.Summary, hk.Examples)
	}
	assertNoLeftovers(t, dir)
}

// The hashkv check says no when one replica's data differs: a value changed in a stopped
// member's bolt db, behind etcd's back.
func TestHashKVSaysNoOnDivergence(t *testing.T) {
	c := startCluster(t, 3, "direct")
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		if err := put(c.ClientURLs()["member-1"], "chaos/hk/k"+string(rune('a'+i)), 2*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	r := &run{cl: c, prefix: "chaos/hk/"}
	if ck := r.hashKV(ctx); ck.Status != reports.CheckPass {
		t.Fatalf("before: %s %s %v", ck.Status, ck.Summary, ck.Examples)
	}
	var m3 faults.DiskMember
	for _, m := range c.Members() {
		if m.Name() == "member-3" {
			m3 = m.(faults.DiskMember)
		}
	}
	if err := m3.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := m3.WaitExit(ctx); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(m3.DataDir(), "member", "snap", "db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("key"))
		k, v := b.Cursor().Last()
		v = append([]byte(nil), v...)
		v[len(v)-1] ^= 0x01 // the last byte of the value (the KeyValue has no lease)
		return b.Put(append([]byte(nil), k...), v)
	})
	if cerr := db.Close(); err != nil || cerr != nil {
		t.Fatal(err, cerr)
	}
	if err := m3.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx, 20*time.Second, "chaos/hk/ready"); err != nil {
		t.Fatal(err)
	}
	ck := r.hashKV(ctx)
	if ck.Status != reports.CheckFail || !strings.Contains(ck.Summary, "diverge") || !strings.Contains(ck.Summary, "member-3") {
		t.Fatalf("after changing member-3's data: %s %s", ck.Status, ck.Summary)
	}
	t.Log(ck.Summary)
}

// A harness killed (SIGKILL) while a disk stall holds leaves its layer mounted and dead; chaos
// heal detaches it and ends the members. Interrupted (SIGINT), the harness takes everything down
// itself.
func TestDiskLayerCleanedUpAfterKillAndInterrupt(t *testing.T) {
	testbin.NeedFUSE(t)
	scen := filepath.Join(t.TempDir(), "stall.yaml")
	if err := os.WriteFile(scen, []byte(`
name: stall-then-die
seed: 5
cluster: {size: 3, etcd: {heartbeat-interval: 50ms, election-timeout: 250ms}}
workload: {duration: 20s, warmup: 1s, rate: 100, mix: [{op: put, weight: 1, keys: 100}]}
faults:
  - {at: 2s, action: disk-stall, target: follower, duration: 15s}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "run")
			cmd := exec.Command(chaosBin, "run", scen, "--out", out)
			cmd.SysProcAttr = proc.SysProcAttr()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				b, _ := os.ReadFile(filepath.Join(out, "events.jsonl"))
				if strings.Contains(string(b), `"fault_injected"`) {
					break
				}
				if time.Now().After(deadline) {
					_ = cmd.Process.Kill()
					t.Fatal("the stall was not injected within 30s")
				}
				time.Sleep(50 * time.Millisecond)
			}
			if m, _ := diskfs.Mounts(out); len(m) != 3 {
				t.Fatalf("%d disk layers mounted under the run, want 3: %v", len(m), m)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			if sig == syscall.SIGKILL {
				if m, _ := diskfs.Mounts(out); len(m) != 3 {
					t.Fatalf("after SIGKILL %d layers are left, want the 3 for chaos heal: %v", len(m), m)
				}
				hc := exec.Command(chaosBin, "heal", out)
				b, err := hc.CombinedOutput()
				if err != nil {
					t.Fatalf("chaos heal: %v\n%s", err, b)
				}
				t.Logf("chaos heal:\n%s", b)
				if !strings.Contains(string(b), "disk layer") {
					t.Errorf("chaos heal says nothing of the disk layers:\n%s", b)
				}
			}
			assertNoLeftovers(t, out)
			if err := os.RemoveAll(out); err != nil {
				t.Errorf("removing the run folder: %v", err)
			}
		})
	}
}

// Which disk layer a scenario gets: none without disk faults; passthrough (fsyncs through the
// layer, reads and writes past it) when its faults act on fsyncs alone; every op through it
// otherwise, and the unsynced record only for a power loss.
func TestDiskLayerModes(t *testing.T) {
	base := "name: m\ncluster: {size: 3}\nworkload: {duration: 20s, warmup: 1s}\n"
	cases := []struct {
		name, extra string
		want        string // "", "passthrough", "all", "all+unsynced"
	}{
		{"no disk fault", "faults: [{at: 5s, action: kill, target: leader, duration: 2s}]\n", ""},
		{"slow fsync", "faults: [{at: 5s, action: disk-delay, target: leader, latency: 100ms, duration: 2s}]\n", "passthrough"},
		{"fsync errors", "faults: [{at: 5s, action: disk-error, target: follower, ops: [fsync], duration: 2s}]\n", "passthrough"},
		{"standing fsync delay", "cluster: {size: 3, disk-delay: {fsync: 10ms}}\n", "passthrough"},
		{"slow writes", "faults: [{at: 5s, action: disk-delay, target: leader, latency: 100ms, ops: [write], duration: 2s}]\n", "all"},
		{"standing write delay", "cluster: {size: 3, disk-delay: {write: 1ms}}\n", "all"},
		{"stall", "faults: [{at: 5s, action: disk-stall, target: leader, duration: 2s}]\n", "all"},
		{"full", "faults: [{at: 5s, action: disk-full, target: leader, duration: 2s}]\n", "all"},
		{"power loss", "faults: [{at: 5s, action: power-loss, target: follower}]\n", "all+unsynced"},
	}
	for _, c := range cases {
		y := base + c.extra
		if strings.HasPrefix(c.extra, "cluster:") {
			y = strings.Replace(base, "cluster: {size: 3}\n", c.extra, 1)
		}
		sc, err := scenarios.Parse("m.yaml", []byte(y), nil)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got := ""
		if o := diskOptions(sc); o != nil {
			got = "all"
			if o.Passthrough {
				got = "passthrough"
			}
			if o.Unsynced {
				got += "+unsynced"
			}
		}
		if got != c.want {
			t.Errorf("%s: layer %q, want %q", c.name, got, c.want)
		}
	}
}
