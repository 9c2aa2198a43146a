package reports

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

const (
	hbPath  = "cluster.etcd.heartbeat-interval"
	etPath  = "cluster.etcd.election-timeout"
	latPath = "cluster.peer-delay.latency"
)

// fixtureCell is a finished cell with one failover per repeat (p90 of {p90-10, p90}: p90).
func fixtureCell(hb, et, lat string, p90 float64, spurious int) SweepCell {
	c := SweepCell{ID: fmt.Sprintf("hb%s_et%s_lat%s", hb, et, lat), Values: map[string]string{hbPath: hb, etPath: et, latPath: lat}}
	for j := 1; j <= 2; j++ {
		v := p90 - float64(10*(2-j))
		sp := 0
		if j == 2 {
			sp = spurious
		}
		c.Runs = append(c.Runs, SweepRun{Repeat: j, Ready: true, WriteRestoredMs: []float64{v}, LeaderElectedMs: []float64{v - 5}, Spurious: sp, Ops: 1000})
	}
	c.Fold(2)
	return c
}

func fixtureSweep(cells ...SweepCell) *Sweep {
	return &Sweep{Scenario: "leader-kill", Repeat: 2, Vary: []Vary{{hbPath, []string{"10ms", "100ms"}}, {etPath, []string{"1000ms", "50ms", "500ms"}},
		{latPath, []string{"0ms", "30ms"}}}, Cells: cells,
		Skipped: []SweepSkip{{Values: map[string]string{hbPath: "100ms", etPath: "50ms", latPath: "0ms"}, Reason: "election-timeout: 50ms must be at least 5 times heartbeat-interval (100ms)"},
			{Values: map[string]string{hbPath: "100ms", etPath: "50ms", latPath: "30ms"}, Reason: "election-timeout: 50ms must be at least 5 times heartbeat-interval (100ms)"}}}
}

func TestSpreadIsNearestRank(t *testing.T) {
	s := SpreadOf([]float64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6})
	if s.N != 10 || s.P50Ms != 5 || s.P90Ms != 9 || s.MaxMs != 10 {
		t.Errorf("spread of 1..10: %+v, want n 10, p50 5, p90 9, max 10", s)
	}
	if s := SpreadOf([]float64{7}); s.P50Ms != 7 || s.P90Ms != 7 || s.MaxMs != 7 {
		t.Errorf("spread of one sample: %+v", s)
	}
	if SpreadOf(nil) != nil {
		t.Error("a spread of no samples is not nil")
	}
}

// The recommendation is the lowest failover p90 among the settings with no spurious election under
// every condition; its margin names the next tighter election timeout and what it showed.
func TestRecommendationAndItsMargin(t *testing.T) {
	s := fixtureSweep(
		fixtureCell("10ms", "50ms", "0ms", 80, 0),      // fastest, but spurious at 30ms
		fixtureCell("10ms", "50ms", "30ms", 90, 4),     // spurious
		fixtureCell("10ms", "500ms", "0ms", 600, 0),    // qualifies everywhere: worst p90 700
		fixtureCell("10ms", "500ms", "30ms", 700, 0),   //
		fixtureCell("10ms", "1000ms", "0ms", 1100, 0),  // qualifies, slower
		fixtureCell("10ms", "1000ms", "30ms", 1200, 0), //
		fixtureCell("100ms", "500ms", "0ms", 650, 0),   // qualifies at 0ms only
		fixtureCell("100ms", "500ms", "30ms", 640, 1),  // one spurious election disqualifies it
		fixtureCell("100ms", "1000ms", "0ms", 1150, 0),
		fixtureCell("100ms", "1000ms", "30ms", 1250, 0),
	)
	s.Cells[3].MeasuredRTTMs = ptr(61.5)
	s.Recommend()
	r := s.Recommendation
	if r == nil {
		t.Fatalf("no recommendation: %s", s.NoRecommendation)
	}
	if r.Values[hbPath] != "10ms" || r.Values[etPath] != "500ms" || len(r.Values) != 2 || r.FailoverP90Ms != 700 {
		t.Errorf("recommended %v (p90 %v), want heartbeat 10ms election 500ms at p90 700 (the worst of its two conditions)", r.Values, r.FailoverP90Ms)
	}
	if len(r.Evidence) != 2 || r.Evidence[0].Repeats != 2 {
		t.Errorf("evidence: %+v, want one cell per condition with its 2 repeats", r.Evidence)
	}
	if !strings.Contains(r.Margin, "election-timeout 50ms at latency 30ms had 4 spurious elections over 2 runs") ||
		!strings.Contains(r.Margin, "election-timeout 50ms at latency 0ms had no spurious elections either") {
		t.Errorf("margin: %s", r.Margin)
	}
	if !strings.Contains(r.RuleOfThumb, "61.5ms, measured by etcd") || !strings.Contains(r.RuleOfThumb, "election-timeout at least 10x it (615ms)") {
		t.Errorf("rule of thumb: %s", r.RuleOfThumb)
	}
	// Per condition: at 0ms alone the tight pair qualifies.
	if len(s.ByCondition) != 2 || s.ByCondition[0].Values[etPath] != "50ms" || s.ByCondition[1].Values[etPath] != "500ms" {
		t.Errorf("by condition: %+v", s.ByCondition)
	}

	// With the heartbeat of 100ms the next tighter election timeout, 50ms, was skipped: said so.
	s2 := fixtureSweep(fixtureCell("100ms", "500ms", "0ms", 650, 0), fixtureCell("100ms", "500ms", "30ms", 660, 0),
		fixtureCell("10ms", "1000ms", "0ms", 1100, 0), fixtureCell("10ms", "1000ms", "30ms", 1200, 0))
	nv := SweepCell{ID: "nv", Values: map[string]string{hbPath: "10ms", etPath: "50ms", latPath: "30ms"},
		Runs: []SweepRun{{Repeat: 1, Unheld: &Unheld{Candidacies: 120, Leaders: 25}, Spurious: 24}}}
	nv.Fold(2)
	s2.Cells = append(s2.Cells, nv)
	s2.Recommend()
	if r := s2.Recommendation; r == nil || r.Values[hbPath] != "100ms" || !strings.Contains(r.Margin, "election-timeout 50ms at latency 0ms was not tried (skipped: election-timeout: 50ms must be at least 5 times") ||
		!strings.Contains(r.Margin, "the next tighter tried there, election-timeout 50ms: heartbeat-interval 10ms was not viable: elections did not hold (24 leaders deposed") {
		t.Errorf("recommendation %+v", s2.Recommendation)
	}
}

