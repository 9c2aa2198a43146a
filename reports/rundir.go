package reports

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
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
	Dir     string
	Result  *Result
	Events  []Event
	Seconds []Interval                   // latency.hlog: per op and second
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
	if rd.Seconds, err = readHlog(filepath.Join(dir, "latency.hlog"), zero); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	hs, err := readHlog(filepath.Join(dir, "histograms.hlog"), zero)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for i := range hs {
		iv := &hs[i]
		kind, op, ok := strings.Cut(iv.Tag, ".")
		switch {
		case !ok:
		case kind == "total":
			rd.Totals[op] = iv
		case strings.HasPrefix(kind, "p"):
			if n, err := strconv.Atoi(kind[1:]); err == nil {
				if rd.Phases[n] == nil {
					rd.Phases[n] = map[string]*Interval{}
				}
				rd.Phases[n][op] = iv
			}
		}
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

// readHlog reads an HdrHistogram log; zero is the whole second the log's base time was printed as,
// so that Start and End come out relative to the load's start, as the log itself wrote them.
func readHlog(path string, zero float64) ([]Interval, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return decodeHlog(f, zero, path)
}

func decodeHlog(r io.Reader, zero float64, name string) ([]Interval, error) {
	rd := hdrhistogram.NewHistogramLogReader(r)
	var out []Interval
	for {
		h, err := rd.NextIntervalHistogram()
		if err != nil {
			return out, fmt.Errorf("%s: %w", name, err)
		}
		if h == nil {
			return out, nil
		}
		out = append(out, Interval{Tag: h.Tag(), Start: float64(h.StartTimeMs())/1000 - zero, End: float64(h.EndTimeMs())/1000 - zero, H: h})
	}
}
