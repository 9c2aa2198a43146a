package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"

	"github.com/etcd-chaos/etcd-chaos/cluster"
	"github.com/etcd-chaos/etcd-chaos/internal/testbin"
)

// assertNoContainerLeftovers checks that nothing labelled with the run's prefix is left.
func assertNoContainerLeftovers(t *testing.T, dc *testcontainers.DockerClient, dir string) {
	t.Helper()
	cf := readClusterFile(t, dir)
	if cf.Prefix == "" {
		t.Fatal("cluster.json has no container prefix")
	}
	ctx := context.Background()
	f := make(client.Filters).Add("label", cluster.Label+"="+cf.Prefix)
	cs, _ := dc.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	ns, _ := dc.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	vs, _ := dc.VolumeList(ctx, client.VolumeListOptions{Filters: f})
	if len(cs.Items)+len(ns.Items)+len(vs.Items) > 0 {
		t.Errorf("left behind: %d containers, %d networks, %d volumes labelled %s", len(cs.Items), len(ns.Items), len(vs.Items), cf.Prefix)
	}
}

// TestContainerLeaderKill runs the kill-then-stop scenario of TestLeaderFailover in containers: the
// same bounds must hold, and etcd's own log (collected from the container) must agree.
func TestContainerLeaderKill(t *testing.T) {
	dc := testbin.NeedDocker(t)
	start := time.Now()
	res, out := runScenario(t, killThenStop, "cluster.provider=container", "cluster.network=direct")
	t.Logf("whole run %v (image %s)", time.Since(start).Round(time.Millisecond), readClusterFile(t, out).Image)
	if len(res.Failovers) != 2 {
		t.Fatalf("failovers = %+v", res.Failovers)
	}
	hb, et := 50*time.Millisecond, 250*time.Millisecond
	kill := res.Failovers[0]
	for _, f := range res.Failovers {
		t.Logf("container %s %s: leader elected %v ms, writes restored %v ms", f.Action, f.Member, deref(f.LeaderElectedMs), deref(f.WriteRestoredMs))
		if f.LeaderElectedMs == nil || f.WriteRestoredMs == nil || f.NewLeader == f.Member {
			t.Fatalf("%s: failover not measured: %+v", f.Action, f)
		}
	}
	if got := ms(kill.LeaderElectedMs); got < et-2*hb || got > 4*et {
		t.Errorf("kill: leader elected after %v, want within [%v, %v] as for local members", got, et-2*hb, 4*et)
	}
	injected := eventTime(t, out, "fault_injected", 0)
	elected := etcdElectedAt(t, filepath.Join(out, "members", kill.NewLeader, "etcd.log"), kill.NewTerm)
	if diff := ms(kill.LeaderElectedMs) - elected.Sub(injected); diff < -2*time.Millisecond || diff > 40*time.Millisecond {
		t.Errorf("harness leader_elected differs from etcd's log (from the container) by %v", diff)
	}
	if !res.Passed {
		t.Errorf("verdict %s: %s", res.Verdict, res.Reason)
	}
	assertNoContainerLeftovers(t, dc, out)
}

// TestContainerPartitionLeader isolates the leader container two ways: with blackhole routes inside
// the containers' own network namespaces (entered by their PIDs; root), and with docker network
// disconnect (no root). result.json says which served the fault.
func TestContainerPartitionLeader(t *testing.T) {
	dc := testbin.NeedDocker(t)
	for _, nw := range []string{"netns", "docker"} {
		t.Run(nw, func(t *testing.T) {
			if nw == "netns" {
				testbin.NeedRoot(t)
			}
			res, out := runScenario(t, `
cluster:
  provider: container
  size: 3
  network: `+nw+`
  etcd: {heartbeat-interval: 50ms, election-timeout: 250ms}
workload:
  duration: 8s
  warmup: 1s
  rate: 100
  mix: [{op: put, keys: 100}]
faults:
  - {at: 2500ms, action: partition, isolate: leader, duration: 2500ms}
thresholds:
  failover.write_restored: ["max < 2s"]
  recovery.read_restored: ["max < 5s"]
`)
			if len(res.Failovers) != 1 || res.Faults[0].Network != nw || len(res.Faults[0].Links) != 4 {
				t.Fatalf("faults %+v failovers %+v", res.Faults, res.Failovers)
			}
			f := res.Failovers[0]
			r := res.Recoveries[0]
			t.Logf("container partition (%s) of %s: leader elected %v ms, writes restored %v ms; caught up %v ms, read %v ms", nw, f.Member,
				deref(f.LeaderElectedMs), deref(f.WriteRestoredMs), deref(r.CaughtUpMs), deref(r.ReadRestoredMs))
			if !res.Passed {
				t.Errorf("verdict %s: %s", res.Verdict, res.Reason)
			}
			assertNoContainerLeftovers(t, dc, out)
		})
	}
}

