package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/cluster"
	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/internal/testbin"
	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

var fastElections = map[string]string{"heartbeat-interval": "50ms", "election-timeout": "250ms"}

// startCluster starts a real cluster wired by network and stops it (and removes its data) at the end.
func startCluster(t *testing.T, size int, network string) *cluster.LocalCluster {
	t.Helper()
	dir := t.TempDir()
	c, err := cluster.NewLocal(cluster.LocalOptions{Dir: dir, Size: size, Etcd: fastElections, NodeCommand: []string{chaosBin, "node"},
		Token: "t-" + filepath.Base(dir), Network: network, Subnet: "198.18.0.0/15", Seed: 1, ClientProxy: true, PeerProxy: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t.Cleanup(func() {
		if err := c.Close(ctx, 2*time.Second); err != nil {
			t.Errorf("closing the cluster: %v", err)
		}
		_ = c.RemoveData()
		assertNoLeftovers(t, dir)
	})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx, 30*time.Second, "chaos/ready"); err != nil {
		t.Fatal(err)
	}
	return c
}

func others(c *cluster.LocalCluster, not ...string) []string {
	return slices.DeleteFunc(c.Names(), func(n string) bool { return slices.Contains(not, n) })
}

// waitFor polls cond every 10ms until it holds, or fails the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	last := ""
	for time.Since(start) < d {
		ok, state := cond()
		if ok {
			return time.Since(start)
		}
		last = state
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s (last: %s)", what, d, last)
	return 0
}

// leaderSeenBy asks members (directly, not through any fault) who leads, and reports a leader that
// is not old once all of them agree on it.
func newLeaderAmong(c *cluster.LocalCluster, members []string, old string) (bool, string) {
	var seen []string
	agree := ""
	for _, n := range members {
		st, err := c.MemberStatus(context.Background(), n, 300*time.Millisecond)
		if err != nil {
			return false, fmt.Sprintf("%s: %v", n, err)
		}
		id := fmt.Sprintf("%x", st.Leader)
		seen = append(seen, n+"->"+id)
		if st.Leader == 0 || (agree != "" && agree != id) {
			return false, strings.Join(seen, " ")
		}
		agree = id
		if old != "" && st.Leader == st.Header.MemberId && n == old {
			return false, strings.Join(seen, " ")
		}
	}
	leader, _, err := c.Leader(context.Background())
	return err == nil && leader != old && slices.Contains(members, leader), strings.Join(seen, " ") + " leader " + leader
}

func put(url, key string, timeout time.Duration) error {
	cli, err := loadgen.MeasureClient([]string{url})
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err = cli.Put(ctx, key, "v")
	return err
}

func sumBytes(px *faults.Proxy, links []faults.Link) map[faults.Link]int64 {
	out := map[faults.Link]int64{}
	for _, l := range links {
		out[l] = px.Bytes(l)
	}
	return out
}

// TestIsolateLeaderProxy cuts the leader off from its peers through the proxy: the others elect a
// leader, the isolated member steps down and reports none, not one byte crosses the cut links, and
// after the heal the old leader rejoins and catches up.
func TestIsolateLeaderProxy(t *testing.T) {
	c := startCluster(t, 3, "proxy")
	ctx := context.Background()
	old, oldTerm, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rest := others(c, old)
	px := c.Proxy()
	// Every peer connection is attributed to a member: by its first request, or by its socket's owner.
	for l, n := range px.Conns() {
		if l.From == faults.Unknown {
			t.Errorf("%d peer connections into %s have no known sender", n, l.To)
		}
	}
	links := faults.Both([]string{old}, rest)
	if err := px.Apply(ctx, links, faults.Shape{Blackhole: true}); err != nil {
		t.Fatal(err)
	}
	at := sumBytes(px, links)
	cut := time.Now()

	took := waitFor(t, 3*time.Second, "the isolated old leader steps down", func() (bool, string) {
		st, err := c.MemberStatus(ctx, old, 300*time.Millisecond)
		if err != nil {
			return false, err.Error()
		}
		return st.Leader == 0, fmt.Sprintf("leader %x term %d", st.Leader, st.RaftTerm)
	})
	t.Logf("the isolated leader %s reported no leader %v after the cut", old, took.Round(time.Millisecond))
	waitFor(t, 3*time.Second, "the majority elects a new leader", func() (bool, string) { return newLeaderAmong(c, rest, old) })
	t.Logf("the majority %v agreed on a new leader %v after the cut", rest, time.Since(cut).Round(time.Millisecond))
	if _, term, _ := c.Leader(ctx); term <= oldTerm {
		t.Errorf("term %d after the election, was %d", term, oldTerm)
	}
	if err := put(c.ClientURLs()[rest[0]], "through-majority", 2*time.Second); err != nil {
		t.Errorf("a write through the majority failed: %v", err)
	}
	if err := put(c.ClientURLs()[old], "through-isolated", 500*time.Millisecond); err == nil {
		t.Errorf("a write through the isolated member succeeded")
	}
	time.Sleep(time.Until(cut.Add(2 * time.Second))) // hold the cut for 2s in all
	for l, n := range sumBytes(px, links) {
		if n != at[l] {
			t.Errorf("%d bytes crossed %s during the partition", n-at[l], l)
		}
	}
	// The links not cut carried traffic meanwhile (the counters count).
	if between := faults.Both(rest[:1], rest[1:]); px.Bytes(between[0]) == 0 {
		t.Errorf("no bytes counted on %s", between[0])
	}
	if err := px.Heal(ctx, links); err != nil {
		t.Fatal(err)
	}
	took = waitFor(t, 5*time.Second, "the old leader rejoins and catches up", func() (bool, string) {
		lst, err1 := c.MemberStatus(ctx, rest[0], 300*time.Millisecond)
		ost, err2 := c.MemberStatus(ctx, old, 300*time.Millisecond)
		if err1 != nil || err2 != nil {
			return false, fmt.Sprint(err1, err2)
		}
		return ost.Leader == lst.Leader && ost.RaftAppliedIndex >= lst.RaftAppliedIndex,
			fmt.Sprintf("old sees %x applied %d; majority sees %x applied %d", ost.Leader, ost.RaftAppliedIndex, lst.Leader, lst.RaftAppliedIndex)
	})
	t.Logf("after the heal %s followed the new leader and caught up in %v", old, took.Round(time.Millisecond))
	if err := put(c.ClientURLs()[old], "through-healed", 2*time.Second); err != nil {
		t.Errorf("a write through the healed member failed: %v", err)
	}
}

// TestGroupsFiveMembers splits five members 2 | 3 with the leader among the 2.
func TestGroupsFiveMembers(t *testing.T) {
	c := startCluster(t, 5, "proxy")
	ctx := context.Background()
	old, _, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rest := others(c, old)
	minority := []string{old, rest[0]}
	majority := rest[1:]
	links := faults.Groups([][]string{minority, majority})
	if err := c.Proxy().Apply(ctx, links, faults.Shape{Blackhole: true}); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, 4*time.Second, "the 3 elect a leader among them", func() (bool, string) { return newLeaderAmong(c, majority, old) })
	t.Logf("groups %v | %v: the majority elected a leader after %v", minority, majority, took.Round(time.Millisecond))
	for _, m := range minority {
		if err := put(c.ClientURLs()[m], "minority-"+m, 700*time.Millisecond); err == nil {
			t.Errorf("a write through %s, in the minority, succeeded", m)
		} else {
			t.Logf("write through minority member %s: %v", m, err)
		}
	}
	if err := put(c.ClientURLs()[majority[0]], "majority", 2*time.Second); err != nil {
		t.Errorf("a write through the majority failed: %v", err)
	}
	if err := c.Proxy().Heal(ctx, links); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "everyone follows one leader again", func() (bool, string) { return newLeaderAmong(c, c.Names(), "") })
}

