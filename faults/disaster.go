package faults

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"time"

	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// RevisionBump is how far a disaster's restore moves the revision on (etcdutl's --bump-revision,
// with --mark-compacted), as etcd's recovery guide prescribes: far past any revision the lost
// cluster can have given, so no client sees a revision go back, and every watcher resumes
// through a compaction.
const RevisionBump = 1_000_000_000

// disaster is the disaster drill: a majority of members is killed and its data wiped, so the
// cluster cannot recover by itself; the survivors are stopped and the whole cluster is restored
// from the harness's backup with etcd's own restore code. What it measures is the recovery time
// (from the loss to the first write the restored cluster acknowledged) and the recovery point
// (the acknowledged writes after the snapshot's revision, lost by design: kv-safety counts them,
// and any write before it that is lost is a violation).
var disasterAction = Action{LosesWrites: true, Op: func(f scenarios.Fault) Operation { return disasterOp{restore: f.Restore} },
	ActionRules: scenarios.ActionRules{Name: "disaster", Instant: true, Selections: onMembers, Fields: []string{"restore"},
		Check: func(f scenarios.Fault) []scenarios.FieldProblem {
			var out []scenarios.FieldProblem
			if f.Restore != "" && !slices.Contains(scenarios.Restores, f.Restore) {
				out = append(out, scenarios.FieldProblem{Field: "restore", Msg: fmt.Sprintf("%q: valid: %v (the harness's backups, cluster.backup)", f.Restore, scenarios.Restores)})
			}
			switch f.Target.Kind {
			case "majority", "all", "count", "percent", "":
			default:
				out = append(out, scenarios.FieldProblem{Field: "target", Msg: fmt.Sprintf("%s: a disaster loses a quorum; valid: majority, all, {count: N} or {percent: P} of at least a majority", f.Target)})
			}
			return out
		},
		Requires: func(f scenarios.Fault, sc *scenarios.Scenario) []scenarios.FieldProblem {
			var out []scenarios.FieldProblem
			if sc.Cluster.Backup.Every <= 0 {
				out = append(out, scenarios.FieldProblem{Field: "cluster.backup.every", Msg: f.Path() + " (disaster) restores the harness's last backup: set cluster.backup: {every: 30s}"})
			}
			if !sc.Checks.KVSafety {
				out = append(out, scenarios.FieldProblem{Field: "checks.kv-safety", Msg: f.Path() + " (disaster) counts the writes it loses (recovery.rpo_writes) from kv-safety's log of acknowledged writes: set checks.kv-safety: true"})
			}
			return out
		},
		Available: needsFiles},
	Does: func(f scenarios.Fault, _ string) string {
		r := f.Restore
		if r == "" {
			r = "latest-snapshot"
		}
		return fmt.Sprintf("SIGKILL and wipe its data; stop the rest; restore every member from the %s (revision bumped by %d, marked compacted); RTO and RPO", r, RevisionBump)
	},
}

type disasterOp struct{ restore string }

func (disasterOp) Name() string { return "disaster" }

func (o disasterOp) Run(ctx context.Context, env OpEnv, members []Member, st *Stamp, rep *reports.Operation) error {
	which := o.restore
	if which == "" {
		which = "latest-snapshot"
	}
	d := &reports.Disaster{RPOWrites: -1, RevisionBump: RevisionBump}
	rep.Disaster = d
	if env.Backup == nil {
		return errors.New("no backups: cluster.backup is not set")
	}
	snap, err := env.Backup(which)
	if err != nil {
		return fmt.Errorf("no %s to restore: %w", which, err)
	}
	d.Snapshot, d.SnapshotRevision = snap.Path, snap.Revision
	// The loss: every target killed at once, then wiped.
	for _, m := range members {
		d.Lost = append(d.Lost, m.Name())
		if err := st.call(func() error { return m.Signal(syscall.SIGKILL) }); err != nil {
			return fmt.Errorf("killing %s: %w", m.Name(), err)
		}
	}
	lossAt := st.Start
	d.SnapshotAgeMs = msSince(snap.At, lossAt)
	for _, m := range members {
		if err := waitExit(ctx, m, 5*time.Second); err != nil {
			return err
		}
		if err := env.Cluster.WipeData(m.Name()); err != nil {
			return err
		}
	}
	// With a majority gone, the survivors commit nothing: no write is acknowledged from here until
	// the restored cluster runs. kv-safety is fenced now, and counts what was acknowledged after
	// the snapshot.
	if env.Fence != nil {
		d.RPOWrites = env.Fence(snap.Revision)
	}
	if err := env.Cluster.Restore(ctx, snap.Path, RevisionBump); err != nil {
		return fmt.Errorf("restoring from %s: %w", snap.Path, err)
	}
	d.RestoredMs = msSince(lossAt, time.Now())
	// The first write the restored cluster acknowledges ends the outage.
	acked, err := env.Cluster.FirstWrite(ctx, 2*time.Minute)
	if err != nil {
		return fmt.Errorf("the restored cluster took no write: %w", err)
	}
	d.RTOMs = msSince(lossAt, acked)
	return nil
}
