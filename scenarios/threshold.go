package scenarios

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MetricKind says which aggregations a metric supports and what its values are.
type MetricKind int

const (
	// Trend metrics are durations with a distribution: p(N), avg, med, min, max, count.
	Trend MetricKind = iota + 1
	// Rate metrics are fractions in [0,1] (errors: failed ops / ops), also with a count.
	Rate
	// Counter metrics are whole counts.
	Counter
	// Gauge metrics are plain numbers with avg, min, max (throughput in ops/s, retries in attempts per op).
	Gauge
	// Member metrics are read from the members' own /metrics (members.jsonl), one value per member,
	// aggregated over the members with max, min or avg: a growth per hour (least squares over the
	// run after the warm-up) or, for member.db_size without /h, the largest size seen.
	Member
)

// MemberMetrics are the member metric names.
var MemberMetrics = []string{"member.rss_growth", "member.fds_growth", "member.db_size"}

// Aggregations valid for each metric kind.
var aggregations = map[MetricKind][]string{
	Trend:   {"p(N)", "avg", "med", "min", "max", "count"},
	Rate:    {"rate", "count"},
	Counter: {"count"},
	Gauge:   {"avg", "min", "max"},
	Member:  {"max", "min", "avg"},
}

type namedMetric struct {
	name string
	kind MetricKind
}

// namedMetrics are the threshold metrics with a fixed name, with their kinds, in the order error
// messages list them: the run's own, then the trends the registered workload kinds report
// (WorkloadRules.Trends: lock_hold, failover.election_handover), then the rest. latency.<op>
// (trend) and retries.<op> (gauge) follow from MetricOps.
func namedMetrics() []namedMetric {
	out := []namedMetric{{"failover.leader_elected", Trend}, {"failover.write_restored", Trend}, {"outage.write", Trend},
		{"recovery.caught_up", Trend}, {"recovery.read_restored", Trend},
		// what operations measured (one sample per operation, or per member it did)
		{"recovery.rto", Trend}, {"recovery.rpo_writes", Gauge}, {"compact.duration", Trend}, {"defrag.duration", Trend},
		{"defrag.member_latency", Trend}, {"learner.caught_up", Trend}, {"learner.promoted", Trend},
		{"upgrade.member_healthy", Trend}, {"upgrade.mixed_window", Trend}, {"downgrade.member_healthy", Trend}, {"downgrade.mixed_window", Trend}}
	for _, k := range workloadKinds.items {
		for _, t := range k.Trends {
			out = append(out, namedMetric{t, Trend})
		}
	}
	return append(out, namedMetric{"errors", Rate}, namedMetric{"availability", Rate}, namedMetric{"leader_changes", Counter},
		namedMetric{"throughput", Gauge}, namedMetric{"latency.failed", Trend})
}

// MetricKindOf returns the kind of a threshold metric name, or 0 if the name is not a metric.
func MetricKindOf(name string) MetricKind {
	for _, m := range namedMetrics() {
		if m.name == name {
			return m.kind
		}
	}
	if contains(MemberMetrics, name) {
		return Member
	}
	if op, ok := strings.CutPrefix(name, "latency."); ok && (contains(MetricOps(), op) || op == "all") {
		return Trend
	}
	if op, ok := strings.CutPrefix(name, "retries."); ok && (contains(MetricOps(), op) || op == "all") {
		return Gauge
	}
	return 0
}

// MetricNames lists the threshold metric names, for error messages.
func MetricNames() []string {
	var names []string
	for _, m := range namedMetrics() {
		names = append(names, m.name)
	}
	for _, op := range append(MetricOps(), "all") {
		names = append(names, "latency."+op)
	}
	for _, op := range append(MetricOps(), "all") {
		names = append(names, "retries."+op)
	}
	return append(names, MemberMetrics...)
}

// Threshold is one condition on one metric, in k6's grammar: "p(99) < 50ms", "max < 3s", "rate < 0.01".
type Threshold struct {
	Metric     string
	Expr       string  // as written
	Agg        string  // p, avg, med, min, max, rate, count
	Percentile float64 // for Agg == "p"
	Op         string  // <, <=, >, >=, ==, !=
	Value      float64 // nanoseconds for a duration, bytes for a size, else the number
	IsDuration bool
	// PerHour marks a growth: member.rss_growth and member.fds_growth always, member.db_size when
	// its value ends in /h ("max < 50MB/h"); IsBytes a value in bytes.
	PerHour bool
	IsBytes bool
	Line    int
}

// Thresholds keeps the order they were written in.
type Thresholds []Threshold

var exprRe = regexp.MustCompile(`^\s*(p\(\s*([0-9]+(?:\.[0-9]+)?)\s*\)|avg|med|min|max|rate|count)\s*(<=|>=|==|!=|<|>)\s*(\S+)\s*$`)

