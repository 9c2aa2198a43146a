package faults

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// upgrade and downgrade move members to another etcd binary one at a time, under load, as a
// rolling upgrade does: stop it gracefully (SIGTERM), start it on its data dir with the new
// binary, wait until it answers on the new version having caught up with the leader, wait gap,
// and go on to the next; the leader goes last. A downgrade first asks etcd's downgrade API to
// validate and enable the target version and waits until every member's storage is at it; when
// etcd refuses, nothing is done and the refusal is the finding. etcd moves one minor version at a
// time: a skip is refused at validation.
var upgradeAction = Action{Op: func(f scenarios.Fault) Operation { return versionOp{to: f.To, gap: f.Gap.D()} },
	ActionRules: versionRules("upgrade"),
	Does: func(f scenarios.Fault, _ string) string {
		return fmt.Sprintf("one member at a time, leader last: SIGTERM, start on %s, wait until healthy and caught up, then %s", f.To, f.Gap)
	},
}

var downgradeAction = Action{Op: func(f scenarios.Fault) Operation { return versionOp{to: f.To, gap: f.Gap.D(), down: true} },
	ActionRules: versionRules("downgrade"),
	Does: func(f scenarios.Fault, _ string) string {
		return fmt.Sprintf("etcd's downgrade API (validate, enable), then one member at a time, leader last: SIGTERM, start on %s, wait until healthy and caught up, then %s", f.To, f.Gap)
	},
}

func versionRules(name string) scenarios.ActionRules {
	return scenarios.ActionRules{Name: name, Instant: true, Each: true, Selections: onMembers, Fields: []string{"to", "gap"}, Cuts: always,
		Check: func(f scenarios.Fault) []scenarios.FieldProblem {
			var out []scenarios.FieldProblem
			if f.To == "" {
				out = append(out, scenarios.FieldProblem{Field: "to", Msg: "is missing: the etcd binary to move the members to (a path, or builtin: the etcd built into chaos)"})
			} else if _, err := scenarios.BinaryVersion(f.To); err != nil {
				out = append(out, scenarios.FieldProblem{Field: "to", Msg: fmt.Sprintf("%v; valid: an etcd binary (a path from where chaos runs) or builtin", err)})
			}
			if f.Gap < 0 || f.Gap > scenarios.Duration(10*time.Minute) {
				out = append(out, scenarios.FieldProblem{Field: "gap", Msg: fmt.Sprintf("%s: valid: 0s to 10m between members", f.Gap)})
			}
			switch f.Target.Kind {
			case "", "each", "all", "leader", "follower", "random", "member":
			default:
				out = append(out, scenarios.FieldProblem{Field: "target", Msg: fmt.Sprintf("%s: valid: each (every member, one at a time), leader, follower, random or a member name", f.Target)})
			}
			return out
		},
		Requires: versionWalk,
		Available: func(p scenarios.Place, s string, f scenarios.Fault) error {
			if err := needsFiles(p, s, f); err != nil {
				return err
			}
			if p.Provider != "local" && p.Provider != "container" {
				return fmt.Errorf("%s moves members to another etcd binary of this machine: providers local and container (an image FROM scratch per binary), not %s", f.Action, p.Provider)
			}
			return nil
		}}
}

