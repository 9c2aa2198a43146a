package reports

import (
	"math"
	"sort"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Dist is a distribution of durations in nanoseconds, as thresholds read it.
type Dist interface {
	Count() int64
	Quantile(p float64) float64 // p in (0, 100]
	Mean() float64
	Min() float64
	Max() float64
}

// HDR adapts an HdrHistogram. Values are the highest equivalent value of their bucket, so a reported
// percentile is never below the true one (at most 0.1% above with 3 significant digits).
type HDR struct{ H *hdrhistogram.Histogram }

func (h HDR) Count() int64 { return h.H.TotalCount() }
func (h HDR) Quantile(p float64) float64 {
	return float64(h.H.ValueAtPercentile(p))
}
func (h HDR) Mean() float64 { return h.H.Mean() }
func (h HDR) Min() float64  { return float64(h.H.Min()) }
func (h HDR) Max() float64  { return float64(h.H.Max()) }

// Samples is a small exact distribution; +Inf stands for a measurement that never completed, so that
// any threshold on it fails instead of ignoring it.
type Samples []float64

func (s Samples) sorted() []float64 {
	c := append([]float64(nil), s...)
	sort.Float64s(c)
	return c
}

func (s Samples) Count() int64 { return int64(len(s)) }

// Quantile uses the nearest-rank method: the smallest sample at or above p% of the samples.
func (s Samples) Quantile(p float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	c := s.sorted()
	rank := int(math.Ceil(p / 100 * float64(len(c))))
	return c[max(rank-1, 0)]
}

func (s Samples) Mean() float64 {
	var sum float64
	for _, v := range s {
		sum += v
	}
	return sum / float64(len(s))
}

func (s Samples) Min() float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	return s.sorted()[0]
}

func (s Samples) Max() float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	return s.sorted()[len(s)-1]
}
