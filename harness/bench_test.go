package harness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/cluster"
	"github.com/etcd-chaos/etcd-chaos/internal/testbin"
	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchCluster starts a local 3-member cluster for a benchmark and stops it after.
// network "default" is how chaos run wires a scenario without network faults (network: proxy, but no
// proxy in any path); "proxy" puts every client and peer link through the proxy, as network faults do.
// network "container" runs the members as containers (provider container, no network faults), the
// load dialling their own addresses.
func benchCluster(b testing.TB, network string) cluster.Cluster {
	return benchClusterIn(b, network, filepath.Join(b.TempDir(), "run"))
}

// benchClusterIn is benchCluster with the run folder dir (members/<name>/etcd.log).
func benchClusterIn(b testing.TB, network, dir string) cluster.Cluster {
	ctx := context.Background()
	proxied := network == "proxy"
	if network == "default" {
		network = "proxy"
	}
	opts := cluster.LocalOptions{Dir: dir, Size: 3, NodeCommand: []string{chaosBin, "node"}, Token: "bench", Network: network,
		ClientProxy: proxied, PeerProxy: proxied}
	if network == "disk" || network == "disk-unsynced" || network == "disk-fsync-only" {
		// The disk layer under every member's data dir, holding no fault (with unsynced tracking,
		// as a scenario with a power loss mounts it).
		testbin.NeedFUSE(b)
		opts.Network = "direct"
		opts.Disk = &cluster.DiskOptions{Unsynced: network == "disk-unsynced", Passthrough: network == "disk-fsync-only"}
	}
	var cl cluster.Cluster
	var err error
	if network == "container" {
		testbin.NeedDocker(b)
		opts.Network = "direct"
		cl, err = cluster.NewContainers(opts, cluster.ContainerOptions{})
	} else {
		cl, err = cluster.NewLocal(opts)
	}
	if err != nil {
		b.Fatal(err)
	}
	if err := cl.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cl.Close(context.Background(), 2*time.Second) })
	if err := cl.WaitReady(ctx, 30*time.Second, "chaos/ready"); err != nil {
		b.Fatal(err)
	}
	return cl
}

// BenchmarkPuts drives b.N puts (8 connections, 16 closed-loop clients, 256-byte values, every latency
// recorded) against a local 3-member cluster and reports puts/s, p99 and the harness process's own
// CPU per put (getrusage; the members are other processes). With network proxy every byte between
// members and from the load passes through the harness: the difference to direct is the proxy's cost.
// "default" is a scenario without network faults under the default network: it must match direct.
// "container" is the same load against members in containers. Run with -count N, the cases
// alternate (direct, default, proxy, container, direct, ...): compare them as ratios.
func BenchmarkPuts(b *testing.B) {
	for _, network := range []string{"direct", "default", "proxy", "container"} {
		b.Run(network, func(b *testing.B) { benchPuts(b, network) })
	}
}

func benchPuts(b *testing.B, network string) {
	cl := benchCluster(b, network)
	b.ResetTimer()
	rate, p99, cpu := measurePuts(b, cl, int64(b.N))
	b.StopTimer()
	b.ReportMetric(rate, "puts/s")
	b.ReportMetric(p99, "p99-ms")
	b.ReportMetric(cpu, "harness-cpu-us/put")
}

// measurePuts drives n closed-loop puts (16 clients, 8 connections, 256-byte values) and returns
// puts/s, the p99 in ms and the harness's CPU per put in µs.
func measurePuts(b *testing.B, cl cluster.Cluster, n int64) (rate, p99, cpuPerPut float64) {
	ctx := context.Background()
	rec := loadgen.NewRecorder(time.Now(), nil)
	rec.SetPhase("bench", time.Now())
	kv, err := loadgen.NewKV(loadgen.Config{Endpoints: cl.Endpoints(), Clients: 16, Connections: 8, Timeout: 5 * time.Second,
		Retry: loadgen.RetryPolicy{Attempts: 1}, Mix: []scenarios.Op{{Op: "put", Weight: 1, Keys: 10000, Distribution: "uniform", ValueSize: 256}},
		MaxOps: n, Seed: 1}, rec)
	if err != nil {
		b.Fatal(err)
	}
	defer kv.Close()
	cpu0 := cpuTime()
	start := time.Now()
	kv.Run(ctx, start)
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	s := rec.Summarize(time.Now())
	if s.Failed > 0 {
		b.Fatalf("%d of %d puts failed: %v", s.Failed, s.Ops, s.Errors)
	}
	return float64(s.Ops) / elapsed.Seconds(), s.Latency["put"].P99, float64(cpu.Microseconds()) / float64(s.Ops)
}

