package harness

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/reports"
)

// finish assembles the result once the load ended and the measurements settled: the load's
// numbers, the leader's story, what each fault cost, the thresholds held against them, and the
// verdict.
func (r *run) finish(ctx context.Context, res *reports.Result, end time.Time) (*reports.Result, error) {
	sum := r.loadResult(res, end)
	changes := r.leaderResult(res)
	trends, measured := r.faultResults(res, end, sum)
	r.mu.Lock()
	res.Backups = append([]reports.Backup(nil), r.backupRecs...)
	r.mu.Unlock()
	r.spuriousElections(res, changes, end)
	for _, o := range r.outcomes {
		for k, v := range o.Trends {
			prev, _ := trends[k].(reports.Samples)
			trends[k] = append(prev, v...)
		}
	}
	if r.scraper != nil {
		res.MemberHealth = r.scraper.health()
	}
	res.Thresholds = reports.Evaluate(r.sc.Thresholds, reports.Metrics{Trends: trends, Ops: sum.Ops, Failed: sum.Failed,
		LeaderChanges: res.Leader.Changes, Throughput: sum.PerSecond, Retries: sum.Retries, ProbesSent: res.Prober.Sent,
		ProbesAcked: res.Prober.Acked, FaultsMeasured: measured, Members: res.MemberHealth, Gauges: r.gauges})
	return r.verdict(ctx, res)
}

// loadResult puts the load's numbers in the result: latency per op and phase, throughput, errors
// and retries, the pacing's record. histograms.hlog is closed here.
func (r *run) loadResult(res *reports.Result, end time.Time) loadgen.Summary {
	sum := r.rec.Summarize(end)
	if sum.HlogErr != nil {
		r.log.Warn("writing latency.hlog", "err", sum.HlogErr)
	}
	res.Latency, res.Phases, res.Ops, res.FailedOps = sum.Latency, sum.Phases, sum.Ops, sum.Failed
	res.Load = r.kv.Load(end)
	res.Load.AchievedRate, res.Load.Cut = sum.AchievedRate, sum.Cut
	res.Errors, res.Attempts, res.Retries, res.AttemptCodes = sum.Errors, sum.Attempts, sum.Retries, sum.Codes
	tp := reports.Samples(sum.PerSecond)
	res.Throughput = reports.Throughput{PerSecond: sum.PerSecond, Timeline: sum.Timeline}
	if err := r.rec.CloseHistograms(); err != nil {
		r.log.Warn("writing histograms.hlog", "err", err)
	}
	if sum.LateOps > 0 {
		r.log.Warn("ops outlived their phase's settling: counted in the totals, not in their phase", "ops", sum.LateOps)
	}
	if len(tp) > 0 {
		res.Throughput.Avg, res.Throughput.Min, res.Throughput.Max = tp.Mean(), tp.Min(), tp.Max()
	}
	return sum
}

// leaderResult puts the leader changes the watcher saw and the prober's counts in the result, and
// returns the changes.
func (r *run) leaderResult(res *reports.Result) []loadgen.LeaderChange {
	changes := r.watcher.Changes(r.loadStart)
	res.Leader.Changes = len(changes)
	for _, c := range changes {
		res.Leader.Terms = append(res.Leader.Terms, c.ToTerm)
	}
	if len(changes) > 0 {
		res.Leader.Initial = changes[0].From
	}
	res.Leader.Final, _ = r.watcher.Leader()
	if res.Leader.Initial == "" {
		res.Leader.Initial = res.Leader.Final
	}
	sent, acked := r.prober.Counts()
	res.Prober = reports.ProberStats{Sent: sent, Acked: acked}
	if share, probed, ok := r.prober.Availability(); ok {
		res.Prober.Availability, res.Prober.ProbedS = share, probed.Seconds()
	}
	return changes
}

