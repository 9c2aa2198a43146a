// Package prom reads Prometheus histograms as PromQL does: the member scraper (harness) and
// preflight's disk and network checks estimate etcd's own latency quantiles with it.
package prom

import (
	"math"

	dto "github.com/prometheus/client_model/go"
)

// Quantile estimates quantile q of a Prometheus histogram as histogram_quantile does: linear
// within the bucket holding the rank; in the +Inf bucket, the highest finite bound.
func Quantile(h *dto.Histogram, q float64) float64 {
	total := float64(h.GetSampleCount())
	if total == 0 {
		return math.NaN()
	}
	rank := q * total
	prevBound, prevCount := 0.0, 0.0
	for _, b := range h.Bucket {
		c := float64(b.GetCumulativeCount())
		ub := b.GetUpperBound()
		if c >= rank {
			if math.IsInf(ub, 1) {
				return prevBound
			}
			if c == prevCount {
				return ub
			}
			return prevBound + (ub-prevBound)*(rank-prevCount)/(c-prevCount)
		}
		prevBound, prevCount = ub, c
	}
	return prevBound
}
