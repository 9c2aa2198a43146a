package reports

import (
	"encoding/csv"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// SweepByFailover is the cells ordered by failover p90, fastest first; cells without a failover
// measured (not viable, errors, not finished) come last, in plan order.
func SweepByFailover(s *Sweep) []*SweepCell {
	out := make([]*SweepCell, len(s.Cells))
	for i := range s.Cells {
		out[i] = &s.Cells[i]
	}
	slices.SortStableFunc(out, func(a, b *SweepCell) int {
		switch {
		case a.Failover == nil && b.Failover == nil:
			return 0
		case a.Failover == nil:
			return 1
		case b.Failover == nil:
			return -1
		case a.Failover.P90Ms < b.Failover.P90Ms:
			return -1
		case a.Failover.P90Ms > b.Failover.P90Ms:
			return 1
		}
		return 0
	})
	return out
}

// WriteSweepCSV writes one row per cell, in plan order: the swept values, then what they measured.
// An empty field is a number not measured.
func WriteSweepCSV(w io.Writer, s *Sweep) error {
	cw := csv.NewWriter(w)
	var head []string
	for _, v := range s.Vary {
		head = append(head, v.Path)
	}
	head = append(head, "cell", "status", "repeats", "heartbeat_ms", "election_ms", "injected_rtt_ms", "measured_rtt_ms",
		"leader_elected_p50_ms", "leader_elected_p90_ms", "leader_elected_max_ms",
		"write_restored_p50_ms", "write_restored_p90_ms", "write_restored_max_ms",
		"outage_write_p50_ms", "outage_write_max_ms", "spurious_elections", "put_p99_ms", "error_rate", "note")
	if err := cw.Write(head); err != nil {
		return err
	}
	num := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	opt := func(v *float64) string {
		if v == nil {
			return ""
		}
		return num(*v)
	}
	spread := func(sp *Spread, parts ...string) []string {
		var out []string
		for _, p := range parts {
			if sp == nil {
				out = append(out, "")
				continue
			}
			out = append(out, num(map[string]float64{"p50": sp.P50Ms, "p90": sp.P90Ms, "max": sp.MaxMs}[p]))
		}
		return out
	}
	for _, c := range s.Cells {
		var row []string
		for _, v := range s.Vary {
			row = append(row, c.Values[v.Path])
		}
		row = append(row, c.ID, c.Status, strconv.Itoa(len(c.Runs)), num(c.HeartbeatMs), num(c.ElectionMs), num(c.InjectedRTTMs), opt(c.MeasuredRTTMs))
		row = append(row, spread(c.LeaderElected, "p50", "p90", "max")...)
		row = append(row, spread(c.WriteRestored, "p50", "p90", "max")...)
		row = append(row, spread(c.OutageWrite, "p50", "max")...)
		row = append(row, strconv.Itoa(c.SpuriousElections), opt(c.PutP99Ms), strconv.FormatFloat(c.ErrorRate, 'g', 6, 64), c.Note)
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func spreadText(sp *Spread) string {
	if sp == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f / %.0f / %.0f", sp.P50Ms, sp.P90Ms, sp.MaxMs)
}

func optMs(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", *v)
}

// cellLabel is a cell's values (or some of them) in the order of the --vary flags, as
// "heartbeat-interval 10ms, election-timeout 50ms, latency 30ms".
func cellLabel(s *Sweep, values map[string]string) string {
	var parts []string
	for _, v := range s.Vary {
		if val, ok := values[v.Path]; ok {
			parts = append(parts, ShortPath(v.Path)+" "+val)
		}
	}
	return strings.Join(parts, ", ")
}

// WriteSweepText writes the sweep's table, sorted by failover p90, and its recommendation.
func WriteSweepText(w io.Writer, s *Sweep) error {
	var b strings.Builder
	done := 0
	for _, c := range s.Cells {
		if c.Status != CellPending {
			done++
		}
	}
	fmt.Fprintf(&b, "sweep %s: %d of %d cells finished, %d repeats each (seed %d), %d combinations skipped\n\n",
		s.Scenario, done, len(s.Cells), s.Repeat, s.Seed, len(s.Skipped))
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  cell\tstatus\tfailover p50/p90/max ms\tleader elected p50/p90/max ms\tspurious\tput p99 ms\terrors\tRTT injected/measured ms")
	for _, c := range SweepByFailover(s) {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%s\t%.2f%%\t%.0f / %s\n", cellLabel(s, c.Values), c.Status, spreadText(c.Failover),
			spreadText(c.LeaderElected), c.SpuriousElections, optMs(c.PutP99Ms), c.ErrorRate*100, c.InjectedRTTMs, optMs(c.MeasuredRTTMs))
	}
	tw.Flush()
	for _, sk := range s.Skipped {
		fmt.Fprintf(&b, "  skipped %s: %s\n", cellLabel(s, sk.Values), sk.Reason)
	}
	b.WriteString("\n")
	if r := s.Recommendation; r != nil {
		fmt.Fprintf(&b, "recommendation: %s\n  why: %s\n  margin: %s\n  %s\n", cellLabel(s, r.Values), r.Why, r.Margin, r.RuleOfThumb)
		for _, e := range r.Evidence {
			fmt.Fprintf(&b, "  evidence: %s: %d repeats, failover %s ms, %d spurious, RTT injected %.0fms measured %s ms\n",
				e.Cell, e.Repeats, spreadText(e.Failover), e.SpuriousElections, e.InjectedRTTMs, optMs(e.MeasuredRTTMs))
		}
	} else {
		fmt.Fprintf(&b, "no recommendation: %s\n", s.NoRecommendation)
	}
	for _, r := range s.ByCondition {
		fmt.Fprintf(&b, "  at %s alone: %s (failover p90 %.0fms)\n", cellLabel(s, r.Conditions), cellLabel(s, r.Values), r.FailoverP90Ms)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// heatmap axes: x heartbeat, y election when both are swept, else the first two tuned paths.
type heatPanel struct {
	ID, Title string
	XPath     string
	YPath     string
	X         []string
	Rows      []heatRow
}

type heatRow struct {
	Y     string
	Cells []heatCell
}

type heatCell struct {
	Class, Style, Text, Sub, Title, ID string
	P90                                string
	Spurious                           int
}

func (s *Sweep) heatAxes() (x, y string, rest []string) {
	tuned, _ := s.tuned()
	paths := make([]string, 0, len(s.Vary))
	for _, v := range s.Vary {
		paths = append(paths, v.Path)
	}
	has := func(p string) bool { return slices.Contains(paths, p) }
	if has("cluster.etcd.heartbeat-interval") {
		x = "cluster.etcd.heartbeat-interval"
	}
	if has("cluster.etcd.election-timeout") {
		y = "cluster.etcd.election-timeout"
	}
	for _, p := range append(slices.Clone(tuned), paths...) {
		switch {
		case p == x || p == y:
		case x == "":
			x = p
		case y == "":
			y = p
		}
	}
	for _, p := range paths {
		if p != x && p != y {
			rest = append(rest, p)
		}
	}
	return x, y, rest
}

func (s *Sweep) values(path string) []string {
	for _, v := range s.Vary {
		if v.Path == path {
			return SortValues(v.Values)
		}
	}
	return []string{""}
}

// heat colours a failover p90 from green (the fastest of the sweep) to red (the slowest), on a log scale.
func heat(p90, lo, hi float64) string {
	f := 0.0
	if hi > lo && p90 > 0 && lo > 0 {
		f = (math.Log(p90) - math.Log(lo)) / (math.Log(hi) - math.Log(lo))
	}
	return fmt.Sprintf("background:hsl(%.0f,70%%,%.0f%%)", 120*(1-f), 78-8*f)
}

func (s *Sweep) panels() []heatPanel {
	x, y, rest := s.heatAxes()
	lo, hi := math.Inf(1), 0.0
	for _, c := range s.Cells {
		if c.Failover != nil {
			lo, hi = min(lo, c.Failover.P90Ms), max(hi, c.Failover.P90Ms)
		}
	}
	// One panel per combination of the other paths (the injected RTT, and anything else swept).
	combos := []map[string]string{{}}
	for _, p := range rest {
		var next []map[string]string
		for _, m := range combos {
			for _, v := range s.values(p) {
				n := map[string]string{p: v}
				for k, w := range m {
					n[k] = w
				}
				next = append(next, n)
			}
		}
		combos = next
	}
	var out []heatPanel
	for i, combo := range combos {
		p := heatPanel{ID: fmt.Sprintf("heatmap-%d", i+1), XPath: x, YPath: y, X: s.values(x)}
		p.Title = "all cells"
		if len(rest) > 0 {
			p.Title = otherValues(combo, nil)
			if l, ok := combo["cluster.peer-delay.latency"]; ok {
				p.Title = fmt.Sprintf("injected RTT %s (peer-delay.latency %s one way)", doubled(l), l)
				if o := otherValues(combo, []string{"cluster.peer-delay.latency"}); o != "" {
					p.Title = fmt.Sprintf("injected RTT %s (peer-delay.latency %s one way), %s", doubled(l), l, o)
				}
			}
		}
		for _, yv := range s.values(y) {
			row := heatRow{Y: yv}
			for _, xv := range p.X {
				want := map[string]string{}
				for k, v := range combo {
					want[k] = v
				}
				if x != "" {
					want[x] = xv
				}
				if y != "" {
					want[y] = yv
				}
				row.Cells = append(row.Cells, s.heatCell(want, lo, hi))
			}
			p.Rows = append(p.Rows, row)
		}
		out = append(out, p)
	}
	return out
}

func doubled(latency string) string {
	if d, err := time.ParseDuration(latency); err == nil {
		return fmt.Sprintf("%gms", float64(2*d)/float64(time.Millisecond))
	}
	return "2x" + latency
}

func (s *Sweep) heatCell(want map[string]string, lo, hi float64) heatCell {
	for _, sk := range s.Skipped {
		if SameValues(sk.Values, want) {
			return heatCell{Class: "skipped", Text: "skipped", Title: sk.Reason}
		}
	}
	var c *SweepCell
	for i := range s.Cells {
		if SameValues(s.Cells[i].Values, want) {
			c = &s.Cells[i]
		}
	}
	if c == nil {
		return heatCell{Class: "skipped", Text: "—", Title: "not in the grid"}
	}
	hc := heatCell{ID: c.ID, Spurious: c.SpuriousElections, Title: cellLabel(s, c.Values) + ": " + c.Status}
	switch {
	case c.Status == CellNotViable:
		hc.Class, hc.Text, hc.Title = "notviable", "not viable", c.Note
	case c.Status == CellPending:
		hc.Class, hc.Text = "pending", fmt.Sprintf("%d/%d runs", len(c.Runs), s.Repeat)
	case c.Failover == nil:
		hc.Class, hc.Text = "nofailover", "no failover"
		if c.Note != "" {
			hc.Title = c.Note
		}
	default:
		hc.Class, hc.Style = "measured", heat(c.Failover.P90Ms, lo, hi)
		hc.Text, hc.P90 = fmt.Sprintf("%.0fms", c.Failover.P90Ms), strconv.FormatFloat(c.Failover.P90Ms, 'f', -1, 64)
		hc.Sub = fmt.Sprintf("max %.0fms, n %d", c.Failover.MaxMs, c.Failover.N)
		if c.Status == CellError {
			hc.Class += " error"
			hc.Title = c.Note
		}
	}
	if c.SpuriousElections > 0 {
		hc.Class += " spurious"
	}
	if r := s.Recommendation; r != nil {
		for _, e := range r.Evidence {
			if e.Cell == c.ID {
				hc.Class += " recommended"
			}
		}
	}
	return hc
}

var sweepTmpl = template.Must(template.New("sweep").Funcs(template.FuncMap{
	"short":  ShortPath,
	"label":  cellLabel,
	"spread": spreadText,
	"opt":    optMs,
	"pct":    func(v float64) string { return fmt.Sprintf("%.2f%%", v*100) },
	"css":    func(s string) template.CSS { return template.CSS(s) },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>sweep {{.S.Scenario}}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:3px}
table{border-collapse:collapse;margin:6px 0 10px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-variant-numeric:tabular-nums}
th{background:#f5f5f5} .muted{color:#777} code{background:#f3f3f3;padding:0 3px}
figure.heatmap{margin:10px 0 22px;display:inline-block;vertical-align:top;margin-right:28px}
figure.heatmap table td.h{width:104px;height:58px;text-align:center;vertical-align:middle;border:2px solid #fff;position:relative}
figure.heatmap td.h b{font-size:16px;display:block} figure.heatmap td.h small{color:#333;font-size:11px}
td.h.skipped{background:repeating-linear-gradient(45deg,#eee,#eee 6px,#fafafa 6px,#fafafa 12px);color:#777}
td.h.notviable{background:#555;color:#fff} td.h.pending{background:#e3e8f0;color:#555} td.h.nofailover{background:#ddd}
td.h.spurious{outline:3px solid #b00020;outline-offset:-5px} td.h .bolt{color:#b00020;font-weight:700;display:block}
td.h.notviable .bolt{color:#ffb3b3} td.h.recommended{box-shadow:inset 0 0 0 4px #1565c0}
.rec{border-left:4px solid #1565c0;padding:6px 12px;background:#f3f7fc} .none{border-left:4px solid #b00020;padding:6px 12px;background:#fdf3f4}
</style></head><body>
<h1>Sweep: {{.S.Scenario}}</h1>
<div class="muted">{{len .S.Cells}} cells × {{.S.Repeat}} repeats, seed {{.S.Seed}}{{if .S.Sets}}, with {{range .S.Sets}}<code>--set {{.}}</code> {{end}}{{end}}; {{.Done}} cells finished{{if not .S.Complete}} (not complete: rerun the same command to resume){{end}}; updated {{.S.UpdatedAt.Format "2006-01-02 15:04:05 MST"}}</div>

<h2>Recommendation</h2>
{{with .S.Recommendation}}<div class="rec" id="recommendation">
<p><b>{{label $.S .Values}}</b>: failover p90 {{printf "%.0f" .FailoverP90Ms}}ms — {{.Why}}.</p>
<p><b>Margin:</b> {{.Margin}}.</p>
<p><b>Rule of thumb:</b> {{.RuleOfThumb}}.</p>
<table><tr><th>evidence cell</th><th>repeats</th><th>failover p50 / p90 / max ms</th><th>spurious</th><th>RTT injected</th><th>RTT measured by etcd</th></tr>
{{range .Evidence}}<tr><td>{{label $.S .Values}}</td><td>{{.Repeats}}</td><td>{{spread .Failover}}</td><td>{{.SpuriousElections}}</td><td>{{printf "%.0f" .InjectedRTTMs}}ms</td><td>{{opt .MeasuredRTTMs}}ms</td></tr>
{{end}}</table></div>
{{else}}<div class="none" id="recommendation"><p><b>No recommendation:</b> {{.S.NoRecommendation}}.</p></div>{{end}}
{{if .S.ByCondition}}<p class="muted">Each condition alone:</p><ul class="muted">{{range .S.ByCondition}}<li>at {{label $.S .Conditions}}: {{label $.S .Values}} (failover p90 {{printf "%.0f" .FailoverP90Ms}}ms)</li>{{end}}</ul>{{end}}

<h2>Failover p90 (write_restored) by {{short .X}} × {{short .Y}}</h2>
<p class="muted">Green is the sweep's fastest, red its slowest (log scale). <span style="color:#b00020;font-weight:700">⚡N</span> and a red ring: N spurious leader changes over the repeats (no fault to explain them). Dark: not viable (elections never held). Hatched: skipped (etcd refuses it). Blue ring: the recommendation's evidence.</p>
{{range .Panels}}<figure class="heatmap" id="{{.ID}}"><figcaption><b>{{.Title}}</b></figcaption>
<table><tr><th>{{short .YPath}} \ {{short .XPath}}</th>{{range .X}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr><th>{{.Y}}</th>{{range .Cells}}<td class="h {{.Class}}"{{with .Style}} style="{{css .}}"{{end}} title="{{.Title}}"{{with .ID}} data-cell="{{.}}"{{end}}{{with .P90}} data-p90="{{.}}"{{end}} data-spurious="{{.Spurious}}"><b>{{.Text}}</b>{{with .Sub}}<small>{{.}}</small>{{end}}{{if .Spurious}}<span class="bolt">⚡{{.Spurious}}</span>{{end}}</td>{{end}}</tr>
{{end}}</table></figure>
{{end}}

<h2>Cells by failover time</h2>
<table id="cells"><tr><th>cell</th><th>status</th><th>repeats</th><th>failover p50 / p90 / max ms</th><th>leader elected p50 / p90 / max ms</th><th>write outage max ms</th><th>spurious</th><th>put p99 ms (steady)</th><th>errors</th><th>RTT injected / measured ms</th><th>note</th></tr>
{{range .ByFailover}}<tr><td>{{label $.S .Values}}</td><td>{{.Status}}</td><td>{{len .Runs}}</td><td>{{spread .Failover}}</td><td>{{spread .LeaderElected}}</td><td>{{with .OutageWrite}}{{printf "%.0f" .MaxMs}}{{else}}-{{end}}</td><td>{{.SpuriousElections}}</td><td>{{opt .PutP99Ms}}</td><td>{{pct .ErrorRate}}</td><td>{{printf "%.0f" .InjectedRTTMs}} / {{opt .MeasuredRTTMs}}</td><td class="muted">{{.Note}}</td></tr>
{{end}}</table>
{{if .S.Skipped}}<h2>Skipped</h2><table><tr><th>combination</th><th>why</th></tr>
{{range .S.Skipped}}<tr><td>{{label $.S .Values}}</td><td>{{.Reason}}</td></tr>
{{end}}</table>{{end}}
</body></html>
`))

// WriteSweepHTML writes sweep.html: the recommendation, a heatmap of failover p90 over heartbeat ×
// election for each injected RTT (spurious elections marked), and every cell sorted by failover.
// It is one self-contained file: no script, nothing fetched.
func WriteSweepHTML(w io.Writer, s *Sweep) error {
	x, y, _ := s.heatAxes()
	done := 0
	for _, c := range s.Cells {
		if c.Status != CellPending {
			done++
		}
	}
	return sweepTmpl.Execute(w, map[string]any{"S": s, "Panels": s.panels(), "ByFailover": SweepByFailover(s), "X": x, "Y": y, "Done": done})
}
