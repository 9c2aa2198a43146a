package reports

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
)

// MemberSample is one scrape of one member's /metrics: a line of members.jsonl. T is seconds from
// the load's start. Gauges are as read; the p99s are over the interval since the member's previous
// scrape (nil: nothing was recorded meanwhile); counters are cumulative since the member started
// (StartedAt, process_start_time_seconds, tells a restart).
type MemberSample struct {
	T      float64 `json:"t"`
	Member string  `json:"member"`
	Error  string  `json:"error,omitempty"` // the scrape failed (a killed or paused member)

	StartedAt          float64  `json:"started_at,omitempty"` // unix seconds
	RSSBytes           float64  `json:"rss_bytes,omitempty"`
	OpenFDs            float64  `json:"open_fds,omitempty"`
	Goroutines         float64  `json:"goroutines,omitempty"`
	DBSizeBytes        float64  `json:"db_size_bytes,omitempty"`
	DBInUseBytes       float64  `json:"db_in_use_bytes,omitempty"`
	WALFsyncP99Ms      *float64 `json:"wal_fsync_p99_ms,omitempty"`
	BackendCommitP99Ms *float64 `json:"backend_commit_p99_ms,omitempty"`
	LeaderChanges      float64  `json:"leader_changes"`
	ProposalsFailed    float64  `json:"proposals_failed"`
	ProposalsPending   float64  `json:"proposals_pending"`
	Watchers           float64  `json:"watchers"`
	WatchStreams       float64  `json:"watch_streams"`
}

// MemberHealth sums up one member's scrapes over a run: growth per hour of RSS, open fds and db
// size, by least squares over the scrapes after the warm-up. A restart begins a new process whose
// level differs: the fit gives each process lifetime its own intercept and one common slope, and
// leaves out each restarted process's first scrape (it is still loading its state).
type MemberHealth struct {
	Member   string `json:"member"`
	Scrapes  int    `json:"scrapes"`
	Failed   int    `json:"failed_scrapes"`
	Restarts int    `json:"restarts"`
	// Fitted is how many scrapes the growth fits used, over SpanS seconds.
	Fitted int     `json:"fitted"`
	SpanS  float64 `json:"span_s"`
	// Growth per hour; nil when fewer than 3 scrapes after the warm-up fitted, or when they span
	// less than the minimum (GrowthTooShort).
	RSSGrowthPerH    *float64 `json:"rss_growth_bytes_per_h"`
	FDsGrowthPerH    *float64 `json:"fds_growth_per_h"`
	DBSizeGrowthPerH *float64 `json:"db_size_growth_bytes_per_h"`
	// GrowthTooShort: the scrapes span less than GrowthMinSpanS seconds (cluster.growth-min-span),
	// too short to tell a leak from the heap warming up: no growth is given, and growth thresholds
	// are unknown.
	GrowthTooShort bool    `json:"growth_too_short,omitempty"`
	GrowthMinSpanS float64 `json:"growth_min_span_s,omitempty"`
	// Levels: the last RSS, the most open fds and the largest db size seen.
	LastRSSBytes  float64 `json:"last_rss_bytes"`
	MaxOpenFDs    float64 `json:"max_open_fds"`
	MaxDBSize     float64 `json:"max_db_size_bytes"`
	MaxWALFsyncMs float64 `json:"max_wal_fsync_p99_ms"`
	MaxCommitMs   float64 `json:"max_backend_commit_p99_ms"`
}

// GrowthFit fits one slope per member over process lifetimes, with running sums only: its memory
// does not grow with the run's length (a lifetime is a handful of sums).
type GrowthFit struct {
	From float64 // seconds from the load's start: scrapes before it (the warm-up) are left out
	// MinSpan is the shortest span of fitted scrapes, in seconds, that a growth is given for.
	MinSpan float64
	members map[string]*memberFit
	order   []string
}

type memberFit struct {
	h       MemberHealth
	life    float64 // StartedAt of the current lifetime
	started bool
	skip    bool // the current lifetime's first scrape is still to be skipped
	rss     []*sums
	fds     []*sums
	db      []*sums
	t0, t1  float64
}

// sums are one lifetime's least-squares sums, in hours from the load's start.
type sums struct{ n, t, y, tt, ty float64 }

func (s *sums) add(t, y float64) {
	s.n++
	s.t += t
	s.y += y
	s.tt += t * t
	s.ty += t * y
}

// slope is the common slope of lines with one intercept per lifetime (a fixed-effects fit):
// sum over lifetimes of their centred cross products over their centred squares.
func slope(lives []*sums) (float64, int, bool) {
	var num, den, n float64
	for _, s := range lives {
		if s.n < 2 {
			continue
		}
		num += s.ty - s.t*s.y/s.n
		den += s.tt - s.t*s.t/s.n
		n += s.n
	}
	if n < 3 || den <= 0 {
		return 0, int(n), false
	}
	return num / den, int(n), true
}

