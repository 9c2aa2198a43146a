package reports

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// SweepVersion is bumped when sweep.json changes incompatibly.
const SweepVersion = 1

// Cell statuses.
const (
	CellPending = "pending" // not run yet (or not finished: the sweep was stopped)
	CellDone    = "done"    // every repeat ran, and the cluster became ready in each
	// CellNotViable: in some repeat the cluster never became ready because, by etcd's own logs,
	// elections did not hold (the round trip is near or above the election timeout).
	CellNotViable = "not_viable"
	CellError     = "error" // a repeat could not run for another reason (see its run's reason)
)

// Sweep is a chaos sweep: its plan, every cell with every repeat it ran, and the recommendation.
// It is written as sweep.json after every run, so a stopped sweep's file says what it has.
type Sweep struct {
	Version  int    `json:"version"`
	Scenario string `json:"scenario"`
	File     string `json:"file"`
	Seed     int64  `json:"seed"`
	Repeat   int    `json:"repeat"`
	// Sets are the --set overrides every cell has; Vary the swept paths, in the order given.
	Sets []string `json:"sets,omitempty"`
	Vary []Vary   `json:"vary"`
	// Fingerprint identifies the plan (scenario source, sets, vary, repeat, seed): a rerun with the
	// same one resumes, another is refused.
	Fingerprint string      `json:"fingerprint"`
	StartedAt   time.Time   `json:"started_at"`
	UpdatedAt   time.Time   `json:"updated_at"`
	Complete    bool        `json:"complete"`
	Cells       []SweepCell `json:"cells"`
	// Skipped are the combinations the scenario's validation refused (etcd refuses an election
	// timeout under 5 heartbeats): listed, never run.
	Skipped []SweepSkip `json:"skipped,omitempty"`
	// Recommendation is the heartbeat and election pair to use, with its evidence; nil when no cell
	// qualifies, and NoRecommendation says why.
	Recommendation   *Recommendation  `json:"recommendation"`
	NoRecommendation string           `json:"no_recommendation,omitempty"`
	ByCondition      []Recommendation `json:"by_condition,omitempty"`
}

// Vary is one --vary PATH=V1,V2,...
type Vary struct {
	Path   string   `json:"path"`
	Values []string `json:"values"`
}

// SweepSkip is a combination that was not run, and why.
type SweepSkip struct {
	Values map[string]string `json:"values"`
	Reason string            `json:"reason"`
}

// SweepCell is one point of the grid: its values, its runs, and what they measured together.
type SweepCell struct {
	ID     string            `json:"id"` // its folder under cells/
	Values map[string]string `json:"values"`
	Seeds  []int64           `json:"seeds"`
	Status string            `json:"status"`
	// HeartbeatMs and ElectionMs are the timeouts the cell ran with (swept or the scenario's);
	// InjectedRTTMs is twice cluster.peer-delay.latency (a round trip crosses two links).
	HeartbeatMs   float64    `json:"heartbeat_ms"`
	ElectionMs    float64    `json:"election_ms"`
	InjectedRTTMs float64    `json:"injected_rtt_ms"`
	Runs          []SweepRun `json:"runs"`
	// Failover is failover.write_restored (from the fault to the first acknowledged write: what
	// clients feel) over every failover of every repeat; LeaderElected and WriteRestored each
	// metric alone; OutageWrite the per-fault write outages. Nil: no sample.
	Failover      *Spread `json:"failover"`
	LeaderElected *Spread `json:"leader_elected"`
	WriteRestored *Spread `json:"write_restored"`
	OutageWrite   *Spread `json:"outage_write"`
	// SpuriousElections sums the repeats' leader changes that no fault explains.
	SpuriousElections int `json:"spurious_elections"`
	// NeverRestored counts the failovers after which no write was acknowledged again (the worst a
	// failover can be: never a sample left out of the spread silently).
	NeverRestored int `json:"never_restored"`
	// Disqualified says why the cell cannot be recommended although it ran: a run that lost
	// writes (a check failed), was aborted, fell behind its load, or whose writes never came back.
	Disqualified string `json:"disqualified,omitempty"`
	// PutP99Ms is the worst repeat's put p99 in steady state (after the warm-up, before the first fault).
	PutP99Ms *float64 `json:"put_p99_ms"`
	// ErrorRate is failed ops over all ops of every repeat.
	ErrorRate float64 `json:"error_rate"`
	// MeasuredRTTMs is etcd's own peer round trip, the mean over the repeats that measured one.
	MeasuredRTTMs *float64 `json:"measured_rtt_ms"`
	Note          string   `json:"note,omitempty"`
}

