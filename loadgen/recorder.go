package loadgen

import (
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/etcd-chaos/etcd-chaos/reports"
)

// Op is an operation type of the KV workload.
type Op uint8

// The operation types, in the order of scenarios.MetricOps (the KV ops first, then each workload
// kind's Ops in the registry's order), whose names they take when the registry is initialised: a
// list of another length stops the program at its start, and TestWorkloadRegistry checks each.
const (
	OpPut Op = iota
	OpGet
	OpDelete
	OpTxn
	OpLeaseGrant
	OpLeaseKeepAlive
	OpLeaseRevoke
	OpLockAcquire
	OpCampaign
	OpWatch
	NumOps
)

// opNames are the ops' names, set when the workload kinds are registered (workload.go's init).
var opNames [NumOps]string

func (o Op) String() string { return opNames[o] }

// OpByName maps a scenario op name to its Op.
func OpByName(name string) (Op, error) {
	for i, n := range opNames {
		if n == name {
			return Op(i), nil
		}
	}
	return 0, fmt.Errorf("unknown op %q", name)
}

// Histogram range: 1 µs to 60 s in nanoseconds, 3 significant digits.
const (
	histMin    = int64(time.Microsecond)
	histMax    = int64(60 * time.Second)
	histDigits = 3
)

// NewHistogram returns a latency histogram in nanoseconds with the harness's range.
func NewHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

func clamp(ns int64) int64 {
	if ns < histMin {
		return histMin
	}
	if ns > histMax {
		return histMax
	}
	return ns
}

type phase struct {
	name       string
	start, end time.Time
	warmup     bool
	h          [NumOps]*hdrhistogram.Histogram // nil until an op due in the phase succeeds
	failed     [NumOps]int64                   // ops due in the phase that failed (not in h)
	// settled is the phase's summary once it was settled (see SettleAfter): h is freed then.
	settled *reports.Phase
}

// kvOp tells the KV load's ops (put, get, delete, txn) from the other workloads': the run's totals
// (ops, errors, throughput, latency.all) are the KV load's; each other op keeps its own counters.
func kvOp(op Op) bool { return op <= OpTxn }

type opCounters struct {
	ops, failed, attempts, retried, maxAttempts int64
	retryWait                                   time.Duration
}

// Recorder keeps every latency in HDR histograms: per op for the whole run (warm-up excluded), per op
// and phase, and per op and second (streamed to an HdrHistogram interval log). An op belongs to the
// phase in which it was due (its latency counts from then), not the one in which it completed, so a
// stall's ops are in the phase that caused it. Failed ops are kept apart (latency.failed): they are
// left out of the percentiles, and every table says how many. One mutex guards it: Record is a
// handful of array increments, so the lock is held for well under a microsecond. Record allocates
// nothing.
type Recorder struct {
	mu       sync.Mutex
	zero     time.Time
	phases   []*phase
	cur      *phase
	total    [NumOps]*hdrhistogram.Histogram
	failedH  [NumOps]*hdrhistogram.Histogram // latency of the ops that failed, warm-up excluded
	interval [NumOps]*hdrhistogram.Histogram
	counters [NumOps]opCounters
	// warmEnd is when the warm-up ended (zero while it lasts): throughput counts whole seconds after it.
	warmEnd time.Time
	errs    [numClasses]int64 // failed ops by final error class
	attErrs [numClasses]int64 // failed attempts by class
	codes   map[string]int64  // failed attempts by gRPC code or etcd error
	// per second
	intervalStart  time.Time
	intervalOps    int64 // acknowledged ops after the warm-up, for throughput
	intervalAll    int64 // completed ops, warm-up too, for the timeline
	intervalFailed int64
	perSecond      []float64
	lastRate       float64 // the last interval's KV ops/s, for the progress line
	timeline       []reports.Second
	hlog           *hdrhistogram.HistogramLogWriter
	hlogErr        error
	sink           func(Second) // each closed interval, for stop conditions
	sinkOps        [NumOps]bool // the ops whose histograms sink gets
	cut            int64        // KV ops the run's end cut (after the warm-up)
	// settleAfter, when set, bounds the phases kept whole: a phase that ended longer ago than it is
	// summed up, its histograms written to histLog (when streaming) and freed, so a soak of hundreds
	// of faults keeps a few phases' histograms (each op's is about 200 KB), not all of them.
	settleAfter time.Duration
	histLog     *hdrhistogram.HistogramLogWriter
	histErr     error
	// lateOps counts ops due in a phase already settled (they took longer than settleAfter): they
	// count in the totals, not in their phase.
	lateOps int64
}