// faultResults puts each fault's record, what it cost and its members' recovery in the result, and
// returns the trend metrics with their samples and how many faults were measured.
func (r *run) faultResults(res *reports.Result, end time.Time, sum loadgen.Summary) (map[string]reports.Dist, int) {
	trends := map[string]reports.Dist{}
	for k, v := range sum.Dists {
		trends[k] = v
	}
	var elected, restored, outage, caught, read reports.Samples
	ops := map[string]reports.Samples{}
	gauges := map[string]reports.Samples{}
	ms := func(name string, v float64) { ops[name] = append(ops[name], v*float64(time.Millisecond)) }
	sample := func(s *reports.Samples, d time.Duration) {
		if d < 0 {
			*s = append(*s, math.Inf(1))
		} else {
			*s = append(*s, float64(d))
		}
	}
	r.mu.Lock()
	frs := append([]*faultRun(nil), r.faults...)
	r.mu.Unlock()
	for k, fr := range frs {
		if fr.failover != nil && fr.inj != nil && fr.record.Error == "" {
			windowEnd := r.faultWindowEnd(frs, k, end)
			var fo loadgen.FailoverResult
			if fr.result != nil {
				fo, windowEnd = *fr.result, fr.windowEnd
			} else {
				fo = fr.failover.Result(windowEnd)
				r.mon.Untrack(fr.failover)
			}
			fr.record.Election = fo.Election
			fr.record.OutageWriteMs = reports.Ms(fo.WriteOutage)
			from, we := r.sinceStart(fo.OutageFrom), r.sinceStart(windowEnd)
			fr.record.OutageFromS, fr.record.WindowEndS = &from, &we
			fr.record.ProbesAcked = fo.Acked
			fr.record.SlowestProbeMs = reports.Ms(fo.SlowestAck)
			sample(&outage, fo.WriteOutage)
			if fo.Election {
				res.Failovers = append(res.Failovers, reports.Failover{Fault: fr.index, Action: fr.spec.Action, Target: fr.spec.Target.String(),
					Member: fr.failover.OldLeader, OldTerm: fr.failover.OldTerm, NewLeader: fo.NewLeader, NewTerm: fo.NewTerm,
					LeaderElectedMs: reports.Ms(fo.LeaderElected), LeaderElectedBy: fo.ElectedBy, WriteRestoredMs: reports.Ms(fo.WriteRestored)})
				if fr.record.Operation == nil {
					// An operation's election came at one of its steps, not at its start: no
					// failover sample (its outage is one, and its own metrics say the rest).
					sample(&elected, fo.LeaderElected)
					sample(&restored, fo.WriteRestored)
				}
			}
		}
		if op := fr.record.Operation; op != nil && fr.record.Error == "" {
			if op.CompactMs != nil {
				ms("compact.duration", *op.CompactMs)
			}
			for _, d := range op.Defrag {
				ms("defrag.duration", d.Ms)
				ms("defrag.member_latency", d.MemberLatencyMs)
			}
			if mb := op.Membership; mb != nil && mb.PromotedMs > 0 {
				ms("learner.caught_up", mb.CaughtUpMs)
				ms("learner.promoted", mb.PromotedMs)
			}
			for _, v := range op.Versions {
				if v.HealthyMs > 0 {
					ms(fr.spec.Action+".member_healthy", v.HealthyMs)
				}
			}
			if op.MixedWindowMs != nil {
				ms(fr.spec.Action+".mixed_window", *op.MixedWindowMs)
			}
			if d := op.Disaster; d != nil {
				ms("recovery.rto", d.RTOMs)
				if d.RPOWrites >= 0 {
					gauges["recovery.rpo_writes"] = append(gauges["recovery.rpo_writes"], float64(d.RPOWrites))
				}
			}
		}
		res.Faults = append(res.Faults, fr.record)
		for _, rc := range fr.recov {
			res.Recoveries = append(res.Recoveries, rc)
			sample(&caught, msDur(rc.CaughtUpMs))
			sample(&read, msDur(rc.ReadRestoredMs))
		}
	}
	res.FaultStats = reports.FaultStatsOf(res)
	trends["outage.write"] = outage
	trends["failover.leader_elected"] = elected
	trends["failover.write_restored"] = restored
	trends["recovery.caught_up"] = caught
	trends["recovery.read_restored"] = read
	for k, v := range ops {
		trends[k] = v
	}
	r.gauges = gauges
	return trends, len(outage)
}

