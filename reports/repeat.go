package reports

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
)

// RepeatRun is one run of a chaos run --repeat folder (repeat-1/, repeat-2/, ...).
type RepeatRun struct {
	Dir     string `json:"dir"`
	Seed    int64  `json:"seed"`
	Verdict string `json:"verdict"`
	Passed  bool   `json:"passed"`
	Reason  string `json:"reason,omitempty"`
}

// Aggregate is one metric over the runs of a repeat folder.
type Aggregate struct {
	Values []float64 `json:"values"` // one per run that had it, in run order (+Inf is written as null)
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
}

// ReadHistory gathers the baseline of a nightly job: every run under the paths (a run folder, a
// --repeat folder, or a folder of run folders, one level down), keeping only the runs of the
// scenario that passed (a failed, unknown, aborted or partial night is no baseline), the last n by
// start time. With a fingerprint, only runs of the same scenario text (after --set) count: a run
// of another rate, duration or setting is not comparable, and is left out and counted. It says
// what it left out.
func ReadHistory(paths []string, scenario, fingerprint string, n int) (runs []*Result, left string, err error) {
	var all []*Result
	failed, other, otherPrint := 0, 0, 0
	for _, p := range paths {
		rs, rerr := ReadRuns(p)
		if rerr != nil {
			entries, derr := os.ReadDir(p)
			if derr != nil {
				return nil, "", fmt.Errorf("%s: %w", p, rerr)
			}
			if len(entries) == 0 {
				continue // a history not begun: no runs yet (the caller says so), not a wrong folder
			}
			found := false
			for _, e := range entries {
				if !e.IsDir() {
					continue
				}
				sub, serr := ReadRuns(filepath.Join(p, e.Name()))
				if serr != nil {
					continue // not a run folder: a history folder may hold other things
				}
				found = true
				rs = append(rs, sub...)
			}
			if !found {
				return nil, "", fmt.Errorf("%s: neither a run folder nor a folder of run folders: %w", p, rerr)
			}
		}
		all = append(all, rs...)
	}
	for _, r := range all {
		switch {
		case r.Scenario != scenario:
			other++
		case fingerprint != "" && r.Fingerprint != fingerprint:
			otherPrint++
		case !r.Passed || r.Verdict != VerdictPass || r.Partial:
			failed++
		default:
			runs = append(runs, r)
		}
	}
	slices.SortStableFunc(runs, func(a, b *Result) int { return a.StartedAt.Compare(b.StartedAt) })
	older := 0
	if n > 0 && len(runs) > n {
		older = len(runs) - n
		runs = runs[older:]
	}
	var parts []string
	if failed > 0 {
		parts = append(parts, fmt.Sprintf("%d that did not pass", failed))
	}
	if other > 0 {
		parts = append(parts, fmt.Sprintf("%d of other scenarios", other))
	}
	if otherPrint > 0 {
		parts = append(parts, fmt.Sprintf("%d of another fingerprint than %s (the scenario's text or its --set differ: not comparable)", otherPrint, fingerprint))
	}
	if older > 0 {
		parts = append(parts, fmt.Sprintf("%d older than the last %d", older, n))
	}
	return runs, strings.Join(parts, ", "), nil
}

// ReadRuns reads what a path holds for comparison: a run folder or its result.json (one run), or a
// --repeat folder (each of its runs).
func ReadRuns(path string) ([]*Result, error) {
	dir := path
	if filepath.Base(path) == "result.json" {
		dir = filepath.Dir(path)
	}
	top, err := ReadResult(dir)
	if err != nil {
		return nil, err
	}
	if len(top.Repeats) == 0 {
		return []*Result{top}, nil
	}
	var out []*Result
	for _, rr := range top.Repeats {
		r, err := ReadResult(filepath.Join(dir, rr.Dir))
		if err != nil {
			return nil, fmt.Errorf("run %s of %s: %w", rr.Dir, dir, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// AggregateOf folds the compared metrics of runs into their distributions.
func AggregateOf(runs []*Result) map[string]Aggregate {
	vals := map[string][]float64{}
	for _, r := range runs {
		m, _ := runMetrics(r)
		for k, v := range m {
			vals[k] = append(vals[k], v)
		}
	}
	out := map[string]Aggregate{}
	for k, vs := range vals {
		a := Aggregate{Median: finite(median(vs)), Min: finite(slices.Min(vs)), Max: finite(slices.Max(vs))}
		for _, v := range vs {
			a.Values = append(a.Values, finite(v))
		}
		out[k] = a
	}
	return out
}

// finite turns +Inf (never completed) into -1, which JSON can carry; the summary says "not seen".
func finite(v float64) float64 {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return -1
	}
	return v
}

// WriteRepeatSummary writes the summary of a --repeat folder: each run's verdict, and each metric's
// median, min and max over the runs.
func WriteRepeatSummary(w io.Writer, top *Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "scenario %s: %d runs (seeds %d..%d)\n\n", top.Scenario, len(top.Repeats), top.Repeats[0].Seed, top.Repeats[len(top.Repeats)-1].Seed)
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	for _, rr := range top.Repeats {
		fmt.Fprintf(tw, "  %s\tseed %d\t%s\t%s\n", rr.Dir, rr.Seed, strings.ToUpper(rr.Verdict), rr.Reason)
	}
	tw.Flush()
	fmt.Fprintln(&b, "\nover the runs")
	fmt.Fprintln(tw, "  metric\tmedian\tmin\tmax\tvalues")
	keys := sortedKeys(top.Aggregate)
	slices.SortFunc(keys, func(a, c string) int { return strings.Compare(metricOrder(a), metricOrder(c)) })
	for _, k := range keys {
		a := top.Aggregate[k]
		unit := ""
		switch {
		case strings.HasSuffix(k, " max") || strings.HasSuffix(k, " p99"):
			unit = "ms"
		case k == "throughput avg":
			unit = "ops/s"
		case k == "leader_changes":
			unit = "count"
		}
		show := func(v float64) string {
			if v < 0 {
				return "not seen"
			}
			return fmtVal(v, unit)
		}
		var vs []string
		for _, v := range a.Values {
			vs = append(vs, show(v))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", k, show(a.Median), show(a.Min), show(a.Max), strings.Join(vs, " "))
	}
	tw.Flush()
	writeVerdict(&b, top)
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteRepeat writes a --repeat folder's top result.json and summary.txt.
func WriteRepeat(dir string, top *Result) error {
	if err := top.WriteJSON(dir); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "summary.txt"))
	if err != nil {
		return err
	}
	if err := WriteRepeatSummary(f, top); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
