package reports

import (
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// ManyFaults is where a report stops listing every fault and summarises them by action (a soak
// repeating a fault every 90s for 8h has 320).
const ManyFaults = 12

// FaultStat sums up the occurrences of one action (Action "all": every fault) over a run: how many
// fired, how many cost an election, and the distribution of what they cost, in milliseconds.
type FaultStat struct {
	Action    string `json:"action"`
	Faults    int    `json:"faults"`
	Measured  int    `json:"measured"` // fired and measured (not skipped by the quorum guard, no error)
	Elections int    `json:"elections"`
	// LeaderElected and WriteRestored are over the faults that cost an election; OutageWrite over
	// every measured fault. A failover that never completed counts as +Inf (shown as "never").
	LeaderElected Occurrences `json:"leader_elected_ms"`
	WriteRestored Occurrences `json:"write_restored_ms"`
	OutageWrite   Occurrences `json:"outage_write_ms"`
	CaughtUp      Occurrences `json:"caught_up_ms"`
}

// Occurrences is a distribution over a run's fault occurrences, in milliseconds: N samples, of
// which Never never completed; a percentile that falls on one of those is null (text: "never").
type Occurrences struct {
	N     int      `json:"n"`
	Never int      `json:"never,omitempty"`
	P50   *float64 `json:"p50"`
	P99   *float64 `json:"p99"`
	Max   *float64 `json:"max"`
}

// FaultStatsOf sums up a run's faults per action, "all" first; nil for a run without faults.
func FaultStatsOf(r *Result) []FaultStat {
	if len(r.Faults) == 0 {
		return nil
	}
	var actions []string
	for _, f := range r.Faults {
		if !slices.Contains(actions, f.Action) {
			actions = append(actions, f.Action)
		}
	}
	slices.Sort(actions)
	if len(actions) > 1 {
		actions = append([]string{"all"}, actions...)
	}
	out := make([]FaultStat, 0, len(actions))
	for _, a := range actions {
		st := FaultStat{Action: a}
		var elected, restored, outage, caught Samples
		add := func(s *Samples, v *float64) {
			if v == nil {
				*s = append(*s, math.Inf(1))
			} else {
				*s = append(*s, *v)
			}
		}
		for _, f := range r.Faults {
			if a != "all" && f.Action != a {
				continue
			}
			st.Faults++
			if f.Skipped != "" || f.Error != "" {
				continue
			}
			st.Measured++
			if f.OutageWriteMs != nil {
				outage = append(outage, *f.OutageWriteMs)
			}
			if fo := FailoverOf(r, f.Index); fo != nil {
				st.Elections++
				add(&elected, fo.LeaderElectedMs)
				add(&restored, fo.WriteRestoredMs)
			}
			for _, rc := range r.Recoveries {
				if rc.Fault == f.Index {
					add(&caught, rc.CaughtUpMs)
				}
			}
		}
		st.LeaderElected, st.WriteRestored, st.OutageWrite, st.CaughtUp = spreadMs(elected), spreadMs(restored), spreadMs(outage), spreadMs(caught)
		out = append(out, st)
	}
	return out
}

// spreadMs is the count, median, p99 and max of samples in milliseconds (+Inf: never completed).
func spreadMs(s Samples) Occurrences {
	o := Occurrences{N: len(s)}
	if len(s) == 0 {
		return o
	}
	for _, v := range s {
		if math.IsInf(v, 1) {
			o.Never++
		}
	}
	p := func(q float64) *float64 {
		if v := s.Quantile(q); !math.IsInf(v, 1) {
			return &v
		}
		return nil
	}
	o.P50, o.P99, o.Max = p(50), p(99), p(100)
	return o
}

// Text is "p50 / p99 / max" in milliseconds, "never" for one that fell on a never-completed sample.
func (o Occurrences) Text() string {
	if o.N == 0 {
		return "-"
	}
	f := func(v *float64) string {
		if v == nil {
			return "never"
		}
		return fmt.Sprintf("%.0f", *v)
	}
	return fmt.Sprintf("%s / %s / %s", f(o.P50), f(o.P99), f(o.Max))
}

// failoverOverTime plots each fault's write restoration and leader election against when it
// fired: over hours of a soak, a drift or a bad hour shows; one glyph per action.
func (rd *RunDir) failoverOverTime() (Chart, error) {
	r := rd.Result
	if len(r.Failovers) == 0 {
		return Chart{}, fmt.Errorf("no failover was measured")
	}
	at := map[int]float64{}
	for _, f := range r.Faults {
		at[f.Index] = f.AtS
	}
	hours := r.Faults[len(r.Faults)-1].AtS > 2*3600
	x := func(s float64) float64 {
		if hours {
			return s / 3600
		}
		return s / 60
	}
	p := plot.New()
	p.Title.Text = "failover time of each fault over the run"
	p.X.Label.Text = "minutes since the load started"
	if hours {
		p.X.Label.Text = "hours since the load started"
	}
	p.Y.Label.Text = "ms from the fault"
	byAction := map[string]plotter.XYs{}
	var actions []string
	var top float64
	for _, fo := range r.Failovers {
		v := fo.WriteRestoredMs
		if v == nil {
			continue
		}
		if !slices.Contains(actions, fo.Action) {
			actions = append(actions, fo.Action)
		}
		byAction[fo.Action] = append(byAction[fo.Action], plotter.XY{X: x(at[fo.Fault]), Y: *v})
		top = math.Max(top, *v)
	}
	slices.Sort(actions)
	shapes := []draw.GlyphDrawer{draw.CircleGlyph{}, draw.TriangleGlyph{}, draw.SquareGlyph{}, draw.CrossGlyph{}, draw.PlusGlyph{}, draw.RingGlyph{}}
	for i, a := range actions {
		s, err := plotter.NewScatter(byAction[a])
		if err != nil {
			return Chart{}, err
		}
		s.GlyphStyle.Shape, s.GlyphStyle.Color, s.GlyphStyle.Radius = shapes[i%len(shapes)], palette[i%len(palette)], vg.Points(3)
		p.Add(s)
		p.Legend.Add("writes restored after "+a, s)
	}
	p.Y.Min, p.Y.Max = 0, top*1.25+1
	p.Legend.Top = true
	return render("failover-over-time", "failover time over the run", p, 9*vg.Inch, 3.6*vg.Inch)
}