// versionWalk follows the members' versions through the scenario's upgrades and downgrades up to
// f, from cluster.etcd-binary and member-binaries, and refuses a step etcd would refuse: more
// than one minor version, or an upgrade that goes down (a downgrade that goes up).
func versionWalk(f scenarios.Fault, sc *scenarios.Scenario) []scenarios.FieldProblem {
	c := sc.Cluster
	if c.Image != "" {
		return []scenarios.FieldProblem{{Field: f.Path() + ".to", Msg: fmt.Sprintf("the members run the image %s, whose etcd version is not known before it runs: start them from a binary (cluster.etcd-binary; an image is built from it) to move them to %s", c.Image, f.To)}}
	}
	names := make([]string, max(c.Size, 0))
	cur := map[string]string{}
	for i := range names {
		names[i] = scenarios.MemberName(i)
		bin := c.EtcdBinary
		if b, ok := c.MemberBinaries[names[i]]; ok {
			bin = b
		}
		v, err := scenarios.BinaryVersion(bin)
		if err != nil {
			return nil // named where the binary is checked
		}
		cur[names[i]] = v
	}
	faults := append([]scenarios.Fault(nil), sc.Faults...)
	slices.SortStableFunc(faults, func(a, b scenarios.Fault) int { return int(a.At - b.At) })
	for _, g := range faults {
		if g.Action != "upgrade" && g.Action != "downgrade" {
			continue
		}
		to, err := scenarios.BinaryVersion(g.To)
		if err != nil {
			return nil
		}
		var hit []string
		switch g.Target.Kind {
		case "", "each", "all":
			hit = names
		case "member":
			hit = []string{g.Target.Member}
		default:
			if g.At == f.At && g.Line == f.Line {
				// leader, follower, random: which member is known when it fires; all must be able to move
				hit = names
			} else {
				return nil // the versions after it depend on whom it picked
			}
		}
		if g.At == f.At && g.Line == f.Line {
			var out []scenarios.FieldProblem
			for _, n := range hit {
				from, ok := cur[n]
				if !ok {
					continue
				}
				step, ok := scenarios.MinorStep(from, to)
				switch {
				case !ok:
					out = append(out, scenarios.FieldProblem{Field: f.Path() + ".to", Msg: fmt.Sprintf("%s runs etcd %s; %s is %s, another major version", n, from, g.To, to)})
				case step > 1 || step < -1:
					out = append(out, scenarios.FieldProblem{Field: f.Path() + ".to", Msg: fmt.Sprintf("%s runs etcd %s; %s is %s: etcd moves one minor version at a time (%s first)", n, from, g.To, to, stepVersion(from, step))})
				case f.Action == "upgrade" && step < 0:
					out = append(out, scenarios.FieldProblem{Field: f.Path() + ".to", Msg: fmt.Sprintf("%s runs etcd %s; %s is %s, older: use action downgrade", n, from, g.To, to)})
				case f.Action == "downgrade" && step > 0:
					out = append(out, scenarios.FieldProblem{Field: f.Path() + ".to", Msg: fmt.Sprintf("%s runs etcd %s; %s is %s, newer: use action upgrade", n, from, g.To, to)})
				case f.Action == "downgrade" && step == 0:
					out = append(out, scenarios.FieldProblem{Field: f.Path() + ".to", Msg: fmt.Sprintf("%s runs etcd %s; %s is %s, the same minor version: a patch change is an upgrade (restart on it), not a downgrade", n, from, g.To, to)})
				}
				if len(out) > 0 {
					break
				}
			}
			return out
		}
		for _, n := range hit {
			cur[n] = to
		}
	}
	return nil
}

// stepVersion is the minor version one step from v toward step's direction.
func stepVersion(v string, step int) string {
	var a, b int
	_, _ = fmt.Sscanf(scenarios.MinorOf(v), "%d.%d", &a, &b)
	if step > 0 {
		return fmt.Sprintf("%d.%d", a, b+1)
	}
	return fmt.Sprintf("%d.%d", a, b-1)
}

type versionOp struct {
	to   string
	gap  time.Duration
	down bool
}

func (o versionOp) Name() string {
	if o.down {
		return "downgrade"
	}
	return "upgrade"
}

func (o versionOp) Run(ctx context.Context, env OpEnv, members []Member, st *Stamp, rep *reports.Operation) error {
	c := env.Cluster
	want, err := scenarios.BinaryVersion(o.to)
	if err != nil {
		return err
	}
	t0 := time.Now()
	// The leader goes last: each member before it costs no election.
	leader, _, _ := c.Leader(ctx)
	ordered := append([]Member(nil), members...)
	slices.SortStableFunc(ordered, func(a, b Member) int {
		switch {
		case a.Name() == leader:
			return 1
		case b.Name() == leader:
			return -1
		}
		return 0
	})
	if o.down {
		d := &reports.Downgrade{Target: scenarios.MinorOf(want)}
		rep.Downgrade = d
		for _, action := range []string{"validate", "enable"} {
			if err := st.call(func() error { return c.Downgrade(ctx, action, d.Target) }); err != nil {
				d.Refused = fmt.Sprintf("%s: %v", action, err)
				if action == "enable" {
					_ = c.Downgrade(context.WithoutCancel(ctx), "cancel", d.Target)
				}
				return fmt.Errorf("etcd refused to downgrade to %s (%s): %w", d.Target, action, err)
			}
		}
		d.EnabledMs = msSince(t0, time.Now())
		if err := waitStorage(ctx, c, members, d.Target); err != nil {
			d.Cancelled = err.Error()
			_ = c.Downgrade(context.WithoutCancel(ctx), "cancel", d.Target)
			return err
		}
		d.StorageMs = msSince(t0, time.Now())
	}
	var mixedFrom, mixedTo time.Time
	for i, m := range ordered {
		before, err := c.MemberState(ctx, m.Name())
		if err != nil {
			return o.fail(ctx, c, rep, fmt.Errorf("%s before: %w", m.Name(), err))
		}
		var stopped, started time.Time
		err = st.call(func() error {
			var err error
			stopped, started, err = c.SwapBinary(ctx, m.Name(), o.to)
			return err
		})
		if err != nil {
			return o.fail(ctx, c, rep, fmt.Errorf("moving %s to %s: %w", m.Name(), o.to, err))
		}
		if mixedFrom.IsZero() {
			mixedFrom = started
		}
		after, healthy, err := waitVersion(ctx, c, m.Name(), want)
		step := reports.VersionStep{Member: m.Name(), From: before.Version, To: after.Version, StoppedMs: msSince(t0, stopped)}
		if err == nil {
			step.HealthyMs = msSince(stopped, healthy)
			mixedTo = healthy
		}
		rep.Versions = append(rep.Versions, step)
		if err != nil {
			return o.fail(ctx, c, rep, err)
		}
		if i < len(ordered)-1 && o.gap > 0 {
			select {
			case <-ctx.Done():
				return o.fail(ctx, c, rep, ctx.Err())
			case <-time.After(o.gap):
			}
		}
	}
	if len(ordered) > 0 && !mixedTo.IsZero() {
		w := msSince(mixedFrom, mixedTo)
		rep.MixedWindowMs = &w
	}
	// The operation is over when etcd says so: every member reports the new cluster version (and,
	// for a downgrade, no downgrade under way). Only then may the next one begin: etcd refuses to
	// downgrade a cluster whose version has not moved up yet.
	if err := waitClusterVersion(ctx, c, o.down, scenarios.MinorOf(want)); err != nil {
		return o.fail(ctx, c, rep, err)
	}
	ms := msSince(t0, time.Now())
	rep.ClusterVersion, rep.ClusterVersionMs = scenarios.MinorOf(want), &ms
	return nil
}

