package harness

import (
	"context"
	"time"
)

// settleFaults takes the result of every fault whose window has ended (the next fault fired, or its
// heal plus workload.recovery passed) and stops tracking it, so what a run keeps per fault does not
// grow with its length. The last faults are measured at the run's end.
func (r *run) settleFaults() {
	now := time.Now()
	r.mu.Lock()
	frs := append([]*faultRun(nil), r.faults...)
	r.mu.Unlock()
	never := now.Add(24 * time.Hour)
	for k, fr := range frs {
		if fr.result != nil || fr.failover == nil || fr.inj == nil || fr.record.Error != "" || fr.injAt.IsZero() {
			continue
		}
		nextFired := k+1 < len(frs) && !frs[k+1].injAt.IsZero()
		r.mu.Lock()
		healAt := fr.healAt
		r.mu.Unlock()
		if !nextFired && (healAt.IsZero() || now.Before(healAt.Add(r.sc.Workload.Recovery.D()))) {
			continue
		}
		r.mu.Lock()
		we := r.faultWindowEnd(frs, k, never)
		r.mu.Unlock()
		fo := fr.failover.Result(we)
		r.mon.Untrack(fr.failover)
		fr.failover.Release()
		r.mu.Lock() // the live metrics read it
		fr.result, fr.windowEnd = &fo, we
		r.mu.Unlock()
	}
}

// faultWindowEnd is where fault k's window ends: at the next fault, its heal plus
// workload.recovery, or the load's end, whichever comes first.
func (r *run) faultWindowEnd(frs []*faultRun, k int, end time.Time) time.Time {
	fr, windowEnd := frs[k], end
	if k+1 < len(frs) && !frs[k+1].injAt.IsZero() && frs[k+1].injAt.Before(windowEnd) {
		windowEnd = frs[k+1].injAt
	}
	if !fr.healAt.IsZero() {
		if w := fr.healAt.Add(r.sc.Workload.Recovery.D()); w.Before(windowEnd) {
			windowEnd = w
		}
	}
	return windowEnd
}

// waitMeasurements waits, at most d, for failovers and recoveries still being measured.
func (r *run) waitMeasurements(ctx context.Context, d time.Duration) {
	done := make(chan struct{})
	go func() {
		r.recovWG.Wait()
		close(done)
	}()
	deadline := time.After(d)
	for {
		pending := false
		r.mu.Lock()
		for _, fr := range r.faults {
			if fr.failover != nil && fr.failover.Pending() {
				pending = true
			}
		}
		r.mu.Unlock()
		select {
		case <-done:
			if !pending {
				return
			}
		default:
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// recover gives the recovery measurements still under way workload.recovery at most (none after
// an interrupt), then stops the recovery probes and waits for them.
func (r *run) recover(ctx context.Context) {
	if ctx.Err() == nil {
		r.waitMeasurements(ctx, r.sc.Workload.Recovery.D())
	}
	r.stopRecovery()
	r.recovWG.Wait()
}
