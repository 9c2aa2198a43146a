package harness

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// TestEveryStopConditionTrips: each metric the abort grammar accepts is evaluated, and trips on a
// window that breaks it, while the same condition holds its peace on a healthy window. A condition
// the stopper cannot evaluate would never stop a game day: it is refused when parsed.
func TestEveryStopConditionTrips(t *testing.T) {
	type window struct {
		ops, failed int64
		putLatency  time.Duration
		probes      [2]int64 // probes returned, acknowledged, per second
	}
	healthy := window{ops: 500, failed: 0, putLatency: 5 * time.Millisecond, probes: [2]int64{100, 100}}
	cases := []struct {
		cond string
		bad  window
	}{
		{"errors: rate > 0.5 over 3s", window{ops: 500, failed: 400, putLatency: 5 * time.Millisecond, probes: [2]int64{100, 100}}},
		{"errors: count > 100 over 3s", window{ops: 500, failed: 50, putLatency: 5 * time.Millisecond, probes: [2]int64{100, 100}}},
		{"availability: rate < 0.9 over 3s", window{ops: 500, putLatency: 5 * time.Millisecond, probes: [2]int64{100, 20}}},
		{"throughput: avg < 100 over 3s", window{ops: 50, putLatency: 5 * time.Millisecond, probes: [2]int64{100, 100}}},
		{"throughput: avg < 100 over 2s", window{ops: 500, failed: 500, putLatency: 5 * time.Millisecond, probes: [2]int64{100, 100}}}, // every op failed: no work done
		{"throughput: min < 100 over 3s", window{ops: 50, putLatency: 5 * time.Millisecond, probes: [2]int64{100, 100}}},
		{"throughput: max > 1000 over 3s", window{ops: 2000, putLatency: 5 * time.Millisecond, probes: [2]int64{100, 100}}},
		{"latency.put: p(99) > 1s over 3s", window{ops: 500, putLatency: 2 * time.Second, probes: [2]int64{100, 100}}},
		{"latency.put: avg > 1s over 3s", window{ops: 500, putLatency: 2 * time.Second, probes: [2]int64{100, 100}}},
		{"latency.put: med > 1s over 3s", window{ops: 500, putLatency: 2 * time.Second, probes: [2]int64{100, 100}}},
		{"latency.put: min > 1s over 3s", window{ops: 500, putLatency: 2 * time.Second, probes: [2]int64{100, 100}}},
		{"latency.put: max > 1s over 3s", window{ops: 500, putLatency: 2 * time.Second, probes: [2]int64{100, 100}}},
		{"latency.all: p(50) > 1s over 3s", window{ops: 500, putLatency: 2 * time.Second, probes: [2]int64{100, 100}}},
		{"latency.put: count < 100 over 3s", window{ops: 50, putLatency: 5 * time.Millisecond, probes: [2]int64{100, 100}}},
	}
	// wait: how long to wait for a trip (a bad window trips at once; a healthy one is given a
	// short while to show it does not).
	feed := func(t *testing.T, cond string, w window, wait time.Duration) (tripped, observed string) {
		a, err := scenarios.ParseAbort(cond)
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var done, acked int64
		trips := make(chan [2]string, 1)
		s := newStopper([]scenarios.Abort{a}, func() (int64, int64) { mu.Lock(); defer mu.Unlock(); return done, acked },
			func(c, obs string, _ time.Time) { trips <- [2]string{c, obs} })
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		zero := time.Now()
		ended := make(chan struct{})
		go func() { s.run(ctx, func() time.Time { return zero }, func() []string { return nil }); close(ended) }()
		for i := range 6 {
			h := loadgen.NewHistogram()
			for range w.ops {
				_ = h.RecordValue(int64(w.putLatency))
			}
			mu.Lock()
			done, acked = done+w.probes[0], acked+w.probes[1]
			mu.Unlock()
			start := zero.Add(time.Duration(i) * time.Second)
			s.add(loadgen.Second{Start: start, End: start.Add(time.Second), Ops: w.ops, Failed: w.failed,
				Latency: map[loadgen.Op]*hdrhistogram.Histogram{loadgen.OpPut: h}})
			time.Sleep(5 * time.Millisecond) // the evaluator reads the counts as each second arrives
		}
		select {
		case tr := <-trips:
			return tr[0], tr[1]
		case <-time.After(wait):
			cancel()
			<-ended
			return "", ""
		}
	}
	for _, c := range cases {
		t.Run(c.cond, func(t *testing.T) {
			if got, obs := feed(t, c.cond, c.bad, 5*time.Second); got != c.cond {
				t.Errorf("a window that breaks it did not trip it (tripped %q, observed %q)", got, obs)
			} else {
				t.Logf("tripped: %s", obs)
			}
			if got, obs := feed(t, c.cond, healthy, 200*time.Millisecond); got != "" {
				t.Errorf("a healthy window tripped it: observed %s", obs)
			}
		})
	}
	for _, bad := range []string{"availability: count < 10 over 5s", "leader_changes: count > 2 over 10s"} {
		if _, err := scenarios.ParseAbort(bad); err == nil || !strings.Contains(err.Error(), "valid") {
			t.Errorf("%q: err %v, want it refused with what is valid", bad, err)
		}
	}
}

