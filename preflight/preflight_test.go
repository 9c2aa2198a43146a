package preflight

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/internal/prom"
	"github.com/etcd-chaos/etcd-chaos/reports"
)

// histogramText is a Prometheus histogram in the text format, with etcd's fsync buckets
// (1ms doubling to 8s), n samples of which fall in the bucket ending at bound.
func histogramText(name string, n int, bound float64, labels string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# TYPE %s histogram\n", name)
	for ub := 0.001; ub <= 8.0001; ub *= 2 {
		c := 0
		if ub >= bound-1e-12 {
			c = n
		}
		fmt.Fprintf(&b, "%s_bucket{%sle=\"%g\"} %d\n", name, labels, ub, c)
	}
	fmt.Fprintf(&b, "%s_bucket{%sle=\"+Inf\"} %d\n%s_sum{%s} %g\n%s_count{%s} %d\n", name, labels, n, name, strings.TrimSuffix(labels, ","),
		float64(n)*bound*0.75, name, strings.TrimSuffix(labels, ","), n)
	return b.String()
}

func fakeMember(t *testing.T, name, metrics string) *pfMember {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(metrics))
	if err != nil {
		t.Fatalf("fixture: %v\n%s", err, metrics)
	}
	return &pfMember{id: 1, name: name, url: "http://127.0.0.1:1", metrics: fams, rtt: time.Millisecond,
		status: &clientv3.StatusResponse{Leader: 1}}
}

// The estimator is histogram_quantile's: linear within the bucket that holds the rank.
func TestQuantileAsHistogramQuantile(t *testing.T) {
	m := fakeMember(t, "a", histogramText("x", 1000, 0.004, ""))
	got := prom.Quantile(m.metrics["x"].Metric[0].Histogram, 0.99)
	// Every sample in (2ms, 4ms]: rank 990 of 1000 is 99% of the way through the bucket.
	if want := 0.002 + 0.002*0.99; math.Abs(got-want) > 1e-9 {
		t.Errorf("p99 %v, want %v", got, want)
	}
}

func TestPreflightDiskJudgesTheMembersHistograms(t *testing.T) {
	const wal, commit = "etcd_disk_wal_fsync_duration_seconds", "etcd_disk_backend_commit_duration_seconds"
	p := &preflight{members: []*pfMember{
		fakeMember(t, "fast", histogramText(wal, 5000, 0.002, "")+histogramText(commit, 5000, 0.004, "")),
		fakeMember(t, "slow", histogramText(wal, 5000, 0.032, "")+histogramText(commit, 5000, 0.004, "")),
		fakeMember(t, "young", histogramText(wal, 20, 0.032, "")+histogramText(commit, 20, 0.004, "")),
		fakeMember(t, "idle", "# TYPE up gauge\nup 1\n"),
	}}
	status, evidence, remedy := p.disk(context.Background()).result()
	if status != reports.CheckFail || !strings.Contains(remedy, "WAL") {
		t.Errorf("disk: %s (%s), want fail with a WAL remedy\n%s", status, remedy, evidence)
	}
	for _, want := range []string{
		"fast: WAL fsync p99 1.99ms over 5000 fsyncs", "fail: slow: WAL fsync p99 31.84ms",
		"warn: young: WAL fsync p99 31.84ms over 20 fsyncs", "only 20 samples", "skipped: idle: no WAL fsync samples",
	} {
		if !strings.Contains(evidence, want) {
			t.Errorf("disk evidence lacks %q:\n%s", want, evidence)
		}
	}
}

func TestPreflightTimeoutsAgainstTheRoundTrip(t *testing.T) {
	rtt := histogramText("etcd_network_peer_round_trip_time_seconds", 100, 0.032, `To="2",`)
	for _, c := range []struct {
		hb, et time.Duration
		status string
		say    string
	}{
		{10 * time.Millisecond, 100 * time.Millisecond, reports.CheckFail, "under 10x the peer round trip p99"},
		{10 * time.Millisecond, 100 * time.Millisecond, reports.CheckWarn, "too few to fail on"},
		{10 * time.Millisecond, 40 * time.Millisecond, reports.CheckFail, "under 5x the heartbeat"},
		{20 * time.Millisecond, 500 * time.Millisecond, reports.CheckWarn, "shorter than the mean peer round trip"},
		{100 * time.Millisecond, time.Second, reports.CheckPass, "election timeout 1s is 31x the peer round trip p99"},
	} {
		metrics := rtt
		if c.say == "too few to fail on" {
			metrics = histogramText("etcd_network_peer_round_trip_time_seconds", 12, 0.032, `To="2",`)
		}
		p := &preflight{members: []*pfMember{fakeMember(t, "a", metrics)}, opts: Options{Heartbeat: c.hb, Election: c.et}, started: time.Now()}
		p.resolveTimeouts()
		status, evidence, _ := p.timeouts(context.Background()).result()
		if status != c.status || !strings.Contains(evidence, c.say) {
			t.Errorf("heartbeat %s, election %s: %s, want %s saying %q\n%s", c.hb, c.et, status, c.status, c.say, evidence)
		}
	}
}
