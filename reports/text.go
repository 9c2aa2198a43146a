package reports

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

func msText(v *float64) string {
	if v == nil {
		return "not seen"
	}
	if *v >= 1000 {
		return fmt.Sprintf("%.3fs", *v/1000)
	}
	return fmt.Sprintf("%.1fms", *v)
}

// WriteText writes the human verdict: failovers, latency, errors and retries, thresholds, verdict.
func WriteText(w io.Writer, r *Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "scenario %s (seed %d), %d-member %s cluster, etcd %s\n", r.Scenario, r.Seed, r.Cluster.Size, r.Cluster.Provider, r.Cluster.EtcdVersion)
	if len(r.Cluster.Endpoints) > 0 { // a cluster the team runs: the result names its endpoints
		how := "plain"
		if r.Cluster.TLS {
			how = "TLS"
		}
		if r.Cluster.AuthUser != "" {
			how += ", user " + r.Cluster.AuthUser
		}
		fmt.Fprintf(&b, "remote cluster at %s (%s); the run wrote only under %s\n", strings.Join(r.Cluster.Endpoints, ", "), how, r.KeyPrefix)
	}
	if a := r.Aborted; a != nil {
		healed := "no fault was active"
		if a.HealedWithinMs != nil {
			healed = fmt.Sprintf("every fault healed within %.0fms", *a.HealedWithinMs)
		}
		fmt.Fprintf(&b, "ABORTED at %.1fs: %s (observed %s); %s\n", a.AtS, a.Condition, a.Observed, healed)
	}
	writeOperations(&b, r)
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	many := len(r.Faults) > ManyFaults
	if many {
		writeFaultStats(&b, r)
	}
	if len(r.Faults) > 0 && !many {
		fmt.Fprintln(&b, "\nfaults")
		for _, f := range r.Faults {
			healed := "never healed"
			if f.HealedAtS != nil {
				healed = fmt.Sprintf("healed at %.1fs", *f.HealedAtS)
			}
			lead := ""
			if f.WasLeader {
				lead = " (leader)"
			}
			errText := ""
			if f.Error != "" {
				errText = "  ERROR: " + f.Error
			}
			links := ""
			if f.Network != "" {
				links = fmt.Sprintf("  [%s, %d links", f.Network, len(f.Links))
				if f.LinkBytes != nil {
					var n int64
					for _, v := range f.LinkBytes {
						n += v
					}
					links += fmt.Sprintf(", %d bytes crossed them meanwhile", n)
				}
				links += "]"
			}
			fmt.Fprintf(tw, "  #%d\t%s %s\t-> %s%s\tat %.1fs, %s%s%s\n", f.Index, f.Action, f.Target, strings.Join(f.Members, ","), lead, f.AtS, healed, links, errText)
		}
		tw.Flush()
	}
	if len(r.Faults) > 0 && !many {
		fmt.Fprintln(&b, "\nwhat each fault cost (measured, not predicted)")
		for _, f := range r.Faults {
			fo := FailoverOf(r, f.Index)
			outage := ""
			if f.OutageWriteMs != nil { // results written before outages were measured have none
				outage = "write outage " + msText(f.OutageWriteMs)
			}
			switch {
			case f.Skipped != "":
				fmt.Fprintf(tw, "  #%d %s\tskipped by the quorum guard: %s\n", f.Index, f.Action, f.Skipped)
			case f.Error != "":
				fmt.Fprintf(tw, "  #%d %s\tnot measured: the fault failed\n", f.Index, f.Action)
			case fo == nil:
				fmt.Fprintf(tw, "  #%d %s %s\tno election\t%s\t\n", f.Index, f.Action, strings.Join(f.Members, ","), outage)
			case f.Operation != nil:
				// An operation runs for long; the election it caused came at some step of it, not
				// at its start: when, from its start, is not a failover time.
				fmt.Fprintf(tw, "  #%d %s %s\tan election, %s into the operation\t%s\tnew leader %s (term %d)\n", f.Index, f.Action, strings.Join(f.Members, ","),
					msText(fo.LeaderElectedMs), outage, orText(fo.NewLeader, "none"), fo.NewTerm)
			default:
				fmt.Fprintf(tw, "  #%d %s %s\tleader elected %s (%s)\twrites restored %s\t%s\tnew leader %s (term %d)\n", f.Index, f.Action, strings.Join(f.Members, ","),
					msText(fo.LeaderElectedMs), orText(fo.LeaderElectedBy, "-"), msText(fo.WriteRestoredMs), outage, orText(fo.NewLeader, "none"), fo.NewTerm)
			}
			if len(f.Disk) > 0 {
				tw.Flush() // the disk lines are prose, outside the columns
				for _, d := range f.Disk {
					fmt.Fprintf(&b, "     disk %s: %s\n", d.Member, DiskText(d))
				}
			}
		}
		tw.Flush()
	}
	if len(r.Alarms) > 0 {
		fmt.Fprintf(&b, "\nalarms at the end of the run: %s\n", strings.Join(r.Alarms, ", "))
	}
	if len(r.Recoveries) > 0 && !many {
		fmt.Fprintln(&b, "\nrecovery after heal")
		for _, rc := range r.Recoveries {
			fmt.Fprintf(tw, "  #%d %s\tcaught up %s\tlinearizable read %s\n", rc.Fault, rc.Member, msText(rc.CaughtUpMs), msText(rc.ReadRestoredMs))
		}
		tw.Flush()
	}
	fmt.Fprintf(&b, "\nlatency (ms, from the due time, successful ops, warm-up excluded; failed ops are left out and counted)%s\n", PathNote(r))
	fmt.Fprintln(tw, "  op\tcount\tfailed\tp50\tp90\tp99\tp99.9\tmax")
	for _, op := range sortedKeys(r.Latency) {
		if op == "failed" {
			continue
		}
		s := r.Latency[op]
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\n", op, s.Count, s.Failed, s.P50, s.P90, s.P99, s.P999, s.Max)
	}
	if s, ok := r.Latency["failed"]; ok {
		fmt.Fprintf(tw, "  (failed)\t%d\t\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\n", s.Count, s.P50, s.P90, s.P99, s.P999, s.Max)
	}
	tw.Flush()
	if len(r.Phases) > 1 {
		fmt.Fprintln(&b, "\np99 by phase (ms, KV ops, each in the phase it was due)")
		for _, p := range r.Phases {
			if p.Name == "warmup" {
				continue
			}
			s := p.Latency["all"]
			fmt.Fprintf(tw, "  %s\t%.1fs-%.1fs\tcount %d\tfailed %d\tp50 %.2f\tp99 %.2f\tmax %.2f\n", p.Name, p.StartS, p.EndS, s.Count, s.Failed, s.P50, s.P99, s.Max)
		}
		tw.Flush()
	}
	fmt.Fprintf(&b, "\nops %d, failed %d", r.Ops, r.FailedOps)
	if len(r.Errors) > 0 {
		var parts []string
		for _, k := range sortedKeys(r.Errors) {
			parts = append(parts, fmt.Sprintf("%s %d", k, r.Errors[k]))
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
	}
	var failedAttempts int64
	for _, v := range r.Attempts {
		failedAttempts += v
	}
	fmt.Fprintf(&b, "; failed attempts %d\n", failedAttempts)
	if all, ok := r.Retries["all"]; ok {
		fmt.Fprintf(&b, "retries: %.4f attempts/op, %d ops retried, max %d attempts, %.0fms spent backing off\n", all.PerOp, all.RetriedOps, all.MaxAttempts, all.RetryTimeMs)
	}
	fmt.Fprintf(&b, "throughput: avg %.0f ops/s, min %.0f, max %.0f (whole seconds after the warm-up); leader changes %d; prober availability %.4f%s (%d of %d writes during the load)\n",
		r.Throughput.Avg, r.Throughput.Min, r.Throughput.Max, r.Leader.Changes, r.Prober.Availability, probedOf(r.Prober), r.Prober.Acked, r.Prober.Sent)
	if r.Leader.Spurious > 0 {
		fmt.Fprintf(&b, "spurious leader changes: %d, outside every fault's window (at %s s from the load's start): are the timeouts too tight for this network?\n",
			r.Leader.Spurious, strings.Trim(fmt.Sprint(r.Leader.SpuriousAtS), "[]"))
	}
	if rtt := r.Cluster.PeerRTT; rtt != nil {
		fmt.Fprintf(&b, "peer round trip measured by etcd: mean %.1fms over %d records of its probes\n", rtt.MeanMs, rtt.Samples)
	}
	if len(r.MemberHealth) > 0 {
		fmt.Fprintln(&b, "members (members.jsonl; growth per hour by least squares after the warm-up)")
		for _, h := range r.MemberHealth {
			fmt.Fprintf(tw, "  %s\t%s\n", h.Member, MemberHealthText(h))
		}
		tw.Flush()
	}
	fmt.Fprintf(&b, "load: %s\n", LoadText(r.Load))
	for _, w := range r.Workloads {
		fmt.Fprintf(&b, "workload %s (%s):", w.Name, w.Kind)
		for _, k := range sortedKeys(w.Stats) {
			fmt.Fprintf(&b, " %s %g", k, w.Stats[k])
		}
		if w.Kind == "kv" {
			fmt.Fprintf(&b, " ops %d, failed %d", w.Ops, w.Failed)
			for _, op := range sortedKeys(w.Latency) {
				fmt.Fprintf(&b, "; %s p99 %.2fms", op, w.Latency[op].P99)
			}
			if all, ok := w.Retries["all"]; ok {
				fmt.Fprintf(&b, "; %.4f attempts/op, %.4f attempts/success", all.PerOp, all.PerSuccess)
			}
		}
		b.WriteString("\n")
	}
	if len(r.Checks) > 0 {
		fmt.Fprintln(&b, "\nchecks")
		for _, c := range r.Checks {
			name := c.Name
			if c.Workload != "" && c.Workload != c.Name {
				name += " (" + c.Workload + ")"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", strings.ToUpper(c.Status), name, c.Summary)
			for _, e := range c.Examples {
				fmt.Fprintf(tw, "  \t\t- %s\n", e)
			}
		}
		tw.Flush()
	}
	if len(r.Thresholds) > 0 {
		fmt.Fprintln(&b, "\nthresholds")
		for _, t := range r.Thresholds {
			fmt.Fprintf(tw, "  %s\t%s\t%s\tobserved %s\n", strings.ToUpper(t.State()), t.Metric, t.Condition, t.Observed)
		}
		tw.Flush()
	}
	writeVerdict(&b, r)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeFaultStats sums up many faults by action, then names the few that cost the most: every
// occurrence is in result.json and report.html.
func writeFaultStats(b *strings.Builder, r *Result) {
	fmt.Fprintf(b, "\n%d faults (every one is in result.json and report.html); ms as p50 / p99 / max\n", len(r.Faults))
	tw := tabwriter.NewWriter(b, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  action\tfaults\tmeasured\telections\tleader elected\twrites restored\twrite outage\tcaught up")
	for _, st := range FaultStatsOf(r) {
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", st.Action, st.Faults, st.Measured, st.Elections,
			st.LeaderElected.Text(), st.WriteRestored.Text(), st.OutageWrite.Text(), st.CaughtUp.Text())
	}
	tw.Flush()
	var worst []FaultRecord
	var bad int
	for _, f := range r.Faults {
		switch {
		case f.Skipped != "" || f.Error != "":
			bad++
		case f.OutageWriteMs != nil:
			worst = append(worst, f)
		}
	}
	sort.SliceStable(worst, func(i, j int) bool { return *worst[i].OutageWriteMs > *worst[j].OutageWriteMs })
	if len(worst) > 5 {
		worst = worst[:5]
	}
	if len(worst) > 0 {
		fmt.Fprintln(b, "the longest write outages")
		for _, f := range worst {
			fmt.Fprintf(tw, "  #%d %s %s\tat %.1fs\twrite outage %s\n", f.Index, f.Action, strings.Join(f.Members, ","), f.AtS, msText(f.OutageWriteMs))
		}
		tw.Flush()
	}
	if bad > 0 {
		fmt.Fprintln(b, "not measured")
		for _, f := range r.Faults {
			if f.Skipped != "" {
				fmt.Fprintf(tw, "  #%d %s\tat %.1fs\tskipped by the quorum guard: %s\n", f.Index, f.Action, f.AtS, f.Skipped)
			} else if f.Error != "" {
				fmt.Fprintf(tw, "  #%d %s\tat %.1fs\tERROR: %s\n", f.Index, f.Action, f.AtS, f.Error)
			}
		}
		tw.Flush()
	}
}

// GrowthText is a growth per hour: "+1.2MB/h" for bytes, "+30/h" for a count.
func GrowthText(v *float64, bytes bool) string {
	switch {
	case v == nil:
		return "growth unknown"
	case bytes:
		return fmt.Sprintf("%+.1fMB/h", *v/1e6)
	}
	return fmt.Sprintf("%+.0f/h", *v)
}

// GrowthText prints one of the member's growths, or says the scrapes were too short to judge one.
func (h MemberHealth) GrowthText(v *float64, bytes bool) string {
	if h.GrowthTooShort {
		return fmt.Sprintf("growth: too short to judge, %.0fs of %.0fs", h.SpanS, h.GrowthMinSpanS)
	}
	return GrowthText(v, bytes)
}

// MemberHealthText is one member's summary: levels, growth per hour, scrapes.
func MemberHealthText(h MemberHealth) string {
	g := h.GrowthText
	return fmt.Sprintf("RSS %s (%s)\tfds %.0f (%s)\tdb %s (%s)\twal fsync p99 max %.1fms\t%d scrapes, %d failed, %d restarts, fitted %d over %.0fs",
		BytesText(h.LastRSSBytes), g(h.RSSGrowthPerH, true), h.MaxOpenFDs, g(h.FDsGrowthPerH, false), BytesText(h.MaxDBSize), g(h.DBSizeGrowthPerH, true),
		h.MaxWALFsyncMs, h.Scrapes, h.Failed, h.Restarts, h.Fitted, h.SpanS)
}

// writeVerdict writes the last line of a summary: the verdict and why.
func writeVerdict(b *strings.Builder, r *Result) {
	fmt.Fprintf(b, "\nverdict: %s", strings.ToUpper(r.Verdict))
	if r.Reason != "" {
		fmt.Fprintf(b, " (%s)", r.Reason)
	}
	b.WriteString("\n")
}

// FailoverOf returns the failover measured for fault i, or nil when the fault cost no election.
func FailoverOf(r *Result, i int) *Failover {
	for k := range r.Failovers {
		if r.Failovers[k].Fault == i {
			return &r.Failovers[k]
		}
	}
	return nil
}

// LoadText says how the load kept to its schedule, in one line.
func LoadText(l LoadStats) string {
	if l == (LoadStats{}) {
		return "not recorded (a result from before load stats)"
	}
	cut := ""
	if l.Cut > 0 {
		cut = fmt.Sprintf("; %d in flight when the load ended (cut: in no latency or error figure)", l.Cut)
	}
	if l.TargetRate == 0 {
		return fmt.Sprintf("closed loop, achieved %.1f ops/s%s", l.AchievedRate, cut)
	}
	return fmt.Sprintf("target %.0f ops/s, achieved %.1f; %d late (sent over %.0fms after due), %d dropped (due, never sent), max backlog %d%s",
		l.TargetRate, l.AchievedRate, l.Late, l.LateAfterMs, l.Dropped, l.MaxBacklog, cut)
}

// PathNote names the harness's proxies that sat in the measured paths (empty when none did).
func PathNote(r *Result) string {
	var in []string
	proxied := func(p string) bool { return p == "proxy" || p == "docker-proxy" }
	if proxied(r.Cluster.ClientPath) {
		in = append(in, "client links through the "+r.Cluster.ClientPath)
	}
	if proxied(r.Cluster.PeerPath) {
		peer := "peer links through the " + r.Cluster.PeerPath
		if r.Cluster.PeerDelay != "" {
			peer += " with a standing " + r.Cluster.PeerDelay + " one-way delay (cluster.peer-delay)"
		}
		in = append(in, peer)
	}
	if len(in) == 0 {
		return ""
	}
	return "\n  note: " + strings.Join(in, ", ") + " (a proxy is in the measured path)"
}

// NetworkText says which fault backend the run had and what was in the measured path: "network
// proxy" alone read as a proxy in the path where the harness had left both links direct.
func NetworkText(c Cluster) string {
	nw := orText(c.Network, "direct")
	if c.ClientPath == "" && c.PeerPath == "" {
		return "network " + nw
	}
	if nw == "direct" {
		return fmt.Sprintf("no fault backend; client links %s, peer links %s", c.ClientPath, c.PeerPath)
	}
	return fmt.Sprintf("fault backend %s; in the path: client links %s, peer links %s", nw, orText(c.ClientPath, "?"), orText(c.PeerPath, "?"))
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// probedOf says over how much of the load availability was measured (a result before probed_s: nothing).
func probedOf(p ProberStats) string {
	if p.ProbedS <= 0 {
		return ""
	}
	return fmt.Sprintf(" of %.1fs", p.ProbedS)
}

// DiskText says in one line what a disk fault did to a member.
func DiskText(d DiskEffect) string {
	var parts []string
	for _, c := range []struct {
		n    int64
		what string
	}{{d.Delayed, "delayed"}, {d.Failed, "failed"}, {d.Stalled, "stalled"}} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf("%d ops %s", c.n, c.what))
		}
	}
	if d.DroppedBytes != nil {
		parts = append(parts, fmt.Sprintf("power loss dropped %d unsynced bytes in %d files and %d name changes", *d.DroppedBytes, d.DroppedFiles, d.DroppedEntries))
	}
	if d.Corrupted != "" {
		parts = append(parts, "corrupted "+d.Corrupted)
	}
	if d.Start != "" {
		parts = append(parts, "start after it: "+d.Start)
	}
	if d.Exited != "" {
		parts = append(parts, "the member exited: "+d.Exited)
		if d.Restarted {
			parts = append(parts, "started again at the heal")
		}
	}
	if len(parts) == 0 {
		return "touched no I/O"
	}
	return strings.Join(parts, "; ")
}

