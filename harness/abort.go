package harness

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// stopper evaluates the scenario's stop conditions (abort:) over a sliding window of the recorder's
// one-second intervals, and the members' alarms as the watcher sees them. The first condition that
// holds trips it, once. Its memory does not grow with a window's length: seconds are merged into
// at most windowBuckets buckets of the longest window (a bucket of a minute for "over 1h"), and only
// the histograms of the ops a condition names are kept.
type stopper struct {
	conds []scenarios.Abort
	// pending are the intervals the recorder closed and the evaluator has not taken yet: never
	// dropped, however far behind it is (add only appends, under mu).
	mu      sync.Mutex
	pending []loadgen.Second
	wake    chan struct{}
	buckets []bucket
	grain   time.Duration // a bucket's span
	// probes are the prober's settled counts read at each interval's end (availability).
	probes  []probeMark
	settled func() (done, acked int64)
	maxWin  time.Duration
	trip    func(cond, observed string, at time.Time)
}

// windowBuckets is how many buckets the longest window is held in.
const windowBuckets = 60

// bucket is one or more merged intervals of the window.
type bucket struct {
	start, end       time.Time
	ops, failed      int64
	minRate, maxRate float64 // acknowledged ops/s of its slowest and busiest second
	secs             float64
	latency          map[loadgen.Op]*hdrhistogram.Histogram
}

// probeMark is the prober's running count of returned and acknowledged probes at a moment.
type probeMark struct {
	at          time.Time
	done, acked int64
}

// newStopper evaluates conds; settled reads the prober's running counts (nil: no prober, and no
// availability condition can hold).
func newStopper(conds []scenarios.Abort, settled func() (done, acked int64), trip func(cond, observed string, at time.Time)) *stopper {
	s := &stopper{conds: conds, wake: make(chan struct{}, 1), trip: trip, settled: settled}
	for _, c := range conds {
		s.maxWin = max(s.maxWin, c.Window.D())
	}
	s.grain = max(time.Second, (s.maxWin / windowBuckets).Truncate(time.Second))
	return s
}

// ops are the ops whose latency a condition names (latency.all: the KV ops).
func (s *stopper) ops() []loadgen.Op {
	var out []loadgen.Op
	seen := map[loadgen.Op]bool{}
	for _, c := range s.conds {
		op, ok := strings.CutPrefix(c.Cond.Metric, "latency.")
		if !ok {
			continue
		}
		for o := range loadgen.NumOps {
			if (o.String() == op || (op == "all" && o <= loadgen.OpTxn)) && !seen[o] {
				seen[o] = true
				out = append(out, o)
			}
		}
	}
	return out
}

// add takes one closed interval (called under the recorder's lock: it only queues it).
func (s *stopper) add(sec loadgen.Second) {
	s.mu.Lock()
	s.pending = append(s.pending, sec)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// take is the intervals queued so far.
func (s *stopper) take() []loadgen.Second {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.pending
	s.pending = nil
	return out
}

// push merges one interval into the window: into the last bucket while it spans less than a grain,
// else into a new one; buckets older than the longest window leave.
func (s *stopper) push(sec loadgen.Second) {
	d := sec.End.Sub(sec.Start).Seconds()
	rate := 0.0
	if d > 0 {
		rate = float64(sec.Ops-sec.Failed) / d
	}
	n := len(s.buckets)
	if n == 0 || sec.End.Sub(s.buckets[n-1].start) > s.grain+100*time.Millisecond {
		s.buckets = append(s.buckets, bucket{start: sec.Start, minRate: math.Inf(1), latency: map[loadgen.Op]*hdrhistogram.Histogram{}})
		n++
	}
	b := &s.buckets[n-1]
	b.end = sec.End
	b.ops, b.failed, b.secs = b.ops+sec.Ops, b.failed+sec.Failed, b.secs+d
	if d > 0 {
		b.minRate, b.maxRate = math.Min(b.minRate, rate), math.Max(b.maxRate, rate)
	}
	for o, h := range sec.Latency {
		if have := b.latency[o]; have != nil {
			have.Merge(h)
		} else {
			b.latency[o] = h
		}
	}
	for len(s.buckets) > 0 && sec.End.Sub(s.buckets[0].start) > s.maxWin+s.grain+100*time.Millisecond {
		s.buckets[0] = bucket{} // its histograms go now, not when append next moves the array
		s.buckets = s.buckets[1:]
	}
}

// mark keeps the prober's counts at an interval's end, and drops those the longest window no
// longer needs (one mark older than it stays: the base of its differences).
func (s *stopper) mark(pm probeMark) {
	s.probes = append(s.probes, pm)
	for len(s.probes) > 1 && pm.at.Sub(s.probes[1].at) >= s.maxWin {
		s.probes = s.probes[1:]
	}
}

// run evaluates each interval as it comes, and polls alarms (alarms returns the alarms the members
// report now) every 250ms, until ctx ends or a condition trips. from is the warm-up's end: the
// window conditions count only what came after it.
func (s *stopper) run(ctx context.Context, from func() time.Time, alarms func() []string) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
			for _, sec := range s.take() {
				f := from()
				if f.IsZero() || sec.Start.Before(f.Add(-50*time.Millisecond)) {
					continue
				}
				s.push(sec)
				if s.settled != nil {
					done, acked := s.settled()
					s.mark(probeMark{sec.End, done, acked})
				}
				for _, c := range s.conds {
					if c.Alarm != "" {
						continue
					}
					if v, text, ok := s.eval(c, sec.End); ok && c.Cond.Holds(v) {
						s.trip(c.Expr, text, sec.End)
						return
					}
				}
			}
		case now := <-tick.C:
			var have []string
			for _, c := range s.conds {
				if c.Alarm == "" {
					continue
				}
				if have == nil {
					have = append(alarms(), "")
				}
				for _, a := range have {
					if a != "" && (c.Alarm == "ANY" || strings.EqualFold(a, c.Alarm)) {
						s.trip(c.Expr, "alarm "+a, now)
						return
					}
				}
			}
		}
	}
}