func readClusterFile(t *testing.T, dir string) cluster.File {
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

// TestContainerUserImage runs members from an etcd image laid out as the official one is (etcd at
// /usr/local/bin/etcd, no shell): built here from the etcd server module, since no registry is
// reachable. cluster.image with its default entrypoint must start it with the harness's flags.
func TestContainerUserImage(t *testing.T) {
	dc := testbin.NeedDocker(t)
	if testing.Short() {
		t.Skip("builds etcd from the module proxy")
	}
	etcd := filepath.Join(t.TempDir(), "etcd")
	build := exec.Command("go", "build", "-o", etcd, "go.etcd.io/etcd/server/v3")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building etcd: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(etcd)
	if err != nil {
		t.Fatal(err)
	}
	tag := "etcd-chaos-test-etcd:3.7.3"
	ctx := context.Background()
	if err := cluster.BuildImage(ctx, dc, tag, "FROM scratch\nCOPY etcd /usr/local/bin/etcd\n", map[string][]byte{"etcd": bin}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = dc.ImageRemove(context.Background(), tag, client.ImageRemoveOptions{Force: true}) })
	res, out := runScenario(t, `
cluster:
  provider: container
  image: `+tag+`
  size: 3
  network: direct
  etcd: {heartbeat-interval: 50ms, election-timeout: 250ms}
workload:
  duration: 8s
  warmup: 1s
  rate: 50
  mix: [{op: put, keys: 10}]
faults:
  - {at: 3s, action: kill, target: leader, duration: 2s}
thresholds:
  failover.write_restored: ["max < 2s"]
`)
	if res.Cluster.EtcdVersion != "image "+tag || !res.Passed || len(res.Failovers) != 1 {
		t.Fatalf("version %q, verdict %s (%s), failovers %+v", res.Cluster.EtcdVersion, res.Verdict, res.Reason, res.Failovers)
	}
	log, _ := os.ReadFile(filepath.Join(out, "members", "member-1", "etcd.log"))
	if !strings.Contains(string(log), "/usr/local/bin/etcd --name=member-1") {
		t.Errorf("member-1 did not start from the image's etcd; log starts %.300s", log)
	}
	t.Logf("user image: leader elected %.1fms, writes restored %.1fms", *res.Failovers[0].LeaderElectedMs, *res.Failovers[0].WriteRestoredMs)
	assertNoContainerLeftovers(t, dc, out)
}