// spuriousElections counts the leader changes no fault's window holds: nothing the scenario did
// explains them. Here a window is not cut at the load's end: an election a fault caused may
// complete after it.
func (r *run) spuriousElections(res *reports.Result, changes []loadgen.LeaderChange, end time.Time) {
	r.mu.Lock()
	frs := append([]*faultRun(nil), r.faults...)
	r.mu.Unlock()
	never := end.Add(24 * time.Hour)
	for _, c := range changes {
		explained := false
		for k, fr := range frs {
			if fr.injAt.IsZero() || c.At.Before(fr.injAt) {
				continue
			}
			if c.At.Before(r.faultWindowEnd(frs, k, never)) || c.At.Equal(fr.injAt) {
				explained = true
				break
			}
		}
		if !explained {
			res.Leader.Spurious++
			res.Leader.SpuriousAtS = append(res.Leader.SpuriousAtS, r.sinceStart(c.At))
		}
	}
}

// verdict decides the run: interrupted, aborted by a stop condition, an error of the harness or
// the cluster, failed thresholds or checks, too many faults skipped to judge (unknown), or a pass.
func (r *run) verdict(ctx context.Context, res *reports.Result) (*reports.Result, error) {
	var failed []string
	for _, t := range res.Thresholds {
		if t.Status == reports.ThresholdFail {
			failed = append(failed, fmt.Sprintf("%s %s (observed %s)", t.Metric, t.Condition, t.Observed))
		}
	}
	sort.Strings(failed)
	var badChecks []string
	for _, c := range res.Checks {
		if c.Status != reports.CheckPass && c.Status != reports.CheckSkipped {
			badChecks = append(badChecks, fmt.Sprintf("check %s %s (%s)", c.Name, c.Status, c.Summary))
		}
	}
	r.mu.Lock()
	aborted := r.aborted
	r.mu.Unlock()
	skipped := 0
	for _, f := range res.Faults {
		if f.Skipped != "" {
			skipped++
		}
	}
	switch {
	case ctx.Err() != nil:
		res.Verdict, res.Reason = reports.VerdictInterrupted, "interrupted; every fault was healed and the cluster stopped"
	case aborted != nil:
		res.Aborted = aborted
		res.Verdict = reports.VerdictAborted
		res.Reason = fmt.Sprintf("stop condition %q tripped at %.1fs (observed %s); every fault was healed and the load stopped", aborted.Condition, aborted.AtS, aborted.Observed)
		if len(r.runErrs) > 0 {
			res.Reason += "; " + errors.Join(r.runErrs...).Error()
		}
	case len(r.runErrs) > 0:
		res.Verdict, res.Reason = reports.VerdictError, errors.Join(r.runErrs...).Error()
		return res, fmt.Errorf("%w: %v", ErrInfra, errors.Join(r.runErrs...))
	case len(failed) > 0 || len(badChecks) > 0:
		var why []string
		if len(failed) > 0 {
			why = append(why, "threshold failed: "+strings.Join(failed, "; "))
		}
		why = append(why, badChecks...)
		res.Verdict, res.Reason = reports.VerdictFail, strings.Join(why, "; ")
	case skipped > r.sc.MaxSkipped:
		res.Verdict = reports.VerdictUnknown
		res.Reason = fmt.Sprintf("%d of %d faults were skipped by the quorum guard (max-skipped: %d): the run exercised too little to pass", skipped, len(res.Faults), r.sc.MaxSkipped)
	default:
		res.Verdict, res.Passed = reports.VerdictPass, true
	}
	r.events.Log(time.Now(), "verdict", "verdict", res.Verdict)
	return res, nil
}

func msDur(v *float64) time.Duration {
	if v == nil {
		return -1
	}
	return time.Duration(*v * float64(time.Millisecond))
}
