package harness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"

	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// Operations (compact, defrag, member-replace, disaster) are planned, fired and measured as
// faults are; this file gives them what they need of the run: the cluster's operations, the
// harness's backups (cluster.backup) and kv-safety's log.

// planOperation resolves an operation's target (none: the whole cluster) and plans it.
func (r *run) planOperation(ctx context.Context, i int, f scenarios.Fault, a *faults.Action, rng *rand.Rand) (*plan, error) {
	op, ok := r.cl.(faults.Operator)
	if !ok {
		return nil, fmt.Errorf("fault #%d: %s: this cluster does no operations", i, f.Action)
	}
	env := faults.OpEnv{Cluster: op, Backup: r.backup}
	if r.safety != nil {
		env.Fence = r.safety.Fence
	}
	p := &plan{}
	var members []faults.Member
	if len(a.Selections) > 0 {
		t := f.Target
		if t.Kind == "" {
			t = scenarios.Target{Kind: "all"}
		}
		res, err := faults.Resolve(ctx, r.cl, t, rng)
		if err != nil {
			return nil, fmt.Errorf("fault #%d: resolving target %s: %w", i, t, err)
		}
		members, p.leader, p.term = res.Members, res.Leader, res.LeaderTerm
	} else {
		p.leader, p.term, _ = r.cl.Leader(ctx)
	}
	p.inj = faults.NewOpInjection(i, a.Op(f), f.Target.String(), env, members, r.ledger)
	p.members = p.inj.MemberNames()
	return p, nil
}

// recordOperation puts what an operation measured in its record and, after a disaster, holds the
// restored state against kv-safety's log.
func (r *run) recordOperation(ctx context.Context, fr *faultRun) {
	op := fr.inj.OpReport()
	if op == nil {
		return
	}
	if d := op.Disaster; d != nil {
		if rel, err := filepath.Rel(r.opts.Out, d.Snapshot); err == nil && d.Snapshot != "" {
			d.Snapshot = rel // as the result's backups name it: in the run folder
		}
		if d.SnapshotRevision > 0 && d.RTOMs > 0 && r.safety != nil {
			d.LostBeforeSnapshot = r.rebase(ctx, d.SnapshotRevision, d.SnapshotRevision+d.RevisionBump)
		}
	}
	r.mu.Lock()
	fr.record.Operation = op
	r.mu.Unlock()
	r.events.Log(time.Now(), "operation", "fault", fr.index, "action", fr.spec.Action, "operation", op)
}

// rebase reads the load's keys as the restored cluster holds them (at its first revision, the
// snapshot's bumped, whatever the load wrote since) and holds them against kv-safety's log.
func (r *run) rebase(ctx context.Context, snapRev, restoredRev int64) int {
	cli, err := loadgen.MeasureClientVia(r.cl.Endpoints(), r.cl.LoadConn())
	if err != nil {
		r.faultErr(fmt.Errorf("reading the restored state: %w", err))
		return 0
	}
	defer cli.Close()
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	restored, err := loadgen.ReadFinalAt(rctx, cli, r.kv.Prefix(), restoredRev, r.kv.KeyIndex)
	if err != nil {
		r.faultErr(fmt.Errorf("reading the restored state at revision %d: %w", restoredRev, err))
		return 0
	}
	return r.safety.Rebase(restored, snapRev, restoredRev, r.kv.KeyName)
}

func (r *run) faultErr(err error) {
	r.mu.Lock()
	r.runErrs = append(r.runErrs, err)
	r.mu.Unlock()
}

// --- backups ---

