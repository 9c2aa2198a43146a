package reports

import (
	"bytes"
	"strings"
	"testing"
)

// A soak's 40 faults are summed up per action: counts, elections, p50 / p99 / max, the longest
// outages by name; a failover that never restored writes is "never", not a number.
func TestManyFaultsAreSummedUp(t *testing.T) {
	r := &Result{Scenario: "soak", Verdict: VerdictPass, Passed: true}
	for i := 0; i < 40; i++ {
		action := []string{"kill", "pause"}[i%2]
		out := float64(100 + i) // outages 100..139ms
		f := FaultRecord{Index: i, Template: 0, Occurrence: i + 1, Action: action, Members: []string{"member-1"}, AtS: float64(30 + 90*i), OutageWriteMs: &out}
		if action == "kill" {
			f.Election = true
			restored := float64(1000 + 10*i)
			fo := Failover{Fault: i, Action: action, LeaderElectedMs: &restored, WriteRestoredMs: &restored}
			if i == 38 {
				fo.WriteRestoredMs = nil // never restored
			}
			r.Failovers = append(r.Failovers, fo)
		}
		r.Faults = append(r.Faults, f)
	}
	st := FaultStatsOf(r)
	if len(st) != 3 || st[0].Action != "all" || st[0].Faults != 40 || st[0].Elections != 20 || st[1].Action != "kill" || st[1].Elections != 20 {
		t.Fatalf("stats %+v", st)
	}
	kill := st[1]
	if kill.WriteRestored.N != 20 || kill.WriteRestored.Never != 1 || kill.WriteRestored.Max != nil || *kill.WriteRestored.P50 != 1180 {
		t.Fatalf("kill writes restored %+v (p50 %v)", kill.WriteRestored, kill.WriteRestored.P50)
	}
	if o := st[0].OutageWrite; *o.P50 != 119 || *o.P99 != 139 || *o.Max != 139 {
		t.Fatalf("outage %s", o.Text())
	}
	var b bytes.Buffer
	if err := WriteText(&b, r); err != nil {
		t.Fatal(err)
	}
	txt := b.String()
	for _, w := range []string{"40 faults (every one is in result.json", "kill    20", "1180 / never / never", "the longest write outages", "#39 pause member-1"} {
		if !strings.Contains(txt, w) {
			t.Errorf("summary lacks %q:\n%s", w, txt)
		}
	}
	if strings.Contains(txt, "what each fault cost") {
		t.Errorf("summary lists every fault:\n%s", txt)
	}
	b.Reset()
	if err := WriteMarkdown(&b, r); err != nil {
		t.Fatal(err)
	}
	if md := b.String(); !strings.Contains(md, "| kill | 20 | 20 |") || strings.Contains(md, "- fault #3 ") {
		t.Errorf("markdown:\n%s", md)
	}
	b.Reset()
	if err := WriteHTML(&b, &RunDir{Result: r}); err != nil {
		t.Fatal(err)
	}
	html := b.String()
	for _, w := range []string{"<td>kill</td><td>20</td><td>20</td><td>20</td><td>1180 / 1380 / 1380</td><td>1180 / never / never</td>", "<details><summary>every fault, failover and recovery (40 faults)</summary>", `id="failover-over-time"`} {
		if !strings.Contains(html, w) {
			t.Errorf("report.html lacks %q", w)
		}
	}
	if strings.Contains(html, `id="failover"`) {
		t.Error("report.html draws the per-fault timeline of 40 faults")
	}
}