// Spread is a distribution over a few samples: nearest-rank p50 and p90, and the max.
type Spread struct {
	N     int     `json:"n"`
	P50Ms float64 `json:"p50_ms"`
	P90Ms float64 `json:"p90_ms"`
	MaxMs float64 `json:"max_ms"`
}

// SweepRun is one repeat of a cell, as its run folder's result.json says.
type SweepRun struct {
	Repeat  int    `json:"repeat"`
	Seed    int64  `json:"seed"`
	Dir     string `json:"dir"` // relative to the sweep folder
	Verdict string `json:"verdict"`
	Reason  string `json:"reason,omitempty"`
	Ready   bool   `json:"ready"` // the cluster became ready and the load ran
	// Unheld is set when the cluster never became ready because elections did not hold.
	Unheld          *Unheld   `json:"unheld,omitempty"`
	LeaderElectedMs []float64 `json:"leader_elected_ms"`
	WriteRestoredMs []float64 `json:"write_restored_ms"`
	// NeverRestored counts failovers with no acknowledged write after them (not in the lists above).
	NeverRestored int `json:"never_restored,omitempty"`
	// ChecksFailed names the safety checks that failed (acknowledged writes lost, ...).
	ChecksFailed  []string  `json:"checks_failed,omitempty"`
	OutageWriteMs []float64 `json:"outage_write_ms"`
	// Spurious: leader changes outside every fault's window; for a cluster that never became
	// ready, the leaders etcd's logs show elected beyond the first (none held).
	Spurious      int `json:"spurious_elections"`
	LeaderChanges int `json:"leader_changes"`
	// PutP99Ms is the put p99 in steady state: over the whole seconds of latency.hlog after the
	// warm-up that ended before the first fault was injected (ops are in the second they completed
	// in, so none of them waited on the fault); SteadyS is how many seconds that is. Nil when no
	// whole second fits.
	PutP99Ms *float64 `json:"put_p99_ms"`
	SteadyS  float64  `json:"steady_s,omitempty"`
	// SteadyRate is the KV ops acknowledged per second over those steady seconds.
	SteadyRate float64  `json:"steady_rate,omitempty"`
	Ops        int64    `json:"ops"`
	FailedOps  int64    `json:"failed_ops"`
	PeerRTTMs  *float64 `json:"measured_rtt_ms"`
	// TargetRate and AchievedRate are the load's ops/s; Dropped the due ops never sent. A load
	// that fell behind its target measured a backlog: its latency counts the wait in it.
	TargetRate   float64 `json:"target_rate,omitempty"`
	AchievedRate float64 `json:"achieved_rate,omitempty"`
	Dropped      int64   `json:"dropped,omitempty"`
	Seconds      float64 `json:"seconds"` // how long the run took, start to end
}

// behind: an open-loop load that got under 90% of its target rate, or left more due ops unsent
// than the one or two the load's end cuts.
func (r SweepRun) behind() bool {
	return r.Ready && r.TargetRate > 0 && (r.AchievedRate < 0.9*r.TargetRate || r.Dropped > max(2, r.Ops/100))
}

// behindSteady: the load fell behind its target in steady state, before any fault (under 90% of
// it): the cluster cannot carry it at this setting. Falling behind through a failover is the
// failover's cost, and a pool of clients stalled by it may stay behind until the load's end.
func (r SweepRun) behindSteady() bool {
	return r.Ready && r.TargetRate > 0 && r.SteadyS >= 1 && r.SteadyRate < 0.9*r.TargetRate
}

