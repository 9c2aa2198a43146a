package harness

import (
	"context"
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
	feed := func(t *testing.T, cond string, w window) (tripped, observed string) {
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
		case <-time.After(300 * time.Millisecond):
			cancel()
			<-ended
			return "", ""
		}
	}
	for _, c := range cases {
		t.Run(c.cond, func(t *testing.T) {
			if got, obs := feed(t, c.cond, c.bad); got != c.cond {
				t.Errorf("a window that breaks it did not trip it (tripped %q, observed %q)", got, obs)
			} else {
				t.Logf("tripped: %s", obs)
			}
			if got, obs := feed(t, c.cond, healthy); got != "" {
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
