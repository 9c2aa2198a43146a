package faults

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/etcd-chaos/etcd-chaos/faults/diskfs"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// DiskMember is a member whose data dir the harness serves through its disk layer (diskfs), as
// the local provider's members are when the scenario has a disk fault or cluster.disk-delay.
type DiskMember interface {
	Member
	// Disk is the layer under the member's data dir (nil: none).
	Disk() *diskfs.Disk
	// DataDir is where the member's data is on this machine (the layer's backing folder).
	DataDir() string
	// ExitReport says how the member's last process ended and the last thing it logged.
	ExitReport() string
}

// DiskReport is what a disk fault did to one member: the I/O it touched, what a power loss
// dropped, and whether the member's process exited (etcd's answer to a failed fsync or a full
// disk) and was started again at the heal.
type DiskReport struct {
	Member    string
	Ops       diskfs.Counts
	Dropped   *diskfs.Dropped
	Exited    string // how the process ended during the fault, with its last log line
	Restarted bool   // the heal started it again
	Corrupted string // corrupt: which file, where, how many bytes
	Start     string // corrupt: "running", or how the start after the corruption ended
}

// reportSink gathers an injection's disk reports; the member effect puts it in the context of
// its Kind's calls.
type reportSink struct {
	mu   sync.Mutex
	byMb map[string]*DiskReport
}

type sinkKey struct{}

// diskReport is the report of m in the injection ctx belongs to (a scratch one outside one).
func diskReport(ctx context.Context, m Member) *DiskReport {
	s, _ := ctx.Value(sinkKey{}).(*reportSink)
	if s == nil {
		return &DiskReport{Member: m.Name()}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byMb == nil {
		s.byMb = map[string]*DiskReport{}
	}
	r := s.byMb[m.Name()]
	if r == nil {
		r = &DiskReport{Member: m.Name()}
		s.byMb[m.Name()] = r
	}
	return r
}

func (s *reportSink) list() []DiskReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []DiskReport
	for _, r := range s.byMb {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Member < out[j].Member })
	return out
}

// diskOf is the layer under m's data dir.
func diskOf(m Member) (DiskMember, *diskfs.Disk, error) {
	dm, ok := m.(DiskMember)
	if !ok || dm.Disk() == nil {
		return nil, nil, fmt.Errorf("member %s has no disk layer under its data dir (provider local mounts one when the scenario has a disk fault)", m.Name())
	}
	return dm, dm.Disk(), nil
}

// DiskFiller is a member whose disk is filled on its own node, by chaos agent, rather than
// through the harness's layer (a remote cluster's).
type DiskFiller interface {
	Member
	// FillsDisk says whether the member's disk can be filled this way.
	FillsDisk() bool
	// FillDisk fills the data dir's filesystem until no byte is free (statfs proves it).
	FillDisk(ctx context.Context) error
	// FreeDisk removes the fill; restarted says etcd had exited on the full disk and was started again.
	FreeDisk(ctx context.Context) (restarted bool, err error)
}

// fillerOf is the member's node filler, if it has one and no layer.
func fillerOf(m Member) (DiskFiller, bool) {
	if dm, ok := m.(DiskMember); ok && dm.Disk() != nil {
		return nil, false
	}
	f, ok := m.(DiskFiller)
	return f, ok && f.FillsDisk()
}

// needsDiskLayer is the rule of every action on the disk layer.
func needsDiskLayer(p scenarios.Place, _ string, f scenarios.Fault) error {
	if p.Disk != nil {
		return fmt.Errorf("%s needs the harness's disk layer under the members' data dirs: %v", f.Action, p.Disk)
	}
	return nil
}

// diskKind applies a fault of the layer to a member until the heal. A member whose process
// exited meanwhile (etcd stops on a failed fsync or a full disk) is reported with its last log
// line and started again at the heal, as a killed member is.
type diskKind struct {
	name  string
	fault diskfs.Fault
}

func (k diskKind) Name() string { return k.name }

func (k diskKind) Inject(ctx context.Context, m Member) error {
	_, d, err := diskOf(m)
	if err != nil {
		return err
	}
	d.Inject(k.fault)
	return nil
}

func (k diskKind) VerifyInjected(ctx context.Context, m Member) error {
	_, d, err := diskOf(m)
	if err != nil {
		return err
	}
	if !d.Mounted() || d.Active() == nil {
		return fmt.Errorf("the disk layer at %s holds no fault", d.Mountpoint())
	}
	return nil
}

func (k diskKind) Heal(ctx context.Context, m Member) error {
	dm, d, err := diskOf(m)
	if err != nil {
		return err
	}
	rep := diskReport(ctx, m)
	rep.Ops = d.Heal()
	return restartIfExited(ctx, dm, rep)
}

// restartIfExited starts a member whose process ended during a disk fault, reporting how it ended.
func restartIfExited(ctx context.Context, dm DiskMember, rep *DiskReport) error {
	if st, err := dm.State(); err != nil || st != Exited {
		return err
	}
	rep.Exited = dm.ExitReport()
	if err := dm.Start(ctx); err != nil {
		return err
	}
	rep.Restarted = true
	return nil
}

func (k diskKind) VerifyHealed(ctx context.Context, m Member) error {
	_, d, err := diskOf(m)
	if err != nil {
		return err
	}
	if d.Active() != nil {
		return fmt.Errorf("the disk layer at %s still holds a fault", d.Mountpoint())
	}
	return waitState(ctx, m, Running, time.Second)
}

// diskOps reads a fault's ops (def when it names none); validation has refused bad names.
func diskOps(f scenarios.Fault, def diskfs.Op) diskfs.Op {
	o, _ := diskfs.ParseOps(f.Ops, def)
	return o
}

// checkOps, checkPercent and checkLatency are the value checks the disk actions share.
func checkOps(f scenarios.Fault) []scenarios.FieldProblem {
	if _, err := diskfs.ParseOps(f.Ops, 0); err != nil {
		return []scenarios.FieldProblem{{Field: "ops", Msg: err.Error()}}
	}
	return nil
}

func checkPercent(f scenarios.Fault) []scenarios.FieldProblem {
	if f.Percent < 0 || f.Percent > 100 {
		return []scenarios.FieldProblem{{Field: "percent", Msg: fmt.Sprintf("%v: valid: more than 0, up to 100 (default 100)", f.Percent)}}
	}
	return nil
}

func percentText(f scenarios.Fault) string {
	if f.Percent > 0 && f.Percent < 100 {
		return fmt.Sprintf("%.0f%% of ", f.Percent)
	}
	return "each "
}

// errnoOf is a disk-error's errno (EIO by default).
func errnoOf(f scenarios.Fault) syscall.Errno {
	if f.Errno == "" {
		return syscall.EIO
	}
	return diskfs.Errnos[f.Errno]
}