// eval computes a condition's value over the buckets of its window ending at end; ok is false
// when the window holds nothing to judge (no op completed).
func (s *stopper) eval(c scenarios.Abort, end time.Time) (v float64, text string, ok bool) {
	var ops, failed int64
	var secs float64
	minRate, maxRate := math.Inf(1), 0.0
	var h *hdrhistogram.Histogram
	op := strings.TrimPrefix(c.Cond.Metric, "latency.")
	for _, b := range s.buckets {
		if end.Sub(b.start) > c.Window.D()+100*time.Millisecond {
			continue
		}
		ops += b.ops
		failed += b.failed
		secs += b.secs
		if b.secs > 0 {
			minRate, maxRate = math.Min(minRate, b.minRate), math.Max(maxRate, b.maxRate)
		}
		for o, lh := range b.latency {
			if o.String() == op || (op == "all" && o <= loadgen.OpTxn) {
				if h == nil {
					h = loadgen.NewHistogram()
				}
				h.Merge(lh)
			}
		}
	}
	switch c.Cond.Metric {
	case "errors":
		if ops == 0 {
			return 0, "", false
		}
		v = float64(failed) / float64(ops)
		if c.Cond.Agg == "count" {
			v = float64(failed)
		}
		return v, fmt.Sprintf("%.3f (%d of %d ops failed over %.0fs)", float64(failed)/float64(ops), failed, ops, secs), true
	case "throughput":
		if secs == 0 {
			return 0, "", false
		}
		switch c.Cond.Agg {
		case "min":
			return minRate, fmt.Sprintf("%.1f ops/s in the slowest second of %.0fs", minRate, secs), true
		case "max":
			return maxRate, fmt.Sprintf("%.1f ops/s in the busiest second of %.0fs", maxRate, secs), true
		}
		tp := float64(ops-failed) / secs
		return tp, fmt.Sprintf("%.1f acknowledged ops/s over %.0fs", tp, secs), true
	case "availability":
		// The prober's probes that returned within the window: the share acknowledged.
		var base, last *probeMark
		for i := range s.probes {
			pm := &s.probes[i]
			if end.Sub(pm.at) <= c.Window.D()+100*time.Millisecond && base == nil && i > 0 {
				base = &s.probes[i-1]
			}
			last = pm
		}
		if base == nil || last == nil || last.done == base.done {
			return 0, "", false
		}
		done, acked := last.done-base.done, last.acked-base.acked
		v = float64(acked) / float64(done)
		return v, fmt.Sprintf("%.3f (probes standing for %.1fs of %.1fs acknowledged, over %.0fs)", v,
			time.Duration(acked).Seconds(), time.Duration(done).Seconds(), last.at.Sub(base.at).Seconds()), true
	}
	if h == nil || h.TotalCount() == 0 {
		return 0, "", false
	}
	switch c.Cond.Agg {
	case "p":
		v = float64(h.ValueAtQuantile(c.Cond.Percentile))
	case "avg":
		v = h.Mean()
	case "med":
		v = float64(h.ValueAtQuantile(50))
	case "min":
		v = float64(h.Min())
	case "max":
		v = float64(h.Max())
	case "count":
		return float64(h.TotalCount()), fmt.Sprintf("%d ops over %.0fs", h.TotalCount(), secs), true
	}
	return v, fmt.Sprintf("%s over %.0fs", time.Duration(v).Round(time.Microsecond), secs), true
}

// abort stops the run for a tripped condition: it cancels the schedule and the load, heals every
// fault at once, and records which condition, when, and how soon the faults were healed.
func (r *run) abort(cond, observed string, at time.Time) {
	r.mu.Lock()
	if r.aborted != nil {
		r.mu.Unlock()
		return
	}
	a := &reports.Abort{Condition: cond, AtS: r.sinceStart(at), Observed: observed}
	r.aborted = a
	r.mu.Unlock()
	tripped := time.Now()
	r.events.Log(tripped, "abort", "condition", cond, "observed", observed)
	r.log.Warn("stop condition tripped: healing every fault and stopping the load", "condition", cond, "observed", observed)
	r.abortRun()
	hctx, cancel := context.WithTimeout(context.WithoutCancel(r.runCtx), 30*time.Second)
	defer cancel()
	n, err := r.healActive(hctx, "abort")
	if err != nil {
		r.mu.Lock()
		r.runErrs = append(r.runErrs, fmt.Errorf("healing after the stop condition %q: %w", cond, err))
		r.mu.Unlock()
	}
	if n > 0 {
		ms := reports.Ms(time.Since(tripped))
		r.mu.Lock()
		a.HealedWithinMs = ms
		r.mu.Unlock()
	}
}
