package reports

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// 70 minutes of a per-second latency log are read in buckets: at most maxPoints per op, every op
// counted once, and a bucket's max the largest of its seconds.
func TestLongLatencyLogIsBucketed(t *testing.T) {
	dir := t.TempDir()
	zero := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	f, err := os.Create(filepath.Join(dir, "latency.hlog"))
	if err != nil {
		t.Fatal(err)
	}
	w := hdrhistogram.NewHistogramLogWriter(f)
	w.SetBaseTime(zero.UnixMilli())
	if err := w.OutputBaseTime(zero.UnixMilli()); err != nil {
		t.Fatal(err)
	}
	const secs = 3600 + 600
	// Every second holds five 2ms puts, second 1234 also one 900ms put. Each kind of second is
	// encoded once by the library's writer and its line repeated with each second's times: the
	// reader and the bucketing are under test, and encoding 4,200 histograms under -race took 50s.
	line := func(slow bool) (max, payload string) {
		h := hdrhistogram.New(1000, 10_000_000_000, 2)
		for i := 0; i < 5; i++ {
			_ = h.RecordValue(int64(2_000_000)) // 2ms
		}
		if slow {
			_ = h.RecordValue(900_000_000) // one 900ms op
		}
		h.SetTag("put")
		h.SetStartTimeMs(zero.UnixMilli())
		h.SetEndTimeMs(zero.Add(time.Second).UnixMilli())
		var b strings.Builder
		lw := hdrhistogram.NewHistogramLogWriter(&b)
		lw.SetBaseTime(zero.UnixMilli())
		if err := lw.OutputIntervalHistogram(h); err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(strings.TrimSpace(b.String()), ",")
		if len(parts) != 5 || parts[0] != "Tag=put" {
			t.Fatalf("the writer's line: %q", b.String())
		}
		return parts[3], parts[4]
	}
	fastMax, fast := line(false)
	slowMax, slow := line(true)
	bw := bufio.NewWriter(f)
	for s := 0; s < secs; s++ {
		m, p := fastMax, fast
		if s == 1234 {
			m, p = slowMax, slow
		}
		fmt.Fprintf(bw, "Tag=put,%f,%f,%s,%s\n", float64(s), 1.0, m, p)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	res := &Result{LoadStartedAt: zero, EndedAt: zero.Add(secs * time.Second)}
	pts, bucket, err := readPoints(filepath.Join(dir, "latency.hlog"), float64(zero.Unix()), res)
	if err != nil {
		t.Fatal(err)
	}
	if bucket != 3 || len(pts["put"]) != secs/3 || len(pts["put"]) > maxPoints {
		t.Fatalf("bucket %vs, %d points", bucket, len(pts["put"]))
	}
	var n int64
	var top float64
	for _, p := range pts["put"] {
		n += p.Count
		top = max(top, p.Max)
	}
	if n != 5*secs+1 || top < 890 || top > 910 {
		t.Fatalf("count %d (want %d), max %.1fms", n, 5*secs+1, top)
	}
}