// Recommendation is the pair to use and why.
type Recommendation struct {
	// Values are the tuned settings (the cluster.etcd.* paths swept), Conditions the rest of the
	// cell's values (peer delay): empty on the top recommendation when it holds for every condition.
	Values      map[string]string `json:"values"`
	Conditions  map[string]string `json:"conditions,omitempty"`
	HeartbeatMs float64           `json:"heartbeat_ms"`
	ElectionMs  float64           `json:"election_ms"`
	// FailoverP90Ms is the cell's failover p90 (the worst over the conditions for the top one).
	FailoverP90Ms float64 `json:"failover_p90_ms"`
	// Evidence is each cell behind the choice, one per condition.
	Evidence []Evidence `json:"evidence"`
	// Margin says what the next tighter election timeout showed: spurious elections, none (it
	// was slower), or that it was not tried.
	Margin      string `json:"margin"`
	RuleOfThumb string `json:"rule_of_thumb"`
	Why         string `json:"why"`
	// Caveat says when the recommendation rests on too few runs (fewer than 3 repeats a cell).
	Caveat string `json:"caveat,omitempty"`
}

// Evidence is one cell behind a recommendation.
type Evidence struct {
	Cell              string            `json:"cell"`
	Values            map[string]string `json:"values"`
	Repeats           int               `json:"repeats"`
	Failover          *Spread           `json:"failover"`
	SpuriousElections int               `json:"spurious_elections"`
	InjectedRTTMs     float64           `json:"injected_rtt_ms"`
	MeasuredRTTMs     *float64          `json:"measured_rtt_ms"`
}

// SweepRunOf reads what a sweep keeps of one run from its result (and, for the steady state's
// latency, its folder's latency.hlog).
func SweepRunOf(res *Result, dir string) SweepRun {
	sr := SweepRun{Seed: res.Seed, Verdict: res.Verdict, Reason: firstLineOf(res.Reason), Unheld: res.Leader.Unheld,
		LeaderChanges: res.Leader.Changes, Spurious: res.Leader.Spurious, Ops: res.Ops, FailedOps: res.FailedOps,
		LeaderElectedMs: []float64{}, WriteRestoredMs: []float64{}, OutageWriteMs: []float64{}}
	sr.Ready = !res.LoadStartedAt.IsZero()
	if !sr.Ready && res.Leader.Unheld != nil {
		sr.Spurious = max(res.Leader.Unheld.Leaders-1, 0)
	}
	if !res.StartedAt.IsZero() && !res.EndedAt.IsZero() {
		sr.Seconds = math.Round(res.EndedAt.Sub(res.StartedAt).Seconds()*10) / 10
	}
	for _, fo := range res.Failovers {
		if fo.LeaderElectedMs != nil {
			sr.LeaderElectedMs = append(sr.LeaderElectedMs, *fo.LeaderElectedMs)
		}
		if fo.WriteRestoredMs != nil {
			sr.WriteRestoredMs = append(sr.WriteRestoredMs, *fo.WriteRestoredMs)
		} else {
			sr.NeverRestored++
		}
	}
	for _, c := range res.Checks {
		if c.Status == CheckFail {
			sr.ChecksFailed = append(sr.ChecksFailed, c.Name)
		}
	}
	for _, f := range res.Faults {
		if f.OutageWriteMs != nil {
			sr.OutageWriteMs = append(sr.OutageWriteMs, *f.OutageWriteMs)
		}
	}
	sr.PutP99Ms, sr.SteadyS, sr.SteadyRate = steadyP99(dir, res, "put")
	if rtt := res.Cluster.PeerRTT; rtt != nil {
		v := rtt.MeanMs
		sr.PeerRTTMs = &v
	}
	sr.TargetRate, sr.AchievedRate, sr.Dropped = res.Load.TargetRate, math.Round(res.Load.AchievedRate*10)/10, res.Load.Dropped
	return sr
}