// waitClusterVersion waits until every member reports cluster version want (and, after a
// downgrade, that the downgrade is no longer enabled), 60s at most.
func waitClusterVersion(ctx context.Context, c Operator, down bool, want string) error {
	deadline := time.Now().Add(time.Minute)
	for {
		last := ""
		for _, m := range c.Members() {
			v, err := c.ClusterVersion(ctx, m.Name())
			if err != nil || scenarios.MinorOf(v) != want {
				last = fmt.Sprintf("%s reports cluster version %q (%v)", m.Name(), v, err)
				break
			}
			if down {
				if s, err := c.MemberState(ctx, m.Name()); err != nil || s.DowngradeEnabled {
					last = fmt.Sprintf("%s says the downgrade is still enabled (%v)", m.Name(), err)
					break
				}
			}
		}
		if last == "" {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("every member runs %s, but after 60s %s", want, last)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// fail cancels a downgrade left part-way (etcd's downgrade API) and returns err.
func (o versionOp) fail(ctx context.Context, c Operator, rep *reports.Operation, err error) error {
	if o.down && rep.Downgrade != nil {
		rep.Downgrade.Cancelled = err.Error()
		if cerr := c.Downgrade(context.WithoutCancel(ctx), "cancel", rep.Downgrade.Target); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cancelling the downgrade: %w", cerr))
		}
	}
	return err
}

// waitStorage waits until every member's storage version is at the target minor version (a
// downgrade's enable migrates it).
func waitStorage(ctx context.Context, c Operator, members []Member, target string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		done := true
		last := ""
		for _, m := range members {
			s, err := c.MemberState(ctx, m.Name())
			if err != nil || scenarios.MinorOf(s.StorageVersion) != target {
				done, last = false, fmt.Sprintf("%s's storage version is %q (%v)", m.Name(), s.StorageVersion, err)
				break
			}
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the downgrade to %s was enabled but after 2m %s", target, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitVersion waits until the member answers Status on version want and its applied index has
// reached the leader's when it first answered: healthy on the new binary and caught up.
func waitVersion(ctx context.Context, c Operator, member, want string) (MemberState, time.Time, error) {
	deadline := time.Now().Add(2 * time.Minute)
	var target uint64
	var last MemberState
	var lastErr error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		s, err := c.MemberState(ctx, member)
		lastErr = err
		if err == nil {
			last = s
			if s.Version != want {
				return s, time.Time{}, fmt.Errorf("%s answers on etcd %s, not %s", member, s.Version, want)
			}
			if target == 0 {
				if name, _, lerr := c.Leader(ctx); lerr == nil {
					if ls, lerr := c.MemberState(ctx, name); lerr == nil {
						target = max(ls.AppliedIndex, 1)
					}
				}
			}
			if target > 0 && s.AppliedIndex >= target {
				return s, time.Now(), nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return last, time.Time{}, fmt.Errorf("%s was not healthy on etcd %s and caught up within 2m (last: version %q, applied %d; %v)", member, want, last.Version, last.AppliedIndex, lastErr)
}
