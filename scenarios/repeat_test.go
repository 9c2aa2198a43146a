package scenarios_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	_ "github.com/etcd-chaos/etcd-chaos/faults"  // registers the fault actions' rules
	_ "github.com/etcd-chaos/etcd-chaos/loadgen" // registers the workload kinds' rules
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

const soak = `name: soak
seed: %d
cluster:
  size: 3
workload:
  duration: 8h
  warmup: 10s
faults:
  - {every: 90s, start: 30s, action: [kill, pause, partition], target: random, duration: 10s}
`

func TestRepeatingFaultExpands(t *testing.T) {
	sc, err := scenarios.Parse("soak.yaml", []byte(fmt.Sprintf(soak, 7)), nil)
	if err != nil {
		t.Fatal(err)
	}
	// 30s, 120s, ... while the occurrence heals by 8h: (8h - 10s - 30s) / 90s + 1.
	want := int((8*time.Hour-40*time.Second)/(90*time.Second)) + 1
	if len(sc.Faults) != want {
		t.Fatalf("%d occurrences, want %d", len(sc.Faults), want)
	}
	seen := map[string]int{}
	for k, f := range sc.Faults {
		if f.At.D() != 30*time.Second+time.Duration(k)*90*time.Second || f.Occurrence != k+1 || f.Template != 0 || f.Line != 9 {
			t.Fatalf("occurrence %d = at %s, occurrence %d, template %d, line %d", k, f.At, f.Occurrence, f.Template, f.Line)
		}
		seen[f.Action]++
		switch f.Action {
		case "partition":
			if f.Target.Kind != "" || len(f.Isolate) != 1 || f.Isolate[0].Kind != "random" {
				t.Fatalf("partition occurrence takes the target as isolate: %+v", f)
			}
		case "kill", "pause":
			if f.Target.Kind != "random" || f.Duration.D() != 10*time.Second {
				t.Fatalf("occurrence %+v", f)
			}
		default:
			t.Fatalf("action %q not in the list", f.Action)
		}
	}
	for _, a := range []string{"kill", "pause", "partition"} {
		if seen[a] < want/5 {
			t.Errorf("%s drawn %d times of %d: the draw is not spread over the list", a, seen[a], want)
		}
	}
	// The same seed draws the same schedule; another seed another.
	again, _ := scenarios.Parse("soak.yaml", []byte(fmt.Sprintf(soak, 7)), nil)
	other, _ := scenarios.Parse("soak.yaml", []byte(fmt.Sprintf(soak, 8)), nil)
	same, diff := true, false
	for k := range sc.Faults {
		same = same && again.Faults[k].Action == sc.Faults[k].Action
		diff = diff || other.Faults[k].Action != sc.Faults[k].Action
	}
	if !same || !diff {
		t.Fatalf("same seed same schedule: %v; another seed another: %v", same, diff)
	}
	// validate prints the fault as written, once.
	b, err := sc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "every: 1m30s"); n != 1 || !strings.Contains(string(b), "- kill") {
		t.Fatalf("marshalled scenario has every %d times:\n%s", n, b)
	}
	if _, err := scenarios.Parse("again.yaml", b, nil); err != nil {
		t.Fatalf("the marshalled scenario does not parse: %v", err)
	}
}

func TestRepeatingFaultDefaultsAndInstantaneous(t *testing.T) {
	y := strings.Replace(base, "{at: 5s, action: kill, target: leader, duration: 2s}", "{every: 4s, action: [restart, kill], target: follower, duration: 1s}", 1)
	sc, err := scenarios.Parse("x.yaml", []byte(y), nil)
	if err != nil {
		t.Fatal(err)
	}
	// start defaults to one period after the warm-up (1s): 5s, 9s, 13s, 17s (heals by 20s).
	if len(sc.Faults) != 4 || sc.Faults[0].At.D() != 5*time.Second || sc.Faults[3].At.D() != 17*time.Second {
		t.Fatalf("occurrences %+v", sc.Faults)
	}
	for _, f := range sc.Faults {
		if f.Action == "restart" && f.Duration != 0 {
			t.Fatalf("restart occurrence keeps a duration: %+v", f)
		}
	}
	// --set reaches a repeating fault's fields.
	sc, err = scenarios.Parse("x.yaml", []byte(y), []string{"faults[0].every=8s"})
	if err != nil || len(sc.Faults) != 2 {
		t.Fatalf("--set every: %v, %d occurrences", err, len(sc.Faults))
	}
}

func TestRepeatingFaultBadInput(t *testing.T) {
	rep := func(s string) string {
		return strings.Replace(base, "{at: 5s, action: kill, target: leader, duration: 2s}", s, 1)
	}
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"at with every", rep("{every: 5s, at: 5s, action: kill, target: leader, duration: 2s}"), []string{"x.yaml:8:", "faults[0].at", "start: DURATION"}},
		{"start without every", rep("{start: 5s, action: kill, target: leader, duration: 2s}"), []string{"faults[0].start", "only to a repeating fault"}},
		{"duration not shorter", rep("{every: 2s, action: kill, target: leader, duration: 2s}"), []string{"faults[0].duration", "not shorter than every"}},
		{"start in warm-up", rep("{every: 5s, start: 500ms, action: kill, target: leader, duration: 2s}"), []string{"faults[0].start", "inside the warm-up"}},
		{"until after the end", rep("{every: 5s, until: 30s, action: kill, target: leader, duration: 2s}"), []string{"faults[0].until", "after the load ends"}},
		{"nothing fits", rep("{every: 5s, start: 19s, action: kill, target: leader, duration: 2s}"), []string{"faults[0].start", "no occurrence fits"}},
		{"negative every", rep("{every: -5s, action: kill, target: leader, duration: 2s}"), []string{"faults[0].every", "negative"}},
		{"unknown action in list", rep("{every: 5s, action: [kill, explode], target: leader, duration: 2s}"), []string{"faults[0].action", `"explode" is not supported`, "valid: kill"}},
		{"action twice", rep("{every: 5s, action: [kill, kill], target: leader, duration: 2s}"), []string{"faults[0].action", "listed twice"}},
		{"action a mapping", rep("{every: 5s, action: {kill: 1}, target: leader, duration: 2s}"), []string{"faults[0].action", "list of actions"}},
		{"too many", strings.Replace(rep("{every: 1s, action: kill, target: leader, duration: 100ms}"), "duration: 20s", "duration: 24h", 1), []string{"faults[0].every", "occurrences; at most 20000"}},
		{"impossible target in each occurrence", rep("{every: 5s, action: kill, target: member-9, duration: 2s}"), []string{"faults[0].target", `"member-9" is not a member`}},
		{"overlaps a plain fault", rep("{every: 5s, action: kill, target: leader, duration: 2s}\n  - {at: 11s, action: pause, target: follower, duration: 1s}"), []string{"x.yaml:9:", "faults[1].at", "overlaps faults[0] occurrence 2 (11s to 13s)"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := scenarios.Parse("x.yaml", []byte(c.yaml), nil)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			// One problem of the fault as written is named once, not once per occurrence.
			if ps, ok := err.(scenarios.Problems); ok && len(ps) > 1 && c.name == "impossible target in each occurrence" {
				t.Errorf("%d problems, want 1: %v", len(ps), err)
			}
		})
	}
}