// TestStopWindowIsBounded: a 10-minute window is held in at most 60 buckets (of 10s), not 600
// seconds of histograms per op (an hour's in minutes alike), and still counts every op of it; seconds queued while the
// evaluator is behind are all evaluated, none dropped; only the ops a condition names are copied.
func TestStopWindowIsBounded(t *testing.T) {
	a, err := scenarios.ParseAbort("latency.put: p(99) > 10s over 10m")
	if err != nil {
		t.Fatal(err)
	}
	var tripped []string
	s := newStopper([]scenarios.Abort{a}, nil, func(c, obs string, _ time.Time) { tripped = append(tripped, obs) })
	if ops := s.ops(); len(ops) != 1 || ops[0] != loadgen.OpPut {
		t.Errorf("ops copied for the conditions: %v, want put alone", ops)
	}
	zero := time.Now()
	for i := range 1200 {
		h := loadgen.NewHistogram()
		_ = h.RecordValues(int64(5*time.Millisecond), 10)
		start := zero.Add(time.Duration(i) * time.Second)
		s.push(loadgen.Second{Start: start, End: start.Add(time.Second), Ops: 10, Latency: map[loadgen.Op]*hdrhistogram.Histogram{loadgen.OpPut: h}})
	}
	if n := len(s.buckets); n > windowBuckets+2 {
		t.Errorf("%d buckets held for a 10m window after 20m of seconds, want at most %d", n, windowBuckets+2)
	}
	v, text, ok := s.eval(a, zero.Add(1200*time.Second))
	if !ok || math.Abs(v-float64(5*time.Millisecond)) > 0.001*float64(5*time.Millisecond) {
		t.Errorf("p99 over the window: %v %q %v", v, text, ok)
	}
	c, _ := scenarios.ParseAbort("latency.put: count < 1 over 10m")
	if v, _, _ := s.eval(c, zero.Add(1200*time.Second)); v < 6000 || v > 6000+10*11 {
		t.Errorf("ops counted over the last 10 minutes: %v, want 6,000 (within a bucket)", v)
	}

	// Behind: 300 seconds queued before the evaluator runs; the last one trips, so none was dropped.
	b, _ := scenarios.ParseAbort("errors: count > 299 over 10m")
	trips := make(chan string, 1)
	s2 := newStopper([]scenarios.Abort{b}, nil, func(_, obs string, _ time.Time) { trips <- obs })
	for i := range 300 {
		start := zero.Add(time.Duration(i) * time.Second)
		s2.add(loadgen.Second{Start: start, End: start.Add(time.Second), Ops: 1, Failed: 1})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s2.run(ctx, func() time.Time { return zero }, func() []string { return nil })
	select {
	case obs := <-trips:
		t.Logf("tripped after the backlog: %s", obs)
	case <-time.After(5 * time.Second):
		t.Fatal("300 queued seconds with one failure each did not reach count > 299: some were dropped")
	}
}

// BenchmarkStopWindowMemory: an "over 1h" condition fed 2 and 20 hours of seconds (a put histogram
// each) holds the same memory: 60 buckets of a minute and an hour of probe marks, whatever the run's
// length. Reports the live heap after the feed (after a collection) and the buckets held.
func BenchmarkStopWindowMemory(b *testing.B) {
	for _, hours := range []int{2, 20} {
		b.Run(fmt.Sprintf("%dh", hours), func(b *testing.B) {
			a, err := scenarios.ParseAbort("latency.put: p(99) > 10s over 1h")
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; i < b.N; i++ {
				var ms0, ms1 runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&ms0)
				s := newStopper([]scenarios.Abort{a}, nil, func(string, string, time.Time) {})
				zero := time.Unix(0, 0)
				for sec := range hours * 3600 {
					h := loadgen.NewHistogram()
					_ = h.RecordValues(int64(5*time.Millisecond), 1000)
					start := zero.Add(time.Duration(sec) * time.Second)
					s.push(loadgen.Second{Start: start, End: start.Add(time.Second), Ops: 1000,
						Latency: map[loadgen.Op]*hdrhistogram.Histogram{loadgen.OpPut: h}})
					s.mark(probeMark{at: start.Add(time.Second)})
				}
				runtime.GC()
				runtime.ReadMemStats(&ms1)
				b.ReportMetric(float64(int64(ms1.HeapAlloc)-int64(ms0.HeapAlloc))/(1<<20), "live-MB")
				b.ReportMetric(float64(len(s.buckets)), "buckets")
				runtime.KeepAlive(s)
			}
		})
	}
}
