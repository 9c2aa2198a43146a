package reports

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// Delta is one metric compared between a baseline run and a new one.
type Delta struct {
	Metric      string
	Unit        string
	Base, New   float64 // +Inf: not seen (a failover that never completed)
	Change      float64 // (New-Base)/Base; NaN when Base is 0
	LowerBetter bool
	Regression  bool
	Info        bool // shown, never a regression
}

// Compare lines up the metrics two runs share and flags a regression where the new run is worse
// than the baseline by more than tol (0.1 = 10%) and by more than the metric's noise floor (1 ms,
// 1 op/s, 0.1% of ops), so that a 0.2 ms p99 becoming 0.3 ms is not a failed night.
func Compare(base, cur *Result, tol float64) []Delta {
	var out []Delta
	add := func(metric, unit string, b, n float64, lowerBetter bool, floor float64) {
		d := Delta{Metric: metric, Unit: unit, Base: b, New: n, LowerBetter: lowerBetter, Change: math.NaN()}
		if b != 0 && !math.IsInf(b, 0) && !math.IsInf(n, 0) {
			d.Change = (n - b) / math.Abs(b)
		}
		worse := n - b
		if !lowerBetter {
			worse = b - n
		}
		switch {
		case math.IsInf(n, 1) && !math.IsInf(b, 1) && lowerBetter:
			d.Regression = true
		case math.IsInf(b, 1) || math.IsInf(n, 1):
		default:
			d.Regression = worse > floor && worse > tol*math.Abs(b)
		}
		out = append(out, d)
	}
	maxOf := func(r *Result, pick func(*Result) []*float64) (float64, bool) {
		vs := pick(r)
		if len(vs) == 0 {
			return 0, false
		}
		m := 0.0
		for _, v := range vs {
			if v == nil {
				return math.Inf(1), true
			}
			m = math.Max(m, *v)
		}
		return m, true
	}
	for _, m := range []struct {
		name string
		pick func(*Result) []*float64
	}{
		{"failover.leader_elected max", func(r *Result) (o []*float64) {
			for _, f := range r.Failovers {
				o = append(o, f.LeaderElectedMs)
			}
			return
		}},
		{"failover.write_restored max", func(r *Result) (o []*float64) {
			for _, f := range r.Failovers {
				o = append(o, f.WriteRestoredMs)
			}
			return
		}},
		{"recovery.caught_up max", func(r *Result) (o []*float64) {
			for _, x := range r.Recoveries {
				o = append(o, x.CaughtUpMs)
			}
			return
		}},
		{"recovery.read_restored max", func(r *Result) (o []*float64) {
			for _, x := range r.Recoveries {
				o = append(o, x.ReadRestoredMs)
			}
			return
		}},
	} {
		b, okb := maxOf(base, m.pick)
		n, okn := maxOf(cur, m.pick)
		if okb && okn {
			add(m.name, "ms", b, n, true, 1)
		}
	}
	for _, op := range sortedKeys(base.Latency) {
		if n, ok := cur.Latency[op]; ok {
			add("latency."+op+" p99", "ms", base.Latency[op].P99, n.P99, true, 1)
		}
	}
	add("throughput avg", "ops/s", base.Throughput.Avg, cur.Throughput.Avg, false, 1)
	add("errors rate", "", rate(base.FailedOps, base.Ops), rate(cur.FailedOps, cur.Ops), true, 0.001)
	add("availability", "", base.Prober.Availability, cur.Prober.Availability, false, 0.001)
	out = append(out, Delta{Metric: "leader_changes", Unit: "count", Base: float64(base.Leader.Changes), New: float64(cur.Leader.Changes), Info: true, Change: math.NaN()})
	return out
}

func rate(n, of int64) float64 {
	if of == 0 {
		return 0
	}
	return float64(n) / float64(of)
}

// Regressed reports whether any delta is a regression.
func Regressed(ds []Delta) bool {
	for _, d := range ds {
		if d.Regression {
			return true
		}
	}
	return false
}

func fmtVal(v float64, unit string) string {
	switch {
	case math.IsInf(v, 1):
		return "not seen"
	case unit == "ms":
		return fmt.Sprintf("%.2fms", v)
	case unit == "":
		return fmt.Sprintf("%.4f", v)
	case unit == "count":
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

// WriteCompare prints the deltas as a table and a last line saying whether anything regressed.
func WriteCompare(w io.Writer, base, cur *Result, ds []Delta, tol float64) error {
	var b strings.Builder
	fmt.Fprintf(&b, "baseline %s (seed %d, %s) vs new %s (seed %d, %s), tolerance %.0f%%\n\n", base.Scenario, base.Seed, base.StartedAt.Format("2006-01-02 15:04"),
		cur.Scenario, cur.Seed, cur.StartedAt.Format("2006-01-02 15:04"), tol*100)
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\tbaseline\tnew\tchange\t")
	for _, d := range ds {
		ch := "-"
		if !math.IsNaN(d.Change) {
			ch = fmt.Sprintf("%+.1f%%", d.Change*100)
		}
		verdict := ""
		if d.Regression {
			verdict = "REGRESSION"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Metric, fmtVal(d.Base, d.Unit), fmtVal(d.New, d.Unit), ch, verdict)
	}
	tw.Flush()
	if Regressed(ds) {
		b.WriteString("\nregressed beyond the tolerance\n")
	} else {
		b.WriteString("\nno regression beyond the tolerance\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