// Second is one closed one-second interval: the KV ops that completed in it and the latency of
// every op that succeeded in it.
type Second struct {
	Start, End  time.Time
	Ops, Failed int64 // KV ops, warm-up included
	Latency     map[Op]*hdrhistogram.Histogram
}

// OnInterval has f called with each interval Flush closes (under the recorder's lock: f must be
// quick), with a copy of the latency histograms of the ops in ops alone (a copy is about 140 KB).
func (r *Recorder) OnInterval(f func(Second), ops []Op) {
	r.mu.Lock()
	r.sink = f
	r.sinkOps = [NumOps]bool{}
	for _, o := range ops {
		r.sinkOps[o] = true
	}
	r.mu.Unlock()
}

// Totals is a copy of what the recorder holds so far (warm-up excluded), for live metrics.
type Totals struct {
	Ops, Failed [NumOps]int64
	Errors      map[string]int64 // failed ops by final error class
	Latency     [NumOps]*hdrhistogram.Histogram
}

// Totals copies the counters and the whole-run histograms.
func (r *Recorder) Totals() Totals {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := Totals{Errors: map[string]int64{}}
	for i := range r.counters {
		t.Ops[i], t.Failed[i] = r.counters[i].ops, r.counters[i].failed
		if r.total[i].TotalCount() > 0 {
			t.Latency[i] = hdrhistogram.Import(r.total[i].Export())
		}
	}
	for c, n := range r.errs {
		if n > 0 {
			t.Errors[ErrClass(c).String()] = n
		}
	}
	return t
}

// NewRecorder starts recording in phase "warmup" (not counted in totals). hlog may be nil.
func NewRecorder(zero time.Time, hlog io.Writer) *Recorder {
	r := &Recorder{zero: zero, intervalStart: zero}
	for i := range r.total {
		r.total[i] = NewHistogram()
		r.failedH[i] = NewHistogram()
		r.interval[i] = NewHistogram()
	}
	r.cur = r.newPhase("warmup", zero, true)
	if hlog != nil {
		w := hdrhistogram.NewHistogramLogWriter(hlog)
		w.SetBaseTime(zero.UnixMilli())
		r.hlogErr = firstErr(
			w.OutputComment("etcd-chaos latency log: values in nanoseconds, one interval histogram per op (Tag) and second"),
			w.OutputLogFormatVersion(),
			w.OutputStartTime(zero.UnixMilli()),
			w.OutputBaseTime(zero.UnixMilli()),
			w.OutputLegend())
		r.hlog = w
	}
	return r
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func (r *Recorder) newPhase(name string, at time.Time, warmup bool) *phase {
	p := &phase{name: name, start: at, warmup: warmup}
	r.phases = append(r.phases, p)
	return p
}

// SettleAfter makes the recorder sum up and free each phase d after it ended (d must exceed the
// longest an op can take, with its retries: a later op of a settled phase counts in the totals only).
func (r *Recorder) SettleAfter(d time.Duration) {
	r.mu.Lock()
	r.settleAfter = d
	r.mu.Unlock()
}

// StreamHistograms writes the histogram log (histograms.hlog) to w as the run goes: each settled
// phase's histograms now, the totals and the phases still open at CloseHistograms.
func (r *Recorder) StreamHistograms(w io.Writer) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	lw := hdrhistogram.NewHistogramLogWriter(w)
	lw.SetBaseTime(r.zero.UnixMilli())
	r.histErr = firstErr(lw.OutputComment("etcd-chaos histograms: total.<op> for the run without warm-up, p<i>.<op> per phase; values in nanoseconds"),
		lw.OutputLogFormatVersion(), lw.OutputBaseTime(r.zero.UnixMilli()), lw.OutputLegend())
	r.histLog = lw
	return r.histErr
}

// settle sums up the phases that ended more than settleAfter before now (the lock is held).
func (r *Recorder) settle(now time.Time) {
	if r.settleAfter <= 0 {
		return
	}
	for i, p := range r.phases {
		if p.settled != nil || p == r.cur || p.end.IsZero() || now.Sub(p.end) < r.settleAfter {
			continue
		}
		ph := r.phaseSummary(p)
		if r.histLog != nil && r.histErr == nil {
			r.histErr = r.writePhase(r.histLog, i, p, p.end)
		}
		p.settled = &ph
		p.h = [NumOps]*hdrhistogram.Histogram{}
	}
}

