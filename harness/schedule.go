package harness

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

type faultRun struct {
	index    int
	spec     scenarios.Fault
	inj      *faults.Injection
	record   reports.FaultRecord
	failover *loadgen.Failover // fed for every fault: what it cost is decided from what was seen
	injAt    time.Time         // when the fault's acting call began (zero: it never ran)
	healAt   time.Time         // when the heal's acting call began
	recov    []reports.Recovery
	// result is what the fault cost, taken once its window ended (settleFaults): from then on its
	// tracker is no longer fed and keeps nothing.
	result    *loadgen.FailoverResult
	windowEnd time.Time
}

// schedule fires the faults in order (validation guarantees they do not overlap). A fault fires only
// while the load runs (loadCtx); once fired it is held and healed on the run's context, so a heal due
// at the load's last instant still happens on schedule and is measured.
func (r *run) schedule(loadCtx, ctx context.Context) {
	for i, f := range r.sc.Faults {
		if !sleepUntil(loadCtx, r.loadStart.Add(f.At.D())) {
			return
		}
		r.fire(ctx, i, f)
		if ctx.Err() != nil {
			return
		}
	}
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

// fire resolves, injects, holds and heals one fault, and starts its recovery measurements.
func (r *run) fire(ctx context.Context, i int, f scenarios.Fault) {
	fr := &faultRun{index: i, spec: f, record: reports.FaultRecord{Index: i, Template: f.Template, Occurrence: f.Occurrence, Action: f.Action, Target: f.Target.String()}}
	r.mu.Lock()
	r.faults = append(r.faults, fr)
	r.mu.Unlock()
	// The quorum guard: a fault fires only into a cluster with a leader and every member answering.
	if err := r.guard(ctx); err != nil {
		fr.record.Skipped = err.Error()
		r.events.Log(time.Now(), "fault_skipped", "fault", i, "action", f.Action, "reason", err.Error())
		r.log.Warn("fault skipped by the quorum guard", "fault", i, "reason", err)
		return
	}
	p, err := r.plan(ctx, i, f)
	if err != nil {
		r.faultFailed(fr, err)
		return
	}
	injAt, injErr := r.inject(ctx, fr, p)
	r.recordOperation(ctx, fr)
	if injErr != nil {
		r.faultFailed(fr, injErr)
	} else {
		r.hold(ctx, fr, p, injAt)
	}
	if ctx.Err() != nil && injErr == nil {
		// Interrupted or the load ended: teardown heals. A stop condition that tripped while this
		// injection was under way found nothing applied to heal: it is healed now.
		r.healIfAborted(ctx)
		return
	}
	target := r.leaderApplied()
	if a := faults.LookupAction(f.Action); a != nil && a.LosesWrites {
		// A restore starts a new raft log from the snapshot: every member holds it from its start,
		// and the old cluster's indexes mean nothing to the new one.
		target = 0
	}
	healAt, err := r.heal(ctx, fr, injAt, injErr != nil)
	if err != nil {
		r.faultFailed(fr, err)
		return
	}
	if injErr == nil {
		r.startRecovery(fr, healAt, target)
	}
}

// faultFailed records why a fault failed; the run's verdict is an error.
func (r *run) faultFailed(fr *faultRun, err error) {
	fr.record.Error = err.Error()
	r.events.Log(time.Now(), "fault_error", "fault", fr.index, "error", err.Error())
	r.mu.Lock()
	r.runErrs = append(r.runErrs, err)
	r.mu.Unlock()
}

// inject records what the plan hits, starts watching what the fault costs, and injects it. It
// returns when the fault's acting call (the signal, route change or API call) began: the fault's
// time, not the ledger's fsync before it nor the proof after it.
func (r *run) inject(ctx context.Context, fr *faultRun, p *plan) (time.Time, error) {
	i, inj := fr.index, p.inj
	fr.inj = inj
	fr.record.Target = inj.Target
	fr.record.Members = inj.MemberNames()
	fr.record.WasLeader = slices.Contains(fr.record.Members, p.leader)
	if p.links != nil {
		fr.record.Network = p.inj.Network()
		for _, l := range p.links {
			fr.record.Links = append(fr.record.Links, l.String())
		}
	}
	// Every fault is watched for what it costs, from before its injection: an election and the
	// write outage are what was seen, never what the fault's shape suggests.
	fr.failover = &loadgen.Failover{OldLeader: p.leader, OldTerm: p.term}
	r.mon.Track(fr.failover)
	label := fmt.Sprintf("#%d %s %s", i, fr.spec.Action, strings.Join(fr.record.Members, ","))
	r.setRecPhase(fmt.Sprintf("during #%d", i), time.Now())
	r.mu.Lock()
	r.phase, r.active = fmt.Sprintf("during #%d", i), label
	r.mu.Unlock()
	ictx := ctx
	if d := fr.spec.Duration.D(); d > 0 {
		// A backend that holds faults on its own (chaos agent) heals at the scheduled end plus a
		// second, so the harness's own heal, which it measures, comes first.
		ictx = faults.WithUntil(ctx, time.Now().Add(d+time.Second))
	}
	injErr := inj.Inject(ictx)
	st := inj.Injected()
	now := st.Start
	if now.IsZero() {
		now = time.Now()
	} else {
		fr.record.CallMs = reports.Ms(st.End.Sub(st.Start))
	}
	fr.injAt = now
	fr.failover.Injected(now)
	r.mu.Lock()
	for _, prev := range r.faults {
		if prev != fr && prev.failover != nil {
			prev.failover.Close(now) // the next fault ends the previous one's window
		}
	}
	r.mu.Unlock()
	r.settleFaults()
	fr.record.AtS = r.sinceStart(now)
	r.events.Log(now, "fault_injected", "fault", i, "action", fr.spec.Action, "target", inj.Target, "members", fr.record.Members,
		"leader", p.leader, "term", p.term, "links", fr.record.Links)
	return now, injErr
}

// hold keeps the fault for its duration and counts, through a backend that counts them (the
// proxy), the bytes that crossed each of its links meanwhile: any across a partition fail it.
func (r *run) hold(ctx context.Context, fr *faultRun, p *plan, injAt time.Time) {
	bytesAt := p.linkBytes()
	if d := fr.spec.Duration.D(); d > 0 {
		sleepUntil(ctx, injAt.Add(d))
	}
	if bytesAt == nil || p.resets {
		return
	}
	fr.record.LinkBytes = map[string]int64{}
	var leaked []string
	for l, n := range p.linkBytes() {
		fr.record.LinkBytes[l] = n - bytesAt[l]
		if p.blackhole && n > bytesAt[l] {
			leaked = append(leaked, fmt.Sprintf("%s %d bytes", l, n-bytesAt[l]))
		}
	}
	if len(leaked) > 0 {
		sort.Strings(leaked)
		r.faultFailed(fr, fmt.Errorf("fault #%d: bytes crossed the partition: %s", fr.index, strings.Join(leaked, ", ")))
	}
}

// heal heals the fault on a context that survives the run's end and returns when recovery counts
// from: the heal's acting call, or the injection for an instantaneous action (over within
// Inject: a restart restarts, a reset closes). failed says the injection failed part-way.
func (r *run) heal(ctx context.Context, fr *faultRun, injAt time.Time, failed bool) (time.Time, error) {
	i, inj := fr.index, fr.inj
	by := "schedule"
	if failed {
		by = "error"
	}
	herr := inj.Heal(context.WithoutCancel(ctx), by)
	healAt := inj.HealedStamp().Start
	if healAt.IsZero() {
		healAt = time.Now()
	}
	if a := fr.spec.Rules(); a.Instant && !a.Operation {
		healAt = injAt // an operation's heal comes at its end: it is measured from its start to there
	}
	// Writes sent from here on count as restored even under the old leader (a resumed pause).
	fr.failover.Healed(healAt)
	healed := r.sinceStart(healAt)
	disk := diskEffects(inj.DiskReports())
	r.mu.Lock()
	fr.healAt = healAt
	fr.record.HealedAtS = &healed
	fr.record.Disk = disk
	r.mu.Unlock()
	for _, d := range disk {
		r.events.Log(time.Now(), "disk_effect", "fault", i, "member", d.Member, "delayed", d.Delayed, "failed", d.Failed,
			"stalled", d.Stalled, "dropped_bytes", d.DroppedBytes, "exited", d.Exited, "restarted", d.Restarted, "corrupted", d.Corrupted, "start", d.Start)
	}
	r.setRecPhase(fmt.Sprintf("after #%d", i), healAt)
	r.mu.Lock()
	r.phase, r.active = fmt.Sprintf("after #%d", i), ""
	r.mu.Unlock()
	if herr != nil {
		return healAt, herr
	}
	r.events.Log(healAt, "fault_healed", "fault", i, "by", by)
	return healAt, nil
}

// diskEffects is the result's account of what a disk fault did to each member.
func diskEffects(reps []faults.DiskReport) []reports.DiskEffect {
	var out []reports.DiskEffect
	for _, d := range reps {
		e := reports.DiskEffect{Member: d.Member, Fsyncs: d.Ops.Fsyncs, Delayed: d.Ops.Delayed, Failed: d.Ops.Failed, Stalled: d.Ops.Stalled,
			DelayedForMs: d.Ops.DelayedForMs, Exited: d.Exited, Restarted: d.Restarted, Corrupted: d.Corrupted, Start: d.Start}
		if d.Dropped != nil {
			b := d.Dropped.Bytes
			e.DroppedBytes, e.DroppedFiles, e.DroppedEntries = &b, d.Dropped.Files, d.Dropped.Entries
		}
		out = append(out, e)
	}
	return out
}

// startRecovery measures, on each member the fault was about, when it caught up with the leader's
// applied index target and served a linearizable read again, counted from healAt. The probes run
// on the recovery context: recover waits for them, workload.recovery at most.
func (r *run) startRecovery(fr *faultRun, healAt time.Time, target uint64) {
	urls := r.cl.ClientURLs()
	// A member an operation took out of the cluster (member-remove) has nothing to recover.
	var names []string
	for _, name := range fr.record.Members {
		if _, ok := urls[name]; ok {
			names = append(names, name)
		}
	}
	fr.recov = make([]reports.Recovery, len(names))
	for k, name := range names {
		r.recovWG.Add(1)
		go func() {
			defer r.recovWG.Done()
			cu, rr, err := loadgen.Recovery(r.recovCtx, urls[name], r.prober.Key, healAt, target, r.cl.LoadConn())
			if err != nil {
				r.log.Warn("recovery probe", "member", name, "err", err)
			}
			fr.recov[k] = reports.Recovery{Fault: fr.index, Member: name, CaughtUpMs: reports.Ms(cu), ReadRestoredMs: reports.Ms(rr)}
			r.events.Log(time.Now(), "member_recovered", "fault", fr.index, "member", name, "caught_up_ms", fr.recov[k].CaughtUpMs, "read_restored_ms", fr.recov[k].ReadRestoredMs)
		}()
	}
}

// healIfAborted heals every applied fault at once when a stop condition has tripped (abort healed
// what was applied when it tripped; a fault whose injection was still under way is applied after).
func (r *run) healIfAborted(ctx context.Context) {
	r.mu.Lock()
	a := r.aborted
	r.mu.Unlock()
	if a == nil {
		return
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if _, err := r.healActive(hctx, "abort"); err != nil {
		r.mu.Lock()
		r.runErrs = append(r.runErrs, fmt.Errorf("healing after the stop condition %q: %w", a.Condition, err))
		r.mu.Unlock()
	}
}

// healAll heals every injection still applied (after an interrupt or an error).
func (r *run) healAll(ctx context.Context, by string) error {
	_, err := r.healActive(ctx, by)
	return err
}

// healActive heals every injection still applied, at once, and says how many it healed.
func (r *run) healActive(ctx context.Context, by string) (int, error) {
	r.mu.Lock()
	frs := append([]*faultRun(nil), r.faults...)
	r.mu.Unlock()
	var mu sync.Mutex
	var errs []error
	n := 0
	var wg sync.WaitGroup
	for _, fr := range frs {
		if fr.inj == nil || fr.inj.State() != faults.Applied {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fr.inj.Heal(ctx, by); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			at := fr.inj.HealedStamp().Start
			if at.IsZero() {
				at = time.Now()
			}
			healed := r.sinceStart(at)
			r.mu.Lock()
			fr.record.HealedAtS = &healed
			if fr.healAt.IsZero() {
				fr.healAt = at
				if fr.failover != nil {
					fr.failover.Healed(at)
				}
			}
			r.active = ""
			r.mu.Unlock()
			mu.Lock()
			n++
			mu.Unlock()
			r.events.Log(at, "fault_healed", "fault", fr.index, "by", by)
		}()
	}
	wg.Wait()
	return n, errors.Join(errs...)
}

// leaderApplied is the leader's applied index as last seen: the index a healed member must reach.
func (r *run) leaderApplied() uint64 {
	leader, _ := r.watcher.Leader()
	if st, ok := r.watcher.Latest(leader); ok {
		return st.Applied
	}
	return 0
}
