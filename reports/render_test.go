package reports

import (
	"bytes"
	"flag"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
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
	same := Compare(base, base, 0.1)
	if Regressed(same) {
		t.Fatalf("a run regressed against itself: %+v", same)
	}
	worse := *base
	worse.Failovers = append([]Failover(nil), base.Failovers...)
	slow := *base.Failovers[0].WriteRestoredMs * 1.5
	worse.Failovers[0].WriteRestoredMs = &slow
	worse.Throughput.Avg = base.Throughput.Avg * 0.95 // within 10%
	ds := Compare(base, &worse, 0.1)
	var flagged []string
	for _, d := range ds {
		if d.Regression {
			flagged = append(flagged, d.Metric)
		}
	}
	if strings.Join(flagged, ",") != "failover.write_restored max" {
		t.Fatalf("regressions = %v, want only failover.write_restored max", flagged)
	}
	// Tolerance 60% lets the 50% slower failover pass.
	if Regressed(Compare(base, &worse, 0.6)) {
		t.Error("a 50% change regressed at a 60% tolerance")
	}
	// A failover that never restored writes is a regression whatever the tolerance.
	never := worse
	never.Failovers = []Failover{{Fault: 0, LeaderElectedMs: base.Failovers[0].LeaderElectedMs}}
	for _, d := range Compare(base, &never, 10) {
		if d.Metric == "failover.write_restored max" && (!d.Regression || !math.IsInf(d.New, 1)) {
			t.Errorf("a never-restored failover: %+v", d)
		}
	}
	// Below the noise floor a large relative change is not a regression: 0.2ms -> 0.3ms.
	tiny := Compare(&Result{Latency: map[string]LatencyStats{"get": {P99: 0.2}}}, &Result{Latency: map[string]LatencyStats{"get": {P99: 0.3}}}, 0.1)
	if Regressed(tiny) {
		t.Errorf("0.2ms -> 0.3ms p99 counted as a regression")
	}
}