// writePhase writes one phase's histograms, tagged p<i>.<op>, over its window.
func (r *Recorder) writePhase(lw *hdrhistogram.HistogramLogWriter, i int, p *phase, end time.Time) error {
	for op := Op(0); op < NumOps; op++ {
		if err := outHist(lw, p.h[op], fmt.Sprintf("p%d.%s", i, op), p.start, end); err != nil {
			return err
		}
	}
	return nil
}

func outHist(lw *hdrhistogram.HistogramLogWriter, h *hdrhistogram.Histogram, tag string, start, end time.Time) error {
	if h == nil || h.TotalCount() == 0 {
		return nil
	}
	c := hdrhistogram.Import(h.Export())
	c.SetTag(tag)
	c.SetStartTimeMs(start.UnixMilli())
	c.SetEndTimeMs(end.UnixMilli())
	return lw.OutputIntervalHistogram(c)
}

// phaseSummary is a phase's latency per op and for the KV ops together.
func (r *Recorder) phaseSummary(p *phase) reports.Phase {
	ph := reports.Phase{Name: p.name, StartS: p.start.Sub(r.zero).Seconds(), EndS: p.end.Sub(r.zero).Seconds(), Latency: map[string]reports.LatencyStats{}}
	pall := NewHistogram()
	var pfailed int64
	for i := Op(0); i < NumOps; i++ {
		n := int64(0)
		if p.h[i] != nil {
			n = p.h[i].TotalCount()
		}
		if n > 0 || p.failed[i] > 0 {
			var st reports.LatencyStats
			if n > 0 {
				st = reports.StatsOf(reports.HDR{H: p.h[i]})
			}
			st.Failed = p.failed[i]
			ph.Latency[i.String()] = st
			if kvOp(i) {
				if n > 0 {
					pall.Merge(p.h[i])
				}
				pfailed += p.failed[i]
			}
		}
	}
	st := reports.StatsOf(reports.HDR{H: pall})
	st.Failed = pfailed
	ph.Latency["all"] = st
	return ph
}

// SetPhase ends the current phase and starts a new one at time at.
func (r *Recorder) SetPhase(name string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur.warmup && r.warmEnd.IsZero() {
		r.warmEnd = at
	}
	r.cur.end = at
	r.cur = r.newPhase(name, at, false)
	r.settle(at)
}

// phaseAt is the phase in which time t falls (the latest that started at or before t).
func (r *Recorder) phaseAt(t time.Time) *phase {
	for i := len(r.phases) - 1; i > 0; i-- {
		if !t.Before(r.phases[i].start) {
			return r.phases[i]
		}
	}
	return r.phases[0]
}

// Record records one completed operation due at due (its latency counts from then): the attempts
// it took, the time it spent backing off, and its final error class (ClassNone on success). It
// belongs to the phase in which it was due; one due in the warm-up is left out of the totals.
func (r *Recorder) Record(op Op, due time.Time, latency time.Duration, attempts int, backoff time.Duration, class ErrClass) {
	v := clamp(int64(latency))
	kv := kvOp(op)
	r.mu.Lock()
	p := r.phaseAt(due)
	if kv {
		r.intervalAll++
		if class != ClassNone {
			r.intervalFailed++
		}
	}
	if !p.warmup {
		c := &r.counters[op]
		c.ops++
		c.attempts += int64(attempts)
		if attempts > 1 {
			c.retried++
			c.retryWait += backoff
		}
		if int64(attempts) > c.maxAttempts {
			c.maxAttempts = int64(attempts)
		}
		if kv && class == ClassNone {
			r.intervalOps++ // throughput is acknowledged ops: a failed op did no work
		}
		if class != ClassNone {
			c.failed++
			r.errs[class]++
			_ = r.failedH[op].RecordValue(v)
		} else {
			_ = r.total[op].RecordValue(v)
		}
	}
	switch {
	case p.settled != nil:
		r.lateOps++
		if class == ClassNone {
			_ = r.interval[op].RecordValue(v)
		}
	case class == ClassNone:
		if p.h[op] == nil {
			p.h[op] = NewHistogram() // once per phase and op
		}
		_ = p.h[op].RecordValue(v)
		_ = r.interval[op].RecordValue(v)
	default:
		p.failed[op]++
	}
	r.mu.Unlock()
}

// RecordCut counts an op due at due that the run's end cut while it was in flight (a KV op after
// the warm-up): it is in no latency or error figure, and the load's stats say how many there were.
func (r *Recorder) RecordCut(op Op, due time.Time) {
	r.mu.Lock()
	if kvOp(op) && !r.phaseAt(due).warmup {
		r.cut++
	}
	r.mu.Unlock()
}

