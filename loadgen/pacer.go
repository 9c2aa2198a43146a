package loadgen

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/etcd-chaos/etcd-chaos/reports"
)

// Pacer hands out the send times of an open-loop load: ticket n is due at start + n/rate, whatever
// happened to the earlier ones, so a stall shows as latency counted from the due time instead of
// being hidden (no coordinated omission). With rate 0 it paces nothing: closed loop, each op due
// when it is sent. It counts what a backlog hides: ops sent more than LateAfter past their due time
// (late), the most ops due at once but not yet sent (max backlog), and, at the end, the ops that
// were due but never sent (dropped). Next and Sent allocate nothing.
type Pacer struct {
	start     time.Time
	rate      float64
	interval  time.Duration
	maxOps    int64
	lateAfter time.Duration
	// until is the load's deadline, if it has one: no ticket due after it is owed (Stats).
	until time.Time

	tickets    atomic.Int64
	sent       atomic.Int64
	late       atomic.Int64
	maxBacklog atomic.Int64
}

// NewPacer paces rate ops/s from start (rate 0: closed loop); maxOps > 0 stops after that many
// tickets; an op sent more than lateAfter past its due time counts as late.
func NewPacer(start time.Time, rate float64, maxOps int64, lateAfter time.Duration) *Pacer {
	p := &Pacer{start: start, rate: rate, maxOps: maxOps, lateAfter: lateAfter}
	if rate > 0 {
		p.interval = time.Duration(float64(time.Second) / rate)
	}
	return p
}

// Next takes the next ticket and waits for its due time (open loop); ok is false when ctx ended (or
// its deadline passed, even before its timer fired: no op is sent after the load's end) or the
// pacer ran out of tickets. timer is the caller's, reused so the loop allocates nothing.
func (p *Pacer) Next(ctx context.Context, timer *time.Timer) (due time.Time, ok bool) {
	if p.interval == 0 && p.maxOps == 0 {
		return time.Now(), !runEnded(ctx)
	}
	n := p.tickets.Add(1) - 1
	if p.maxOps > 0 && n >= p.maxOps {
		return time.Time{}, false
	}
	if p.interval == 0 {
		return time.Now(), !runEnded(ctx)
	}
	due = p.start.Add(time.Duration(n) * p.interval)
	if d := time.Until(due); d > 0 {
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return due, false
		case <-timer.C:
		}
	} else {
		// Sent behind schedule: how many tickets were due by now and not yet taken.
		if b := p.dueBy(time.Now()) - n - 1; b > 0 {
			for {
				cur := p.maxBacklog.Load()
				if b <= cur || p.maxBacklog.CompareAndSwap(cur, b) {
					break
				}
			}
		}
	}
	return due, !runEnded(ctx)
}

// Sent counts an op of due time due as sent now.
func (p *Pacer) Sent(due time.Time) {
	p.sent.Add(1)
	if p.interval > 0 && p.lateAfter > 0 && time.Since(due) > p.lateAfter {
		p.late.Add(1)
	}
}

// dueBy is the number of tickets due at or before t.
func (p *Pacer) dueBy(t time.Time) int64 {
	if p.interval == 0 || t.Before(p.start) {
		return 0
	}
	n := int64(t.Sub(p.start)/p.interval) + 1
	if p.maxOps > 0 {
		n = min(n, p.maxOps)
	}
	return n
}

// Until sets the load's deadline: the tickets owed are those due by it, however late the caller
// reads Stats (after the faults' last steps, a moment past it).
func (p *Pacer) Until(t time.Time) { p.until = t }

// Stats says how the pacing went up to end (the load's end, or its deadline if that came first):
// target rate, late, dropped, backlog. The achieved rate is the caller's to fill (it knows which
// ops count).
func (p *Pacer) Stats(end time.Time) reports.LoadStats {
	if !p.until.IsZero() && end.After(p.until) {
		end = p.until
	}
	s := reports.LoadStats{TargetRate: p.rate, Sent: p.sent.Load(), Late: p.late.Load(), MaxBacklog: p.maxBacklog.Load()}
	if p.interval > 0 {
		s.Due = p.dueBy(end)
		s.Dropped = max(s.Due-s.Sent, 0)
		s.LateAfterMs = float64(p.lateAfter) / float64(time.Millisecond)
	}
	return s
}
