package harness

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// stopper evaluates the scenario's stop conditions (abort:) over a sliding window of the recorder's
// one-second intervals, and the members' alarms as the watcher sees them. The first condition that
// holds trips it, once.
type stopper struct {
	conds  []scenarios.Abort
	secs   chan loadgen.Second
	window []loadgen.Second
	// probes are the prober's settled counts read at each interval's end (availability).
	probes  []probeMark
	settled func() (done, acked int64)
	maxWin  time.Duration
	trip    func(cond, observed string, at time.Time)
}

// probeMark is the prober's running count of returned and acknowledged probes at a moment.
type probeMark struct {
	at          time.Time
	done, acked int64
}

// newStopper evaluates conds; settled reads the prober's running counts (nil: no prober, and no
// availability condition can hold).
func newStopper(conds []scenarios.Abort, settled func() (done, acked int64), trip func(cond, observed string, at time.Time)) *stopper {
	s := &stopper{conds: conds, secs: make(chan loadgen.Second, 64), trip: trip, settled: settled}
	for _, c := range conds {
		s.maxWin = max(s.maxWin, c.Window.D())
	}
	return s
}

// add takes one closed interval (called under the recorder's lock: it only queues it).
func (s *stopper) add(sec loadgen.Second) {
	select {
	case s.secs <- sec:
	default: // the evaluator is behind by a minute: drop rather than stall the recorder
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
		case sec := <-s.secs:
			f := from()
			if f.IsZero() || sec.Start.Before(f.Add(-50*time.Millisecond)) {
				continue
			}
			s.window = append(s.window, sec)
			for len(s.window) > 0 && sec.End.Sub(s.window[0].Start) > s.maxWin+100*time.Millisecond {
				s.window = s.window[1:]
			}
			if s.settled != nil {
				done, acked := s.settled()
				s.probes = append(s.probes, probeMark{sec.End, done, acked})
				// One mark older than the longest window stays: the base of its differences.
				for len(s.probes) > 1 && sec.End.Sub(s.probes[1].at) >= s.maxWin {
					s.probes = s.probes[1:]
				}
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

// eval computes a condition's value over the intervals of its window ending at end; ok is false
// when the window holds nothing to judge (no op completed).
func (s *stopper) eval(c scenarios.Abort, end time.Time) (v float64, text string, ok bool) {
	var ops, failed int64
	var secs float64
	minRate, maxRate := math.Inf(1), 0.0
	var h *hdrhistogram.Histogram
	op := strings.TrimPrefix(c.Cond.Metric, "latency.")
	for _, sec := range s.window {
		if end.Sub(sec.Start) > c.Window.D()+100*time.Millisecond {
			continue
		}
		ops += sec.Ops
		failed += sec.Failed
		d := sec.End.Sub(sec.Start).Seconds()
		secs += d
		if ok := sec.Ops - sec.Failed; d > 0 { // throughput: acknowledged ops
			minRate, maxRate = math.Min(minRate, float64(ok)/d), math.Max(maxRate, float64(ok)/d)
		}
		for o, lh := range sec.Latency {
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
		return v, fmt.Sprintf("%.3f (%d of %d probes acknowledged over %.0fs)", v, acked, done, last.at.Sub(base.at).Seconds()), true
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
