package reports

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// Delta is one metric compared between baseline runs and new runs (one or more of each: the runs of
// a --repeat folder). Base and New are the medians; +Inf stands for a measurement that never
// completed (a failover not seen).
type Delta struct {
	Metric      string
	Unit        string
	Base, New   float64
	BaseN, NewN int     // samples on each side
	Change      float64 // (New-Base)/Base; NaN when Base is 0
	LowerBetter bool
	Regression  bool
	Info        bool    // shown, never a regression
	P           float64 // one-sided rank test p-value that the new runs are worse (NaN: not computed)
	Allowed     float64 // how much worse the new median may be before it counts (the noise judged)
	Why         string  // the reason for the verdict, in words
	Disappeared bool    // the baseline had the metric, the new runs do not
	BaseSpread  float64 // max-min of the baseline samples
}

// metric is one number a run yields for comparison.
type metric struct {
	unit        string
	lowerBetter bool
	floor       float64 // the noise floor: smaller changes never count
	// noise is how much an election's randomized timeouts move the metric in one run, in the
	// metric's own unit (0: none). etcd draws a timeout from [ET, 2ET), and an election whose
	// pre-vote or vote fails (a follower a tick short of its own timeout refuses it; a split vote)
	// waits for another draw: one failover takes from ET to about 4ET, so two single runs of one
	// build differ by up to 3ET in a failover, and by 3ET of failed probes per election in the
	// prober's availability.
	noise float64
	info  bool
	// samples, for a distribution metric (a soak's per-fault figures): judged as a sample by a rank
	// test, pooled over each side's runs, not as one number.
	samples []float64
}

