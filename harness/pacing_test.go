package harness

import (
	"context"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/loadgen"
)

// The observers' pace, held against etcd: between faults the prober writes every 100ms, while a
// fault is tracked every 10ms; etcd's own count of the probe key's writes (its version) agrees with
// the prober's; and an election no fault announced (the leader paused behind the harness's back)
// is still timed within the 10ms tolerance of the truth test, against the new leader's own log,
// because a slow probe makes the observers look closer.
func TestObserversPaceBetweenFaults(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	cl := benchClusterIn(t, "direct", dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mon := &loadgen.Monitor{}
	watcher, err := loadgen.NewWatcher(cl.ClientURLs(), cl.Names(), mon, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	prober, err := loadgen.NewProber(cl.Endpoints(), mon, 10*time.Millisecond, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer prober.Close()
	prober.Key = "chaos/pacing/probe"
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); watcher.Run(ctx) }()
	go func() { defer wg.Done(); prober.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()
	time.Sleep(time.Second) // connected; the first answers set the term

	count := func(d time.Duration) int64 {
		prober.ResetCounts()
		time.Sleep(d)
		sent, _ := prober.Counts()
		return sent
	}
	// idle waits out any suspicion (a probe slower than 100ms on a busy machine is one).
	idle := func() {
		t.Helper()
		for deadline := time.Now().Add(3 * loadgen.SuspectHold); mon.Fast(time.Now()); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the observers stayed at their full rate for %v with nothing tracked", 3*loadgen.SuspectHold)
			}
		}
	}
	// Two quiet seconds: counted again if something was suspected meanwhile (then it was right to
	// look closer), up to three times.
	for try := 1; ; try++ {
		idle()
		before := mon.Suspicions()
		n := count(2 * time.Second)
		if mon.Suspicions() != before && try < 3 {
			t.Logf("a suspicion during the quiet seconds (%d probes): counting again", n)
			continue
		}
		if n < 15 || n > 25 {
			t.Errorf("between faults, with nothing suspected: %d probes in 2s, want about 20 (one per 100ms)", n)
		}
		break
	}
	f := &loadgen.Failover{}
	mon.Track(f)
	if n := count(time.Second); n < 85 || n > 102 {
		t.Errorf("while a fault is tracked: %d probes in 1s, want about 100 (one per 10ms)", n)
	}
	mon.Untrack(f)
	idle()

	// An election no fault announced: pause the leader; nothing is tracked.
	leader, term, err := cl.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var lm interface{ Signal(syscall.Signal) error }
	for _, m := range cl.Members() {
		if m.Name() == leader {
			lm = m
		}
	}
	suspicions := mon.Suspicions()
	pausedAt := time.Now()
	if err := lm.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = lm.Signal(syscall.SIGCONT)
		}
	}
	defer resume()
	var change loadgen.LeaderChange
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cs := watcher.Changes(pausedAt); len(cs) > 0 && cs[0].ToTerm > term {
			change = cs[0]
			break
		}
	}
	resume()
	if change.To == "" {
		t.Fatalf("no leader change seen within 10s of pausing leader %s", leader)
	}
	elected := etcdElectedAt(t, filepath.Join(dir, "members", change.To, "etcd.log"), change.ToTerm)
	if diff := change.At.Sub(elected); diff < -5*time.Millisecond || diff > 40*time.Millisecond {
		t.Errorf("an unannounced election: seen at %v, etcd's log says %v (differ by %v)", change.At.Format(time.RFC3339Nano), elected.Format(time.RFC3339Nano), diff)
	}
	if !mon.Fast(time.Now()) || mon.Suspicions() == suspicions {
		t.Error("just after an election the observers are not at their full rate, or nothing woke them")
	}

	// etcd's own count: every acknowledged probe is a write to the probe key, so its version is at
	// least the probes acknowledged over the whole test and at most those sent.
	cancel()
	wg.Wait()
	c, err := loadgen.NewClient(cl.Endpoints(), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	gctx, gcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer gcancel()
	resp, err := c.Get(gctx, prober.Key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("reading the probe key: %v %v", resp, err)
	}
	sent, acked := prober.Totals()
	if v := resp.Kvs[0].Version; acked == 0 || v < acked || v > sent {
		t.Errorf("etcd applied %d probe writes; the prober sent %d and saw %d acknowledged", v, sent, acked)
	}
	t.Logf("probe writes: %d sent, %d acknowledged, %d applied by etcd; the unannounced election seen %v after etcd's log",
		sent, acked, resp.Kvs[0].Version, change.At.Sub(elected))
}
