package reports

import (
	"strings"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// warmingUp is a member whose RSS climbs 20MB over its first 2 minutes (a heap warming up, read
// as +600MB/h), scraped every 10s.
func warmingUp(fit *GrowthFit, spanS float64) {
	for t := 0.0; t <= spanS; t += 10 {
		fit.Add(MemberSample{Member: "member-1", T: t, StartedAt: 1, RSSBytes: 50e6 + t/120*20e6, OpenFDs: 40, DBSizeBytes: 20e6 + t*1e3})
	}
}

// TestGrowthTooShortToJudge: over 2 minutes of scrapes a growth per hour is the heap warming up:
// it is not given, the summary says "too short to judge", and member.*_growth thresholds are
// unknown (neither a pass nor a fail). Past cluster.growth-min-span the same scrapes are judged:
// the threshold that must say no does.
func TestGrowthTooShortToJudge(t *testing.T) {
	th := func(metric, expr string) scenarios.Threshold {
		x, err := scenarios.ParseThreshold(metric, expr)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	ths := scenarios.Thresholds{th("member.rss_growth", "max < 50MB/h"), th("member.db_size", "max < 1GB")}

	short := &GrowthFit{MinSpan: 600}
	warmingUp(short, 120)
	h := short.Health()
	if len(h) != 1 || !h[0].GrowthTooShort || h[0].RSSGrowthPerH != nil {
		t.Fatalf("2 minutes of scrapes: %+v, want no growth, too short", h)
	}
	if txt := MemberHealthText(h[0]); !strings.Contains(txt, "too short to judge") || strings.Contains(txt, "MB/h") {
		t.Errorf("summary %q", txt)
	}
	rs := Evaluate(ths, Metrics{Members: h})
	if rs[0].Status != ThresholdUnknown || !strings.Contains(rs[0].Observed, "too short to judge") || !strings.Contains(rs[0].Observed, "cluster.growth-min-span") {
		t.Errorf("rss_growth over 2 minutes: %+v, want unknown", rs[0])
	}
	if rs[1].Status != ThresholdPass {
		t.Errorf("db_size (a level, not a growth) over 2 minutes: %+v, want pass", rs[1])
	}

	long := &GrowthFit{MinSpan: 60}
	warmingUp(long, 120)
	h = long.Health()
	if h[0].GrowthTooShort || h[0].RSSGrowthPerH == nil || *h[0].RSSGrowthPerH < 500e6 {
		t.Fatalf("past the minimum span: %+v, want about +600MB/h", h[0])
	}
	if rs := Evaluate(ths, Metrics{Members: h}); rs[0].Status != ThresholdFail {
		t.Errorf("rss_growth +600MB/h against max < 50MB/h: %+v, want fail", rs[0])
	}
}

// TestHeaderSaysWhatWasInThePath: a run with the proxy backend whose faults needed no proxy had
// both links direct; its header must not read "network proxy" as if a proxy sat in the path.
func TestHeaderSaysWhatWasInThePath(t *testing.T) {
	r := &Result{Scenario: "s", Verdict: VerdictPass, Cluster: Cluster{Provider: "local", Size: 3, Network: "proxy", ClientPath: "direct", PeerPath: "direct"}}
	var md strings.Builder
	if err := WriteMarkdown(&md, r); err != nil {
		t.Fatal(err)
	}
	var html strings.Builder
	if err := WriteHTML(&html, &RunDir{Result: r}); err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"summary.md": md.String(), "report.html": html.String()} {
		if strings.Contains(out, "network proxy") || !strings.Contains(out, "fault backend proxy; in the path: client links direct, peer links direct") {
			t.Errorf("%s header does not say what was in the path:\n%s", name, out[:min(len(out), 600)])
		}
	}
	r.Cluster.PeerPath = "proxy"
	if got := NetworkText(r.Cluster); got != "fault backend proxy; in the path: client links direct, peer links proxy" {
		t.Errorf("with the peer proxy: %q", got)
	}
}

// TestCountThresholdsNeedSamples: "errors: count < 1" over a run that did no op holds trivially;
// it is "no samples", which fails, as a rate over nothing does.
func TestCountThresholdsNeedSamples(t *testing.T) {
	th, err := scenarios.ParseThreshold("errors", "count < 1")
	if err != nil {
		t.Fatal(err)
	}
	if r := Evaluate(scenarios.Thresholds{th}, Metrics{}); r[0].Status != ThresholdFail || r[0].Observed != "no samples" {
		t.Errorf("errors count over no ops: %+v", r[0])
	}
	if r := Evaluate(scenarios.Thresholds{th}, Metrics{Ops: 100}); r[0].Status != ThresholdPass {
		t.Errorf("errors count 0 of 100 ops: %+v", r[0])
	}
}