// runMetrics extracts the compared metrics of one run.
func runMetrics(r *Result) (map[string]float64, map[string]metric) {
	vals, kinds := map[string]float64{}, map[string]metric{}
	put := func(name string, v float64, m metric) { vals[name], kinds[name] = v, m }
	maxOf := func(vs []*float64) (float64, bool) {
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
	var elected, restored, outage, caught, read []*float64
	for _, f := range r.Failovers {
		elected, restored = append(elected, f.LeaderElectedMs), append(restored, f.WriteRestoredMs)
	}
	for _, f := range r.Faults {
		if f.OutageWriteMs != nil {
			outage = append(outage, f.OutageWriteMs)
		}
	}
	for _, x := range r.Recoveries {
		caught, read = append(caught, x.CaughtUpMs), append(read, x.ReadRestoredMs)
	}
	elections := len(r.Failovers) > 0
	et := electionTimeout(r)
	electionMs := 0.0 // what one election's randomized timeouts move a time in ms
	if elections {
		electionMs = 3 * et
	}
	// A healed member's recovery (a process start, then the leader's next append) moves by up to an
	// election timeout from one run to the next where the fault cost an election: one run a side
	// is judged against it, as the failover figures are.
	for _, m := range []struct {
		name  string
		vs    []*float64
		noise float64
		floor float64
	}{
		{"failover.leader_elected max", elected, 3 * et, 1}, {"failover.write_restored max", restored, 3 * et, 1},
		{"outage.write max", outage, electionMs, 1}, {"recovery.caught_up max", caught, electionMs, 50}, {"recovery.read_restored max", read, electionMs, 50},
	} {
		if v, ok := maxOf(m.vs); ok {
			put(m.name, v, metric{unit: "ms", lowerBetter: true, floor: m.floor, noise: m.noise})
		}
	}
	// A soak's hundreds of failovers: its maximum is one outlier; the median and p99 say more.
	if len(r.Faults) > ManyFaults {
		for _, m := range []struct {
			name string
			vs   []*float64
		}{{"failover.write_restored", restored}, {"outage.write", outage}} {
			if len(m.vs) == 0 {
				continue
			}
			var s Samples
			for _, v := range m.vs {
				if v == nil {
					s = append(s, math.Inf(1))
				} else {
					s = append(s, *v)
				}
			}
			// The median of 30 elections or more is not one draw: its noise is the runs' spread.
			p50noise := 0.0
			if len(s) < 30 {
				p50noise = 3 * et
			}
			put(m.name+" p50", s.Quantile(50), metric{unit: "ms", lowerBetter: true, floor: 1, noise: p50noise})
			put(m.name+" p99", s.Quantile(99), metric{unit: "ms", lowerBetter: true, floor: 1, noise: 3 * et})
			// The faults' figures are a sample of what one fault costs: judged as a distribution
			// (a rank test over every fault of each side), a 2x slower failover shows at any scale.
			put(m.name+" per fault", s.Quantile(50), metric{unit: "ms", lowerBetter: true, floor: 1, samples: s})
		}
	}
	// Member growth is held by thresholds; a comparison shows it beside the rest.
	var rss, fds float64
	grown := false
	for _, h := range r.MemberHealth {
		if h.RSSGrowthPerH != nil && h.FDsGrowthPerH != nil {
			rss, fds, grown = math.Max(rss, *h.RSSGrowthPerH/1e6), math.Max(fds, *h.FDsGrowthPerH), true
		}
	}
	if grown {
		put("member.rss_growth max", rss, metric{unit: "MB/h", info: true})
		put("member.fds_growth max", fds, metric{unit: "/h", info: true})
	}
	for op, s := range r.Latency {
		if op == "failed" || s.Count == 0 {
			continue
		}
		put("latency."+op+" p99", s.P99, metric{unit: "ms", lowerBetter: true, floor: 1, noise: electionMs})
	}
	put("throughput avg", r.Throughput.Avg, metric{unit: "ops/s", floor: 1})
	put("errors rate", rate(r.FailedOps, r.Ops), metric{lowerBetter: true, floor: 0.001})
	if r.Prober.Sent > 0 {
		// An election costs up to 3 ET more of failed probes in one run than in another: that
		// share of the probes sent, once per election, is the noise (a fraction, as the metric is).
		noise := 0.0
		if span := r.EndedAt.Sub(r.LoadStartedAt); elections && span > 0 {
			noise = math.Min(1, float64(len(r.Failovers))*3*et/float64(span.Milliseconds()))
		}
		put("availability", r.Prober.Availability, metric{floor: 0.001, noise: noise})
	}
	put("leader_changes", float64(r.Leader.Changes), metric{unit: "count", info: true})
	return vals, kinds
}

// electionTimeout is the run's election timeout (etcd's default when the scenario left it).
func electionTimeout(r *Result) float64 {
	if v, ok := r.Cluster.Etcd["election-timeout"]; ok {
		if ms, err := scenarios.EtcdMillis(v); err == nil {
			return float64(ms)
		}
	}
	return 1000
}

// ErrDifferentScenarios is returned by Compare when the runs are not of one scenario.
var ErrDifferentScenarios = errors.New("the runs are of different scenarios")

// Compare judges the new runs against the baseline runs, metric by metric, knowing each metric's
// noise, so that one unlucky election is not a failed night:
//   - with at least 2 runs on each side, a metric regresses when a one-sided rank test (Mann-Whitney)
//     says the new runs are worse (p <= 0.05; with fewer than 3 a side, every new run worse than every
//     baseline run), and the median is worse by more than the tolerance, the noise floor and the
//     baseline's own spread (max - min);
//   - with one run on a side there is no spread to learn from: a metric that an election's
//     randomized timeouts move (failovers; tails and availability in a run with elections) must be
//     worse by more than 3 election timeouts' worth, in its own unit (see metric.noise); others by more than the
//     tolerance and floor;
//   - a metric the baseline had and the new runs lack (a failover no longer seen) is a regression,
//     and so is a failover that never completed in a new run.
//
// Runs of different scenarios are refused (ErrDifferentScenarios).
func Compare(base, cur []*Result, tol float64) ([]Delta, error) {
	if len(base) == 0 || len(cur) == 0 {
		return nil, errors.New("nothing to compare: no runs on one side")
	}
	for _, r := range append(append([]*Result(nil), base...), cur...) {
		if r.Scenario != base[0].Scenario {
			return nil, fmt.Errorf("%w: %q and %q; compare runs of one scenario", ErrDifferentScenarios, base[0].Scenario, r.Scenario)
		}
	}
	collect := func(rs []*Result) (map[string][]float64, map[string]metric, map[string][]float64) {
		out, kinds, pooled := map[string][]float64{}, map[string]metric{}, map[string][]float64{}
		for _, r := range rs {
			vals, ks := runMetrics(r)
			for k, v := range vals {
				out[k] = append(out[k], v)
				// The largest noise of a side's runs (a run with more elections moves more).
				if prev, ok := kinds[k]; ok && prev.noise > ks[k].noise {
					m := ks[k]
					m.noise = prev.noise
					ks[k] = m
				}
				kinds[k] = ks[k]
				pooled[k] = append(pooled[k], ks[k].samples...)
			}
		}
		return out, kinds, pooled
	}
	bv, bk, bs := collect(base)
	nv, _, ns := collect(cur)
	names := make([]string, 0, len(bv))
	for k := range bv {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int { return strings.Compare(metricOrder(a), metricOrder(b)) })
	var out []Delta
	for _, name := range names {
		k := bk[name]
		b, n := bv[name], nv[name]
		d := Delta{Metric: name, Unit: k.unit, LowerBetter: k.lowerBetter, Info: k.info, Change: math.NaN(), P: math.NaN(),
			BaseN: len(b), NewN: len(n), Base: median(b), BaseSpread: spread(b)}
		if len(n) == 0 {
			d.New = math.NaN()
			if !k.info {
				d.Regression, d.Disappeared = true, true
				d.Why = "the baseline has it, the new runs do not"
			}
			out = append(out, d)
			continue
		}
		d.New = median(n)
		if k.samples != nil {
			// A distribution: the pooled faults of each side.
			b, n = bs[name], ns[name]
			d.Base, d.New, d.BaseN, d.NewN, d.BaseSpread = median(b), median(n), len(b), len(n), spread(b)
		}
		if d.Base != 0 && !math.IsInf(d.Base, 0) && !math.IsInf(d.New, 0) {
			d.Change = (d.New - d.Base) / math.Abs(d.Base)
		}
		switch {
		case k.info:
		case k.samples != nil:
			judgeSample(&d, k, b, n, tol)
		default:
			judge(&d, k, b, n, tol)
		}
		out = append(out, d)
	}
	return out, nil
}

// judgeSample judges two samples of one metric (every fault of each side): a regression when a
// one-sided rank test says the new faults cost more (p <= 0.01) and their median is worse by more
// than the tolerance and the floor. Fewer than 5 faults a side are too few to judge.
func judgeSample(d *Delta, k metric, b, n []float64, tol float64) {
	if len(b) < 5 || len(n) < 5 {
		d.Why = fmt.Sprintf("%d and %d faults: too few to judge as a distribution", len(b), len(n))
		return
	}
	d.P = rankTestWorse(b, n, k.lowerBetter)
	shift := d.New - d.Base
	if !k.lowerBetter {
		shift = -shift
	}
	if math.IsInf(d.Base, 0) {
		d.Why = "not comparable: the baseline's median fault never completed"
		return
	}
	allowed := math.Max(tol*math.Abs(d.Base), k.floor)
	d.Allowed = allowed
	switch {
	case d.P <= 0.01 && shift > allowed:
		d.Regression = true
		d.Why = fmt.Sprintf("the new run's %d faults cost more than the baseline's %d (rank test p=%.4f), median worse by %s", len(n), len(b), d.P, fmtVal(shift, d.Unit))
	case shift > allowed:
		d.Why = fmt.Sprintf("median worse, but the faults' distributions overlap (rank test p=%.3f)", d.P)
	}
}

func judge(d *Delta, k metric, b, n []float64, tol float64) {
	worse := func(x, y float64) float64 { // how much worse y is than x
		if k.lowerBetter {
			return y - x
		}
		return x - y
	}
	if k.lowerBetter && slices.ContainsFunc(n, func(v float64) bool { return math.IsInf(v, 1) }) && !slices.ContainsFunc(b, func(v float64) bool { return math.IsInf(v, 1) }) {
		d.Regression, d.Why = true, "never completed in a new run"
		return
	}
	if math.IsInf(d.Base, 0) || math.IsInf(d.New, 0) {
		d.Why = "not comparable: never completed in the baseline"
		return
	}
	shift := worse(d.Base, d.New)
	allowed := math.Max(tol*math.Abs(d.Base), k.floor)
	if len(b) >= 2 && len(n) >= 2 {
		allowed = math.Max(allowed, d.BaseSpread)
		d.Allowed = allowed
		if len(b) >= 3 && len(n) >= 3 {
			d.P = rankTestWorse(b, n, k.lowerBetter)
		}
		separated := d.P <= 0.05
		if math.IsNaN(d.P) {
			separated = allWorse(b, n, k.lowerBetter)
		}
		switch {
		case shift > allowed && separated:
			d.Regression = true
			d.Why = fmt.Sprintf("worse by %s, beyond the tolerance and the baseline's spread (%s)", fmtVal(shift, d.Unit), fmtVal(d.BaseSpread, d.Unit))
			if !math.IsNaN(d.P) {
				d.Why += fmt.Sprintf("; rank test p=%.3f", d.P)
			}
		case shift > allowed:
			d.Why = "worse, but the runs overlap: within the noise"
		}
		return
	}
	if len(b) >= 3 && len(n) == 1 {
		// A history of runs against one new run: the history's own spread is the noise. The new
		// run regresses when it is worse than every baseline run, by more than the tolerance.
		worst := slices.Max(b)
		if !k.lowerBetter {
			worst = slices.Min(b)
		}
		d.Allowed = worse(d.Base, worst) + allowed
		// One new run is one draw of an election's randomized timeouts: beyond the history, a
		// metric they move must also be worse than the median by 3 election timeouts.
		noise := k.noise
		d.Allowed = math.Max(d.Allowed, noise)
		beyond := worse(worst, d.New)
		switch {
		case beyond > allowed && shift > noise:
			d.Regression = true
			d.Why = fmt.Sprintf("worse than every one of the %d baseline runs, by %s beyond the worst of them (more than the tolerance)", len(b), fmtVal(beyond, d.Unit))
			if noise > 0 {
				d.Why += fmt.Sprintf(", and more than one election's randomized timeouts move it (3 election timeouts: %s) beyond their median", fmtVal(noise, d.Unit))
			}
		case beyond > allowed:
			d.Why = fmt.Sprintf("worse than every baseline run, but within what one election's randomized timeouts move one run (3 election timeouts: %s)", fmtVal(noise, d.Unit))
		case shift > allowed:
			d.Why = fmt.Sprintf("worse than the median, within the %d baseline runs' own spread", len(b))
		}
		return
	}
	allowed = math.Max(allowed, k.noise)
	d.Allowed = allowed
	if shift > allowed {
		d.Regression = true
		d.Why = fmt.Sprintf("worse by %s, more than allowed (%s) for one run a side", fmtVal(shift, d.Unit), fmtVal(allowed, d.Unit))
	} else if shift > math.Max(tol*math.Abs(d.Base), k.floor) {
		d.Why = fmt.Sprintf("worse, but within what an election's randomized timeouts move one run (3 election timeouts: %s): one run a side cannot tell; use --repeat", fmtVal(k.noise, d.Unit))
	}
}

// metricOrder keeps failovers first, then outages, recoveries, latency, the rest.
func metricOrder(name string) string {
	for i, p := range []string{"failover.", "outage.", "recovery.", "latency.", "throughput", "errors", "availability"} {
		if strings.HasPrefix(name, p) {
			return fmt.Sprintf("%d%s", i, name)
		}
	}
	return "9" + name
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	c := slices.Clone(v)
	slices.Sort(c)
	if len(c)%2 == 1 {
		return c[len(c)/2]
	}
	a, b := c[len(c)/2-1], c[len(c)/2]
	if math.IsInf(a, 0) || math.IsInf(b, 0) {
		return b
	}
	return (a + b) / 2
}

func spread(v []float64) float64 {
	if len(v) < 2 {
		return 0
	}
	lo, hi := slices.Min(v), slices.Max(v)
	if math.IsInf(hi, 0) {
		return 0
	}
	return hi - lo
}

func allWorse(b, n []float64, lowerBetter bool) bool {
	for _, x := range n {
		for _, y := range b {
			if (lowerBetter && x <= y) || (!lowerBetter && x >= y) {
				return false
			}
		}
	}
	return true
}

// rankTestWorse is the one-sided Mann-Whitney U test that the new samples are worse than the
// baseline's: the chance, were both drawn from one distribution, of a U at least as large. Exact by
// enumeration for small samples, by the normal approximation for large ones.
func rankTestWorse(b, n []float64, lowerBetter bool) float64 {
	u := func(base, cur []float64) float64 {
		var s float64
		for _, x := range cur {
			for _, y := range base {
				switch {
				case (lowerBetter && x > y) || (!lowerBetter && x < y):
					s++
				case x == y:
					s += 0.5
				}
			}
		}
		return s
	}
	obs := u(b, n)
	all := append(slices.Clone(b), n...)
	nn := len(n)
	if binom(len(all), nn) <= 200_000 {
		var total, atLeast float64
		idx := make([]int, nn)
		var rec func(start, depth int)
		rec = func(start, depth int) {
			if depth == nn {
				cur := make([]float64, 0, nn)
				base := make([]float64, 0, len(b))
				k := 0
				for i, v := range all {
					if k < nn && idx[k] == i {
						cur = append(cur, v)
						k++
					} else {
						base = append(base, v)
					}
				}
				total++
				if u(base, cur) >= obs-1e-9 {
					atLeast++
				}
				return
			}
			for i := start; i <= len(all)-(nn-depth); i++ {
				idx[depth] = i
				rec(i+1, depth+1)
			}
		}
		rec(0, 0)
		return atLeast / total
	}
	n1, n2 := float64(len(b)), float64(nn)
	mu, sigma := n1*n2/2, math.Sqrt(n1*n2*(n1+n2+1)/12)
	z := (obs - mu - 0.5) / sigma
	return 0.5 * math.Erfc(z/math.Sqrt2)
}

func binom(n, k int) float64 {
	r := 1.0
	for i := 1; i <= k; i++ {
		r = r * float64(n-k+i) / float64(i)
	}
	return r
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
	case math.IsNaN(v):
		return "-"
	case math.IsInf(v, 1):
		return "not seen"
	case unit == "ms":
		if v >= 1000 {
			return FormatDuration(time.Duration(v * float64(time.Millisecond)))
		}
		return fmt.Sprintf("%.2fms", v)
	case unit == "":
		return fmt.Sprintf("%.4f", v)
	case unit == "count":
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

// WriteCompare prints the deltas as a table and a last line saying whether anything regressed.
func WriteCompare(w io.Writer, base, cur []*Result, ds []Delta, tol float64) error {
	var b strings.Builder
	side := func(rs []*Result) string {
		if len(rs) == 1 {
			return fmt.Sprintf("%s (seed %d, %s)", rs[0].Scenario, rs[0].Seed, rs[0].StartedAt.Format("2006-01-02 15:04"))
		}
		return fmt.Sprintf("%s (%d runs, medians)", rs[0].Scenario, len(rs))
	}
	fmt.Fprintf(&b, "baseline %s vs new %s, tolerance %.0f%%\n", side(base), side(cur), tol*100)
	if len(base) >= 3 && len(cur) == 1 {
		fmt.Fprintf(&b, "note: one new run against %d baseline runs: a metric regresses when the new run is worse than every baseline run by more than the tolerance (and, where one election's timeouts move it, by 3 election timeouts beyond their median)\n", len(base))
	} else if len(base) < 3 || len(cur) < 3 {
		fmt.Fprintf(&b, "note: %d baseline and %d new runs: with fewer than 3 a side, noisy metrics are judged against the election timeout (3x it with one run a side), not a distribution (chaos run --repeat 3 gives one)\n",
			len(base), len(cur))
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\tbaseline\tnew\tchange\tverdict\t")
	for _, d := range ds {
		ch := "-"
		if !math.IsNaN(d.Change) {
			ch = fmt.Sprintf("%+.1f%%", d.Change*100)
		}
		verdict := d.Why
		switch {
		case d.Info:
			verdict = "information only"
		case d.Regression:
			verdict = "REGRESSION: " + d.Why
		}
		newText := fmtVal(d.New, d.Unit)
		if d.Disappeared {
			newText = "missing"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", d.Metric, fmtVal(d.Base, d.Unit), newText, ch, verdict)
	}
	tw.Flush()
	if Regressed(ds) {
		b.WriteString("\nregressed beyond the noise and the tolerance\n")
	} else {
		b.WriteString("\nno regression beyond the noise and the tolerance\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