// TestOperationsInContainers runs operations on members in containers: a learner is added (a
// volume, a container and a published port of its own) and promoted; member-3, started on the
// previous etcd release (an image built FROM scratch from its binary), is upgraded to the built-in
// etcd (a new container on the same volume); then the disaster drill on the four: the data dirs are
// in Docker volumes, so each restored member gets a new data dir in its volume and a new container
// with its new flags, and the restored data is streamed into the volume before it starts. etcd's
// own logs (collected from the containers) and member list say what happened. Each operation runs
// to its end, so each later one waits for it: the upgrade ends only when etcd's cluster version
// moved (4-10 s), and a member added serves only after etcd's 7 s publish timeout: the load is
// long enough for the disaster to start after the slowest of them (seen: at 17.9 s).
func TestOperationsInContainers(t *testing.T) {
	dc := testbin.NeedDocker(t)
	old := testbin.EtcdRelease(t, testbin.PreviousEtcd)
	oldV := strings.TrimPrefix(testbin.PreviousEtcd, "v")
	res, out := runScenario(t, `
name: container-operations
seed: 3
cluster:
  size: 3
  member-binaries: {member-3: `+old+`}
  backup: {every: 2s}
workload:
  duration: 30s
  warmup: 1s
  rate: 200
  mix: [{op: put, weight: 1, keys: 300}]
checks: {kv-safety: true}
faults:
  - {at: 2s, action: member-add, learner: true}
  - {at: 6s, action: upgrade, target: member-3, to: builtin}
  - {at: 10s, action: disaster, target: majority}
`, "cluster.provider=container", "cluster.network=direct")
	for _, f := range res.Faults {
		b, _ := json.Marshal(f.Operation)
		t.Logf("#%d %s %v at %.1fs: %s (error %q)", f.Index, f.Action, f.Members, f.AtS, b, f.Error)
		if f.Error != "" || f.Skipped != "" || f.Operation == nil {
			t.Fatalf("#%d %s: error %q, skipped %q", f.Index, f.Action, f.Error, f.Skipped)
		}
	}
	if len(res.Faults) != 3 {
		t.Fatalf("%d of 3 operations ran before the load's end", len(res.Faults))
	}
	if !res.Passed {
		t.Fatalf("verdict %s: %s", res.Verdict, res.Reason)
	}
	// The learner: in its own container, promoted, and serving; the size after it is 4.
	ms := res.Faults[0].Operation.Membership
	if ms == nil || ms.Member != "member-4" || !ms.Learner || ms.PromotedMs <= 0 || ms.ServingMs <= 0 || ms.SizeAfter != 4 {
		t.Fatalf("member-add in containers: %+v", ms)
	}
	if v := res.Faults[1].Operation.Versions; len(v) != 1 || v[0].Member != "member-3" || v[0].From != oldV || v[0].To != "3.7.3" || v[0].HealthyMs <= 0 {
		t.Errorf("upgrade in containers: %+v", v)
	}
	d := res.Faults[2].Operation.Disaster
	if d == nil || len(d.Lost) != 3 || d.RTOMs <= 0 || d.RPOWrites < 0 || d.LostBeforeSnapshot != 0 {
		t.Fatalf("disaster in containers: %+v", d)
	}
	restored := 0
	for _, lines := range etcdLogLines(t, out, "finished scheduled compaction") {
		for _, l := range lines {
			if l["compact-revision"] == float64(d.SnapshotRevision+d.RevisionBump) {
				restored++
			}
		}
	}
	if restored < 4 {
		t.Errorf("%d members logged the restored compaction at %d", restored, d.SnapshotRevision+d.RevisionBump)
	}
	// Each member's log: member-3 started on the old release, then on the built-in etcd on the same
	// data dir; every member's last start is the restored one, on a new data dir in its volume.
	starts := etcdLogLines(t, out, "starting an etcd server")
	for _, name := range []string{"member-1", "member-2", "member-3", "member-4"} {
		var dirs, versions []string
		for _, l := range starts[name] {
			dirs = append(dirs, fmt.Sprint(l["data-dir"]))
			versions = append(versions, fmt.Sprint(l["etcd-version"]))
		}
		want := "3.7.3 3.7.3"
		if name == "member-3" {
			want = oldV + " 3.7.3 3.7.3"
		}
		n := len(dirs)
		if strings.Join(versions, " ") != want || dirs[0] != "/data/"+name || dirs[n-2] != "/data/"+name || !strings.HasPrefix(dirs[n-1], "/data/"+name+".") {
			t.Errorf("%s started on versions %v, data dirs %v", name, versions, dirs)
		}
	}
	for _, c := range res.Checks {
		if (c.Name == "kv-safety" || c.Name == "hashkv") && c.Status != "pass" {
			t.Errorf("%s: %s %s", c.Name, c.Status, c.Summary)
		}
		if c.Name == "hashkv" && !strings.HasPrefix(c.Summary, "4 of 4 members hash") {
			t.Errorf("hashkv: %s", c.Summary)
		}
	}
	assertNoContainerLeftovers(t, dc, out)
}
