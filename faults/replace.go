package faults

import (
	"context"
	"fmt"
	"time"

	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// memberReplace replaces a member as an operator replaces a failed one: remove it from the
// cluster (it stops), wipe its data dir, add it back as a learner, start it empty on the existing
// cluster, and promote it once etcd says it has caught up (etcd refuses a promotion until then).
// It needs the members' data dirs and flags: a cluster the harness started as local processes.
var memberReplaceAction = Action{Op: func(scenarios.Fault) Operation { return replaceOp{} },
	ActionRules: scenarios.ActionRules{Name: "member-replace", Instant: true, Selections: onMembers, Cuts: always,
		Check: func(f scenarios.Fault) []scenarios.FieldProblem {
			switch f.Target.Kind {
			case "", "leader", "follower", "member", "random":
				return nil
			case "count":
				if f.Target.Count == 1 {
					return nil
				}
			}
			return []scenarios.FieldProblem{{Field: "target", Msg: fmt.Sprintf("%s: member-replace replaces one member at a time; valid: leader, follower, random, a member name or {count: 1}", f.Target)}}
		},
		Available: needsFiles},
	Does: func(scenarios.Fault, string) string {
		return "remove it, wipe its data, add it back as a learner, start it empty, promote it once caught up"
	},
}

// needsFiles is the rule of an operation that rewrites members' data dirs and flags: the harness
// must have started them as processes of this machine.
func needsFiles(p scenarios.Place, _ string, f scenarios.Fault) error {
	if p.Files {
		return nil
	}
	return fmt.Errorf("%s rewrites members' data dirs and flags: it needs provider local (the members processes of this machine); provider %s is not supported yet", f.Action, p.Provider)
}

type replaceOp struct{}

func (replaceOp) Name() string { return "member-replace" }

func (replaceOp) Run(ctx context.Context, env OpEnv, members []Member, st *Stamp, rep *reports.Operation) error {
	if len(members) != 1 {
		return fmt.Errorf("replaces one member at a time, not %d", len(members))
	}
	m := members[0]
	r := &reports.Replace{Member: m.Name()}
	rep.Replace = r
	var steps ReplaceSteps
	t0 := time.Now()
	err := st.call(func() error { return env.Cluster.Replace(ctx, m.Name(), &steps) })
	if !st.Start.IsZero() {
		t0 = st.Start
	}
	r.OldID, r.NewID = fmt.Sprintf("%x", steps.OldID), fmt.Sprintf("%x", steps.NewID)
	r.RemovedMs, r.ExitedMs, r.AddedMs, r.StartedMs = msSince(t0, steps.Removed), msSince(t0, steps.Exited), msSince(t0, steps.Added), msSince(t0, steps.Started)
	if err != nil {
		return err
	}
	// etcd refuses to promote a learner that has not caught up (ErrLearnerNotReady): the first
	// promotion it accepts is when it caught up.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := env.Cluster.Promote(ctx, m.Name())
		if err == nil {
			now := time.Now()
			r.PromotedMs, r.CaughtUpMs = msSince(t0, now), msSince(steps.Started, now)
			break
		}
		r.PromoteRefused++
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the learner %s was not promoted within 2m (refused %d times): %w", m.Name(), r.PromoteRefused, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	// etcd's member list, asked of another member, says whether it is a voter now.
	id, learner, err := env.Cluster.InMemberList(ctx, m.Name())
	switch {
	case err != nil:
		return fmt.Errorf("the replaced member %s after its promotion: %w", m.Name(), err)
	case learner:
		return fmt.Errorf("the member list still says %s (%x) is a learner after its promotion", m.Name(), id)
	case id != steps.NewID:
		return fmt.Errorf("the member list has %s as %x, not as %x, the id it was added back with", m.Name(), id, steps.NewID)
	}
	return nil
}