// RecordAttemptError counts one failed attempt (retried or not) of an op due at due by class, and
// by its gRPC code or etcd error. The classes count the KV load's attempts; the codes every op's.
func (r *Recorder) RecordAttemptError(op Op, due time.Time, class ErrClass, err error) {
	code := ErrorCode(err)
	r.mu.Lock()
	if !r.phaseAt(due).warmup {
		if kvOp(op) {
			r.attErrs[class]++
		}
		if r.codes == nil {
			r.codes = map[string]int64{}
		}
		r.codes[code]++
	}
	r.mu.Unlock()
}

// Flush closes the current one-second interval at now: it writes each op's interval histogram to
// the log and notes the interval's throughput (KV ops). Only whole seconds that began after the
// warm-up count towards throughput's min, avg and max; the timeline keeps every interval. The
// harness calls it once a second and at the end.
func (r *Recorder) Flush(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	secs := now.Sub(r.intervalStart).Seconds()
	if secs <= 0 {
		return
	}
	// The ticker and the warm-up timer fire at about the same instant: allow them 50ms.
	afterWarmup := !r.warmEnd.IsZero() && r.intervalStart.After(r.warmEnd.Add(-50*time.Millisecond))
	if afterWarmup && secs >= 0.95 {
		r.perSecond = append(r.perSecond, float64(r.intervalOps)/secs)
	}
	r.lastRate = float64(r.intervalAll) / secs
	r.timeline = append(r.timeline, reports.Second{T: round3(r.intervalStart.Sub(r.zero).Seconds()), Ops: round3(float64(r.intervalAll-r.intervalFailed) / secs),
		Failed: r.intervalFailed, Warmup: !afterWarmup})
	if r.sink != nil {
		iv := Second{Start: r.intervalStart, End: now, Ops: r.intervalAll, Failed: r.intervalFailed, Latency: map[Op]*hdrhistogram.Histogram{}}
		for i, h := range r.interval {
			if r.sinkOps[i] && h.TotalCount() > 0 {
				iv.Latency[Op(i)] = hdrhistogram.Import(h.Export())
			}
		}
		r.sink(iv)
	}
	r.intervalOps, r.intervalAll, r.intervalFailed = 0, 0, 0
	for i, h := range r.interval {
		if r.hlog != nil && h.TotalCount() > 0 && r.hlogErr == nil {
			h.SetTag(opNames[i])
			h.SetStartTimeMs(r.intervalStart.UnixMilli())
			h.SetEndTimeMs(now.UnixMilli())
			r.hlogErr = r.hlog.OutputIntervalHistogram(h)
		}
		h.Reset()
	}
	r.intervalStart = now
	r.settle(now)
}

// OpsPerSecondLast returns the throughput of the last flushed interval, for the progress line.
func (r *Recorder) OpsPerSecondLast() (float64, int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var failed int64
	for op, c := range r.counters {
		if kvOp(Op(op)) {
			failed += c.failed
		}
	}
	return r.lastRate, failed
}

// Summary is what the recorder measured, ready for the result and thresholds. Ops, Failed, Errors,
// PerSecond, Timeline and latency.all are the KV load's (put, get, delete, txn); every op, KV or not,
// has its own latency and counters (Retries[op]).
type Summary struct {
	Latency   map[string]reports.LatencyStats
	Dists     map[string]reports.Dist // latency.<op>, latency.all and latency.failed
	Phases    []reports.Phase
	Ops       int64
	Failed    int64
	Errors    map[string]int64
	Attempts  map[string]int64
	Codes     map[string]int64
	Retries   map[string]reports.RetryStats
	PerSecond []float64
	Timeline  []reports.Second
	// AchievedRate is the KV ops due after the warm-up that completed, per second of load after it.
	AchievedRate float64
	HlogErr      error
	// LateOps were due in a phase already settled: they are in the totals, not in their phase.
	LateOps int64
	// Cut are the KV ops in flight when the load ended (or a stop condition stopped it): sent,
	// neither acknowledged nor failed, so in no latency or error figure.
	Cut int64
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// WriteHistograms writes the whole-run histogram of each op (tag total.<op>, warm-up excluded) and
// of each op in each phase (tag p<index>.<op>, the phase's own window) as an HdrHistogram log: the
// report draws percentile spectra from it. A recorder that streams (StreamHistograms) writes the
// rest of its log there and ignores w.
func (r *Recorder) WriteHistograms(w io.Writer) error {
	r.mu.Lock()
	streaming := r.histLog != nil
	r.mu.Unlock()
	if !streaming {
		if err := r.StreamHistograms(w); err != nil {
			return err
		}
	}
	return r.CloseHistograms()
}

// CloseHistograms writes, to the log StreamHistograms began, the totals and every phase not yet
// settled (settled phases were written when they settled).
func (r *Recorder) CloseHistograms() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.histLog == nil {
		return fmt.Errorf("no histogram log: StreamHistograms was not called")
	}
	if r.histErr != nil {
		return r.histErr
	}
	end := r.cur.end
	if end.IsZero() {
		end = time.Now()
	}
	for i := Op(0); i < NumOps; i++ {
		if err := outHist(r.histLog, r.total[i], "total."+i.String(), r.zero, end); err != nil {
			return err
		}
	}
	for pi, p := range r.phases {
		if p.settled != nil {
			continue
		}
		pend := p.end
		if pend.IsZero() {
			pend = end
		}
		if err := r.writePhase(r.histLog, pi, p, pend); err != nil {
			return err
		}
	}
	return nil
}

