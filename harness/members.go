package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/etcd-chaos/etcd-chaos/internal/prom"
	"github.com/etcd-chaos/etcd-chaos/reports"
)

// memberScraper reads every member's /metrics each cluster.scrape-interval and appends one line
// per member to members.jsonl, synced after each round, so a crash loses at most the last round.
// It keeps only what the next round needs (each member's last fsync and commit histograms) and the
// growth fit's running sums: its memory does not grow with the run.
type memberScraper struct {
	r    *run
	f    *os.File
	fit  *reports.GrowthFit
	mu   sync.Mutex
	prev map[string]map[string]*dto.Histogram
	err  error
}

func (r *run) newMemberScraper() (*memberScraper, error) {
	f, err := os.OpenFile(r.opts.Out+"/members.jsonl", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening members.jsonl: %w", err)
	}
	return &memberScraper{r: r, f: f, fit: &reports.GrowthFit{From: r.sc.Workload.Warmup.D().Seconds(), MinSpan: r.sc.Cluster.GrowthMinSpan.D().Seconds()},
		prev: map[string]map[string]*dto.Histogram{}}, nil
}

// run scrapes at once, then every interval, until ctx ends.
func (s *memberScraper) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.round(ctx, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// round scrapes every member at once (a paused member's scrape times out after 2s without holding
// up the others) and writes their lines in member order.
func (s *memberScraper) round(ctx context.Context, now time.Time) {
	names := s.r.cl.Names()
	samples := make([]reports.MemberSample, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			samples[i] = s.scrape(ctx, name, now)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // a round cut short by the end of the run says nothing about the members
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var buf []byte
	for _, smp := range samples {
		s.fit.Add(smp)
		b, err := json.Marshal(smp)
		if err != nil {
			s.err = err
			continue
		}
		buf = append(append(buf, b...), '\n')
	}
	if _, err := s.f.Write(buf); err != nil && s.err == nil {
		s.err = fmt.Errorf("writing members.jsonl: %w", err)
	}
	_ = s.f.Sync()
}

func (s *memberScraper) scrape(ctx context.Context, name string, now time.Time) reports.MemberSample {
	smp := reports.MemberSample{T: s.r.sinceStart(now), Member: name}
	fams, err := s.r.cl.MemberMetrics(ctx, name)
	if err != nil {
		smp.Error = err.Error()
		return smp
	}
	smp.StartedAt = sumOf(fams, "process_start_time_seconds")
	smp.RSSBytes = sumOf(fams, "process_resident_memory_bytes")
	smp.OpenFDs = sumOf(fams, "process_open_fds")
	smp.Goroutines = sumOf(fams, "go_goroutines")
	smp.DBSizeBytes = sumOf(fams, "etcd_mvcc_db_total_size_in_bytes")
	smp.DBInUseBytes = sumOf(fams, "etcd_mvcc_db_total_size_in_use_in_bytes")
	smp.LeaderChanges = sumOf(fams, "etcd_server_leader_changes_seen_total")
	smp.ProposalsFailed = sumOf(fams, "etcd_server_proposals_failed_total")
	smp.ProposalsPending = sumOf(fams, "etcd_server_proposals_pending")
	smp.Watchers = sumOf(fams, "etcd_debugging_mvcc_watcher_total")
	smp.WatchStreams = sumOf(fams, "etcd_debugging_mvcc_watch_stream_total")
	s.mu.Lock()
	prev := s.prev[name]
	if prev == nil {
		prev = map[string]*dto.Histogram{}
		s.prev[name] = prev
	}
	smp.WALFsyncP99Ms = intervalP99(fams, prev, "etcd_disk_wal_fsync_duration_seconds")
	smp.BackendCommitP99Ms = intervalP99(fams, prev, "etcd_disk_backend_commit_duration_seconds")
	s.mu.Unlock()
	return smp
}

// health is each member's summary so far.
func (s *memberScraper) health() []reports.MemberHealth {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fit.Health()
}

func (s *memberScraper) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.f.Close(); err != nil && s.err == nil {
		s.err = err
	}
	return s.err
}

// sumOf adds up every series of a gauge or counter (0 when the member does not export it).
func sumOf(fams map[string]*dto.MetricFamily, name string) float64 {
	fam := fams[name]
	if fam == nil {
		return 0
	}
	var v float64
	for _, m := range fam.Metric {
		switch {
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Untyped != nil:
			v += m.Untyped.GetValue()
		}
	}
	return v
}

// intervalP99 is the p99, in milliseconds, of what a histogram recorded since the previous scrape
// (the bucket counts' difference; after a restart the counts start over, and all of them count).
// Nil when nothing was recorded meanwhile.
func intervalP99(fams map[string]*dto.MetricFamily, prev map[string]*dto.Histogram, name string) *float64 {
	fam := fams[name]
	if fam == nil || len(fam.Metric) == 0 || fam.Metric[0].Histogram == nil {
		return nil
	}
	cur := fam.Metric[0].Histogram
	last := prev[name]
	prev[name] = cur
	delta := cur
	if last != nil && last.GetSampleCount() <= cur.GetSampleCount() && len(last.Bucket) == len(cur.Bucket) {
		d := &dto.Histogram{SampleCount: ptr(cur.GetSampleCount() - last.GetSampleCount())}
		for i, b := range cur.Bucket {
			d.Bucket = append(d.Bucket, &dto.Bucket{UpperBound: b.UpperBound, CumulativeCount: ptr(b.GetCumulativeCount() - last.Bucket[i].GetCumulativeCount())})
		}
		delta = d
	}
	if delta.GetSampleCount() == 0 {
		return nil
	}
	v := prom.Quantile(delta, 0.99) * 1000
	if math.IsNaN(v) {
		return nil
	}
	v = math.Round(v*1000) / 1000
	return &v
}

func ptr[T any](v T) *T { return &v }