// BenchmarkPutsSideBySide measures the throughput ratios the way this machine allows: all
// clusters up at once, rounds of the same closed-loop puts against each in turn (A B C D A B C D),
// and the ratios of their summed rates. default/direct: the default wiring without network faults
// (target at least 0.97); container/local: members in containers against local processes (target
// at least 0.85); proxy/direct: what a network fault's proxy costs. Run with -benchtime 1x.
func BenchmarkPutsSideBySide(b *testing.B) {
	cases := []string{"direct", "default", "proxy", "container"}
	cls := map[string]cluster.Cluster{}
	for _, c := range cases {
		cls[c] = benchCluster(b, c)
	}
	sum := map[string]float64{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for round := 0; round < 3; round++ {
			for _, c := range cases {
				rate, _, _ := measurePuts(b, cls[c], 8000)
				sum[c] += rate
			}
		}
	}
	b.StopTimer()
	for _, c := range cases {
		b.ReportMetric(sum[c]/float64(3*b.N), c+"-puts/s")
	}
	b.ReportMetric(sum["default"]/sum["direct"], "default/direct")
	b.ReportMetric(sum["container"]/sum["direct"], "container/local")
	b.ReportMetric(sum["proxy"]/sum["direct"], "proxy/direct")
}

// BenchmarkDiskLayerSideBySide is what the disk layer costs when it holds no fault: closed-loop
// puts against members whose data dirs are served by the harness's FUSE layer (plain, and with
// the unsynced tracking a power loss needs) and against members on the bare filesystem, side by
// side in alternating rounds (A B C A B C), as ratios. Target: disk/direct at least 0.85. Run
// with -benchtime 1x.
func BenchmarkDiskLayerSideBySide(b *testing.B) {
	cases := []string{"direct", "disk", "disk-unsynced", "disk-fsync-only"}
	cls := map[string]cluster.Cluster{}
	for _, c := range cases {
		cls[c] = benchCluster(b, c)
	}
	sum, p99 := map[string]float64{}, map[string]float64{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for round := 0; round < 3; round++ {
			for _, c := range cases {
				rate, p, _ := measurePuts(b, cls[c], 8000)
				sum[c] += rate
				p99[c] = max(p99[c], p)
			}
		}
	}
	b.StopTimer()
	for _, c := range cases {
		b.ReportMetric(sum[c]/float64(3*b.N), c+"-puts/s")
		b.ReportMetric(p99[c], c+"-worst-p99-ms")
	}
	b.ReportMetric(sum["disk"]/sum["direct"], "disk/direct")
	b.ReportMetric(sum["disk-unsynced"]/sum["direct"], "disk-unsynced/direct")
	b.ReportMetric(sum["disk-fsync-only"]/sum["direct"], "disk-fsync-only/direct")
}

// BenchmarkBareClientPuts is the same-machine baseline for BenchmarkPuts: the same puts with the same
// 8 connections and 16 goroutines, through bare clientv3 calls that record nothing, retry nothing and
// set no per-request timeout, as etcd's own benchmark tool does. The difference in CPU per put is
// what the harness costs.
func BenchmarkBareClientPuts(b *testing.B) {
	cl := benchCluster(b, "direct")
	b.ResetTimer()
	rate, cpu := barePuts(b, cl, int64(b.N))
	b.StopTimer()
	b.ReportMetric(rate, "puts/s")
	b.ReportMetric(cpu, "client-cpu-us/put")
}

