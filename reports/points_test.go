package reports

import (
	"os"
	"path/filepath"
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
	for s := 0; s < secs; s++ {
		h := hdrhistogram.New(1000, 10_000_000_000, 2)
		for i := 0; i < 5; i++ {
			_ = h.RecordValue(int64(2_000_000)) // 2ms
		}
		if s == 1234 {
			_ = h.RecordValue(900_000_000) // one 900ms op
		}
		h.SetTag("put")
		h.SetStartTimeMs(zero.Add(time.Duration(s) * time.Second).UnixMilli())
		h.SetEndTimeMs(zero.Add(time.Duration(s+1) * time.Second).UnixMilli())
		if err := w.OutputIntervalHistogram(h); err != nil {
			t.Fatal(err)
		}
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