// latencyVia measures the median of n serializable gets through url.
func latencyVia(t *testing.T, cli *clientv3.Client, n int) time.Duration {
	t.Helper()
	var ds []time.Duration
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		start := time.Now()
		_, err := cli.Get(ctx, "k", clientv3.WithSerializable())
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, time.Since(start))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[n/2]
}

// TestClientDelay: a delay d on the client links of one member adds about 2d to a get through it
// (the request waits d, the answer d), and nothing through the others.
func TestClientDelay(t *testing.T) {
	c := startCluster(t, 3, "proxy")
	ctx := context.Background()
	names := c.Names()
	clis := map[string]*clientv3.Client{}
	base := map[string]time.Duration{}
	for _, n := range names {
		cli, err := loadgen.MeasureClient([]string{c.ClientURLs()[n]})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		clis[n] = cli
		base[n] = latencyVia(t, cli, 30)
	}
	const d = 40 * time.Millisecond
	slow := names[1]
	links := faults.Both([]string{faults.Clients}, []string{slow})
	if err := c.Proxy().Apply(ctx, links, faults.Shape{Delay: d}); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		got := latencyVia(t, clis[n], 30)
		added := got - base[n]
		t.Logf("get through %s: median %v before, %v with %v on %s's client links (added %v)", n, base[n], got, d, slow, added)
		if n == slow {
			// Tolerance: -5ms (timer granularity) to +20ms (scheduling on 2 cores under -race).
			if added < 2*d-5*time.Millisecond || added > 2*d+20*time.Millisecond {
				t.Errorf("through %s the delay added %v, want about 2x%v", n, added, d)
			}
		} else if added > 10*time.Millisecond {
			t.Errorf("through %s, not delayed, the median rose by %v", n, added)
		}
	}
	if err := c.Proxy().Heal(ctx, links); err != nil {
		t.Fatal(err)
	}
}

