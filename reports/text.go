package reports

import (
	"fmt"
	"io"
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
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	if len(r.Faults) > 0 {
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
	if len(r.Failovers) > 0 {
		fmt.Fprintln(&b, "\nfailover")
		for _, f := range r.Failovers {
			fmt.Fprintf(tw, "  #%d %s %s\tleader elected %s (%s)\twrites restored %s\tnew leader %s\n", f.Fault, f.Action, f.Member,
				msText(f.LeaderElectedMs), orText(f.LeaderElectedBy, "-"), msText(f.WriteRestoredMs), orText(f.NewLeader, "none"))
			if f.Note != "" {
				fmt.Fprintf(tw, "  \t%s\n", f.Note)
			}
		}
		tw.Flush()
	}
	if len(r.Recoveries) > 0 {
		fmt.Fprintln(&b, "\nrecovery after heal")
		for _, rc := range r.Recoveries {
			fmt.Fprintf(tw, "  #%d %s\tcaught up %s\tlinearizable read %s\n", rc.Fault, rc.Member, msText(rc.CaughtUpMs), msText(rc.ReadRestoredMs))
		}
		tw.Flush()
	}
	fmt.Fprintln(&b, "\nlatency (ms, successful ops, warm-up excluded)")
	fmt.Fprintln(tw, "  op\tcount\tp50\tp90\tp99\tp99.9\tmax")
	for _, op := range sortedKeys(r.Latency) {
		s := r.Latency[op]
		fmt.Fprintf(tw, "  %s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\n", op, s.Count, s.P50, s.P90, s.P99, s.P999, s.Max)
	}
	tw.Flush()
	if len(r.Phases) > 1 {
		fmt.Fprintln(&b, "\np99 by phase (ms, all ops)")
		for _, p := range r.Phases {
			if p.Name == "warmup" {
				continue
			}
			s := p.Latency["all"]
			fmt.Fprintf(tw, "  %s\t%.1fs-%.1fs\tcount %d\tp50 %.2f\tp99 %.2f\tmax %.2f\n", p.Name, p.StartS, p.EndS, s.Count, s.P50, s.P99, s.Max)
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
	fmt.Fprintf(&b, "throughput: avg %.0f ops/s, min %.0f, max %.0f; leader changes %d; prober availability %.4f\n",
		r.Throughput.Avg, r.Throughput.Min, r.Throughput.Max, r.Leader.Changes, r.Prober.Availability)
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
			mark := "PASS"
			if !t.Passed {
				mark = "FAIL"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\tobserved %s\n", mark, t.Metric, t.Condition, t.Observed)
		}
		tw.Flush()
	}
	fmt.Fprintf(&b, "\nverdict: %s", strings.ToUpper(r.Verdict))
	if r.Reason != "" {
		fmt.Fprintf(&b, " (%s)", r.Reason)
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