// steadyP99 merges op's latency.hlog seconds that began after the warm-up and ended before the
// first fault's acting call (or the load's end), and returns their p99, how many seconds they
// span, and the KV ops acknowledged per second over them.
func steadyP99(dir string, res *Result, op string) (*float64, float64, float64) {
	from, to := -1.0, math.Inf(1)
	for _, p := range res.Phases {
		if p.Name == "before" {
			from, to = p.StartS, p.EndS
		}
	}
	for _, f := range res.Faults {
		if f.AtS > 0 && f.AtS < to {
			to = f.AtS
		}
	}
	if from < 0 || dir == "" {
		return nil, 0, 0
	}
	var merged *hdrhistogram.Histogram
	span := 0.0
	var kvOps int64
	err := scanHlog(filepath.Join(dir, "latency.hlog"), float64(res.LoadStartedAt.Unix()), func(iv Interval) {
		if iv.Start < from-0.05 || iv.End > to {
			return
		}
		if slices.Contains(scenarios.OpNames, iv.Tag) {
			kvOps += iv.H.TotalCount()
		}
		if iv.Tag != op {
			return
		}
		if merged == nil {
			merged = iv.H
		} else {
			merged.Merge(iv.H)
		}
		span += iv.End - iv.Start
	})
	if err != nil {
		return nil, 0, 0
	}
	if merged == nil || merged.TotalCount() == 0 {
		return nil, 0, 0
	}
	v := StatsOf(HDR{H: merged}).P99
	return &v, math.Round(span*10) / 10, math.Round(float64(kvOps)/span*10) / 10
}

func firstLineOf(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// SpreadOf is the nearest-rank p50 and p90 and the max of samples (nil when there are none).
func SpreadOf(vs []float64) *Spread {
	if len(vs) == 0 {
		return nil
	}
	s := slices.Clone(vs)
	sort.Float64s(s)
	rank := func(q float64) float64 { return s[max(int(math.Ceil(q*float64(len(s))))-1, 0)] }
	return &Spread{N: len(s), P50Ms: rank(0.5), P90Ms: rank(0.9), MaxMs: s[len(s)-1]}
}

// Fold computes a cell's status and aggregates from its runs; repeat is how many it should have.
func (c *SweepCell) Fold(repeat int) {
	var elected, restored, outage, rtts []float64
	var ops, failed int64
	c.SpuriousElections, c.NeverRestored, c.PutP99Ms, c.Note, c.Disqualified = 0, 0, nil, "", ""
	var disq []string
	status := CellDone
	if len(c.Runs) < repeat {
		status = CellPending
	}
	for _, r := range c.Runs {
		elected = append(elected, r.LeaderElectedMs...)
		restored = append(restored, r.WriteRestoredMs...)
		outage = append(outage, r.OutageWriteMs...)
		c.SpuriousElections += r.Spurious
		c.NeverRestored += r.NeverRestored
		ops, failed = ops+r.Ops, failed+r.FailedOps
		switch {
		case len(r.ChecksFailed) > 0:
			disq = append(disq, fmt.Sprintf("repeat %d failed %s", r.Repeat, strings.Join(r.ChecksFailed, ", ")))
		case r.Verdict == VerdictAborted || r.Verdict == VerdictUnknown:
			disq = append(disq, fmt.Sprintf("repeat %d was %s", r.Repeat, r.Verdict))
		case r.NeverRestored > 0:
			disq = append(disq, fmt.Sprintf("repeat %d: writes never came back after %d failover(s)", r.Repeat, r.NeverRestored))
		case r.behindSteady():
			disq = append(disq, fmt.Sprintf("repeat %d fell behind its load before any fault (%.0f of %.0f ops/s)", r.Repeat, r.SteadyRate, r.TargetRate))
		}
		if r.PutP99Ms != nil && (c.PutP99Ms == nil || *r.PutP99Ms > *c.PutP99Ms) {
			v := *r.PutP99Ms
			c.PutP99Ms = &v
		}
		if r.PeerRTTMs != nil {
			rtts = append(rtts, *r.PeerRTTMs)
		}
		if r.behind() && !strings.Contains(c.Note, "fell behind") {
			why := "the cluster could not keep up at this setting, and its latency counts the wait in the backlog"
			if r.SteadyS >= 1 && !r.behindSteady() {
				why = fmt.Sprintf("it kept %.0f ops/s before the fault: the failover stalled its clients, and the load's end cut the backlog", r.SteadyRate)
			}
			c.addNote(fmt.Sprintf("repeat %d: the load fell behind its target (%.0f of %.0f ops/s, %d due ops never sent): %s", r.Repeat, r.AchievedRate, r.TargetRate, r.Dropped, why))
		}
		switch {
		case !r.Ready && r.Unheld != nil:
			status = CellNotViable
			c.addNote(fmt.Sprintf("repeat %d never became ready: elections did not hold (%d leaders elected, %d candidacies, by etcd's logs)",
				r.Repeat, r.Unheld.Leaders, r.Unheld.Candidacies))
		case (!r.Ready || r.Verdict == VerdictError) && status != CellNotViable:
			status = CellError
			c.addNote(fmt.Sprintf("repeat %d: %s", r.Repeat, r.Reason))
		}
	}
	c.Status = status
	c.Disqualified = strings.Join(disq, "; ")
	if c.Disqualified != "" {
		c.addNote("not recommendable: " + c.Disqualified)
	}
	c.LeaderElected, c.WriteRestored, c.OutageWrite = SpreadOf(elected), SpreadOf(restored), SpreadOf(outage)
	c.Failover = c.WriteRestored
	c.ErrorRate = 0
	if ops > 0 {
		c.ErrorRate = float64(failed) / float64(ops)
	}
	c.MeasuredRTTMs = nil
	if len(rtts) > 0 {
		var sum float64
		for _, v := range rtts {
			sum += v
		}
		m := math.Round(sum/float64(len(rtts))*10) / 10
		c.MeasuredRTTMs = &m
	}
}

func (c *SweepCell) addNote(s string) {
	if c.Note != "" {
		c.Note += "; "
	}
	c.Note += s
}

// tuned are the swept cluster.etcd.* paths (the settings to choose); the other swept paths are the
// conditions (the network). A sweep of no etcd setting tunes every path it sweeps.
func (s *Sweep) tuned() (tuned, conds []string) {
	for _, v := range s.Vary {
		if strings.HasPrefix(v.Path, "cluster.etcd.") {
			tuned = append(tuned, v.Path)
		} else {
			conds = append(conds, v.Path)
		}
	}
	if len(tuned) == 0 {
		return conds, nil
	}
	return tuned, conds
}

func key(values map[string]string, paths []string) string {
	var parts []string
	for _, p := range paths {
		parts = append(parts, p+"="+values[p])
	}
	return strings.Join(parts, " ")
}

func pick(values map[string]string, paths []string) map[string]string {
	out := map[string]string{}
	for _, p := range paths {
		out[p] = values[p]
	}
	return out
}

// qualifies: every repeat ran and passed its checks (no lost write, not aborted, not behind its
// load), none saw a spurious election, every failover's writes came back, and one was measured.
func (c *SweepCell) qualifies() bool {
	return c.Status == CellDone && c.SpuriousElections == 0 && c.Failover != nil && c.Disqualified == "" && c.NeverRestored == 0
}

// groupBy groups the cells by their values of paths, the groups' keys in the cells' order.
func (s *Sweep) groupBy(paths []string) (map[string][]*SweepCell, []string) {
	groups := map[string][]*SweepCell{}
	var keys []string
	for i := range s.Cells {
		c := &s.Cells[i]
		k := key(c.Values, paths)
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], c)
	}
	return groups, keys
}