// TestLeaderPeerDelay: a delay d on every peer link of the leader holds every commit for at least
// d (the append reaches the followers d later), so put p50 rises by at least d.
func TestLeaderPeerDelay(t *testing.T) {
	c := startCluster(t, 3, "proxy")
	ctx := context.Background()
	leader, _, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := loadgen.MeasureClient([]string{c.ClientURLs()[leader]})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	p50 := func() time.Duration {
		var ds []time.Duration
		for i := 0; i < 25; i++ {
			pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			start := time.Now()
			_, err := cli.Put(pctx, "k", "v")
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			ds = append(ds, time.Since(start))
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	before := p50()
	const d = 30 * time.Millisecond
	links := faults.Both([]string{leader}, others(c, leader))
	if err := c.Proxy().Apply(ctx, links, faults.Shape{Delay: d}); err != nil {
		t.Fatal(err)
	}
	during := p50()
	t.Logf("put p50 through the leader %s: %v before, %v with %v on its peer links", leader, before, during, d)
	if during-before < d {
		t.Errorf("put p50 rose by %v, want at least %v", during-before, d)
	}
	if l, _, _ := c.Leader(ctx); l != leader {
		t.Errorf("leader changed to %s under a %v delay (election timeout 250ms)", l, d)
	}
	if err := c.Proxy().Heal(ctx, links); err != nil {
		t.Fatal(err)
	}
}

// TestOneWayFromLeader runs the one-way-leader scenario: nothing the leader sends arrives, while it
// still hears everyone.
func TestOneWayFromLeader(t *testing.T) {
	res, out := runScenario(t, `
cluster:
  size: 3
  etcd: {heartbeat-interval: 50ms, election-timeout: 250ms}
workload:
  duration: 10s
  warmup: 1s
  rate: 100
  mix: [{op: put, keys: 100}]
faults:
  - {at: 3s, action: partition, one-way: {from: leader, to: all}, duration: 3s}
`)
	if len(res.Failovers) != 1 || len(res.Faults) != 1 {
		t.Fatalf("failovers %+v faults %+v", res.Failovers, res.Faults)
	}
	f, fr := res.Failovers[0], res.Faults[0]
	t.Logf("one-way from %s: leader elected %v ms, writes restored %v ms, new leader %s; recovery %+v", f.Member,
		deref(f.LeaderElectedMs), deref(f.WriteRestoredMs), f.NewLeader, res.Recoveries)
	// The followers stop hearing heartbeats and elect one of themselves.
	if f.LeaderElectedMs == nil || f.NewLeader == f.Member || f.NewLeader == "" {
		t.Errorf("no new leader elected among the followers: %+v", f)
	}
	if f.WriteRestoredMs == nil {
		t.Errorf("writes were not restored")
	}
	// Only the leader's outgoing links are cut, and nothing crossed them.
	if len(fr.Links) != 2 || len(fr.LinkBytes) != 2 {
		t.Errorf("links %v bytes %v, want the 2 links from the leader", fr.Links, fr.LinkBytes)
	}
	for l, n := range fr.LinkBytes {
		if !strings.HasPrefix(l, f.Member+"->") || n != 0 {
			t.Errorf("link %s carried %d bytes", l, n)
		}
	}
	// The old leader hears the new term and steps down (etcd's log says so on the old leader).
	log, _ := os.ReadFile(filepath.Join(out, "members", f.Member, "etcd.log"))
	if !strings.Contains(string(log), fmt.Sprintf("became follower at term %d", f.NewTerm)) {
		t.Errorf("%s's log does not show it stepping down to follower at term %d", f.Member, f.NewTerm)
	}
	if len(res.Recoveries) != 1 || res.Recoveries[0].CaughtUpMs == nil || res.Recoveries[0].ReadRestoredMs == nil {
		t.Errorf("recovery of the old leader not measured: %+v", res.Recoveries)
	}
	assertNoLeftovers(t, out)
}

// TestPartitionLeaderRun runs a leader partition end to end and checks what result.json says.
func TestPartitionLeaderRun(t *testing.T) {
	res, out := runScenario(t, `
cluster:
  size: 3
  etcd: {heartbeat-interval: 50ms, election-timeout: 250ms}
workload:
  duration: 10s
  warmup: 1s
  rate: 100
  mix: [{op: put, keys: 100}]
faults:
  - {at: 3s, action: partition, isolate: leader, duration: 3s}
thresholds:
  failover.write_restored: ["max < 2s"]
  recovery.caught_up: ["max < 3s"]
  recovery.read_restored: ["max < 3s"]
`)
	if !res.Passed {
		t.Errorf("verdict %s: %s", res.Verdict, res.Reason)
	}
	if len(res.Failovers) != 1 || res.Failovers[0].NewLeader == res.Failovers[0].Member {
		t.Fatalf("failovers = %+v", res.Failovers)
	}
	fr := res.Faults[0]
	if fr.Network != "proxy" || len(fr.Links) != 4 {
		t.Errorf("fault record %+v: want 4 proxy links", fr)
	}
	for l, n := range fr.LinkBytes {
		if n != 0 {
			t.Errorf("%d bytes crossed %s while partitioned", n, l)
		}
	}
	if len(res.Recoveries) != 1 || res.Recoveries[0].CaughtUpMs == nil || res.Recoveries[0].ReadRestoredMs == nil {
		t.Fatalf("recoveries = %+v", res.Recoveries)
	}
	r := res.Recoveries[0]
	t.Logf("partition of %s: leader elected %.1fms, writes restored %.1fms; after the heal caught up %.1fms, read restored %.1fms",
		r.Member, *res.Failovers[0].LeaderElectedMs, *res.Failovers[0].WriteRestoredMs, *r.CaughtUpMs, *r.ReadRestoredMs)
	assertNoLeftovers(t, out)
}

// TestIsolateLeaderNetns isolates the leader with blackhole routes in the members' namespaces.
func TestIsolateLeaderNetns(t *testing.T) {
	testbin.NeedRoot(t)
	c := startCluster(t, 3, "netns")
	ctx := context.Background()
	n := c.Netns()
	old, _, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rest := others(c, old)
	links := faults.Both([]string{old}, rest)
	if err := n.Apply(ctx, links, faults.Shape{Blackhole: true}); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	// The routes are in the kernel: in the old leader's namespace to each other member, and back.
	if bh, _ := n.Blackholes(old); len(bh) != 2 {
		t.Errorf("blackhole routes of %s = %v, want 2", old, bh)
	}
	for _, r := range rest {
		if bh, _ := n.Blackholes(r); len(bh) != 1 || bh[0] != (faults.Link{From: r, To: old}) {
			t.Errorf("blackhole routes of %s = %v, want one to %s", r, bh, old)
		}
	}
	waitFor(t, 3*time.Second, "the isolated old leader steps down", func() (bool, string) {
		st, err := c.MemberStatus(ctx, old, 300*time.Millisecond)
		if err != nil {
			return false, err.Error()
		}
		return st.Leader == 0, fmt.Sprintf("leader %x", st.Leader)
	})
	waitFor(t, 3*time.Second, "the majority elects a new leader", func() (bool, string) { return newLeaderAmong(c, rest, old) })
	t.Logf("netns: %v elected a new leader %v after the cut", rest, time.Since(cut).Round(time.Millisecond))
	if err := put(c.ClientURLs()[old], "through-isolated", 500*time.Millisecond); err == nil {
		t.Errorf("a write through the isolated member succeeded")
	}
	time.Sleep(time.Until(cut.Add(3 * time.Second)))
	if err := n.Heal(ctx, links); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	for _, m := range c.Names() {
		if bh, _ := n.Blackholes(m); len(bh) != 0 {
			t.Errorf("blackhole routes of %s after the heal: %v", m, bh)
		}
	}
	// After a heal in the kernel, the old leader's connections wait out TCP's retransmission backoff:
	// rejoining can take seconds (the proxy, which holds bytes instead of dropping them, does not).
	took := waitFor(t, 20*time.Second, "the old leader rejoins", func() (bool, string) {
		lst, err1 := c.MemberStatus(ctx, rest[0], 300*time.Millisecond)
		ost, err2 := c.MemberStatus(ctx, old, 300*time.Millisecond)
		if err1 != nil || err2 != nil {
			return false, fmt.Sprint(err1, err2)
		}
		return ost.Leader == lst.Leader && ost.RaftAppliedIndex >= lst.RaftAppliedIndex, fmt.Sprintf("%x vs %x", ost.Leader, lst.Leader)
	})
	t.Logf("netns: %s rejoined and caught up %v after the heal", old, took.Round(time.Millisecond))
	readTook := waitFor(t, 20*time.Second, "a linearizable read through the old leader", func() (bool, string) {
		cli, err := loadgen.MeasureClient([]string{c.ClientURLs()[old]})
		if err != nil {
			return false, err.Error()
		}
		defer cli.Close()
		rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err = cli.Get(rctx, "k")
		return err == nil, fmt.Sprint(err)
	})
	t.Logf("netns: a linearizable read through %s succeeded %v after the heal", old, time.Since(healed).Round(time.Millisecond))
	_ = readTook
	for _, ns := range n.Namespaces() {
		if _, err := os.Stat(filepath.Join(faults.NetnsDir, ns)); err != nil {
			t.Errorf("namespace %s missing while the cluster runs: %v", ns, err)
		}
	}
}

// TestNetnsNeedsNetemForDelay: on a kernel without sch_netem, a delay between members in netns mode
// stops the run before the load with an error that says so and points to the proxy.
func TestNetnsNeedsNetemForDelay(t *testing.T) {
	testbin.NeedRoot(t)
	sc, err := scenarios.Parse("test.yaml", []byte(`
cluster: {size: 3, network: netns}
workload: {duration: 6s, warmup: 1s, rate: 50, mix: [{op: put, keys: 10}]}
faults:
  - {at: 2s, action: delay, target: follower, latency: 50ms, duration: 2s}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "run")
	res, err := Run(context.Background(), sc, Options{Out: out, NodeCommand: []string{chaosBin, "node"}})
	if err == nil {
		t.Skip("this kernel has sch_netem: the delay ran (the error path is for kernels without it)")
	}
	if !errors.Is(err, ErrInfra) || !strings.Contains(err.Error(), "sch_netem") || !strings.Contains(err.Error(), "network: proxy") {
		t.Fatalf("error %v: want ErrInfra naming sch_netem and network: proxy", err)
	}
	if res == nil || res.Verdict != "error" {
		t.Errorf("result %+v", res)
	}
	t.Logf("as expected here: %v", err)
	assertNoLeftovers(t, out)
}