// Summarize ends the last phase at end and returns the whole record.
func (r *Recorder) Summarize(end time.Time) Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cur.end = end
	s := Summary{Latency: map[string]reports.LatencyStats{}, Dists: map[string]reports.Dist{},
		Errors: map[string]int64{}, Attempts: map[string]int64{}, Retries: map[string]reports.RetryStats{}, HlogErr: r.hlogErr, Cut: r.cut}
	all, failed := NewHistogram(), NewHistogram()
	var allC opCounters
	for i := Op(0); i < NumOps; i++ {
		c := r.counters[i]
		if c.ops == 0 {
			continue
		}
		st := reports.StatsOf(reports.HDR{H: r.total[i]})
		st.Failed = c.failed
		s.Latency[i.String()] = st
		s.Dists["latency."+i.String()] = reports.HDR{H: r.total[i]}
		s.Retries[i.String()] = retryStats(c)
		if !kvOp(i) {
			continue
		}
		all.Merge(r.total[i])
		failed.Merge(r.failedH[i])
		allC.ops += c.ops
		allC.failed += c.failed
		allC.attempts += c.attempts
		allC.retried += c.retried
		allC.retryWait += c.retryWait
		allC.maxAttempts = max(allC.maxAttempts, c.maxAttempts)
	}
	st := reports.StatsOf(reports.HDR{H: all})
	st.Failed = allC.failed
	s.Latency["all"] = st
	s.Dists["latency.all"] = reports.HDR{H: all}
	if failed.TotalCount() > 0 {
		s.Latency["failed"] = reports.StatsOf(reports.HDR{H: failed})
	}
	s.Dists["latency.failed"] = reports.HDR{H: failed}
	s.Retries["all"] = retryStats(allC)
	s.Ops, s.Failed = allC.ops, allC.failed
	if !r.warmEnd.IsZero() && end.After(r.warmEnd) {
		s.AchievedRate = round3(float64(allC.ops-allC.failed) / end.Sub(r.warmEnd).Seconds())
	}
	for cl := ErrClass(1); cl < numClasses; cl++ {
		if r.errs[cl] > 0 {
			s.Errors[cl.String()] = r.errs[cl]
		}
		if r.attErrs[cl] > 0 {
			s.Attempts[cl.String()] = r.attErrs[cl]
		}
	}
	for _, p := range r.phases {
		if p.settled != nil {
			s.Phases = append(s.Phases, *p.settled)
		} else {
			s.Phases = append(s.Phases, r.phaseSummary(p))
		}
	}
	s.LateOps = r.lateOps
	s.Codes = map[string]int64{}
	for k, v := range r.codes {
		s.Codes[k] = v
	}
	s.PerSecond = append([]float64(nil), r.perSecond...)
	s.Timeline = append([]reports.Second(nil), r.timeline...)
	return s
}

func retryStats(c opCounters) reports.RetryStats {
	rs := reports.RetryStats{Ops: c.ops, Attempts: c.attempts, MaxAttempts: c.maxAttempts, RetriedOps: c.retried,
		RetryTimeMs: float64(c.retryWait) / float64(time.Millisecond)}
	if c.ops > 0 {
		rs.PerOp = float64(c.attempts) / float64(c.ops)
	}
	if ok := c.ops - c.failed; ok > 0 {
		rs.PerSuccess = float64(c.attempts) / float64(ok)
	}
	return rs
}
