package reports

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// Metrics is what thresholds are evaluated against.
type Metrics struct {
	Trends        map[string]Dist // latency.<op>, latency.all, failover.*, recovery.*
	Ops, Failed   int64
	LeaderChanges int
	Throughput    []float64 // ops per second of load
	Retries       map[string]RetryStats
	ProbesSent    int64
	ProbesAcked   int64
	// FaultsMeasured is how many faults were watched for what they cost (elections, outages).
	FaultsMeasured int
	// Members are the members' scrapes summed up (member.* metrics).
	Members []MemberHealth
	// Gauges are the other plain numbers, by metric name, one per operation (recovery.rpo_writes).
	Gauges map[string]Samples
}

// Threshold statuses.
const (
	ThresholdPass    = "pass"
	ThresholdFail    = "fail"
	ThresholdUnknown = "unknown"
)

// electionMetrics are the metrics a fault's election gives a sample to.
var electionMetrics = []string{"failover.leader_elected", "failover.write_restored"}

// Evaluate holds every threshold against the metrics. A metric with no samples fails its threshold
// ("no samples"): a threshold that cannot be checked must not pass silently. The one exception is a
// failover metric when faults ran and none cost an election: the threshold is unknown (not
// exercised), which is not a pass; the outage.write metric holds what those faults cost.
func Evaluate(ths scenarios.Thresholds, m Metrics) []ThresholdResult {
	out := make([]ThresholdResult, 0, len(ths))
	for _, th := range ths {
		v, text, ok := observe(th, m)
		r := ThresholdResult{Metric: th.Metric, Condition: th.Expr, Observed: text, Status: ThresholdFail}
		if !ok && slices.Contains(electionMetrics, th.Metric) && m.FaultsMeasured > 0 {
			r.Status, r.Observed = ThresholdUnknown, fmt.Sprintf("not exercised: none of the %d faults cost an election (see outage.write)", m.FaultsMeasured)
		}
		if th.PerHour {
			// A growth judged over minutes is the heap warming up: neither pass nor fail.
			for _, h := range m.Members {
				if h.GrowthTooShort {
					ok, r.Value, r.Passed = false, nil, false
					r.Status, r.Observed = ThresholdUnknown, fmt.Sprintf("too short to judge: %s's scrapes span %.0fs; a growth needs %s (cluster.growth-min-span)",
						h.Member, h.SpanS, time.Duration(h.GrowthMinSpanS*float64(time.Second)))
					break
				}
			}
		}
		if ok {
			r.Passed = th.Holds(v)
			if r.Passed {
				r.Status = ThresholdPass
			}
			if !math.IsInf(v, 0) {
				if th.IsDuration {
					v /= float64(time.Millisecond)
				}
				r.Value = &v
			}
		}
		out = append(out, r)
	}
	return out
}

func observe(th scenarios.Threshold, m Metrics) (float64, string, bool) {
	switch scenarios.MetricKindOf(th.Metric) {
	case scenarios.Trend:
		d := m.Trends[th.Metric]
		if d == nil || d.Count() == 0 {
			return 0, "no samples", false
		}
		var v float64
		switch th.Agg {
		case "p":
			v = d.Quantile(th.Percentile)
		case "avg":
			v = d.Mean()
		case "med":
			v = d.Quantile(50)
		case "min":
			v = d.Min()
		case "max":
			v = d.Max()
		case "count":
			c := float64(d.Count())
			return c, fmt.Sprintf("%d", d.Count()), true
		}
		if math.IsInf(v, 1) {
			return v, "not seen (never completed)", true
		}
		return v, FormatDuration(time.Duration(v)), true
	case scenarios.Rate:
		var num, den int64
		switch th.Metric {
		case "errors":
			num, den = m.Failed, m.Ops
		case "availability":
			num, den = m.ProbesAcked, m.ProbesSent
		}
		if den == 0 {
			// A count of failures over no ops is not a pass: nothing was exercised.
			return 0, "no samples", false
		}
		if th.Agg == "count" {
			return float64(num), fmt.Sprintf("%d", num), true
		}
		r := float64(num) / float64(den)
		return r, fmt.Sprintf("%.4f (%d of %d)", r, num, den), true
	case scenarios.Counter:
		return float64(m.LeaderChanges), fmt.Sprintf("%d", m.LeaderChanges), true
	case scenarios.Gauge:
		if g, ok := m.Gauges[th.Metric]; ok || th.Metric != "throughput" && !strings.HasPrefix(th.Metric, "retries.") {
			if len(g) == 0 {
				return 0, "no samples", false
			}
			var v float64
			switch th.Agg {
			case "min":
				v = g.Min()
			case "max":
				v = g.Max()
			default:
				v = g.Mean()
			}
			return v, fmt.Sprintf("%.0f (%d samples)", v, len(g)), true
		}
		if op, ok := strings.CutPrefix(th.Metric, "retries."); ok {
			rs, ok := m.Retries[op]
			if !ok || rs.Ops == 0 {
				return 0, "no samples", false
			}
			switch th.Agg {
			case "max":
				return float64(rs.MaxAttempts), fmt.Sprintf("%d attempts", rs.MaxAttempts), true
			case "min":
				return 1, "1 attempt", true
			}
			return rs.PerOp, fmt.Sprintf("%.3f attempts/op", rs.PerOp), true
		}
		if len(m.Throughput) == 0 {
			return 0, "no samples", false
		}
		s := Samples(m.Throughput)
		var v float64
		switch th.Agg {
		case "min":
			v = s.Min()
		case "max":
			v = s.Max()
		default:
			v = s.Mean()
		}
		return v, fmt.Sprintf("%.1f ops/s", v), true
	case scenarios.Member:
		return observeMember(th, m.Members)
	}
	return 0, "unknown metric", false
}

// observeMember aggregates a member metric over the members that have a value: the largest, the
// smallest or the mean. A growth needs 3 scrapes after the warm-up; with none, "no samples" fails.
func observeMember(th scenarios.Threshold, members []MemberHealth) (float64, string, bool) {
	var vals Samples
	var names []string
	fitted := 0
	for _, h := range members {
		fitted += h.Fitted
		if v, ok := memberValue(th.Metric, th.PerHour, h); ok {
			vals, names = append(vals, v), append(names, h.Member)
		}
	}
	if len(vals) == 0 {
		return 0, fmt.Sprintf("no samples (%d scrapes after the warm-up; a growth needs 3 of a member)", fitted), false
	}
	var v float64
	who := ""
	switch th.Agg {
	case "min":
		v = vals.Min()
		who = names[slices.Index(vals, v)]
	case "avg":
		v, who = vals.Mean(), fmt.Sprintf("mean of %d members", len(vals))
	default:
		v = vals.Max()
		who = names[slices.Index(vals, v)]
	}
	text := fmt.Sprintf("%.0f", v)
	if th.IsBytes {
		text = BytesText(v)
	}
	if th.PerHour {
		text += "/h"
	}
	return v, fmt.Sprintf("%s (%s)", text, who), true
}

// FormatDuration prints a duration with 3 significant digits in a readable unit.
func FormatDuration(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.3fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.3gms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.3gµs", float64(d)/1e3)
	}
}