func TestNoRecommendationWhenEveryCellIsSpurious(t *testing.T) {
	s := fixtureSweep(fixtureCell("10ms", "50ms", "30ms", 90, 2), fixtureCell("10ms", "500ms", "30ms", 700, 1))
	s.Recommend()
	if s.Recommendation != nil || !strings.Contains(s.NoRecommendation, "every cell had spurious elections") {
		t.Errorf("recommendation %+v, why none %q", s.Recommendation, s.NoRecommendation)
	}
	b, _ := json.Marshal(s)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	if v, ok := m["recommendation"]; !ok || v != nil {
		t.Errorf("sweep.json recommendation: %v (present %v), want null", v, ok)
	}
	// A not viable cell (elections never held) counts its extra leaders as spurious and never qualifies.
	nv := SweepCell{ID: "nv", Values: map[string]string{hbPath: "10ms", etPath: "50ms", latPath: "30ms"},
		Runs: []SweepRun{{Repeat: 1, Unheld: &Unheld{Candidacies: 120, Leaders: 25}, Spurious: 24}}}
	nv.Fold(2)
	if nv.Status != CellNotViable || nv.SpuriousElections != 24 || nv.Failover != nil || nv.qualifies() {
		t.Errorf("not viable cell: %+v", nv)
	}
}

func TestSweepCSVAndHTML(t *testing.T) {
	s := fixtureSweep(fixtureCell("10ms", "50ms", "0ms", 80, 0), fixtureCell("10ms", "50ms", "30ms", 90, 4),
		fixtureCell("10ms", "500ms", "0ms", 600, 0), fixtureCell("10ms", "500ms", "30ms", 700, 0))
	s.Recommend()
	var b strings.Builder
	if err := WriteSweepCSV(&b, s); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(b.String())).ReadAll()
	if err != nil || len(rows) != 5 {
		t.Fatalf("sweep.csv: %d rows (%v), want a header and 4 cells:\n%s", len(rows), err, b.String())
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	if rows[2][col["spurious_elections"]] != "4" || rows[2][col["write_restored_p90_ms"]] != "90" || rows[2][col[latPath]] != "30ms" {
		t.Errorf("sweep.csv row 2: %v", rows[2])
	}
	b.Reset()
	if err := WriteSweepHTML(&b, s); err != nil {
		t.Fatal(err)
	}
	h := b.String()
	for _, want := range []string{`id="heatmap-1"`, `id="heatmap-2"`, "injected RTT 0ms", "injected RTT 60ms", "⚡4", `data-spurious="4"`,
		`class="h skipped"`, `id="recommendation"`, "Cells by failover time"} {
		if !strings.Contains(h, want) {
			t.Errorf("sweep.html lacks %q", want)
		}
	}
	table := h[strings.Index(h, "Cells by failover time"):]
	if i, j := strings.Index(table, "10ms, election-timeout 50ms, latency 0ms</td>"), strings.Index(table, "10ms, election-timeout 500ms, latency 30ms</td>"); i < 0 || j < i {
		t.Errorf("the table is not sorted by failover p90 (positions %d, %d)", i, j)
	}
	if m := fetchRe.FindString(h); m != "" {
		t.Errorf("sweep.html fetches %q: it must be self-contained", m)
	}
}

func ptr(v float64) *float64 { return &v }

