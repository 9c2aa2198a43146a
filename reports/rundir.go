package reports

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Interval is one histogram of an HdrHistogram log: an op's latencies over [Start, End), in seconds
// from the load's start.
type Interval struct {
	Tag        string
	Start, End float64
	H          *hdrhistogram.Histogram
}

// RunDir is a run folder read back: the result and the raw files the reports are drawn from.
type RunDir struct {
	Dir    string
	Result *Result
	Events []Event
	// Points are latency.hlog per op, in buckets of BucketS seconds (1 for a run of up to half an
	// hour; wider for longer runs, so a chart of hours has at most maxPoints points): the log is
	// streamed and each bucket kept as its percentiles, never as histograms.
	Points  map[string][]LatencyPoint
	BucketS float64
	// Groups, for a run of many faults, are its phases merged by kind ("before", "during faults",
	// "after faults") per op, in place of Phases.
	Groups  map[string]map[string]*Interval
	Totals  map[string]*Interval         // histograms.hlog: the whole run per op (warm-up excluded)
	Phases  map[int]map[string]*Interval // histograms.hlog: per phase index and op
	Members []string                     // members with a log in the folder
	// MemberSamples are members.jsonl: each member's /metrics scraped every few seconds.
	MemberSamples []MemberSample
}

// ReadRunDir reads a run folder. result.json is required; the other files are optional (a run that
// failed early has fewer of them).
func ReadRunDir(dir string) (*RunDir, error) {
	res, err := ReadResult(dir)
	if err != nil {
		return nil, err
	}
	return ReadRunDirOf(dir, res)
}

// ReadRunDirOf reads a run folder's raw files beside a result given (a partial one, rebuilt
// while its run still goes, is never written to the folder's result.json).
func ReadRunDirOf(dir string, res *Result) (*RunDir, error) {
	var err error
	rd := &RunDir{Dir: dir, Result: res, Totals: map[string]*Interval{}, Phases: map[int]map[string]*Interval{}}
	// A killed harness may leave events.jsonl's last line cut short: a partial run reads up to it.
	if rd.Events, err = readEvents(filepath.Join(dir, "events.jsonl")); err != nil && !errors.Is(err, fs.ErrNotExist) && !res.Partial {
		return nil, err
	}
	if rd.MemberSamples, err = ReadMembers(dir); err != nil {
		return nil, err
	}
	zero := float64(res.LoadStartedAt.Unix())
	if rd.Points, rd.BucketS, err = readPoints(filepath.Join(dir, "latency.hlog"), zero, res); err != nil && !errors.Is(err, fs.ErrNotExist) && !res.Partial {
		return nil, err
	}
	merge := len(res.Phases) > 2*ManyFaults+2
	if merge {
		rd.Groups = map[string]map[string]*Interval{}
	}
	err = scanHlog(filepath.Join(dir, "histograms.hlog"), zero, func(iv Interval) {
		kind, op, ok := strings.Cut(iv.Tag, ".")
		switch {
		case !ok:
		case kind == "total":
			rd.Totals[op] = &iv
		case strings.HasPrefix(kind, "p"):
			n, err := strconv.Atoi(kind[1:])
			if err != nil {
				return
			}
			if !merge {
				if rd.Phases[n] == nil {
					rd.Phases[n] = map[string]*Interval{}
				}
				rd.Phases[n][op] = &iv
				return
			}
			if n >= len(res.Phases) {
				return
			}
			group := phaseGroup(res.Phases[n].Name)
			if group == "" {
				return
			}
			if rd.Groups[group] == nil {
				rd.Groups[group] = map[string]*Interval{}
			}
			if g := rd.Groups[group][op]; g != nil {
				g.H.Merge(iv.H)
			} else {
				rd.Groups[group][op] = &iv
			}
		}
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "members", "*", "etcd.log"))
	for _, l := range logs {
		rd.Members = append(rd.Members, filepath.Base(filepath.Dir(l)))
	}
	sort.Strings(rd.Members)
	return rd, nil
}

func readEvents(path string) ([]Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for line := 1; sc.Scan(); line++ {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return out, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// scanHlog streams an HdrHistogram log to fn, one interval at a time (a soak's log holds one
// histogram per op and second: hours of them do not fit in memory); zero is the whole second the
// log's base time was printed as, so that Start and End come out relative to the load's start, as
// the log itself wrote them. A line cut short (a killed harness) ends the scan with an error.
func scanHlog(path string, zero float64, fn func(Interval)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return decodeHlog(f, zero, path, fn)
}

func decodeHlog(r io.Reader, zero float64, name string, fn func(Interval)) error {
	rd := hdrhistogram.NewHistogramLogReader(bufio.NewReaderSize(r, 1<<16))
	for {
		h, err := rd.NextIntervalHistogram()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if h == nil {
			return nil
		}
		fn(Interval{Tag: h.Tag(), Start: float64(h.StartTimeMs())/1000 - zero, End: float64(h.EndTimeMs())/1000 - zero, H: h})
	}
}

// LatencyPoint is one bucket of an op's latency over time, in milliseconds.
type LatencyPoint struct {
	T             float64 // the bucket's middle, seconds from the load's start
	P50, P99, Max float64
	Count         int64
}

// maxPoints bounds the points of a chart over time.
const maxPoints = 1800

// readPoints streams latency.hlog into buckets per op: one second each for a run of up to
// maxPoints seconds, wider for a longer one; each bucket's histogram is merged, read and dropped.
func readPoints(path string, zero float64, res *Result) (map[string][]LatencyPoint, float64, error) {
	length := res.EndedAt.Sub(res.LoadStartedAt).Seconds()
	bucket := math.Max(1, math.Ceil(length/maxPoints))
	out := map[string][]LatencyPoint{}
	type open struct {
		idx int64
		h   *hdrhistogram.Histogram
	}
	cur := map[string]*open{}
	flush := func(op string, o *open) {
		if o.h == nil || o.h.TotalCount() == 0 {
			return
		}
		out[op] = append(out[op], LatencyPoint{T: (float64(o.idx) + 0.5) * bucket, P50: ms(o.h.ValueAtQuantile(50)), P99: ms(o.h.ValueAtQuantile(99)), Max: ms(o.h.Max()), Count: o.h.TotalCount()})
	}
	err := scanHlog(path, zero, func(iv Interval) {
		if iv.H.TotalCount() == 0 {
			return
		}
		if bucket == 1 {
			out[iv.Tag] = append(out[iv.Tag], LatencyPoint{T: (iv.Start + iv.End) / 2, P50: ms(iv.H.ValueAtQuantile(50)), P99: ms(iv.H.ValueAtQuantile(99)), Max: ms(iv.H.Max()), Count: iv.H.TotalCount()})
			return
		}
		idx := int64(math.Floor(iv.Start / bucket))
		o := cur[iv.Tag]
		switch {
		case o == nil:
			cur[iv.Tag] = &open{idx: idx, h: iv.H}
		case o.idx != idx:
			flush(iv.Tag, o)
			o.idx, o.h = idx, iv.H
		default:
			o.h.Merge(iv.H)
		}
	})
	for op, o := range cur {
		flush(op, o)
	}
	return out, bucket, err
}

// phaseGroup is the kind of phase a name says: "before", "during faults" or "after faults"
// (empty for the warm-up).
func phaseGroup(name string) string {
	switch {
	case name == "before":
		return "before"
	case strings.HasPrefix(name, "during"):
		return "during faults"
	case strings.HasPrefix(name, "after"):
		return "after faults"
	}
	return ""
}