// Recommend chooses, among the tuned settings whose cells qualify under every condition swept, the
// one with the lowest failover p90 (the worst over the conditions); and the same per condition.
func (s *Sweep) Recommend() {
	s.Recommendation, s.NoRecommendation, s.ByCondition = nil, "", nil
	tuned, conds := s.tuned()
	byCond, condKeys := s.groupBy(conds)
	for _, k := range condKeys {
		if len(conds) == 0 {
			break
		}
		var best *SweepCell
		for _, c := range byCond[k] {
			if c.qualifies() && (best == nil || c.Failover.P90Ms < best.Failover.P90Ms) {
				best = c
			}
		}
		if best != nil {
			rec := s.recommendation(tuned, []*SweepCell{best})
			rec.Conditions = pick(best.Values, conds)
			s.ByCondition = append(s.ByCondition, rec)
		}
	}
	// A setting qualifies overall when its cell qualifies under every condition.
	settings, order := s.groupBy(tuned)
	var best []*SweepCell
	worst := func(cs []*SweepCell) float64 {
		w := 0.0
		for _, c := range cs {
			w = max(w, c.Failover.P90Ms)
		}
		return w
	}
	for _, k := range order {
		cs := settings[k]
		ok := len(cs) == len(condKeys)
		for _, c := range cs {
			ok = ok && c.qualifies()
		}
		if ok && (best == nil || worst(cs) < worst(best)) {
			best = cs
		}
	}
	if best == nil {
		s.NoRecommendation = s.whyNone(conds)
		return
	}
	rec := s.recommendation(tuned, best)
	s.Recommendation = &rec
}

