package scenarios

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Abort is one stop condition, in k6's grammar over a sliding window:
// "errors: rate > 0.5 over 10s", "latency.put: p(99) > 2s over 30s", or "alarm: NOSPACE".
// When one trips the harness heals every fault at once, stops the load and marks the run aborted.
type Abort struct {
	Expr   string    // as written
	Cond   Threshold // the condition that trips (Metric set); zero for an alarm
	Window Duration  // the sliding window the condition is evaluated over
	Alarm  string    // an etcd alarm that trips on sight: NOSPACE, CORRUPT, or ANY
	Line   int
}

// AbortMetrics are the metrics an abort condition can watch.
var AbortMetrics = []string{"errors", "availability", "throughput", "latency.<op>"}

// Alarms are the etcd alarms an abort condition can name.
var Alarms = []string{"NOSPACE", "CORRUPT", "ANY"}

var abortRe = regexp.MustCompile(`^\s*([a-z_.]+)\s*:\s*(.+?)\s+over\s+(\S+)\s*$`)

// ParseAbort parses one stop condition.
func ParseAbort(expr string) (Abort, error) {
	a := Abort{Expr: strings.TrimSpace(expr)}
	if v, ok := strings.CutPrefix(a.Expr, "alarm:"); ok {
		a.Alarm = strings.ToUpper(strings.TrimSpace(v))
		if !contains(Alarms, a.Alarm) {
			return Abort{}, fmt.Errorf("%q: alarm %q is not an etcd alarm; valid: %s", expr, strings.TrimSpace(v), strings.Join(Alarms, ", "))
		}
		return a, nil
	}
	m := abortRe.FindStringSubmatch(a.Expr)
	if m == nil {
		return Abort{}, fmt.Errorf("%q is not a stop condition; valid: \"METRIC: AGGREGATION OPERATOR VALUE over WINDOW\" (for example \"errors: rate > 0.5 over 10s\") or \"alarm: NOSPACE\"", expr)
	}
	metric := m[1]
	if !abortable(metric) {
		return Abort{}, fmt.Errorf("%q: %s cannot stop a run; valid metrics: %s", expr, metric, strings.Join(AbortMetrics, ", "))
	}
	t, err := ParseThreshold(metric, m[2])
	if err != nil {
		return Abort{}, err
	}
	if metric == "availability" && t.Agg != "rate" {
		return Abort{}, fmt.Errorf("%q: a stop condition judges availability as the share of the prober's writes acknowledged over its window; valid: availability: rate < 0.9 over 10s", expr)
	}
	d, err := time.ParseDuration(m[3])
	if err != nil || d < time.Second {
		return Abort{}, fmt.Errorf("%q: window %q must be a duration of 1s or more", expr, m[3])
	}
	a.Cond, a.Window = t, Duration(d)
	return a, nil
}

func abortable(metric string) bool {
	switch metric {
	case "errors", "availability", "throughput":
		return true
	}
	op, ok := strings.CutPrefix(metric, "latency.")
	return ok && (contains(MetricOps(), op) || op == "all")
}

// Aborts keeps the stop conditions in the order written.
type Aborts []Abort

func (as *Aborts) decodeNode(n *yaml.Node) error {
	var items []*yaml.Node
	switch n.Kind {
	case yaml.ScalarNode:
		items = []*yaml.Node{n}
	case yaml.SequenceNode:
		items = n.Content
	default:
		return fmt.Errorf("must be a list of stop conditions, for example [\"errors: rate > 0.5 over 10s\", \"alarm: NOSPACE\"]")
	}
	var errs fieldErrs
	for i, it := range items {
		a, err := ParseAbort(it.Value)
		if err != nil {
			errs = append(errs, fieldErr{it.Line, fmt.Sprintf("[%d]", i), err.Error()})
			continue
		}
		a.Line = it.Line
		*as = append(*as, a)
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// MarshalYAML writes the conditions back as they were written.
func (as Aborts) MarshalYAML() (any, error) {
	n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	for _, a := range as {
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: a.Expr, Style: yaml.DoubleQuotedStyle})
	}
	return n, nil
}

// QuorumLoss says whether fault f, in a cluster of size members, may leave fewer than a quorum of
// members reachable (killed, paused, or cut off from the others or from the clients: whether its
// action does so is the action's to say), and why.
// Targets that depend on the live cluster count at their largest.
func QuorumLoss(f Fault, size int) (bool, string) {
	quorum := size/2 + 1
	most := func(t Target) int {
		switch t.Kind {
		case "all":
			return size
		case "majority":
			return quorum
		case "minority":
			return (size - 1) / 2
		case "count":
			return t.Count
		case "percent":
			return (size*t.Percent + 99) / 100
		case "":
			return 0
		}
		return 1
	}
	cuts := func(n int, what string) (bool, string) {
		if size-n < quorum {
			return true, fmt.Sprintf("%s %d of %d members leaves %d, fewer than a quorum of %d", what, n, size, size-n, quorum)
		}
		return false, ""
	}
	a := f.Rules()
	switch {
	case a == nil || !a.CutsQuorum(f):
		return false, ""
	case !a.OnLinks:
		return cuts(most(f.Target), f.Action)
	}
	switch {
	case f.Client.Kind != "":
		return cuts(most(f.Client), "cutting the clients off from")
	case f.Target.Kind != "":
		return cuts(most(f.Target), "cutting off")
	case len(f.Isolate) > 0:
		n := 0
		for _, t := range f.Isolate {
			n += most(t)
		}
		// Isolated members form a side of their own: the bigger side keeps the quorum.
		if n > size-n {
			n = size - n
		}
		if size-n < quorum {
			return true, fmt.Sprintf("isolating splits %d members into sides of %d and %d: neither holds a quorum of %d", size, n, size-n, quorum)
		}
	case len(f.Groups) > 0:
		for _, g := range f.Groups {
			if len(g) >= quorum {
				return false, ""
			}
		}
		return true, fmt.Sprintf("no group holds a quorum of %d of %d members", quorum, size)
	}
	return false, ""
}
