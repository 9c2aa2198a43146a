package faults

import (
	"context"
	"fmt"
	"time"

	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// Membership operations change the cluster's members as an operator does, through etcd's API:
//   - member-replace replaces a failed member: remove it (it stops), wipe its data dir, add it back
//     as a learner, start it empty on the existing cluster, and promote it once etcd says it has
//     caught up (etcd refuses a promotion until then);
//   - member-add adds a member (as a learner, promoted once caught up, with learner: true);
//   - member-remove removes one; etcd stops it.
//
// They need the members' data dirs and flags: a cluster the harness started as local processes.
var memberReplaceAction = Action{Op: func(scenarios.Fault) Operation { return memberOp{kind: "member-replace", learner: true} },
	ActionRules: scenarios.ActionRules{Name: "member-replace", Instant: true, Selections: onMembers, Cuts: always,
		Check: oneMember("member-replace"), Available: needsFiles},
	Does: func(scenarios.Fault, string) string {
		return "remove it, wipe its data, add it back as a learner, start it empty, promote it once caught up"
	},
}

var memberAddAction = Action{Op: func(f scenarios.Fault) Operation { return memberOp{kind: "member-add", learner: f.Learner} },
	ActionRules: scenarios.ActionRules{Name: "member-add", Instant: true, AddsMember: true, Fields: []string{"learner"},
		Available: func(p scenarios.Place, s string, f scenarios.Fault) error {
			if err := needsFiles(p, s, f); err != nil {
				return err
			}
			if p.Network == "netns" {
				return fmt.Errorf("member-add needs cluster.network direct (or proxy for local processes, docker for containers; without faults on links): a new member's links would need a namespace of their own")
			}
			return nil
		}},
	Does: func(f scenarios.Fault, _ string) string {
		if f.Learner {
			return "add a member as a learner, start it, promote it once caught up"
		}
		return "add a voting member and start it"
	},
}

var memberRemoveAction = Action{Op: func(scenarios.Fault) Operation { return memberOp{kind: "member-remove"} },
	ActionRules: scenarios.ActionRules{Name: "member-remove", Instant: true, Selections: onMembers, Cuts: always,
		Check: oneMember("member-remove"), Available: needsFiles},
	Does: func(scenarios.Fault, string) string { return "remove it from the member list (etcd stops it)" },
}

// oneMember is the rule of an operation on one member at a time.
func oneMember(action string) func(f scenarios.Fault) []scenarios.FieldProblem {
	return func(f scenarios.Fault) []scenarios.FieldProblem {
		switch f.Target.Kind {
		case "", "leader", "follower", "member", "random":
			return nil
		case "count":
			if f.Target.Count == 1 {
				return nil
			}
		}
		return []scenarios.FieldProblem{{Field: "target", Msg: fmt.Sprintf("%s: %s acts on one member at a time; valid: leader, follower, random, a member name or {count: 1}", f.Target, action)}}
	}
}

// needsFiles is the rule of an operation that rewrites members' data dirs and flags: the harness
// must have started them as processes of this machine.
func needsFiles(p scenarios.Place, _ string, f scenarios.Fault) error {
	if p.Files {
		return nil
	}
	return fmt.Errorf("%s rewrites members' data dirs and flags: it needs provider local or container (members the harness started); %s", f.Action, notYet(p))
}

// notYet says why a place cannot take an operation on members' data dirs or binaries.
func notYet(p scenarios.Place) string {
	if p.Network == "agent" {
		return "chaos agent does not do it yet"
	}
	return "provider " + p.Provider + " does not reach them"
}

type memberOp struct {
	kind    string
	learner bool
}

func (o memberOp) Name() string { return o.kind }

func (o memberOp) Run(ctx context.Context, env OpEnv, members []Member, st *Stamp, rep *reports.Operation) error {
	c := env.Cluster
	r := &reports.Membership{Learner: o.learner, SizeBefore: len(c.Members())}
	rep.Membership = r
	var steps ReplaceSteps
	var err error
	switch o.kind {
	case "member-add":
		err = st.call(func() error {
			var e error
			r.Member, e = c.AddMember(ctx, o.learner, &steps)
			return e
		})
	default:
		if len(members) != 1 {
			return fmt.Errorf("acts on one member at a time, not %d", len(members))
		}
		r.Member = members[0].Name()
		if o.kind == "member-remove" {
			err = st.call(func() error { return c.RemoveMember(ctx, r.Member, &steps) })
		} else {
			err = st.call(func() error { return c.Replace(ctx, r.Member, &steps) })
		}
	}
	t0 := st.Start
	if steps.OldID != 0 {
		r.OldID = fmt.Sprintf("%x", steps.OldID)
	}
	if steps.NewID != 0 {
		r.NewID = fmt.Sprintf("%x", steps.NewID)
	}
	r.RemovedMs, r.ExitedMs, r.AddedMs, r.StartedMs = msSince(t0, steps.Removed), msSince(t0, steps.Exited), msSince(t0, steps.Added), msSince(t0, steps.Started)
	r.SizeAfter, r.Refused = len(c.Members()), steps.Refused
	if err != nil || o.kind == "member-remove" {
		return err
	}
	if o.learner {
		if err := promote(ctx, c, r, steps.Started, t0); err != nil {
			return err
		}
	}
	// The member serves clients once it has published itself through raft.
	served, err := serving(ctx, c, r.Member)
	if err != nil {
		return err
	}
	r.ServingMs = msSince(t0, served)
	// etcd's member list, asked of another member, says what the member is now.
	id, learner, err := c.InMemberList(ctx, r.Member)
	switch {
	case err != nil:
		return fmt.Errorf("%s in the member list: %w", r.Member, err)
	case learner:
		return fmt.Errorf("the member list still says %s (%x) is a learner", r.Member, id)
	case id != steps.NewID:
		return fmt.Errorf("the member list has %s as %x, not as %x, the id it was added with", r.Member, id, steps.NewID)
	}
	return nil
}

// promote promotes the learner: etcd refuses until it has caught up (ErrLearnerNotReady), so the
// first promotion it accepts is when it caught up.
func promote(ctx context.Context, c Operator, r *reports.Membership, started, t0 time.Time) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := c.Promote(ctx, r.Member)
		if err == nil {
			now := time.Now()
			r.PromotedMs, r.CaughtUpMs = msSince(t0, now), msSince(started, now)
			return nil
		}
		r.PromoteRefused++
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the learner %s was not promoted within 2m (refused %d times): %w", r.Member, r.PromoteRefused, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// serving waits until the member answers Status on its own client URL (2m at most).
func serving(ctx context.Context, c Operator, member string) (time.Time, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, err := c.MemberState(ctx, member)
		if err == nil {
			return time.Now(), nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return time.Time{}, fmt.Errorf("%s did not serve clients within 2m: %w", member, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}