func (s *Sweep) whyNone(conds []string) string {
	pending, spurious, failed, nofail, disq := 0, 0, 0, 0, 0
	for _, c := range s.Cells {
		switch {
		case c.Status == CellPending:
			pending++
		case c.SpuriousElections > 0:
			spurious++
		case c.Disqualified != "" || c.NeverRestored > 0:
			disq++
		case c.Status != CellDone:
			failed++
		case c.Failover == nil:
			nofail++
		}
	}
	switch {
	case len(s.Cells) == 0:
		return "no cell was run: every combination was skipped"
	case spurious == len(s.Cells):
		return "every cell had spurious elections: these timeouts are too tight for this network; try longer election timeouts"
	case nofail == len(s.Cells):
		return "no cell measured a failover: the scenario has no fault that cost an election"
	}
	var parts []string
	if spurious > 0 {
		parts = append(parts, fmt.Sprintf("%d had spurious elections", spurious))
	}
	if failed > 0 {
		parts = append(parts, fmt.Sprintf("%d did not run in every repeat (not viable or an error)", failed))
	}
	if nofail > 0 {
		parts = append(parts, fmt.Sprintf("%d measured no failover", nofail))
	}
	if disq > 0 {
		parts = append(parts, fmt.Sprintf("%d had a run that lost writes, was aborted, fell behind or never restored writes", disq))
	}
	if pending > 0 {
		parts = append(parts, fmt.Sprintf("%d are not finished", pending))
	}
	msg := fmt.Sprintf("no setting qualified: of %d cells, %s", len(s.Cells), strings.Join(parts, ", "))
	if len(conds) > 0 {
		msg += "; a setting must qualify under every " + strings.Join(conds, ", ")
	}
	return msg
}

// recommendation describes the setting of cells (one per condition).
func (s *Sweep) recommendation(tuned []string, cells []*SweepCell) Recommendation {
	first := cells[0]
	rec := Recommendation{Values: pick(first.Values, tuned), HeartbeatMs: first.HeartbeatMs, ElectionMs: first.ElectionMs}
	var rtt float64
	measured := false
	var worstRTT string
	for _, c := range cells {
		rec.FailoverP90Ms = max(rec.FailoverP90Ms, c.Failover.P90Ms)
		rec.Evidence = append(rec.Evidence, Evidence{Cell: c.ID, Values: c.Values, Repeats: len(c.Runs), Failover: c.Failover,
			SpuriousElections: c.SpuriousElections, InjectedRTTMs: c.InjectedRTTMs, MeasuredRTTMs: c.MeasuredRTTMs})
		r, m := c.InjectedRTTMs, false
		if c.MeasuredRTTMs != nil && *c.MeasuredRTTMs > r {
			r, m = *c.MeasuredRTTMs, true
		}
		if r >= rtt {
			rtt, measured = r, m
			worstRTT = c.ID
		}
	}
	src := "injected"
	if measured {
		src = "measured by etcd"
	}
	rec.RuleOfThumb = fmt.Sprintf("etcd's tuning guide, for the highest round trip here (%.1fms, %s, cell %s): heartbeat-interval about the round trip "+
		"(0.5-1.5x: %.0f-%.0fms), election-timeout at least 10x it (%.0fms) and 5-10 heartbeats; this pair is heartbeat %.0fms, election %.0fms",
		rtt, src, worstRTT, 0.5*rtt, 1.5*rtt, 10*rtt, first.HeartbeatMs, first.ElectionMs)
	rec.Margin = s.margin(tuned, cells)
	n := 0
	for _, c := range cells {
		n += len(c.Runs)
	}
	rec.Why = fmt.Sprintf("the lowest failover p90 (%.0fms, write_restored) among the settings with no spurious election, no lost write and every failover restored in all of their %d runs", rec.FailoverP90Ms, n)
	if len(cells) > 1 {
		rec.Why += fmt.Sprintf(", under each of the %d conditions swept", len(cells))
	}
	if s.Repeat < 3 {
		rec.Caveat = fmt.Sprintf("it rests on too few runs: %d repeat(s) a cell, where one election is one draw from [ET, 2ET); sweep with --repeat 3 or more for a distribution", s.Repeat)
		rec.Why += "; " + rec.Caveat
	}
	return rec
}