// sweep.json writes every cell's spreads as objects, null numbers where nothing was measured, and
// reads them back.
func TestSweepCellJSON(t *testing.T) {
	done := fixtureCell("10ms", "500ms", "0ms", 600, 0)
	nv := SweepCell{ID: "nv", Values: map[string]string{hbPath: "10ms"}, Runs: []SweepRun{{Repeat: 1, Unheld: &Unheld{Leaders: 3}, Spurious: 2}}}
	nv.Fold(2)
	b, err := json.Marshal([]SweepCell{done, nv})
	if err != nil {
		t.Fatal(err)
	}
	var raw []map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if f := raw[0]["failover"].(map[string]any); f["p90_ms"] != 600.0 || f["p50_ms"] != 590.0 || f["max_ms"] != 600.0 {
		t.Errorf("failover of a done cell: %v", f)
	}
	if f, ok := raw[1]["failover"].(map[string]any); !ok || f["p90_ms"] != nil || f["n"] != 0.0 {
		t.Errorf("failover of a not viable cell: %v, want an object with null numbers", raw[1]["failover"])
	}
	if raw[1]["spurious_elections"] != 2.0 || raw[1]["id"] != "nv" {
		t.Errorf("the rest of the cell: %v", raw[1])
	}
	var back []SweepCell
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back[0].Failover == nil || *back[0].Failover != *done.Failover || back[1].Failover != nil || back[1].ID != "nv" || back[1].SpuriousElections != 2 {
		t.Errorf("read back: %+v", back)
	}
}

// TestRecommendationRefusesCellsWhoseRunsFailed: the fastest cell is never recommended when a run
// of it lost writes, was aborted, fell behind its load, or saw a failover whose writes never came
// back (that failover is the worst sample, not one left out of the spread); the next qualifying
// cell is. With 2 repeats the recommendation says it rests on too few runs.
func TestRecommendationRefusesCellsWhoseRunsFailed(t *testing.T) {
	spoil := map[string]func(*SweepRun){
		"lost writes": func(r *SweepRun) { r.ChecksFailed = []string{"kv-safety"}; r.Verdict = VerdictFail },
		"aborted":     func(r *SweepRun) { r.Verdict = VerdictAborted },
		"behind": func(r *SweepRun) {
			r.TargetRate, r.AchievedRate, r.Dropped, r.SteadyS, r.SteadyRate = 1000, 500, 400, 3, 600
		},
		"never restored": func(r *SweepRun) { r.NeverRestored = 1 },
	}
	for name, f := range spoil {
		t.Run(name, func(t *testing.T) {
			fast := fixtureCell("10ms", "50ms", "0ms", 80, 0)
			f(&fast.Runs[1])
			fast.Fold(2)
			s := fixtureSweep(fast, fixtureCell("10ms", "500ms", "0ms", 600, 0))
			s.Vary = s.Vary[:2]
			s.Recommend()
			if fast.Disqualified == "" {
				t.Errorf("the spoilt cell is not marked disqualified: %+v", fast)
			}
			r := s.Recommendation
			if r == nil || r.Values[etPath] != "500ms" {
				t.Fatalf("recommended %+v (none: %q), want the 500ms cell, not the spoilt 50ms one", r, s.NoRecommendation)
			}
			if !strings.Contains(r.Why, "too few runs") || r.Caveat == "" {
				t.Errorf("2 repeats: why %q, caveat %q", r.Why, r.Caveat)
			}
			// Alone, the spoilt cell gives no recommendation, and says why.
			s1 := fixtureSweep(fast)
			s1.Vary = s1.Vary[:2]
			s1.Recommend()
			if s1.Recommendation != nil || !strings.Contains(s1.NoRecommendation, "lost writes, was aborted, fell behind or never restored writes") {
				t.Errorf("only the spoilt cell: %+v, why none %q", s1.Recommendation, s1.NoRecommendation)
			}
		})
	}
}

// TestBehindOnlyThroughTheFailover: a load that fell behind through the failover (its clients
// stalled by the election, the backlog cut by the load's end) but kept its rate before any fault is
// the failover's cost, noted, not a disqualification; at 30ms of one-way delay the sweep test's
// 8 clients at 40 ops/s achieved 25 ops/s overall with 55 due ops unsent, and 40 in steady state.
func TestBehindOnlyThroughTheFailover(t *testing.T) {
	c := fixtureCell("10ms", "1000ms", "30ms", 1300, 0)
	c.Runs[0].TargetRate, c.Runs[0].AchievedRate, c.Runs[0].Dropped, c.Runs[0].SteadyS, c.Runs[0].SteadyRate = 40, 25, 55, 1.5, 40
	c.Fold(2)
	if c.Disqualified != "" || !strings.Contains(c.Note, "fell behind") {
		t.Errorf("disqualified %q, note %q: want a note, not a disqualification", c.Disqualified, c.Note)
	}
}

// TestNeverRestoredIsCounted: a failover with no write_restored is counted, not dropped.
func TestNeverRestoredIsCounted(t *testing.T) {
	v := 900.0
	res := &Result{Failovers: []Failover{{WriteRestoredMs: &v}, {WriteRestoredMs: nil}}, Checks: []Check{{Name: "kv-safety", Status: CheckFail}}}
	sr := SweepRunOf(res, "")
	if sr.NeverRestored != 1 || len(sr.WriteRestoredMs) != 1 || len(sr.ChecksFailed) != 1 {
		t.Errorf("run: %+v", sr)
	}
}