// ParseThreshold parses one expression for a metric.
func ParseThreshold(metric, expr string) (Threshold, error) {
	kind := MetricKindOf(metric)
	if kind == 0 {
		return Threshold{}, fmt.Errorf("unknown metric %q; valid: %s", metric, strings.Join(MetricNames(), ", "))
	}
	m := exprRe.FindStringSubmatch(expr)
	if m == nil {
		return Threshold{}, fmt.Errorf("%q is not a threshold; valid: AGGREGATION OPERATOR VALUE with aggregation one of %s and operator one of < <= > >= == != (for example \"p(99) < 50ms\")",
			expr, strings.Join(aggregations[kind], ", "))
	}
	t := Threshold{Metric: metric, Expr: strings.TrimSpace(expr), Agg: m[1], Op: m[3]}
	if m[2] != "" {
		t.Agg = "p"
		p, _ := strconv.ParseFloat(m[2], 64)
		if p <= 0 || p > 100 {
			return Threshold{}, fmt.Errorf("%q: percentile %v is outside (0, 100]", expr, p)
		}
		t.Percentile = p
	}
	valid := aggregations[kind]
	if !contains(valid, t.Agg) && !(t.Agg == "p" && contains(valid, "p(N)")) {
		return Threshold{}, fmt.Errorf("%q: aggregation %s does not apply to %s; valid: %s", expr, m[1], metric, strings.Join(valid, ", "))
	}
	raw := m[4]
	if kind == Trend && t.Agg != "count" {
		d, err := time.ParseDuration(raw)
		if err != nil {
			// k6 writes trend values in milliseconds.
			f, ferr := strconv.ParseFloat(raw, 64)
			if ferr != nil {
				return Threshold{}, fmt.Errorf("%q: %q is not a duration such as 50ms or 3s", expr, raw)
			}
			d = time.Duration(f * float64(time.Millisecond))
		}
		t.Value, t.IsDuration = float64(d), true
		return t, nil
	}
	if kind == Member {
		return parseMemberValue(t, expr, raw)
	}
	f, err := strconv.ParseFloat(strings.TrimSuffix(raw, "%"), 64)
	if err != nil {
		return Threshold{}, fmt.Errorf("%q: %q is not a number", expr, raw)
	}
	if strings.HasSuffix(raw, "%") {
		f /= 100
	}
	t.Value = f
	return t, nil
}

var byteUnits = []struct {
	suffix string
	factor float64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}

// parseMemberValue reads a member metric's value: bytes (50MB, 2GiB, 1e6) for rss and db size,
// a count for open fds, with /h for a growth per hour (optional where the metric is a growth).
func parseMemberValue(t Threshold, expr, raw string) (Threshold, error) {
	num, perHour := strings.CutSuffix(raw, "/h")
	switch t.Metric {
	case "member.rss_growth", "member.fds_growth":
		t.PerHour = true
	default:
		t.PerHour = perHour
	}
	example := map[string]string{"member.rss_growth": "50MB/h", "member.fds_growth": "100/h", "member.db_size": "2GB, or 100MB/h for its growth"}[t.Metric]
	t.IsBytes = t.Metric != "member.fds_growth"
	factor := 1.0
	if t.IsBytes {
		for _, u := range byteUnits {
			if n, ok := strings.CutSuffix(num, u.suffix); ok {
				num, factor = n, u.factor
				break
			}
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return Threshold{}, fmt.Errorf("%q: %q is not a value such as %s (units B, KB, MB, GB, KiB, MiB, GiB)", expr, raw, example)
	}
	t.Value = f * factor
	return t, nil
}

func (ts *Thresholds) decodeNode(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("must map metric names to lists of conditions, for example latency.put: [\"p(99) < 50ms\"]")
	}
	var errs fieldErrs
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var exprs []*yaml.Node
		switch v.Kind {
		case yaml.ScalarNode:
			exprs = []*yaml.Node{v}
		case yaml.SequenceNode:
			exprs = v.Content
		default:
			errs = append(errs, fieldErr{k.Line, k.Value, "must be a list of conditions"})
			continue
		}
		for _, e := range exprs {
			t, err := ParseThreshold(k.Value, e.Value)
			if err != nil {
				errs = append(errs, fieldErr{e.Line, k.Value, err.Error()})
				continue
			}
			t.Line = e.Line
			*ts = append(*ts, t)
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// MarshalYAML writes the thresholds back as a mapping of lists.
func (ts Thresholds) MarshalYAML() (any, error) {
	n := &yaml.Node{Kind: yaml.MappingNode}
	idx := map[string]*yaml.Node{}
	for _, t := range ts {
		seq, ok := idx[t.Metric]
		if !ok {
			seq = &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			idx[t.Metric] = seq
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: t.Metric}, seq)
		}
		seq.Content = append(seq.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: t.Expr, Style: yaml.DoubleQuotedStyle})
	}
	return n, nil
}

// Holds tells whether the observed value satisfies the threshold.
func (t Threshold) Holds(observed float64) bool {
	switch t.Op {
	case "<":
		return observed < t.Value
	case "<=":
		return observed <= t.Value
	case ">":
		return observed > t.Value
	case ">=":
		return observed >= t.Value
	case "==":
		return observed == t.Value
	case "!=":
		return observed != t.Value
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