// writeOperations says what each operation measured, a disaster's recovery time and point first.
func writeOperations(b *strings.Builder, r *Result) {
	lines := OperationLines(r)
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(b, "\noperations")
	for _, l := range lines {
		fmt.Fprintln(b, "  "+l)
	}
}

// OperationLines say what each operation measured, one line each, a disaster's RTO and RPO first.
func OperationLines(r *Result) []string {
	var lines []string
	for _, f := range r.Faults {
		op := f.Operation
		if op == nil {
			continue
		}
		if d := op.Disaster; d != nil {
			rpo := "unknown (kv-safety off)"
			if d.RPOWrites >= 0 {
				rpo = fmt.Sprintf("%d acknowledged writes lost", d.RPOWrites)
			}
			lines = append([]string{fmt.Sprintf("#%d disaster: RTO %.0fms, RPO %s (after the snapshot at revision %d, %.1fs old at the loss); %d lost before it; lost %s, restored in %.0fms",
				f.Index, d.RTOMs, rpo, d.SnapshotRevision, d.SnapshotAgeMs/1000, d.LostBeforeSnapshot, strings.Join(d.Lost, ","), d.RestoredMs)}, lines...)
		}
		if op.CompactMs != nil {
			lines = append(lines, fmt.Sprintf("#%d compact: revision %d compacted to %d in %.1fms", f.Index, op.Revision, op.CompactRevision, *op.CompactMs))
		}
		for _, d := range op.Defrag {
			lines = append(lines, fmt.Sprintf("#%d defrag %s: %.1fms, db %s -> %s; its reads waited up to %.1fms", f.Index, d.Member, d.Ms,
				BytesText(float64(d.DBSizeBefore)), BytesText(float64(d.DBSizeAfter)), d.MemberLatencyMs))
		}
		if d := op.Downgrade; d != nil {
			what := fmt.Sprintf("enabled at %.0fms, every member's storage at %s at %.0fms", d.EnabledMs, d.Target, d.StorageMs)
			if d.Refused != "" {
				what = "REFUSED by etcd: " + d.Refused
			} else if d.Cancelled != "" {
				what += "; CANCELLED: " + d.Cancelled
			}
			lines = append(lines, fmt.Sprintf("#%d downgrade to %s: %s", f.Index, d.Target, what))
		}
		for _, v := range op.Versions {
			lines = append(lines, fmt.Sprintf("#%d %s %s: %s -> %s, stopped at %.0fms, healthy and caught up %.0fms after its stop", f.Index, f.Action, v.Member, v.From, v.To, v.StoppedMs, v.HealthyMs))
		}
		if op.MixedWindowMs != nil {
			line := fmt.Sprintf("#%d %s: mixed versions for %.0fms", f.Index, f.Action, *op.MixedWindowMs)
			if op.ClusterVersionMs != nil {
				line += fmt.Sprintf("; etcd's cluster version %s at %.0fms", op.ClusterVersion, *op.ClusterVersionMs)
			}
			lines = append(lines, line)
		}
		if mb := op.Membership; mb != nil {
			line := fmt.Sprintf("#%d %s %s: size %d -> %d", f.Index, f.Action, mb.Member, mb.SizeBefore, mb.SizeAfter)
			if mb.OldID != "" {
				line += fmt.Sprintf(", %s removed at %.0fms (exited at %.0fms)", mb.OldID, mb.RemovedMs, mb.ExitedMs)
			}
			if mb.NewID != "" {
				what := "member"
				if mb.Learner {
					what = "learner"
				}
				line += fmt.Sprintf(", added as %s %s at %.0fms, started at %.0fms", what, mb.NewID, mb.AddedMs, mb.StartedMs)
			}
			if mb.PromotedMs > 0 {
				line += fmt.Sprintf(", caught up and promoted at %.0fms (%.0fms after its start, %d promotions refused)", mb.PromotedMs, mb.CaughtUpMs, mb.PromoteRefused)
			}
			if mb.ServingMs > 0 {
				line += fmt.Sprintf(", serving clients at %.0fms", mb.ServingMs)
			}
			if mb.Refused > 0 {
				line += fmt.Sprintf(" (etcd refused it %d times as unhealthy first)", mb.Refused)
			}
			lines = append(lines, line)
		}
	}
	return lines
}
