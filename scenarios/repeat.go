package scenarios

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxOccurrences bounds how many occurrences the faults of one scenario may expand to: each is a
// record in the result and a line in the ledger (a fault every 10s for 24h is 8,640).
const MaxOccurrences = 20_000

// ActionList is a fault's action: one action, or a list from which each occurrence picks one.
type ActionList []string

func (a *ActionList) decodeNode(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*a = ActionList{n.Value}
		return nil
	case yaml.SequenceNode:
		var out ActionList
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf("must be an action or a list of actions, such as [kill, pause]; valid: %s", strings.Join(ActionNames(), ", "))
			}
			out = append(out, c.Value)
		}
		*a = out
		return nil
	}
	return fmt.Errorf("must be an action or a list of actions, such as [kill, pause]; valid: %s", strings.Join(ActionNames(), ", "))
}

// MarshalYAML writes one action as a scalar, a list as a list.
func (a ActionList) MarshalYAML() (any, error) {
	if len(a) == 1 {
		return a[0], nil
	}
	return []string(a), nil
}

func (a ActionList) String() string {
	if len(a) == 1 {
		return a[0]
	}
	return "[" + strings.Join(a, ", ") + "]"
}

// expandFaults checks what only a fault as written can get wrong (every, start, until and the action
// list) and replaces sc.Faults by its occurrences, which the rest of validation checks one by one.
// An action list draws each occurrence's action from the seed (a stream per fault of the file), so
// the same seed gives the same schedule.
func (v *validator) expandFaults() {
	sc := v.sc
	sc.FaultTemplates = slices.Clone(sc.Faults)
	if len(sc.Faults) > 0 && len(actions.items) == 0 {
		v.bad("faults", "no fault action is registered here (internal: this program does not link package faults, whose actions register their rules)")
		sc.Faults = nil
		return
	}
	var out []Fault
	for i, f := range sc.FaultTemplates {
		p := fmt.Sprintf("faults[%d]", i)
		f.Template = i
		if len(f.Actions) == 0 {
			v.bad(p+".action", "is missing; valid: %s", strings.Join(ActionNames(), ", "))
			continue
		}
		for k, a := range f.Actions {
			if ActionOf(a) == nil {
				v.bad(p+".action", "%q is not supported; valid: %s", a, strings.Join(ActionNames(), ", "))
			} else if slices.Index(f.Actions, a) < k {
				v.bad(p+".action", "%s is listed twice", a)
			}
		}
		_, hasAt := v.present[p+".at"]
		repeat := f.Every != 0
		switch {
		case f.Every < 0:
			v.bad(p+".every", "%s: must be more than 0", f.Every)
			continue
		case !repeat && (f.Start != 0 || f.Until != 0):
			field := ".start"
			if f.Start == 0 {
				field = ".until"
			}
			v.bad(p+field, "applies only to a repeating fault (every: DURATION); a single fault fires at: DURATION")
			continue
		case repeat && hasAt:
			v.bad(p+".at", "a repeating fault starts at start: DURATION (default: one every after the warm-up); leave at out")
			continue
		}
		if !repeat {
			if len(f.Actions) == 1 {
				f.Action = f.Actions[0]
				out = append(out, f)
				continue
			}
			f.Every = 0
		}
		start, until := f.Start, f.Until
		if repeat {
			if start == 0 {
				start = sc.Workload.Warmup + f.Every
			}
			if until == 0 {
				until = sc.Workload.Duration
			}
			// Validation of each occurrence reports a duration too long for one of them; here the
			// occurrences could only overlap each other.
			long := f.Duration
			if slices.ContainsFunc(f.Actions, func(name string) bool { a := ActionOf(name); return a == nil || !a.Instant }) && long >= f.Every {
				v.bad(p+".duration", "%s is not shorter than every (%s): each occurrence must heal before the next fires", f.Duration, f.Every)
				continue
			}
			switch {
			case until > sc.Workload.Duration:
				v.bad(p+".until", "%s is after the load ends (workload.duration %s)", until, sc.Workload.Duration)
				continue
			case start < sc.Workload.Warmup:
				v.bad(p+".start", "%s is inside the warm-up (%s); faults fire after it", start, sc.Workload.Warmup)
				continue
			case start+long > until:
				v.bad(p+".start", "no occurrence fits: the first, at %s, would heal at %s, after %s", start, start+long, until)
				continue
			}
			if n := int64((until-long-start)/f.Every) + 1; n+int64(len(out)) > MaxOccurrences {
				v.bad(p+".every", "%s from %s to %s is %d occurrences; at most %d in all: repeat less often", f.Every, start, until, n, MaxOccurrences)
				continue
			}
		} else {
			start, until = f.At, f.At
		}
		rng := rand.New(rand.NewPCG(uint64(sc.Seed), 0xfa0175+uint64(i)))
		for k, at := 1, start; at == start || (repeat && at+f.Duration <= until); k, at = k+1, at+f.Every {
			o := f
			o.At, o.Occurrence = at, k
			o.Action = f.Actions[0]
			if len(f.Actions) > 1 {
				o.Action = f.Actions[rng.IntN(len(f.Actions))]
				o.fitAction()
			}
			o.Actions = ActionList{o.Action}
			out = append(out, o)
			if !repeat {
				break
			}
		}
	}
	// A fault with a problem here is left out of the checks of each occurrence.
	sc.Faults = out
}

// fitAction makes one occurrence of an action list carry only what its own action takes: an
// instantaneous action no duration, partition the target as isolate: TARGET, and each network
// action only its own shape (latency for delay, rate for bandwidth, percent for loss).
func (f *Fault) fitAction() {
	a := f.Rules()
	if a == nil {
		return // validating the occurrence says so
	}
	if a.Instant {
		f.Duration = 0
	}
	switch {
	case !a.Takes("target") && a.Takes("isolate") && f.Target.Kind != "":
		f.Isolate, f.Target = Targets{f.Target}, Target{}
	case a.Takes("target") && !a.Takes("isolate") && f.Target.Kind == "" && len(f.Isolate) == 1:
		f.Target, f.Isolate = f.Isolate[0], nil
	}
	for _, of := range ownFields {
		if !a.Takes(of.name) {
			of.clear(f)
		}
	}
}

// OccurrenceText names an occurrence for messages: "faults[0]" or "faults[0] occurrence 3".
func (f Fault) OccurrenceText() string {
	if f.Occurrence == 0 {
		return f.Path()
	}
	return fmt.Sprintf("%s occurrence %d", f.Path(), f.Occurrence)
}
