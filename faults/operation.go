package faults

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/etcd-chaos/etcd-chaos/reports"
)

// Operation is what an operator does to a cluster in production, run under load as a fault is and
// measured the same way: compaction, defragmentation, replacing a member, restoring from a backup
// after losing a majority. It runs to its end within the injection (an operation is not undone),
// proving each step from etcd's own answers, and writes what it measured into its report.
type Operation interface {
	Name() string
	// Run performs the operation on the members its target resolved to (none for an operation on
	// the whole cluster). It stamps st around its first acting call.
	Run(ctx context.Context, env OpEnv, members []Member, st *Stamp, rep *reports.Operation) error
}

// Operator is what operations need of a cluster beyond its members' processes: etcd's API
// (maintenance, membership) and, for a cluster the harness started, its members' data and flags.
// A provider that cannot do a step returns an error saying so.
type Operator interface {
	Cluster
	// Compact compacts the cluster's key space to its current revision minus keep, waiting until
	// every member has compacted physically; it returns both revisions.
	Compact(ctx context.Context, keep int64) (current, compacted int64, err error)
	// Defragment defragments one member's backend (which blocks it meanwhile).
	Defragment(ctx context.Context, member string) error
	// ReadLocal reads a key from the member alone (a serializable read): it waits while the
	// member's backend is blocked.
	ReadLocal(ctx context.Context, member string) error
	// MemberState is the member's view: version, db size and in use, leader, raft indexes.
	MemberState(ctx context.Context, member string) (MemberState, error)
	// Replace takes a member out of the cluster and brings it back empty, as a new member:
	// remove it (it stops), wipe its data dir, add it back as a learner, start it on an existing
	// cluster. It returns when the learner process runs; Promote makes it a voter.
	Replace(ctx context.Context, member string, steps *ReplaceSteps) error
	// InMemberList finds the member in etcd's member list, asked of another member: its id and
	// whether it is a learner.
	InMemberList(ctx context.Context, member string) (id uint64, learner bool, err error)
	// AddMember adds a member (as a learner with learner) and starts it; RemoveMember removes one.
	AddMember(ctx context.Context, learner bool, steps *ReplaceSteps) (string, error)
	RemoveMember(ctx context.Context, member string, steps *ReplaceSteps) error
	// Promote promotes the member (a learner) once etcd says it has caught up (it refuses until).
	Promote(ctx context.Context, member string) error
	// Restore stops every member, wipes every data dir and restores each from the snapshot at
	// path with etcd's own restore code, its revision bumped by bump and marked compacted, then
	// starts them all. It returns once every member's process runs.
	Restore(ctx context.Context, path string, bump int64) error
	// WipeData deletes the member's data dir (the member must have exited).
	WipeData(member string) error
	// SwapBinary stops the member gracefully and starts it again on its data dir with another etcd
	// binary ("builtin": the chaos binary's own).
	SwapBinary(ctx context.Context, member, bin string) (stopped, started time.Time, err error)
	// ClusterVersion is the cluster version the member reports (major.minor).
	ClusterVersion(ctx context.Context, member string) (string, error)
	// Downgrade calls etcd's downgrade API: validate, enable or cancel, for a major.minor version.
	Downgrade(ctx context.Context, action, version string) error
	// FirstWrite writes a key of the harness's through every endpoint until one write is
	// acknowledged, and returns when it was (within timeout).
	FirstWrite(ctx context.Context, timeout time.Duration) (time.Time, error)
}

// MemberState is one member's answer to Status, and its place in the member list.
type MemberState struct {
	ID              uint64
	Version         string
	DBSize, DBInUse int64
	Leader          uint64
	RaftIndex       uint64
	AppliedIndex    uint64
	RaftTerm        uint64
	Revision        int64
	IsLearner       bool
	// StorageVersion is the version of the member's data (3.6 and later); DowngradeEnabled, that
	// the cluster is being downgraded.
	StorageVersion   string
	DowngradeEnabled bool
}

// ReplaceSteps are the instants of a member replacement as the cluster carried them out.
type ReplaceSteps struct {
	OldID, NewID uint64
	Removed      time.Time // MemberRemove answered
	Exited       time.Time // the removed member's process ended
	Added        time.Time // MemberAddAsLearner answered
	Started      time.Time // the new member's process runs
	// Refused counts MemberRemove or MemberAdd calls etcd refused as unhealthy before one it accepted.
	Refused int
}

// Snapshot is one backup the harness saved through the API.
type Snapshot struct {
	Path     string
	Revision int64
	At       time.Time
}

// OpEnv is what the run gives an operation: the cluster to operate on, the harness's backups, and
// kv-safety's log, fenced at a disaster's restore.
type OpEnv struct {
	Cluster Operator
	// Backup finds a snapshot the harness saved: "latest-snapshot" or "previous-snapshot".
	Backup func(which string) (Snapshot, error)
	// Fence tells kv-safety that no write acknowledged by the old cluster can come any more and
	// that the snapshot at rev is what the restored cluster will hold: it returns how many
	// acknowledged writes came after rev (lost by design). Nil when kv-safety is off.
	Fence func(rev int64) (lost int64)
}

type opEffect struct {
	op      Operation
	env     OpEnv
	members []Member
	rep     reports.Operation
	failed  bool // Run returned an error: its members may be left stopped
}

// NewOpInjection plans an operation on members (none: on the whole cluster).
func NewOpInjection(index int, op Operation, target string, env OpEnv, members []Member, ledger *Ledger) *Injection {
	return &Injection{Index: index, Action: op.Name(), Target: target, ledger: ledger, names: names(members),
		effect: &opEffect{op: op, env: env, members: members}}
}

// OpReport is what the injection's operation measured (nil for a fault).
func (in *Injection) OpReport() *reports.Operation {
	in.mu.Lock()
	defer in.mu.Unlock()
	if oe, ok := in.effect.(*opEffect); ok {
		r := oe.rep
		return &r
	}
	return nil
}

func (oe *opEffect) apply(ctx context.Context, st *Stamp) error {
	if err := oe.op.Run(ctx, oe.env, oe.members, st, &oe.rep); err != nil {
		oe.failed = true
		return fmt.Errorf("%s: %w", oe.op.Name(), err)
	}
	return nil
}

// heal has nothing to undo after an operation that finished; after one that failed part-way it
// brings its members back.
func (oe *opEffect) heal(ctx context.Context, st *Stamp) error {
	return st.call(func() error {
		if !oe.failed {
			return nil // a member an operation removed stays stopped
		}
		var errs []error
		for _, m := range oe.members {
			if s, err := m.State(); err == nil && s == Exited {
				if err := m.Start(ctx); err != nil {
					errs = append(errs, fmt.Errorf("starting %s again: %w", m.Name(), err))
				}
			}
		}
		return errors.Join(errs...)
	})
}

func (oe *opEffect) entry(e *LedgerEntry, onlyHit bool) {
	e.Members, e.PIDs = names(oe.members), pids(oe.members)
}

// msSince is d from t0 in milliseconds (0 for a zero instant).
func msSince(t0, t time.Time) float64 {
	if t.IsZero() || t0.IsZero() {
		return 0
	}
	return float64(t.Sub(t0)) / float64(time.Millisecond)
}
