package harness

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPuts drives b.N puts (8 connections, 16 closed-loop clients, 256-byte values, every latency
// recorded) against a local 3-member cluster and reports puts/s, p99 and the harness process's own
// CPU per put (getrusage; the members are other processes).
func BenchmarkPuts(b *testing.B) {
	ctx := context.Background()
	cl, err := NewLocal(LocalOptions{Dir: filepath.Join(b.TempDir(), "run"), Size: 3, NodeCommand: []string{chaosBin, "node"}, Token: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	if err := cl.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer cl.Close(ctx, 2*time.Second)
	if err := cl.WaitReady(ctx, 30*time.Second); err != nil {
		b.Fatal(err)
	}
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