// margin finds, for each of cells, the cell with the next shorter election timeout (or, without
// one swept, the next lower value of the first tuned path) and the rest the same, and says what it showed.
func (s *Sweep) margin(tuned []string, cells []*SweepCell) string {
	path := ""
	for _, p := range tuned {
		if p == "cluster.etcd.election-timeout" {
			path = p
		}
	}
	if path == "" && len(tuned) > 0 {
		path = tuned[0]
	}
	var values []string
	for _, v := range s.Vary {
		if v.Path == path {
			values = SortValues(v.Values)
		}
	}
	var out []string
	for _, c := range cells {
		i := slices.Index(values, c.Values[path])
		if i <= 0 {
			out = append(out, fmt.Sprintf("%s %s is the tightest swept (the next tighter was not tried)", ShortPath(path), c.Values[path]))
			continue
		}
		want := map[string]string{}
		for k, v := range c.Values {
			want[k] = v
		}
		want[path] = values[i-1]
		next := s.cellOf(want)
		label := fmt.Sprintf("%s %s", ShortPath(path), values[i-1])
		cond := otherValues(c.Values, tuned)
		if cond != "" {
			label += " at " + cond
		}
		if next != nil {
			out = append(out, label+" "+next.outcome())
			continue
		}
		m := label + " was not tried (skipped: " + s.skipReason(want) + ")"
		// The next tighter value tried under the same conditions, with any other tuned setting.
		for k := i - 1; k >= 0; k-- {
			var tried []string
			for j := range s.Cells {
				o := &s.Cells[j]
				if o.Values[path] == values[k] && otherValues(o.Values, tuned) == cond {
					tried = append(tried, otherValues(o.Values, append(slices.Clone(s.conds()), path))+" "+o.outcome())
				}
			}
			if len(tried) > 0 {
				m += fmt.Sprintf("; the next tighter tried there, %s %s: %s", ShortPath(path), values[k], strings.Join(tried, ", "))
				break
			}
		}
		out = append(out, m)
	}
	return strings.Join(out, "; ")
}

func (s *Sweep) conds() []string {
	_, conds := s.tuned()
	return conds
}

func (s *Sweep) cellOf(values map[string]string) *SweepCell {
	for j := range s.Cells {
		if SameValues(s.Cells[j].Values, values) {
			return &s.Cells[j]
		}
	}
	return nil
}

// outcome says what a cell showed, for a margin: spurious elections, not viable, or none.
func (c *SweepCell) outcome() string {
	switch {
	case c.Status == CellNotViable:
		return fmt.Sprintf("was not viable: elections did not hold (%d leaders deposed, by etcd's logs)", c.SpuriousElections)
	case c.SpuriousElections > 0:
		return fmt.Sprintf("had %d spurious elections over %d runs", c.SpuriousElections, len(c.Runs))
	case c.Status != CellDone:
		return "did not finish every repeat"
	case c.Failover == nil:
		return "had no spurious elections either (no failover measured): no margin was seen to fail"
	}
	return fmt.Sprintf("had no spurious elections either (failover p90 %.0fms): no margin was seen to fail", c.Failover.P90Ms)
}

func (s *Sweep) skipReason(values map[string]string) string {
	for _, sk := range s.Skipped {
		if SameValues(sk.Values, values) {
			return sk.Reason
		}
	}
	return "not in the grid"
}