// BenchmarkHarnessCost is the harness's own cost, side by side on one local 3-member cluster (direct
// path), in alternating rounds (harness, steady, bare, bare, steady, harness, ...): "harness" is
// chaos run's closed-loop KV load as drive wires it (recorder streaming latency.hlog, kv-safety's
// log, every response's raft term told to the monitor) with its observers running (the leader
// watcher's Status polls, the failover prober's writes) at their pace between faults; "steady" is
// the same with the observers at their full rate throughout (as while a fault is measured, and as
// they ran between faults before they were paced); "bare" is BenchmarkBareClientPuts's bare
// clientv3 puts with nothing observing. All do the same puts (16 clients, 8 connections, 256-byte
// values over 10,000 keys). It reports each side's puts/s and whole-process CPU per put (getrusage
// over the round), the prober's writes per second, and the ratios to bare: the targets are
// throughput >= 0.97x and CPU per put <= 1.1x. Run with -benchtime 1x.
func BenchmarkHarnessCost(b *testing.B) {
	cl := benchCluster(b, "direct")
	const rounds, perRound = 4, 8000
	sides := []string{"harness", "steady", "bare"}
	rate, cpu, probes := map[string]float64{}, map[string]float64{}, map[string]float64{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for round := 0; round < rounds; round++ {
			order := slices.Clone(sides)
			if round%2 == 1 { // A B C C B A: a drift over the rounds (the database growing) weighs alike
				slices.Reverse(order)
			}
			for _, side := range order {
				var r, c, p float64
				if side == "bare" {
					r, c = barePuts(b, cl, perRound)
				} else {
					r, c, p = harnessPuts(b, cl, perRound, side == "steady")
				}
				rate[side] += r
				cpu[side] += c
				probes[side] += p
			}
		}
	}
	b.StopTimer()
	n := float64(rounds * b.N)
	for _, side := range sides {
		b.ReportMetric(rate[side]/n, side+"-puts/s")
		b.ReportMetric(cpu[side]/n, side+"-cpu-us/put")
		if side != "bare" {
			b.ReportMetric(probes[side]/n, side+"-probes/s")
			b.ReportMetric(rate[side]/rate["bare"], side+"-throughput-ratio")
			b.ReportMetric(cpu[side]/cpu["bare"], side+"-cpu-ratio")
		}
	}
}

// harnessPuts runs n puts as chaos run's drive does, observers on (steady: at their full rate
// throughout); it returns puts/s, CPU µs/put and the prober's writes per second.
func harnessPuts(b *testing.B, cl cluster.Cluster, n int64, steady bool) (rate, cpuPerPut, probes float64) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mon := &loadgen.Monitor{Steady: steady}
	watcher, err := loadgen.NewWatcher(cl.ClientURLs(), cl.Names(), mon, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer watcher.Close()
	prober, err := loadgen.NewProber(cl.Endpoints(), mon, 10*time.Millisecond, 5*time.Second, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer prober.Close()
	hlog, err := os.Create(filepath.Join(b.TempDir(), "latency.hlog"))
	if err != nil {
		b.Fatal(err)
	}
	defer hlog.Close()
	rec := loadgen.NewRecorder(time.Now(), hlog)
	rec.SetPhase("bench", time.Now())
	kv, err := loadgen.NewKV(loadgen.Config{Endpoints: cl.Endpoints(), Clients: 16, Connections: 8, Timeout: 5 * time.Second,
		Retry: loadgen.RetryPolicy{Attempts: 1}, Mix: []scenarios.Op{{Op: "put", Weight: 1, Keys: 10000, Distribution: "uniform", ValueSize: 256}},
		MaxOps: n, Seed: 1, Safety: loadgen.NewSafetyLog(), KeyPrefix: "chaos/bench/kv/", Monitor: mon}, rec)
	if err != nil {
		b.Fatal(err)
	}
	defer kv.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); watcher.Run(ctx) }()
	go func() { defer wg.Done(); prober.Run(ctx) }()
	time.Sleep(200 * time.Millisecond) // the observers connected and polling, as during a run
	prober.ResetCounts()
	cpu0 := cpuTime()
	start := time.Now()
	kv.Run(ctx, start)
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	prober.StopCounting()
	cancel()
	wg.Wait()
	s := rec.Summarize(time.Now())
	if s.Failed > 0 {
		b.Fatalf("%d of %d puts failed: %v", s.Failed, s.Ops, s.Errors)
	}
	sent, _ := prober.Counts()
	return float64(s.Ops) / elapsed.Seconds(), float64(cpu.Microseconds()) / float64(s.Ops), float64(sent) / elapsed.Seconds()
}

// barePuts runs n puts through bare clientv3 calls (8 clients, 16 goroutines); puts/s and CPU µs/put.
func barePuts(b *testing.B, cl cluster.Cluster, n int64) (rate, cpuPerPut float64) {
	var clients []*clientv3.Client
	for i := 0; i < 8; i++ {
		c, err := loadgen.NewClient(cl.Endpoints(), 1)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	value := strings.Repeat("v", 256)
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = fmt.Sprintf("bench/%08d", i)
	}
	var next, failed atomic.Int64
	cpu0 := cpuTime()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kv := clients[w%len(clients)]
			for next.Add(1) <= n {
				if _, err := kv.Put(context.Background(), keys[rand.IntN(len(keys))], value); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	if failed.Load() > 0 {
		b.Fatalf("%d puts failed", failed.Load())
	}
	return float64(n) / elapsed.Seconds(), float64(cpu.Microseconds()) / float64(n)
}