// Add takes one scrape.
func (g *GrowthFit) Add(s MemberSample) {
	if g.members == nil {
		g.members = map[string]*memberFit{}
	}
	m := g.members[s.Member]
	if m == nil {
		m = &memberFit{h: MemberHealth{Member: s.Member}}
		g.members[s.Member] = m
		g.order = append(g.order, s.Member)
	}
	m.h.Scrapes++
	if s.Error != "" {
		m.h.Failed++
		return
	}
	if !m.started || s.StartedAt != m.life {
		if m.started {
			m.h.Restarts++
			m.skip = true
		}
		m.started, m.life = true, s.StartedAt
		m.rss, m.fds, m.db = append(m.rss, &sums{}), append(m.fds, &sums{}), append(m.db, &sums{})
	}
	m.h.LastRSSBytes = s.RSSBytes
	m.h.MaxOpenFDs = math.Max(m.h.MaxOpenFDs, s.OpenFDs)
	m.h.MaxDBSize = math.Max(m.h.MaxDBSize, s.DBSizeBytes)
	if s.WALFsyncP99Ms != nil {
		m.h.MaxWALFsyncMs = math.Max(m.h.MaxWALFsyncMs, *s.WALFsyncP99Ms)
	}
	if s.BackendCommitP99Ms != nil {
		m.h.MaxCommitMs = math.Max(m.h.MaxCommitMs, *s.BackendCommitP99Ms)
	}
	if s.T < g.From {
		return
	}
	if m.skip {
		m.skip = false
		return
	}
	if m.h.Fitted == 0 {
		m.t0 = s.T
	}
	m.t1 = s.T
	m.h.Fitted++
	h := s.T / 3600
	last := len(m.rss) - 1
	m.rss[last].add(h, s.RSSBytes)
	m.fds[last].add(h, s.OpenFDs)
	m.db[last].add(h, s.DBSizeBytes)
}

// Health is each member's summary so far, in the order they were first scraped.
func (g *GrowthFit) Health() []MemberHealth {
	out := make([]MemberHealth, 0, len(g.order))
	for _, name := range g.order {
		m := g.members[name]
		h := m.h
		h.SpanS = math.Round((m.t1-m.t0)*10) / 10
		fit := func(lives []*sums) *float64 {
			if v, _, ok := slope(lives); ok {
				return &v
			}
			return nil
		}
		h.RSSGrowthPerH, h.FDsGrowthPerH, h.DBSizeGrowthPerH = fit(m.rss), fit(m.fds), fit(m.db)
		if h.SpanS < g.MinSpan {
			h.RSSGrowthPerH, h.FDsGrowthPerH, h.DBSizeGrowthPerH = nil, nil, nil
			h.GrowthTooShort, h.GrowthMinSpanS = true, g.MinSpan
		}
		out = append(out, h)
	}
	return out
}

// ReadMembers reads a run folder's members.jsonl (nil, nil when it has none). A last line cut
// short by a crash is left out.
func ReadMembers(dir string) ([]MemberSample, error) {
	f, err := os.Open(filepath.Join(dir, "members.jsonl"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []MemberSample
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		var s MemberSample
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			continue
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// memberValue is what a member metric's threshold reads of one member: a growth per hour, or the
// largest db size; ok is false when the member has no such value.
func memberValue(metric string, perHour bool, h MemberHealth) (float64, bool) {
	var v *float64
	switch {
	case metric == "member.rss_growth":
		v = h.RSSGrowthPerH
	case metric == "member.fds_growth":
		v = h.FDsGrowthPerH
	case metric == "member.db_size" && perHour:
		v = h.DBSizeGrowthPerH
	case metric == "member.db_size":
		if h.Scrapes > h.Failed {
			return h.MaxDBSize, true
		}
	}
	if v == nil {
		return 0, false
	}
	return *v, true
}

// BytesText prints a size in MB (10^6 bytes), or kB below one MB.
func BytesText(b float64) string {
	if math.Abs(b) >= 1e6 {
		return fmt.Sprintf("%.1fMB", b/1e6)
	}
	return fmt.Sprintf("%.1fkB", b/1e3)
}

// memberCharts plots RSS, open fds, db size and goroutines of every member over the run.
func (rd *RunDir) memberCharts() ([]Chart, error) {
	if len(rd.MemberSamples) == 0 {
		return nil, fmt.Errorf("no member metrics (members.jsonl)")
	}
	series := []struct {
		id, title, unit string
		get             func(MemberSample) float64
	}{
		{"member-rss", "member RSS", "MB", func(s MemberSample) float64 { return s.RSSBytes / 1e6 }},
		{"member-fds", "member open file descriptors", "fds", func(s MemberSample) float64 { return s.OpenFDs }},
		{"member-db", "member db size", "MB", func(s MemberSample) float64 { return s.DBSizeBytes / 1e6 }},
		{"member-goroutines", "member goroutines", "goroutines", func(s MemberSample) float64 { return s.Goroutines }},
	}
	var members []string
	for _, s := range rd.MemberSamples {
		if !slices.Contains(members, s.Member) {
			members = append(members, s.Member)
		}
	}
	slices.Sort(members)
	minutes := rd.MemberSamples[len(rd.MemberSamples)-1].T < 2*3600
	var charts []Chart
	for _, se := range series {
		p := plot.New()
		p.Title.Text = se.title
		p.X.Label.Text = "hours since the load started"
		if minutes {
			p.X.Label.Text = "minutes since the load started"
		}
		p.Y.Label.Text = se.unit
		for i, name := range members {
			var xs, ys []float64
			for _, s := range rd.MemberSamples {
				if s.Member != name || s.Error != "" {
					continue
				}
				x := s.T / 3600
				if minutes {
					x = s.T / 60
				}
				xs, ys = append(xs, x), append(ys, se.get(s))
			}
			if len(xs) == 0 {
				continue
			}
			l, err := line(xs, ys, palette[i%len(palette)], vg.Points(1.2))
			if err != nil {
				return nil, err
			}
			p.Add(l)
			p.Legend.Add(name, l)
		}
		p.Legend.Top = true
		p.Y.Min = 0
		c, err := render(se.id, se.title, p, 9*vg.Inch, 2.8*vg.Inch)
		if err != nil {
			return nil, err
		}
		charts = append(charts, c)
	}
	return charts, nil
}
