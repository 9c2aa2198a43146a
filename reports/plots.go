package reports

import (
	"bytes"
	"fmt"
	"html/template"
	"image/color"
	"math"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Chart is one plot of the report, rendered to inline SVG.
type Chart struct {
	ID, Title string
	SVG       template.HTML
}

var (
	faultShade = color.NRGBA{R: 230, G: 80, B: 60, A: 40}
	leaderMark = color.NRGBA{R: 120, G: 60, B: 200, A: 255}
	palette    = []color.Color{
		color.NRGBA{R: 31, G: 119, B: 180, A: 255}, color.NRGBA{R: 255, G: 127, B: 14, A: 255},
		color.NRGBA{R: 44, G: 160, B: 44, A: 255}, color.NRGBA{R: 214, G: 39, B: 40, A: 255},
		color.NRGBA{R: 148, G: 103, B: 189, A: 255}, color.NRGBA{R: 140, G: 86, B: 75, A: 255},
		color.NRGBA{R: 227, G: 119, B: 194, A: 255}, color.NRGBA{R: 127, G: 127, B: 127, A: 255},
	}
)

func render(id, title string, p *plot.Plot, w, h vg.Length) (Chart, error) {
	c := vgsvg.New(w, h)
	p.Draw(draw.New(c))
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return Chart{}, fmt.Errorf("chart %s: %w", id, err)
	}
	s := buf.String()
	if i := strings.Index(s, "<svg"); i > 0 {
		s = s[i:] // inline: no XML declaration
	}
	return Chart{ID: id, Title: title, SVG: template.HTML(s)}, nil
}

func line(xs, ys []float64, c color.Color, width vg.Length, dashes ...vg.Length) (*plotter.Line, error) {
	pts := make(plotter.XYs, len(xs))
	for i := range xs {
		pts[i] = plotter.XY{X: xs[i], Y: ys[i]}
	}
	l, err := plotter.NewLine(pts)
	if err != nil {
		return nil, err
	}
	l.Color, l.Width, l.Dashes = c, width, dashes
	return l, nil
}

// faultWindows shades each fault from its injection to its heal (to the end if never healed), and
// marks each leader change with a dashed vertical line, between y0 and y1.
func (rd *RunDir) faultWindows(p *plot.Plot, y0, y1, end float64) error {
	for _, f := range rd.Result.Faults {
		to := end
		if f.HealedAtS != nil {
			to = math.Max(*f.HealedAtS, f.AtS+0.05)
		}
		poly, err := plotter.NewPolygon(plotter.XYs{{X: f.AtS, Y: y0}, {X: to, Y: y0}, {X: to, Y: y1}, {X: f.AtS, Y: y1}})
		if err != nil {
			return err
		}
		poly.Color, poly.LineStyle.Width = faultShade, 0
		p.Add(poly)
	}
	for _, e := range rd.Events {
		if e.Kind != "leader_changed" {
			continue
		}
		l, err := line([]float64{e.T, e.T}, []float64{y0, y1}, leaderMark, vg.Points(1), vg.Points(3), vg.Points(2))
		if err != nil {
			return err
		}
		p.Add(l)
	}
	return nil
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

// latencyOverTime plots p50, p99 and max of one op per second, on a log scale, with the faults shaded
// and leader changes marked, as Jepsen's latency plots do.
func (rd *RunDir) latencyOverTime(op string) (Chart, error) {
	var xs, p50, p99, mx []float64
	for _, pt := range rd.Points[op] {
		xs = append(xs, pt.T)
		p50, p99, mx = append(p50, pt.P50), append(p99, pt.P99), append(mx, pt.Max)
	}
	p := plot.New()
	p.Title.Text = "latency." + op + " per second"
	if rd.BucketS > 1 {
		p.Title.Text = fmt.Sprintf("latency.%s per %.0f seconds", op, rd.BucketS)
	}
	p.X.Label.Text = "seconds since the load started"
	p.Y.Label.Text = "ms (log)"
	p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	if len(xs) == 0 {
		return Chart{}, fmt.Errorf("no latency samples for %s", op)
	}
	lo, hi := math.Inf(1), 0.0
	for i := range xs {
		lo, hi = math.Min(lo, math.Max(p50[i], 0.001)), math.Max(hi, mx[i])
	}
	lo, hi = lo/1.5, hi*1.5
	end := xs[len(xs)-1] + 1
	if err := rd.faultWindows(p, lo, hi, end); err != nil {
		return Chart{}, err
	}
	for i, s := range []struct {
		name string
		ys   []float64
	}{{"p50", p50}, {"p99", p99}, {"max", mx}} {
		ys := make([]float64, len(s.ys))
		for k, y := range s.ys {
			ys[k] = math.Max(y, lo) // log scale: no zeros
		}
		l, err := line(xs, ys, palette[i], vg.Points(1.2))
		if err != nil {
			return Chart{}, err
		}
		p.Add(l)
		p.Legend.Add(s.name, l)
	}
	p.Y.Min, p.Y.Max = lo, hi
	p.Legend.Top = true
	return render("latency-"+op, "latency."+op+" over time", p, 9*vg.Inch, 3.2*vg.Inch)
}

// throughputOverTime plots completed and failed ops per second.
func (rd *RunDir) throughputOverTime() (Chart, error) {
	tl := rd.Result.Throughput.Timeline
	if len(tl) == 0 {
		return Chart{}, fmt.Errorf("no throughput timeline")
	}
	var xs, ops, failed []float64
	top := 1.0
	for _, s := range tl {
		xs = append(xs, s.T+0.5)
		ops = append(ops, s.Ops)
		failed = append(failed, float64(s.Failed))
		top = math.Max(top, math.Max(s.Ops, float64(s.Failed)))
	}
	p := plot.New()
	p.Title.Text = "throughput and errors per second"
	p.X.Label.Text = "seconds since the load started"
	p.Y.Label.Text = "ops/s"
	if err := rd.faultWindows(p, 0, top*1.1, xs[len(xs)-1]+0.5); err != nil {
		return Chart{}, err
	}
	for i, s := range []struct {
		name string
		ys   []float64
	}{{"completed ops/s", ops}, {"failed ops", failed}} {
		l, err := line(xs, s.ys, palette[[]int{0, 3}[i]], vg.Points(1.2))
		if err != nil {
			return Chart{}, err
		}
		p.Add(l)
		p.Legend.Add(s.name, l)
	}
	p.Y.Min, p.Y.Max = 0, top*1.1
	p.Legend.Top = true
	return render("throughput", "throughput and errors over time", p, 9*vg.Inch, 2.8*vg.Inch)
}

// percentileTicks label the spectrum's x axis, which is -log10(1-q): 0 is p0, 1 p90, 2 p99, ...
type percentileTicks struct{}

func (percentileTicks) Ticks(min, max float64) []plot.Tick {
	labels := []string{"0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"}
	var out []plot.Tick
	for i := 0; i < len(labels) && float64(i) <= max+1e-9; i++ {
		if float64(i) >= min-1e-9 {
			out = append(out, plot.Tick{Value: float64(i), Label: labels[i]})
		}
	}
	return out
}

func spectrum(iv *Interval) (xs, ys []float64) {
	for _, b := range iv.H.CumulativeDistribution() {
		q := b.Quantile / 100
		if q >= 1 || b.Count == 0 {
			continue
		}
		xs = append(xs, -math.Log10(1-q))
		ys = append(ys, ms(b.ValueAt))
	}
	xs = append(xs, -math.Log10(1/float64(iv.H.TotalCount()+1)))
	ys = append(ys, ms(iv.H.Max()))
	return
}

// spectrumChart plots one op's latency by percentile, HdrHistogram style: the whole run and each phase.
func (rd *RunDir) spectrumChart(op string) (Chart, error) {
	p := plot.New()
	p.Title.Text = "latency." + op + " by percentile"
	p.X.Label.Text = "percentile"
	p.Y.Label.Text = "ms (log)"
	p.X.Tick.Marker = percentileTicks{}
	p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	type series struct {
		name string
		iv   *Interval
	}
	var ss []series
	if t := rd.Totals[op]; t != nil {
		ss = append(ss, series{"whole run", t})
	}
	idx := make([]int, 0, len(rd.Phases))
	for i := range rd.Phases {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		if iv := rd.Phases[i][op]; iv != nil && i < len(rd.Result.Phases) && rd.Result.Phases[i].Name != "warmup" {
			ss = append(ss, series{rd.Result.Phases[i].Name, iv})
		}
	}
	for _, g := range []string{"before", "during faults", "after faults"} { // a run of many faults
		if iv := rd.Groups[g][op]; iv != nil {
			ss = append(ss, series{g, iv})
		}
	}
	if len(ss) == 0 {
		return Chart{}, fmt.Errorf("no histograms for %s", op)
	}
	maxX := 0.0
	for k, s := range ss {
		xs, ys := spectrum(s.iv)
		for i := range ys {
			ys[i] = math.Max(ys[i], 0.001)
			maxX = math.Max(maxX, xs[i])
		}
		l, err := line(xs, ys, palette[k%len(palette)], vg.Points(1.2))
		if err != nil {
			return Chart{}, err
		}
		if k == 0 {
			l.Width = vg.Points(2.2)
		}
		p.Add(l)
		p.Legend.Add(s.name, l)
	}
	p.X.Min, p.X.Max = 0, math.Ceil(maxX)
	p.Legend.Top, p.Legend.Left = false, false // bottom right: the curves rise to the right
	return render("spectrum-"+op, "latency."+op+" percentile spectrum", p, 9*vg.Inch, 3.2*vg.Inch)
}

// failoverTimeline draws each fault as a bar from injection to heal, with the moments a leader was
// elected, writes were restored and each member caught up.
func (rd *RunDir) failoverTimeline() (Chart, error) {
	r := rd.Result
	if len(r.Faults) == 0 {
		return Chart{}, fmt.Errorf("no faults")
	}
	p := plot.New()
	p.Title.Text = "faults: injected, leader elected, writes restored, healed, caught up"
	p.X.Label.Text = "seconds since the load started"
	p.Y.Label.Text = "fault"
	var ticks []plot.Tick
	marks := map[string]plotter.XYs{}
	order := []string{"injected", "leader elected", "writes restored", "healed", "caught up", "read restored"}
	for _, f := range r.Faults {
		y := float64(f.Index)
		ticks = append(ticks, plot.Tick{Value: y, Label: fmt.Sprintf("#%d %s", f.Index, f.Action)})
		end := f.AtS
		if f.HealedAtS != nil {
			end = *f.HealedAtS
			marks["healed"] = append(marks["healed"], plotter.XY{X: end, Y: y})
		}
		bar, err := line([]float64{f.AtS, math.Max(end, f.AtS+0.05)}, []float64{y, y}, faultShade, vg.Points(10))
		if err != nil {
			return Chart{}, err
		}
		bar.Color = color.NRGBA{R: 230, G: 80, B: 60, A: 110}
		p.Add(bar)
		marks["injected"] = append(marks["injected"], plotter.XY{X: f.AtS, Y: y})
		for _, fo := range r.Failovers {
			if fo.Fault != f.Index {
				continue
			}
			if fo.LeaderElectedMs != nil {
				marks["leader elected"] = append(marks["leader elected"], plotter.XY{X: f.AtS + *fo.LeaderElectedMs/1000, Y: y})
			}
			if fo.WriteRestoredMs != nil {
				marks["writes restored"] = append(marks["writes restored"], plotter.XY{X: f.AtS + *fo.WriteRestoredMs/1000, Y: y})
			}
		}
		for _, rc := range r.Recoveries {
			if rc.Fault != f.Index || f.HealedAtS == nil {
				continue
			}
			if rc.CaughtUpMs != nil {
				marks["caught up"] = append(marks["caught up"], plotter.XY{X: *f.HealedAtS + *rc.CaughtUpMs/1000, Y: y})
			}
			if rc.ReadRestoredMs != nil {
				marks["read restored"] = append(marks["read restored"], plotter.XY{X: *f.HealedAtS + *rc.ReadRestoredMs/1000, Y: y})
			}
		}
	}
	shapes := []draw.GlyphDrawer{draw.CircleGlyph{}, draw.TriangleGlyph{}, draw.SquareGlyph{}, draw.RingGlyph{}, draw.PyramidGlyph{}, draw.BoxGlyph{}}
	for i, name := range order {
		if len(marks[name]) == 0 {
			continue
		}
		s, err := plotter.NewScatter(marks[name])
		if err != nil {
			return Chart{}, err
		}
		s.GlyphStyle.Shape, s.GlyphStyle.Color, s.GlyphStyle.Radius = shapes[i], palette[i%len(palette)], vg.Points(4)
		p.Add(s)
		p.Legend.Add(name, s)
	}
	p.Y.Tick.Marker = plot.ConstantTicks(ticks)
	// Room above the bars for the legend.
	p.Y.Min, p.Y.Max = -0.7, float64(len(r.Faults))+1.6
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, xys := range marks {
		for _, xy := range xys {
			lo, hi = math.Min(lo, xy.X), math.Max(hi, xy.X)
		}
	}
	pad := math.Max((hi-lo)*0.08, 0.2)
	p.X.Min, p.X.Max = lo-pad, hi+pad
	p.Legend.Top = true
	h := vg.Length(2.2+0.5*float64(len(r.Faults))) * vg.Inch
	return render("failover", "fault timeline", p, 9*vg.Inch, h)
}

// Charts renders every chart the run's data allows, in report order; a chart without data is left
// out and named in missing.
func (rd *RunDir) Charts() (charts []Chart, missing []string) {
	add := func(c Chart, err error) {
		if err != nil {
			missing = append(missing, err.Error())
			return
		}
		charts = append(charts, c)
	}
	ops := rd.ops()
	for _, op := range ops {
		add(rd.latencyOverTime(op))
	}
	add(rd.throughputOverTime())
	switch n := len(rd.Result.Faults); {
	case n > ManyFaults:
		add(rd.failoverOverTime())
	case n > 0:
		add(rd.failoverTimeline())
	}
	for _, op := range ops {
		add(rd.spectrumChart(op))
	}
	if mc, err := rd.memberCharts(); err != nil {
		missing = append(missing, err.Error())
	} else {
		charts = append(charts, mc...)
	}
	return charts, missing
}

// ops lists the ops with latency in the run, in a fixed order.
func (rd *RunDir) ops() []string {
	var out []string
	for _, op := range sortedKeys(rd.Result.Latency) {
		if op != "all" {
			out = append(out, op)
		}
	}
	return out
}
