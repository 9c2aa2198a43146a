package reports

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/etcd-chaos/etcd-chaos/internal/testbin"
)

var fetchRe = regexp.MustCompile(`(?i)(src|href)\s*=\s*"(https?:)?//|url\(|@import|<link\b|<script\b[^>]*\bsrc`)

var chartIDRe = regexp.MustCompile(`<figure class="chart" id="([^"]+)">`)

// checkCharts opens report.html in headless Chromium and screenshots every chart; it returns the
// problems it sees (a chart absent, not rendered, or blank).
func checkCharts(t *testing.T, ctx context.Context, html string, want []string) []string {
	t.Helper()
	src, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	var problems []string
	found := map[string]bool{}
	for _, m := range chartIDRe.FindAllStringSubmatch(string(src), -1) {
		found[m[1]] = true
	}
	for _, id := range want {
		if !found[id] {
			problems = append(problems, "chart "+id+" is missing from the page")
		}
	}
	abs, _ := filepath.Abs(html)
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+abs), chromedp.WaitReady(chromedp.CSS("body"))); err != nil {
		t.Fatalf("opening %s: %v", html, err)
	}
	for id := range found {
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		shot, err := chromedp.Run(sctx, chromedp.Screenshot(chromedp.CSS("#"+id+" svg")))
		cancel()
		if err != nil {
			problems = append(problems, fmt.Sprintf("chart %s: no screenshot: %v", id, err))
			continue
		}
		img, err := png.Decode(bytes.NewReader(shot))
		if err != nil {
			problems = append(problems, fmt.Sprintf("chart %s: %v", id, err))
			continue
		}
		share, colours := testbin.Inked(img)
		t.Logf("chart %-16s %4dx%-4d px, %.1f%% inked, %d colours", id, img.Bounds().Dx(), img.Bounds().Dy(), share*100, colours)
		if img.Bounds().Dx() < 300 || img.Bounds().Dy() < 100 || share < 0.01 || colours < 4 {
			problems = append(problems, fmt.Sprintf("chart %s is blank or too small (%dx%d, %.2f%% inked, %d colours)", id, img.Bounds().Dx(), img.Bounds().Dy(), share*100, colours))
		}
	}
	return problems
}

var wantCharts = []string{"latency-get", "latency-put", "throughput", "failover", "spectrum-get", "spectrum-put"}

// TestHTMLReportInChromium renders the fixture run's report.html in headless Chromium and checks
// every chart was drawn; then a copy with one chart blanked and one removed must fail the same check.
func TestHTMLReportInChromium(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"result.json", "events.jsonl", "latency.hlog", "histograms.hlog"} {
		b, err := os.ReadFile(filepath.Join(fixture, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteReports(dir); err != nil {
		t.Fatal(err)
	}
	html := filepath.Join(dir, "report.html")
	src, _ := os.ReadFile(html)
	t.Logf("report.html: %d bytes", len(src))
	// Self-contained: nothing to fetch (SVG's xmlns is a name, not a fetch).
	if m := fetchRe.FindString(string(src)); m != "" {
		t.Errorf("report.html fetches %q: it must be self-contained", m)
	}
	ctx := testbin.Browser(t)
	if problems := checkCharts(t, ctx, html, wantCharts); len(problems) > 0 {
		t.Errorf("report.html:\n%s", strings.Join(problems, "\n"))
	}

	// Negative control: the same check must catch a blank chart and a missing one.
	s := string(src)
	i := strings.Index(s, `<figure class="chart" id="throughput">`)
	j := strings.Index(s[i:], "</figure>")
	s = s[:i] + `<figure class="chart" id="throughput"><svg width="864" height="268" xmlns="http://www.w3.org/2000/svg"></svg></figure>` + s[i+j+len("</figure>"):]
	s = strings.Replace(s, `id="failover"`, `id="gone"`, 1)
	s = strings.Replace(s, `<figure class="chart" id="gone">`, `<figure class="removed">`, 1)
	broken := filepath.Join(dir, "broken.html")
	if err := os.WriteFile(broken, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	problems := strings.Join(checkCharts(t, ctx, broken, wantCharts), "\n")
	if !strings.Contains(problems, "chart throughput is blank") || !strings.Contains(problems, "chart failover is missing") {
		t.Errorf("the check missed a blank and a missing chart; it said:\n%s", problems)
	}
}