// SameValues reports whether two cells' values are the same.
func SameValues(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func otherValues(values map[string]string, skip []string) string {
	var parts []string
	for _, k := range sortedKeys(values) {
		if !slices.Contains(skip, k) {
			parts = append(parts, ShortPath(k)+" "+values[k])
		}
	}
	return strings.Join(parts, ", ")
}

// ShortPath is a path's last part (cluster.etcd.election-timeout: election-timeout).
func ShortPath(p string) string {
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// SortValues orders values by duration (or number) when every one is one, else keeps their order.
func SortValues(vs []string) []string {
	out := slices.Clone(vs)
	num := func(v string) (float64, bool) {
		if d, err := time.ParseDuration(v); err == nil {
			return float64(d), true
		}
		var f float64
		if _, err := fmt.Sscanf(v, "%g", &f); err == nil && fmt.Sprint(f) == v {
			return f * float64(time.Millisecond), true // etcd's bare numbers are milliseconds
		}
		return 0, false
	}
	for _, v := range out {
		if _, ok := num(v); !ok {
			return out
		}
	}
	slices.SortStableFunc(out, func(a, b string) int {
		x, _ := num(a)
		y, _ := num(b)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	})
	return out
}

// WriteSweep writes sweep.json, sweep.csv and sweep.html, each atomically.
func WriteSweep(dir string, s *Sweep) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding sweep.json: %w", err)
	}
	if err := writeAtomic(filepath.Join(dir, "sweep.json"), append(b, '\n')); err != nil {
		return err
	}
	var csvb strings.Builder
	if err := WriteSweepCSV(&csvb, s); err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(dir, "sweep.csv"), []byte(csvb.String())); err != nil {
		return err
	}
	var hb strings.Builder
	if err := WriteSweepHTML(&hb, s); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, "sweep.html"), []byte(hb.String()))
}

// ReadSweep reads a sweep folder's sweep.json.
func ReadSweep(dir string) (*Sweep, error) {
	b, err := os.ReadFile(filepath.Join(dir, "sweep.json"))
	if err != nil {
		return nil, err
	}
	var s Sweep
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", filepath.Join(dir, "sweep.json"), err)
	}
	return &s, nil
}

func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	return nil
}

// spreadJSON is how sweep.json writes a spread: always an object, with n 0 and null numbers when
// nothing was measured (a cell that never became ready), so a reader can take cells[].failover.p90_ms
// of every cell.
type spreadJSON struct {
	N     int      `json:"n"`
	P50Ms *float64 `json:"p50_ms"`
	P90Ms *float64 `json:"p90_ms"`
	MaxMs *float64 `json:"max_ms"`
}

func spreadToJSON(s *Spread) spreadJSON {
	if s == nil {
		return spreadJSON{}
	}
	p50, p90, mx := s.P50Ms, s.P90Ms, s.MaxMs
	return spreadJSON{N: s.N, P50Ms: &p50, P90Ms: &p90, MaxMs: &mx}
}

func (j spreadJSON) spread() *Spread {
	if j.N == 0 || j.P50Ms == nil || j.P90Ms == nil || j.MaxMs == nil {
		return nil
	}
	return &Spread{N: j.N, P50Ms: *j.P50Ms, P90Ms: *j.P90Ms, MaxMs: *j.MaxMs}
}

// MarshalJSON writes the cell with its spreads as objects even when nothing was measured (the
// outer fields, shallower than the embedded cell's, take their names).
func (c SweepCell) MarshalJSON() ([]byte, error) {
	type plain SweepCell
	return json.Marshal(struct {
		plain
		Failover      spreadJSON `json:"failover"`
		LeaderElected spreadJSON `json:"leader_elected"`
		WriteRestored spreadJSON `json:"write_restored"`
		OutageWrite   spreadJSON `json:"outage_write"`
	}{plain(c), spreadToJSON(c.Failover), spreadToJSON(c.LeaderElected), spreadToJSON(c.WriteRestored), spreadToJSON(c.OutageWrite)})
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (c *SweepCell) UnmarshalJSON(b []byte) error {
	type plain SweepCell
	v := struct {
		*plain
		Failover      spreadJSON `json:"failover"`
		LeaderElected spreadJSON `json:"leader_elected"`
		WriteRestored spreadJSON `json:"write_restored"`
		OutageWrite   spreadJSON `json:"outage_write"`
	}{plain: (*plain)(c)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	c.Failover, c.LeaderElected, c.WriteRestored, c.OutageWrite = v.Failover.spread(), v.LeaderElected.spread(), v.WriteRestored.spread(), v.OutageWrite.spread()
	return nil
}
