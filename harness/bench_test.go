package harness

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

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
func benchCluster(b *testing.B, network string) *LocalCluster {
	ctx := context.Background()
	proxied := network == "proxy"
	if network == "default" {
		network = "proxy"
	}
	cl, err := NewLocal(LocalOptions{Dir: filepath.Join(b.TempDir(), "run"), Size: 3, NodeCommand: []string{chaosBin, "node"}, Token: "bench", Network: network,
		ClientProxy: proxied, PeerProxy: proxied})
	if err != nil {
		b.Fatal(err)
	}
	if err := cl.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cl.Close(context.Background(), 2*time.Second) })
	if err := cl.WaitReady(ctx, 30*time.Second); err != nil {
		b.Fatal(err)
	}
	return cl
}

// BenchmarkPuts drives b.N puts (8 connections, 16 closed-loop clients, 256-byte values, every latency
// recorded) against a local 3-member cluster and reports puts/s, p99 and the harness process's own
// CPU per put (getrusage; the members are other processes). With network proxy every byte between
// members and from the load passes through the harness: the difference to direct is the proxy's cost.
// "default" is a scenario without network faults under the default network: it must match direct.
// Run with -count N, the cases alternate (direct, default, proxy, direct, ...): compare them as ratios.
func BenchmarkPuts(b *testing.B) {
	for _, network := range []string{"direct", "default", "proxy"} {
		b.Run(network, func(b *testing.B) { benchPuts(b, network) })
	}
}

func benchPuts(b *testing.B, network string) {
	ctx := context.Background()
	cl := benchCluster(b, network)
	rec := loadgen.NewRecorder(time.Now(), nil)
	rec.SetPhase("bench", time.Now())
	kv, err := loadgen.NewKV(loadgen.Config{Endpoints: cl.Endpoints(), Clients: 16, Connections: 8, Timeout: 5 * time.Second,
		Retry: loadgen.RetryPolicy{Attempts: 1}, Mix: []scenarios.Op{{Op: "put", Weight: 1, Keys: 10000, Distribution: "uniform", ValueSize: 256}},
		MaxOps: int64(b.N), Seed: 1}, rec)
	if err != nil {
		b.Fatal(err)
	}
	defer kv.Close()
	cpu0 := cpuTime()
	b.ResetTimer()
	start := time.Now()
	kv.Run(ctx, start)
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := cpuTime() - cpu0
	s := rec.Summarize(time.Now())
	if s.Failed > 0 {
		b.Fatalf("%d of %d puts failed: %v", s.Failed, s.Ops, s.Errors)
	}
	b.ReportMetric(float64(s.Ops)/elapsed.Seconds(), "puts/s")
	b.ReportMetric(s.Latency["put"].P99, "p99-ms")
	b.ReportMetric(float64(cpu.Microseconds())/float64(s.Ops), "harness-cpu-us/put")
}

// BenchmarkBareClientPuts is the same-machine baseline for BenchmarkPuts: the same puts with the same
// 8 connections and 16 goroutines, through bare clientv3 calls that record nothing, retry nothing and
// set no per-request timeout, as etcd's own benchmark tool does. The difference in CPU per put is
// what the harness costs.
func BenchmarkBareClientPuts(b *testing.B) {
	cl := benchCluster(b, "direct")
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
	var next atomic.Int64
	var failed atomic.Int64
	cpu0 := cpuTime()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kv := clients[w%len(clients)]
			for {
				n := next.Add(1) - 1
				if n >= int64(b.N) {
					return
				}
				if _, err := kv.Put(context.Background(), keys[n%int64(len(keys))], value); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := cpuTime() - cpu0
	if failed.Load() > 0 {
		b.Fatalf("%d puts failed", failed.Load())
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "puts/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "client-cpu-us/put")
}
