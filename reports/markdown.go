package reports

import (
	"fmt"
	"io"
	"strings"
)

// WriteMarkdown writes summary.md: a short verdict for CI comments and chat.
func WriteMarkdown(w io.Writer, r *Result) error {
	var b strings.Builder
	mark := map[string]string{VerdictPass: "✅ PASS", VerdictFail: "❌ FAIL", VerdictError: "⚠️ ERROR", VerdictInterrupted: "⏹️ INTERRUPTED", VerdictAborted: "🛑 ABORTED", VerdictUnknown: "❔ UNKNOWN", VerdictPartial: "⚠️ PARTIAL"}[r.Verdict]
	fmt.Fprintf(&b, "### %s `%s` (seed %d)\n\n", orText(mark, strings.ToUpper(r.Verdict)), r.Scenario, r.Seed)
	fmt.Fprintf(&b, "%d-member %s cluster, etcd %s, %s", r.Cluster.Size, r.Cluster.Provider, r.Cluster.EtcdVersion, NetworkText(r.Cluster))
	if r.Reason != "" {
		fmt.Fprintf(&b, ". %s", r.Reason)
	}
	b.WriteString("\n\n")
	if len(r.Thresholds) > 0 {
		b.WriteString("| | threshold | observed |\n|---|---|---|\n")
		for _, t := range r.Thresholds {
			m := map[string]string{"pass": "✅", "fail": "❌", "unknown": "❔ unknown"}[t.State()]
			fmt.Fprintf(&b, "| %s | `%s %s` | %s |\n", m, t.Metric, t.Condition, t.Observed)
		}
		b.WriteString("\n")
	}
	if len(r.Checks) > 0 {
		b.WriteString("| | check | result |\n|---|---|---|\n")
		for _, c := range r.Checks {
			m := map[string]string{CheckPass: "✅", CheckFail: "❌", CheckUnknown: "❔", CheckSkipped: "⏭"}[c.Status]
			fmt.Fprintf(&b, "| %s | %s | %s |\n", m, c.Name, c.Summary)
		}
		b.WriteString("\n")
	}
	many := len(r.Faults) > ManyFaults
	if many { // a soak: its faults summed up per action, as in summary.txt
		b.WriteString("| action | faults | elections | leader elected | writes restored | write outage |\n|---|---|---|---|---|---|\n")
		for _, st := range FaultStatsOf(r) {
			fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s |\n", st.Action, st.Faults, st.Elections, st.LeaderElected.Text(), st.WriteRestored.Text(), st.OutageWrite.Text())
		}
		b.WriteString("\n(ms, p50 / p99 / max)\n\n")
	}
	for _, f := range r.Faults {
		if many {
			break
		}
		outage := ""
		if f.OutageWriteMs != nil {
			outage = ", write outage **" + msText(f.OutageWriteMs) + "**"
		}
		if fo := FailoverOf(r, f.Index); fo != nil {
			fmt.Fprintf(&b, "- fault #%d %s %s: leader elected **%s**, writes restored **%s**%s, new leader %s\n", f.Index, f.Action, fo.Member,
				msText(fo.LeaderElectedMs), msText(fo.WriteRestoredMs), outage, orText(fo.NewLeader, "none"))
		} else if f.OutageWriteMs != nil {
			fmt.Fprintf(&b, "- fault #%d %s %s: no election%s\n", f.Index, f.Action, strings.Join(f.Members, ","), outage)
		}
	}
	for _, rc := range r.Recoveries {
		if many {
			break
		}
		fmt.Fprintf(&b, "- after the heal of #%d, %s caught up in %s, linearizable read in %s\n", rc.Fault, rc.Member, msText(rc.CaughtUpMs), msText(rc.ReadRestoredMs))
	}
	var p99 []string
	for _, op := range sortedKeys(r.Latency) {
		if op != "all" && op != "failed" {
			p99 = append(p99, fmt.Sprintf("%s %.2f ms", op, r.Latency[op].P99))
		}
	}
	fmt.Fprintf(&b, "- %d ops, %d failed (left out of the percentiles); throughput %.0f ops/s; leader changes %d; p99 %s\n", r.Ops, r.FailedOps, r.Throughput.Avg, r.Leader.Changes, strings.Join(p99, ", "))
	fmt.Fprintf(&b, "- load: %s\n", LoadText(r.Load))
	if note := strings.TrimSpace(PathNote(r)); note != "" {
		fmt.Fprintf(&b, "- %s\n", note)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
