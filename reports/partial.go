package reports

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// VerdictPartial marks a result rebuilt from a run folder whose harness stopped (was killed)
// before it wrote result.json: what was on disk, up to where it stopped.
const VerdictPartial = "partial"

// ErrNotRunFolder says a folder has neither result.json nor the raw files of a run.
var ErrNotRunFolder = errors.New("not a run folder")

// PartialResult rebuilds what it can of a run whose harness died before writing result.json, from
// the files a run appends as it goes: scenario.yaml (name, seed, thresholds), events.jsonl (the
// load's start, the faults injected and healed, leader changes), latency.hlog (each op's latency
// per second: successful ops only) and members.jsonl (the members' health). What only the end of a
// run measures (failover and outage times, recovery, safety checks, failed ops) is left out and
// said so; thresholds on metrics that are not rebuilt are unknown, never a pass.
//
// livePID is the run's harness when it still runs (0: it stopped): the result then says the run
// is still going rather than that it was killed.
func PartialResult(dir string, livePID int) (*Result, error) {
	src, err := os.ReadFile(filepath.Join(dir, "scenario.yaml"))
	if err != nil {
		return nil, fmt.Errorf("%w: %s has no result.json and no scenario.yaml", ErrNotRunFolder, dir)
	}
	events, err := readEvents(filepath.Join(dir, "events.jsonl"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) && len(events) == 0 {
		return nil, err // a last line cut short by the kill is left out; a folder of garbage is not
	}
	r := &Result{Version: ResultVersion, Partial: true, Verdict: VerdictPartial}
	var notes []string
	sc, perr := scenarios.Parse(filepath.Join(dir, "scenario.yaml"), src, nil)
	if perr != nil {
		notes = append(notes, "scenario.yaml does not parse here, so no thresholds were held: "+firstLine(perr.Error()))
	} else {
		r.Scenario, r.Description, r.Seed, r.File = sc.Name, sc.Description, sc.Seed, sc.File
		r.Cluster = Cluster{Provider: sc.Cluster.Provider, Size: sc.Cluster.Size, Network: sc.Cluster.Network, Etcd: sc.Cluster.Etcd}
	}
	var warmEnd, last time.Time
	faultAt := map[int]int{} // fault index -> its record
	for _, e := range events {
		last = e.Time
		f := e.Fields
		switch e.Kind {
		case "load_started":
			r.LoadStartedAt = e.Time
		case "cluster_started":
			if r.StartedAt.IsZero() {
				r.StartedAt = e.Time
			}
			if ms, ok := f["members"].([]any); ok {
				r.Cluster.Members = nil
				for _, m := range ms {
					r.Cluster.Members = append(r.Cluster.Members, fmt.Sprint(m))
				}
			}
		case "phase":
			if f["name"] == "before" {
				warmEnd = e.Time
			}
		case "leader_changed":
			r.Leader.Changes++
			if to, ok := f["to"].(string); ok {
				r.Leader.Final = to
			}
		case "fault_injected":
			i := intField(f, "fault")
			rec := FaultRecord{Index: i, Template: i, Action: strField(f, "action"), Target: strField(f, "target"), AtS: round3(e.T)}
			if ms, ok := f["members"].([]any); ok {
				for _, m := range ms {
					rec.Members = append(rec.Members, fmt.Sprint(m))
				}
			}
			rec.WasLeader = slices.Contains(rec.Members, strField(f, "leader"))
			if sc != nil && i < len(sc.Faults) {
				rec.Template, rec.Occurrence = sc.Faults[i].Template, sc.Faults[i].Occurrence
			}
			faultAt[i] = len(r.Faults)
			r.Faults = append(r.Faults, rec)
		case "fault_healed":
			if k, ok := faultAt[intField(f, "fault")]; ok {
				h := round3(e.T)
				r.Faults[k].HealedAtS = &h
			}
		case "fault_error":
			if k, ok := faultAt[intField(f, "fault")]; ok {
				r.Faults[k].Error = strField(f, "error")
			}
		}
	}
	if r.LoadStartedAt.IsZero() {
		r.Reason = "the harness stopped before the load started: nothing was measured"
		r.EndedAt = last
		return r, nil
	}
	r.EndedAt = last
	if warmEnd.IsZero() && sc != nil {
		warmEnd = r.LoadStartedAt.Add(sc.Workload.Warmup.D())
	}
	fromS := warmEnd.Sub(r.LoadStartedAt).Seconds()

	// Latency and throughput after the warm-up, from the per-second log.
	totals := map[string]*hdrhistogram.Histogram{}
	perSecond := map[int64]int64{}
	var lastS float64
	herr := scanHlog(filepath.Join(dir, "latency.hlog"), float64(r.LoadStartedAt.Unix()), func(iv Interval) {
		lastS = max(lastS, iv.End)
		if iv.Start < fromS-0.05 {
			return
		}
		if totals[iv.Tag] == nil {
			totals[iv.Tag] = hdrhistogram.New(1, 60_000_000_000, 3)
		}
		totals[iv.Tag].Merge(iv.H)
		perSecond[int64(iv.Start+0.5)] += iv.H.TotalCount()
	})
	if herr != nil && !errors.Is(herr, fs.ErrNotExist) {
		notes = append(notes, "latency.hlog ends in a line cut short (left out)")
	}
	r.Latency = map[string]LatencyStats{}
	all := hdrhistogram.New(1, 60_000_000_000, 3)
	for op, h := range totals {
		r.Latency[op] = StatsOf(HDR{h})
		r.Ops += h.TotalCount()
		if op != "watch" {
			all.Merge(h)
		}
	}
	if all.TotalCount() > 0 {
		r.Latency["all"] = StatsOf(HDR{all})
	}
	secs := make([]int64, 0, len(perSecond))
	for s := range perSecond {
		secs = append(secs, s)
	}
	sort.Slice(secs, func(i, j int) bool { return secs[i] < secs[j] })
	for _, s := range secs {
		r.Throughput.PerSecond = append(r.Throughput.PerSecond, float64(perSecond[s]))
		r.Throughput.Timeline = append(r.Throughput.Timeline, Second{T: float64(s), Ops: float64(perSecond[s])})
	}
	// The last whole second may be cut short by the kill: it stays in the timeline, not in the rates.
	if n := len(r.Throughput.PerSecond); n > 1 {
		tp := Samples(r.Throughput.PerSecond[:n-1])
		r.Throughput.Avg, r.Throughput.Min, r.Throughput.Max = tp.Mean(), tp.Min(), tp.Max()
	}

	samples, merr := ReadMembers(dir)
	if merr == nil && len(samples) > 0 {
		fit := &GrowthFit{From: fromS}
		if sc != nil {
			fit.MinSpan = sc.Cluster.GrowthMinSpan.D().Seconds()
		}
		for _, s := range samples {
			fit.Add(s)
		}
		r.MemberHealth = fit.Health()
	}
	r.FaultStats = FaultStatsOf(r)

	if sc != nil {
		trends := map[string]Dist{}
		for op, h := range totals {
			trends["latency."+op] = HDR{h}
		}
		if all.TotalCount() > 0 {
			trends["latency.all"] = HDR{all}
		}
		m := Metrics{Trends: trends, LeaderChanges: r.Leader.Changes, Throughput: r.Throughput.PerSecond, Members: r.MemberHealth}
		for i, t := range Evaluate(sc.Thresholds, m) {
			if !rebuilt(sc.Thresholds[i].Metric) {
				t.Status, t.Passed, t.Value = ThresholdUnknown, false, nil
				t.Observed = "not rebuilt from a partial run"
			}
			r.Thresholds = append(r.Thresholds, t)
		}
	}
	stopped := max(lastS, last.Sub(r.LoadStartedAt).Seconds())
	of := ""
	if sc != nil {
		of = " of " + sc.Workload.Duration.String()
	}
	how := fmt.Sprintf("the harness stopped at %.0fs%s without writing result.json (killed?)", stopped, of)
	if livePID > 0 {
		how = fmt.Sprintf("the run is still going (harness pid %d): rendered at %.0fs%s", livePID, stopped, of)
	}
	r.Reason = fmt.Sprintf("partial: %s; rebuilt from events.jsonl, latency.hlog and members.jsonl: "+
		"faults, latency of successful ops, throughput, leader changes and member health up to then; failover and outage times, recovery, failed ops and safety checks were not measured", how)
	if len(notes) > 0 {
		r.Reason += "; " + strings.Join(notes, "; ")
	}
	return r, nil
}

// rebuilt says whether a partial run rebuilds a threshold's metric.
func rebuilt(metric string) bool {
	return strings.HasPrefix(metric, "latency.") && metric != "latency.failed" || metric == "throughput" ||
		metric == "leader_changes" || slices.Contains(scenarios.MemberMetrics, metric)
}

func intField(f map[string]any, k string) int {
	if v, ok := f[k].(float64); ok {
		return int(v)
	}
	return -1
}

func strField(f map[string]any, k string) string {
	if v, ok := f[k].(string); ok {
		return v
	}
	return ""
}

func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }
