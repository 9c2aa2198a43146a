package reports

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// fixture is a real run folder (partition-leader, 16 s, one threshold made to fail), so the
// renderers are tested on what a run really writes.
const fixture = "testdata/partition-leader"

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./reports -run Golden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./reports -run Golden -update rewrites it):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestGoldenReports(t *testing.T) {
	res, err := ReadResult(fixture)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		write func(io.Writer, *Result) error
	}{{"summary.txt", WriteText}, {"summary.md", WriteMarkdown}, {"junit.xml", WriteJUnit}} {
		var b bytes.Buffer
		if err := c.write(&b, res); err != nil {
			t.Fatal(err)
		}
		golden(t, c.name, b.Bytes())
	}
}

// TestJUnitAgainstSchema validates junit.xml with xmllint against the schema of what Jenkins,
// GitLab and GitHub read, for a failing run and for one that could not run at all.
func TestJUnitAgainstSchema(t *testing.T) {
	xmllint, err := exec.LookPath("xmllint")
	if err != nil {
		t.Fatal("xmllint is missing: make deps installs it (Debian's libxml2-utils)")
	}
	res, err := ReadResult(fixture)
	if err != nil {
		t.Fatal(err)
	}
	broken := *res
	broken.Verdict, broken.Reason, broken.Thresholds = VerdictError, "the cluster was not ready within 30s: <member-2> & co", nil
	broken.Faults = []FaultRecord{{Index: 0, Action: "kill", Target: "leader", Error: `fault #0: process 12 has not exited after 5s: "ctx"`}}
	for name, r := range map[string]*Result{"fail": res, "error": &broken} {
		var b bytes.Buffer
		if err := WriteJUnit(&b, r); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "junit.xml")
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(xmllint, "--noout", "--schema", "testdata/junit.xsd", p).CombinedOutput()
		if err != nil {
			t.Errorf("%s run: junit.xml does not validate: %v\n%s\n%s", name, err, out, b.String())
		}
		want := map[string]string{"fail": `failures="1" errors="0"`, "error": `failures="0" errors="2"`}[name]
		if !strings.Contains(b.String(), want) {
			t.Errorf("%s run: junit.xml lacks %s:\n%s", name, want, b.String())
		}
	}
	// The schema itself rejects what a CI reader would choke on (a negative control).
	bad := filepath.Join(t.TempDir(), "bad.xml")
	_ = os.WriteFile(bad, []byte(`<testsuites><testsuite name="x" tests="one" failures="0" errors="0"><testcase name="a"/></testsuite></testsuites>`), 0o644)
	if err := exec.Command(xmllint, "--noout", "--schema", "testdata/junit.xsd", bad).Run(); err == nil {
		t.Error("the schema accepted a testsuite with tests=\"one\" and a testcase without classname")
	}
}

func TestCompareFlagsRegressions(t *testing.T) {
	base, err := ReadResult(fixture)
	if err != nil {
		t.Fatal(err)
	}
	one := func(r *Result) []*Result { return []*Result{r} }
	cmp := func(b, n []*Result, tol float64) []Delta {
		t.Helper()
		ds, err := Compare(b, n, tol)
		if err != nil {
			t.Fatal(err)
		}
		return ds
	}
	flagged := func(ds []Delta) string {
		var out []string
		for _, d := range ds {
			if d.Regression {
				out = append(out, d.Metric)
			}
		}
		return strings.Join(out, ",")
	}
	if ds := cmp(one(base), one(base), 0.1); Regressed(ds) {
		t.Fatalf("a run regressed against itself: %+v", ds)
	}
	withFailover := func(ms float64) *Result {
		r := *base
		r.Failovers = append([]Failover(nil), base.Failovers...)
		e, w := ms-2, ms
		r.Failovers[0].LeaderElectedMs, r.Failovers[0].WriteRestoredMs = &e, &w
		return &r
	}
	restored := *base.Failovers[0].WriteRestoredMs // 1449ms, election timeout 1000ms
	// One run a side: a failover 2.9s slower is within what an election's randomized timeouts move
	// one run (3 ET: a second draw after a failed vote); 3.1s slower is not.
	if f := flagged(cmp(one(base), one(withFailover(restored+2900)), 0.1)); f != "" {
		t.Errorf("one run a side, failover +2.9s: flagged %s, want nothing (within 3 election timeouts)", f)
	}
	if f := flagged(cmp(one(base), one(withFailover(restored+3100)), 0.1)); f != "failover.leader_elected max,failover.write_restored max" {
		t.Errorf("one run a side, failover +3.1s: flagged %q", f)
	}
	// Three runs a side: the same distribution reordered passes; the same doctored 2x regresses,
	// with the rank test's smallest possible p for 3 against 3 (1/20).
	b3 := []*Result{withFailover(1200), withFailover(1449), withFailover(1900)}
	same3 := []*Result{withFailover(1900), withFailover(1200), withFailover(1449)}
	if f := flagged(cmp(b3, same3, 0.1)); f != "" {
		t.Errorf("3 runs against the same 3 reordered: flagged %s", f)
	}
	ds := cmp(b3, []*Result{withFailover(2400), withFailover(2898), withFailover(3800)}, 0.1)
	if f := flagged(ds); f != "failover.leader_elected max,failover.write_restored max" {
		t.Errorf("doctored 2x over 3 runs: flagged %q", f)
	}
	for _, d := range ds {
		if d.Metric == "failover.write_restored max" && math.Abs(d.P-0.05) > 1e-9 {
			t.Errorf("rank test p = %v, want 0.05", d.P)
		}
	}
	// A shift inside the baseline's own spread is noise even when every new run is worse.
	if f := flagged(cmp(b3, []*Result{withFailover(1500), withFailover(1600), withFailover(1950)}, 0.1)); f != "" {
		t.Errorf("a shift within the baseline's spread flagged %s", f)
	}
	// A failover that disappeared (no election in the new run) is a regression; so is one that
	// never restored writes, whatever the tolerance.
	gone := *base
	gone.Failovers = nil
	if f := flagged(cmp(one(base), one(&gone), 10)); !strings.Contains(f, "failover.write_restored max") {
		t.Errorf("a disappeared failover: flagged %q", f)
	}
	never := *withFailover(restored)
	never.Failovers[0].WriteRestoredMs = nil
	if f := flagged(cmp(one(base), one(&never), 10)); f != "failover.write_restored max" {
		t.Errorf("a never-restored failover: flagged %q", f)
	}
	// Below the noise floor a large relative change is not a regression: 0.2ms -> 0.3ms.
	if Regressed(cmp(one(&Result{Latency: map[string]LatencyStats{"get": {P99: 0.2, Count: 1}}}), one(&Result{Latency: map[string]LatencyStats{"get": {P99: 0.3, Count: 1}}}), 0.1)) {
		t.Errorf("0.2ms -> 0.3ms p99 counted as a regression")
	}
	other := *base
	other.Scenario = "leader-kill"
	if _, err := Compare(one(base), one(&other), 0.1); !errors.Is(err, ErrDifferentScenarios) {
		t.Errorf("different scenarios: err %v, want ErrDifferentScenarios", err)
	}
}

// The README's sample output is what chaos run printed for a real run of make run's scenario
// (testdata/leader-kill: its result.json), rendered by WriteText as chaos run renders it:
// go test ./reports -run ReadmeSample -update rewrites the README's block from it.
func TestReadmeSample(t *testing.T) {
	res, err := ReadResult("testdata/leader-kill")
	if err != nil {
		t.Fatal(err)
	}
	if res.Scenario != "leader-kill" || !res.Passed {
		t.Fatalf("the fixture is a %s run, verdict %s: make run runs leader-kill, and its sample passes", res.Scenario, res.Verdict)
	}
	var b bytes.Buffer
	if err := WriteText(&b, res); err != nil {
		t.Fatal(err)
	}
	const readme = "../README.md"
	text, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	const open, end = "<!-- sample: reports/testdata/leader-kill -->\n```\n", "```\n<!-- end sample -->"
	i := bytes.Index(text, []byte(open))
	j := bytes.Index(text, []byte(end))
	if i < 0 || j < i {
		t.Fatalf("the README has no sample block (%q ... %q)", open, end)
	}
	got := b.Bytes()
	if *update {
		out := append(append(append([]byte{}, text[:i+len(open)]...), got...), text[j:]...)
		if err := os.WriteFile(readme, out, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if want := text[i+len(open) : j]; !bytes.Equal(got, want) {
		t.Errorf("the README's sample differs from what chaos run prints for testdata/leader-kill (go test ./reports -run ReadmeSample -update rewrites it):\n--- printed\n%s\n--- README\n%s", got, want)
	}
}

// Every relative link of the README and docs/ names a file that exists (the reference moved from
// the README into docs/, and the pages link each other).
func TestDocsLinks(t *testing.T) {
	pages, _ := filepath.Glob("../docs/*.md")
	pages = append(pages, "../README.md")
	link := regexp.MustCompile(`\]\(([^)#]+)(#[^)]*)?\)`)
	n := 0
	for _, p := range pages {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			if strings.Contains(m[1], "://") {
				continue
			}
			n++
			if _, err := os.Stat(filepath.Join(filepath.Dir(p), m[1])); err != nil {
				t.Errorf("%s links %s: %v", p, m[1], err)
			}
		}
	}
	if n < 20 {
		t.Errorf("%d relative links in %d pages: the pages were not read", n, len(pages))
	}
}
