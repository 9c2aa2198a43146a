package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/loadgen"
)

// The operations (faults.Operator) every provider does through etcd's API, with the harness's
// control clients; and, for local processes, those that rewrite members' data dirs and flags.

// errNoFiles is what a provider that does not reach its members' data dirs answers an operation
// that needs them (validation refuses such a scenario first).
func errNoFiles(what string) error {
	return fmt.Errorf("%s needs the members' data dirs and flags: only provider local reaches them", what)
}

// anyClient is the control client of the first member that answers, other than except.
func (c *base) anyClient(ctx context.Context, except string) (*clientv3.Client, *member, error) {
	var last error
	for _, m := range c.all() {
		if m.name == except {
			continue
		}
		if _, err := c.status(ctx, m, time.Second); err != nil {
			last = err
			continue
		}
		cli, err := c.controlClient(m)
		if err == nil {
			return cli, m, nil
		}
		last = err
	}
	if last == nil {
		last = errors.New("no other member")
	}
	return nil, nil, fmt.Errorf("no member answers: %w", last)
}

// Compact compacts to the current revision minus keep, on the leader's client, physically.
func (c *base) Compact(ctx context.Context, keep int64) (int64, int64, error) {
	cli, _, err := c.anyClient(ctx, "")
	if err != nil {
		return 0, 0, err
	}
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	resp, err := cli.Get(gctx, "etcd-chaos/compact-probe")
	cancel()
	if err != nil {
		return 0, 0, fmt.Errorf("reading the current revision: %w", err)
	}
	cur := resp.Header.Revision
	to := cur - keep
	if to < 1 {
		return cur, 0, fmt.Errorf("the revision is %d: keeping %d leaves nothing to compact", cur, keep)
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := cli.Compact(cctx, to, clientv3.WithCompactPhysical()); err != nil {
		return cur, to, fmt.Errorf("compacting to %d: %w", to, err)
	}
	return cur, to, nil
}

// Defragment defragments one member's backend through its own control client.
func (c *base) Defragment(ctx context.Context, name string) error {
	m := c.byName(name)
	if m == nil {
		return fmt.Errorf("no member %s", name)
	}
	cli, err := c.controlClient(m)
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	_, err = cli.Defragment(dctx, m.realURL)
	return err
}

// ReadLocal reads a key from the member alone (serializable).
func (c *base) ReadLocal(ctx context.Context, name string) error {
	m := c.byName(name)
	if m == nil {
		return fmt.Errorf("no member %s", name)
	}
	cli, err := c.controlClient(m)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, err = cli.Get(rctx, "etcd-chaos/local-probe", clientv3.WithSerializable())
	return err
}

// MemberState is the member's Status answer.
func (c *base) MemberState(ctx context.Context, name string) (faults.MemberState, error) {
	st, err := c.MemberStatus(ctx, name, 5*time.Second)
	if err != nil {
		return faults.MemberState{}, err
	}
	return faults.MemberState{ID: st.Header.MemberId, Version: st.Version, DBSize: st.DbSize, DBInUse: st.DbSizeInUse,
		Leader: st.Leader, RaftIndex: st.RaftIndex, AppliedIndex: st.RaftAppliedIndex, RaftTerm: st.RaftTerm,
		Revision: st.Header.Revision, IsLearner: st.IsLearner, StorageVersion: st.StorageVersion,
		DowngradeEnabled: st.DowngradeInfo != nil && st.DowngradeInfo.Enabled}, nil
}

// memberID finds the member's id in the member list, by its advertised peer URL (a learner added
// but not yet started has no name).
func (c *base) memberID(ctx context.Context, cli *clientv3.Client, m *member) (uint64, bool, error) {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := cli.MemberList(lctx)
	if err != nil {
		return 0, false, fmt.Errorf("listing the members: %w", err)
	}
	for _, x := range resp.Members {
		if x.Name == m.name || slices.Contains(x.PeerURLs, m.peerURL) {
			return x.ID, x.IsLearner, nil
		}
	}
	return 0, false, fmt.Errorf("%s (%s) is not in the member list", m.name, m.peerURL)
}

// InMemberList finds the member in the member list another member gives.
func (c *base) InMemberList(ctx context.Context, name string) (uint64, bool, error) {
	m := c.byName(name)
	if m == nil {
		return 0, false, fmt.Errorf("no member %s", name)
	}
	cli, _, err := c.anyClient(ctx, name)
	if err != nil {
		return 0, false, err
	}
	return c.memberID(ctx, cli, m)
}

// Promote promotes the member, a learner; etcd refuses until it has caught up.
func (c *base) Promote(ctx context.Context, name string) error {
	m := c.byName(name)
	if m == nil {
		return fmt.Errorf("no member %s", name)
	}
	cli, _, err := c.anyClient(ctx, name)
	if err != nil {
		return err
	}
	id, learner, err := c.memberID(ctx, cli, m)
	if err != nil {
		return err
	}
	if !learner {
		return fmt.Errorf("%s (%x) is not a learner", name, id)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = cli.MemberPromote(pctx, id)
	return err
}

// firstWrite puts a key of the harness's through endpoints until one put is acknowledged.
func (c *base) firstWrite(ctx context.Context, timeout time.Duration, endpoints []string, conn *loadgen.Conn) (time.Time, error) {
	cli, err := loadgen.MeasureClientVia(endpoints, conn)
	if err != nil {
		return time.Time{}, err
	}
	defer cli.Close()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := cli.Put(pctx, "etcd-chaos/first-write", time.Now().Format(time.RFC3339Nano))
		cancel()
		if err == nil {
			return time.Now(), nil
		}
		last = err
		time.Sleep(5 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("no write acknowledged within %s: %v", timeout, last)
}

// The operations on files, for providers that do not reach them.

// files is how a provider that reaches its members' data dirs wipes one, restores one from a
// snapshot, and takes a member's new flags for its next start (nil: the provider does not).
type files struct {
	wipe    func(m *member) error
	restore func(m *member, snapshot string, initial []string, bump int64) error
	// reflag: m.argv changed (cluster state, data dir); the next start must use it.
	reflag func(m *member)
}

// FirstWrite writes through the load's endpoints until the cluster acknowledges a write.
func (c *LocalCluster) FirstWrite(ctx context.Context, timeout time.Duration) (time.Time, error) {
	return c.firstWrite(ctx, timeout, c.Endpoints(), c.LoadConn())
}

// FirstWrite writes through the load's endpoints until the cluster acknowledges a write.
func (c *ContainerCluster) FirstWrite(ctx context.Context, timeout time.Duration) (time.Time, error) {
	return c.firstWrite(ctx, timeout, c.Endpoints(), c.LoadConn())
}

// FirstWrite writes through the load's endpoints until the cluster acknowledges a write.
func (c *RemoteCluster) FirstWrite(ctx context.Context, timeout time.Duration) (time.Time, error) {
	return c.firstWrite(ctx, timeout, c.Endpoints(), c.LoadConn())
}

// WipeData wipes an exited member's data dir.
func (c *base) WipeData(name string) error {
	m := c.byName(name)
	if m == nil {
		return fmt.Errorf("no member %s", name)
	}
	if c.files.wipe == nil {
		return errNoFiles("wiping a data dir")
	}
	if st, _ := m.State(); st != faults.Exited {
		return fmt.Errorf("%s is %s: only an exited member's data is wiped", name, st)
	}
	return c.files.wipe(m)
}

// wipeLocal deletes what the member's data dir holds (the dir stays: it may be the disk layer's
// mount point).
func wipeLocal(m *member) error {
	name := m.name
	entries, err := os.ReadDir(m.dataDir)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("wiping %s's data: %w", name, err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(m.dataDir, e.Name())); err != nil {
			return fmt.Errorf("wiping %s's data: %w", name, err)
		}
	}
	return os.MkdirAll(m.dataDir, 0o700)
}

// setClusterState rewrites the member's --initial-cluster and --initial-cluster-state for its
// next start.
func (m *member) setClusterState(initial []string, state string) {
	for i, a := range m.argv {
		switch {
		case strings.HasPrefix(a, "--initial-cluster="):
			m.argv[i] = "--initial-cluster=" + strings.Join(initial, ",")
		case strings.HasPrefix(a, "--initial-cluster-state="):
			m.argv[i] = "--initial-cluster-state=" + state
		}
	}
}

// Replace removes the member from the cluster, waits for its process to end (etcd stops a member
// that learns it was removed; after 5s the harness stops it), wipes its data, adds it back as a
// learner and starts it on the existing cluster.
func (c *base) Replace(ctx context.Context, name string, steps *faults.ReplaceSteps) error {
	m := c.byName(name)
	if m == nil {
		return fmt.Errorf("no member %s", name)
	}
	if c.files.wipe == nil {
		return errNoFiles("member-replace")
	}
	cli, err := c.takeOut(ctx, m, steps, false)
	if err != nil {
		return err
	}
	if err := c.WipeData(name); err != nil {
		return err
	}
	id, initial, err := addMember(ctx, cli, name, m.peerURL, true, steps)
	if err != nil {
		return fmt.Errorf("adding %s back as a learner: %w", name, err)
	}
	steps.Added, steps.NewID = time.Now(), id
	m.setClusterState(initial, "existing")
	c.reflag(m)
	if err := m.Start(ctx); err != nil {
		return err
	}
	steps.Started = time.Now()
	return nil
}

// reflag tells the provider that m's flags changed.
func (c *base) reflag(m *member) {
	if c.files.reflag != nil {
		c.files.reflag(m)
	}
}

// Restore stops every member (SIGKILL: the cluster is lost), wipes every data dir, restores each
// from the snapshot with etcdutl's restore (the revision bumped by bump and marked compacted, as
// etcd's recovery guide prescribes) and starts them all.
func (c *base) Restore(ctx context.Context, path string, bump int64) error {
	if c.files.restore == nil {
		return errNoFiles("a restore")
	}
	ms := c.all()
	for _, m := range ms {
		if st, _ := m.State(); st != faults.Exited {
			_ = m.Signal(syscall.SIGCONT)
			if err := m.Signal(syscall.SIGKILL); err != nil {
				return err
			}
		}
	}
	var initial []string
	for _, m := range ms {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := m.WaitExit(wctx)
		cancel()
		if err != nil {
			return fmt.Errorf("%s did not exit after SIGKILL: %w", m.name, err)
		}
		if err := c.files.wipe(m); err != nil {
			return err
		}
		initial = append(initial, m.name+"="+m.peerURL)
	}
	// The members at once, as an operator's runbook has them: each restored and started on its own
	// (a container's start copies its restored data dir into its volume, seconds each).
	var g errgroup.Group
	for _, m := range ms {
		g.Go(func() error {
			if err := c.files.restore(m, path, initial, bump); err != nil {
				return fmt.Errorf("restoring %s from %s: %w", m.name, path, err)
			}
			m.setClusterState(initial, "new")
			c.reflag(m)
			return m.Start(ctx)
		})
	}
	return g.Wait()
}

// restoreLocal restores the member's (empty) data dir from the snapshot with etcdutl's restore, the
// revision bumped and marked compacted, as etcd's recovery guide prescribes.
func restoreLocal(token string) func(m *member, path string, initial []string, bump int64) error {
	return func(m *member, path string, initial []string, bump int64) error {
		return snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{SnapshotPath: path, Name: m.name, OutputDataDir: m.dataDir,
			PeerURLs: []string{m.peerURL}, InitialCluster: strings.Join(initial, ","), InitialClusterToken: token,
			RevisionBump: uint64(bump), MarkCompacted: true})
	}
}

// SwapBinary stops the member gracefully (SIGTERM; SIGKILL after 30s), and starts it again on
// its data dir with bin ("builtin": the etcd built into the chaos binary), as a rolling upgrade
// does. It returns when the member stopped and when its new process ran.
func (c *LocalCluster) SwapBinary(ctx context.Context, name, bin string) (stopped, started time.Time, err error) {
	m := c.byName(name)
	if m == nil {
		return stopped, started, fmt.Errorf("no member %s", name)
	}
	if err := m.stop(ctx, 30*time.Second); err != nil {
		return stopped, started, err
	}
	stopped = time.Now()
	exe := c.etcdCommand(bin)
	m.argv = slices.Concat(m.argv[:m.exeAt], exe, m.argv[m.exeAt+len(m.exe):])
	m.exe = exe
	if err := m.Start(ctx); err != nil {
		return stopped, started, err
	}
	return stopped, time.Now(), nil
}

// SwapBinary is refused: only provider local starts members from binaries of this machine.
func (c *base) SwapBinary(context.Context, string, string) (time.Time, time.Time, error) {
	return time.Time{}, time.Time{}, errNoFiles("an upgrade or downgrade")
}

// Downgrade calls etcd's downgrade API (validate, enable or cancel) for version (major.minor).
func (c *base) Downgrade(ctx context.Context, action, version string) error {
	cli, _, err := c.anyClient(ctx, "")
	if err != nil {
		return err
	}
	acts := map[string]clientv3.DowngradeAction{"validate": clientv3.DowngradeValidate, "enable": clientv3.DowngradeEnable, "cancel": clientv3.DowngradeCancel}
	a, ok := acts[action]
	if !ok {
		return fmt.Errorf("no downgrade action %q", action)
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = cli.Downgrade(dctx, a, version)
	return err
}

// AddMember adds a member to the cluster: the next name, two free ports and a folder of its own;
// etcd's MemberAdd (MemberAddAsLearner with learner), then its process, started on the existing
// cluster. It needs network direct (a proxy or namespace for it would have to be made).
func (c *LocalCluster) AddMember(ctx context.Context, learner bool, steps *faults.ReplaceSteps) (string, error) {
	if client, peer := c.Paths(); client != "direct" || peer != "direct" {
		return "", fmt.Errorf("member-add needs the members' links direct (here client links %s, peer links %s): a new member's links would need a proxy or a namespace of their own; leave faults on links out of the scenario", client, peer)
	}
	if c.opts.Disk != nil {
		return "", errors.New("member-add does not serve the disk layer under a new member: leave disk faults out of the scenario")
	}
	name := c.nextName()
	ports, err := FreePorts(2)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(c.opts.Dir, "members", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating %s: %w", dir, err)
	}
	m := &member{name: name, dataDir: filepath.Join(dir, "data"), logPath: filepath.Join(dir, "etcd.log"),
		realURL: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), peerReal: fmt.Sprintf("http://127.0.0.1:%d", ports[1])}
	m.clientURL, m.peerURL = m.realURL, m.peerReal
	pr := &procRunner{m: m, log: c.opts.Logger, started: c.writeClusterFile}
	m.run, m.exit = pr, pr.exitStatus
	extra, err := etcdFlags(c.opts.Etcd)
	if err != nil {
		return "", err
	}
	m.exe = c.etcdCommand("")
	m.argv = append(append([]string{}, m.exe...), memberArgs(name, m.dataDir, m.realURL, m.clientURL, m.peerReal, m.peerURL, nil, c.opts.Token, extra)...)
	return name, c.join(ctx, m, learner, steps, nil)
}

// join adds m to etcd's member list (MemberAddAsLearner with learner), points its flags at the
// cluster it joins (--initial-cluster-state=existing), then (after flagged, when given) makes it
// one of the harness's members and starts it.
func (c *base) join(ctx context.Context, m *member, learner bool, steps *faults.ReplaceSteps, flagged func()) error {
	cli, _, err := c.anyClient(ctx, "")
	if err != nil {
		return err
	}
	id, initial, err := addMember(ctx, cli, m.name, m.peerURL, learner, steps)
	if err != nil {
		return fmt.Errorf("adding %s: %w", m.name, err)
	}
	steps.Added, steps.NewID = time.Now(), id
	m.setClusterState(initial, "existing")
	if flagged != nil {
		flagged()
	}
	c.membersMu.Lock()
	c.members = append(append([]*member(nil), c.members...), m)
	c.membersMu.Unlock()
	if err := m.Start(ctx); err != nil {
		return err
	}
	steps.Started = time.Now()
	return nil
}

// nextName names a member to add: member-N after the highest N the run has had (a removed
// member's name is not given again).
func (c *base) nextName() string {
	n := 0
	for _, m := range c.everyMember() {
		var k int
		if _, err := fmt.Sscanf(m.name, "member-%d", &k); err == nil {
			n = max(n, k)
		}
	}
	return fmt.Sprintf("member-%d", n+1)
}

// RemoveMember takes the member out of etcd's member list; etcd stops it (the harness does after
// 5s), and it leaves the harness's members (Close and RemoveData still see to it).
func (c *base) RemoveMember(ctx context.Context, name string, steps *faults.ReplaceSteps) error {
	m := c.byName(name)
	if m == nil {
		return fmt.Errorf("no member %s", name)
	}
	_, err := c.takeOut(ctx, m, steps, true)
	return err
}

// takeOut removes the member from etcd's member list (through another member's client, which it
// returns) and waits for its process to end: etcd stops a member that learns it was removed;
// after 5s the harness stops it. leave takes it out of the harness's members too (Close and
// RemoveData still see to it).
func (c *base) takeOut(ctx context.Context, m *member, steps *faults.ReplaceSteps, leave bool) (*clientv3.Client, error) {
	cli, _, err := c.anyClient(ctx, m.name)
	if err != nil {
		return nil, err
	}
	if steps.OldID, _, err = c.memberID(ctx, cli, m); err != nil {
		return nil, err
	}
	if err := removeMember(ctx, cli, steps); err != nil {
		return nil, fmt.Errorf("removing %s (%x): %w", m.name, steps.OldID, err)
	}
	if leave {
		c.membersMu.Lock()
		c.members = slices.DeleteFunc(append([]*member(nil), c.members...), func(x *member) bool { return x == m })
		c.removed = append(c.removed, m)
		c.membersMu.Unlock()
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = m.WaitExit(wctx)
	cancel()
	if err != nil {
		c.log.Info("the removed member did not stop by itself within 5s; stopping it", "member", m.name)
		if err := m.stop(ctx, 5*time.Second); err != nil {
			return nil, err
		}
	}
	steps.Exited = time.Now()
	return cli, nil
}

// AddMember is refused: only provider local lays out new members.
func (c *base) AddMember(context.Context, bool, *faults.ReplaceSteps) (string, error) {
	return "", errNoFiles("member-add")
}

// removeMember removes a member; etcd refuses ("unhealthy cluster") while too few of the members
// left have been active for long (its strict reconfiguration check), and a request sent while the
// cluster elects a leader may time out having been applied or not: both are retried for 30s, and
// "member not found" after an attempt that timed out means it was applied.
func removeMember(ctx context.Context, cli *clientv3.Client, steps *faults.ReplaceSteps) error {
	deadline := time.Now().Add(30 * time.Second)
	tried := false
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := cli.MemberRemove(rctx, steps.OldID)
		cancel()
		if err == nil || (tried && errors.Is(err, rpctypes.ErrMemberNotFound)) {
			steps.Removed = time.Now()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil || errors.Is(err, rpctypes.ErrMemberNotFound) {
			return err
		}
		if errors.Is(err, rpctypes.ErrUnhealthy) {
			steps.Refused++
		} else {
			tried = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// addMember adds a member (a learner with learner) and returns its id and the cluster it joins, as
// --initial-cluster. etcd refuses ("unhealthy cluster") while too few members have been active for
// long, and a request sent while the cluster elects a leader (after the leader was removed) may
// time out having been applied or not: both are retried for 30s, and one that was applied is found
// in the member list by its peer URL.
func addMember(ctx context.Context, cli *clientv3.Client, name, peerURL string, learner bool, steps *faults.ReplaceSteps) (uint64, []string, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var resp *clientv3.MemberAddResponse
		var err error
		if learner {
			resp, err = cli.MemberAddAsLearner(actx, []string{peerURL})
		} else {
			resp, err = cli.MemberAdd(actx, []string{peerURL})
		}
		cancel()
		var id uint64
		var members []*etcdserverpb.Member
		switch {
		case err == nil:
			id, members = resp.Member.ID, resp.Members
		case errors.Is(err, rpctypes.ErrPeerURLExist):
			// An earlier attempt that timed out was applied.
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			list, lerr := cli.MemberList(lctx)
			cancel()
			if lerr != nil {
				return 0, nil, lerr
			}
			for _, x := range list.Members {
				if slices.Contains(x.PeerURLs, peerURL) {
					id = x.ID
				}
			}
			if id == 0 {
				return 0, nil, err
			}
			members = list.Members
		case time.Now().After(deadline) || ctx.Err() != nil:
			return 0, nil, err
		default:
			if errors.Is(err, rpctypes.ErrUnhealthy) {
				steps.Refused++
			}
			select {
			case <-ctx.Done():
				return 0, nil, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		var initial []string
		for _, x := range members {
			who := x.Name
			if x.ID == id {
				who = name
			}
			for _, u := range x.PeerURLs {
				initial = append(initial, who+"="+u)
			}
		}
		return id, initial, nil
	}
}

// ClusterVersion is the cluster version the member reports (its etcd_cluster_version gauge's
// label): the version every member has agreed to run at.
func (c *base) ClusterVersion(ctx context.Context, name string) (string, error) {
	mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	fams, err := c.MemberMetrics(mctx, name)
	if err != nil {
		return "", err
	}
	if f := fams["etcd_cluster_version"]; f != nil {
		for _, m := range f.Metric {
			if m.GetGauge().GetValue() != 1 {
				continue
			}
			for _, l := range m.Label {
				if l.GetName() == "cluster_version" {
					return l.GetValue(), nil
				}
			}
		}
	}
	return "", fmt.Errorf("%s reports no etcd_cluster_version", name)
}