// backups saves a snapshot through the API at the load's start and every cluster.backup.every
// until ctx ends, keeping the newest cluster.backup.keep in the run folder's backups/.
func (r *run) backups(ctx context.Context) {
	b := r.sc.Cluster.Backup
	if b.Every <= 0 {
		return
	}
	dir := filepath.Join(r.opts.Out, "backups")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.faultErr(fmt.Errorf("cluster.backup: %w", err))
		return
	}
	t := time.NewTicker(b.Every.D())
	defer t.Stop()
	for n := 1; ; n++ {
		r.saveBackup(ctx, dir, n)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// saveBackup saves one snapshot from a follower (a snapshot loads the member that streams it),
// synced and renamed into place, and reads its revision back from the file.
func (r *run) saveBackup(ctx context.Context, dir string, n int) {
	t0 := time.Now()
	leader, _, _ := r.cl.Leader(ctx)
	from := ""
	for _, name := range r.cl.Names() {
		if name != leader {
			from = name
			break
		}
	}
	if from == "" {
		from = leader
	}
	path := filepath.Join(dir, fmt.Sprintf("snapshot-%03d.db", n))
	err := saveSnapshot(ctx, r.cl.ClientURLs()[from], r.cl.LoadConn(), path)
	var st snapshot.Status
	if err == nil {
		st, err = snapshot.NewV3(zap.NewNop()).Status(path)
	}
	if err != nil {
		_ = os.Remove(path)
		r.events.Log(time.Now(), "backup_failed", "member", from, "error", err.Error())
		r.log.Warn("backup failed", "member", from, "err", err)
		return
	}
	fi, _ := os.Stat(path)
	bk := reports.Backup{Path: filepath.Join("backups", filepath.Base(path)), Member: from, Revision: st.Revision, AtS: r.sinceStart(t0),
		Ms: float64(time.Since(t0)) / float64(time.Millisecond)}
	if fi != nil {
		bk.Size = fi.Size()
	}
	keep := r.sc.Cluster.Backup.Keep
	if keep <= 0 {
		keep = scenarios.DefaultBackupKeep
	}
	r.mu.Lock()
	r.snapshots = append(r.snapshots, faults.Snapshot{Path: path, Revision: st.Revision, At: t0})
	r.backupRecs = append(r.backupRecs, bk)
	var drop []faults.Snapshot
	if len(r.snapshots) > keep {
		drop = r.snapshots[:len(r.snapshots)-keep]
		r.snapshots = append([]faults.Snapshot(nil), r.snapshots[len(r.snapshots)-keep:]...)
		for k := range r.backupRecs[:len(r.backupRecs)-keep] {
			r.backupRecs[k].Removed = true
		}
	}
	oldest := r.snapshots[0].Revision
	r.mu.Unlock()
	for _, s := range drop {
		_ = os.Remove(s.Path)
	}
	if r.safety != nil {
		r.safety.Forget(oldest) // no snapshot older than it can be restored
	}
	r.events.Log(time.Now(), "backup_saved", "member", from, "path", bk.Path, "revision", st.Revision, "size", bk.Size, "ms", bk.Ms)
}

// backup finds the snapshot a disaster restores.
func (r *run) backup(which string) (faults.Snapshot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.snapshots)
	switch which {
	case "latest-snapshot":
		if n >= 1 {
			return r.snapshots[n-1], nil
		}
	case "previous-snapshot":
		if n >= 2 {
			return r.snapshots[n-2], nil
		}
	default:
		return faults.Snapshot{}, fmt.Errorf("no backup %q; valid: %v", which, scenarios.Restores)
	}
	return faults.Snapshot{}, fmt.Errorf("%d backups saved so far (cluster.backup.every %s)", n, r.sc.Cluster.Backup.Every)
}

// saveSnapshot streams a snapshot from the member at url into path (synced, then renamed).
func saveSnapshot(ctx context.Context, url string, conn *loadgen.Conn, path string) error {
	cli, err := loadgen.MeasureClientVia([]string{url}, conn)
	if err != nil {
		return err
	}
	defer cli.Close()
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	rc, err := cli.Snapshot(sctx)
	if err != nil {
		return fmt.Errorf("snapshot from %s: %w", url, err)
	}
	defer rc.Close()
	part := path + ".part"
	f, err := os.Create(part)
	if err != nil {
		return err
	}
	if _, err := f.ReadFrom(rc); err != nil {
		f.Close()
		_ = os.Remove(part)
		return fmt.Errorf("snapshot from %s: %w", url, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		_ = os.Remove(part)
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(part, path)
}
