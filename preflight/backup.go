package preflight

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/etcd-chaos/etcd-chaos/cluster"
	"github.com/etcd-chaos/etcd-chaos/internal/proc"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	clientsnap "go.etcd.io/etcd/client/v3/snapshot"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// scratchPrefix names preflight's scratch folders; the pid after it lets a later preflight remove
// the folder of one that was killed.
const scratchPrefix = "etcd-chaos-preflight-"

// backup saves a snapshot through the API (or takes the given backup file), restores it with etcd's
// own restore code into a scratch member started here, on 127.0.0.1, and compares the restored
// member's KV hash with the source's at the same revision. The scratch member and every file are
// removed at the end.
func (p *preflight) backup(ctx context.Context) *findings {
	f := &findings{}
	src := p.snapshotSource()
	if src == nil {
		f.add(skip, "", "no member answered")
		return f
	}
	root := p.opts.ScratchDir
	if root == "" {
		root = os.TempDir()
	}
	removeStaleScratch(root)
	dir, err := os.MkdirTemp(root, fmt.Sprintf("%s%d-%s-", scratchPrefix, os.Getpid(), proc.StartTime(os.Getpid())))
	if err != nil {
		f.add(skip, "", "no scratch folder: %v", err)
		return f
	}
	defer os.RemoveAll(dir)
	size := src.status.DbSize
	if p.opts.Snapshot != "" {
		fi, err := os.Stat(p.opts.Snapshot)
		if err != nil {
			f.add(fail, "name a backup file that exists", "the backup file: %v", err)
			return f
		}
		size = fi.Size()
	}
	if need, free := 2*size+256<<20, freeBytes(dir); free >= 0 && free < need {
		f.add(skip, "", "restoring a %s snapshot needs %s free in %s; there is %s (--scratch-dir names another place)", mib(size), mib(need), root, mib(free))
		return f
	}

	path := p.opts.Snapshot
	if path == "" {
		path = filepath.Join(dir, "snapshot.db")
		cfg := clientv3.Config{Endpoints: []string{src.url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
		if c := p.opts.Conn; c != nil {
			cfg.TLS, cfg.Username, cfg.Password = c.TLS, c.Username, c.Password
		}
		t0 := time.Now()
		sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		_, err := clientsnap.SaveWithVersion(sctx, zap.NewNop(), cfg, path)
		cancel()
		if err != nil {
			if errors.Is(err, rpctypes.ErrPermissionDenied) || strings.Contains(err.Error(), "permission denied") {
				f.add(skip, "", "user %s may not take snapshots: etcd lets only the root role (run preflight as a root user to check backups)", p.opts.Conn.Username)
				return f
			}
			f.add(fail, "check the member's log and disk: a snapshot could not be saved", "saving a snapshot from %s: %v", src.name, cluster.ClientProblem(err))
			return f
		}
		fi, _ := os.Stat(path)
		f.add(pass, "", "saved a %s snapshot from %s in %d ms", mib(fi.Size()), src.name, time.Since(t0).Milliseconds())
	} else {
		f.add(pass, "", "the backup %s (%s), not a fresh snapshot", p.opts.Snapshot, mib(size))
	}

	ports, err := cluster.FreePorts(2)
	if err != nil {
		f.add(skip, "", "no free ports for the scratch member: %v", err)
		return f
	}
	const name = "preflight-restore"
	// The scratch member serves a copy of the cluster's data: TLS with a client certificate only
	// this process holds, on both its listeners. With client-certificate auth (no password), etcd
	// takes the certificate's CN as the user: root, whom HashKV needs.
	cn := "root"
	if c := p.opts.Conn; c != nil && c.Username != "" {
		cn = c.Username
	}
	stls, err := newScratchTLS(dir, cn)
	if err != nil {
		f.add(skip, "", "no TLS for the scratch member: %v", err)
		return f
	}
	clientURL := fmt.Sprintf("https://127.0.0.1:%d", ports[0])
	peerURL := fmt.Sprintf("https://127.0.0.1:%d", ports[1])
	data := filepath.Join(dir, "member")
	t1 := time.Now()
	err = snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{SnapshotPath: path, Name: name, OutputDataDir: data,
		PeerURLs: []string{peerURL}, InitialCluster: name + "=" + peerURL, InitialClusterToken: "etcd-chaos-preflight"})
	if err != nil {
		f.add(fail, "the backup cannot be restored: take a new one, verify it, and find what corrupted this one (storage, transfer)",
			"etcd's restore refused %s: %s", path, restoreReason(err))
		return f
	}
	f.add(pass, "", "restored by etcd's own restore code (etcdutl's, its sha256 checked) in %d ms", time.Since(t1).Milliseconds())
	keys := ""
	if st, err := snapshotStatus(path); err == nil {
		keys = ", " + plural(st.TotalKey, "key")
	}

	t2 := time.Now()
	e, err := startScratch(ctx, name, data, clientURL, peerURL, filepath.Join(dir, "member.log"), stls)
	if err != nil {
		f.add(fail, "the restored data does not start: take a new backup and verify it", "a member started from the restored data: %v", err)
		return f
	}
	defer e.Close()
	f.add(pass, "", "a scratch member started from it at %s (TLS, only this process's client certificate) in %d ms", clientURL, time.Since(t2).Milliseconds())

	t3 := time.Now()
	// The restored data holds the source's users: with auth on, the scratch member wants the same.
	scfg := clientv3.Config{Endpoints: []string{clientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), TLS: stls.Client}
	if c := p.opts.Conn; c != nil {
		scfg.Username, scfg.Password = c.Username, c.Password
	}
	cli, err := clientv3.New(scfg)
	if err != nil {
		f.add(fail, "", "a client of the scratch member: %v", err)
		return f
	}
	defer cli.Close()
	hctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	got, err := cli.HashKV(hctx, clientURL, 0)
	if err != nil {
		f.add(fail, "the restored data cannot be hashed: take a new backup and verify it", "hashing the restored member: %v", err)
		return f
	}
	rev := got.HashRevision
	if rev == 0 {
		rev = got.Header.Revision
	}
	want, err := src.cli.HashKV(hctx, src.url, rev)
	switch {
	case err != nil && errors.Is(err, rpctypes.ErrCompacted):
		f.add(warn, "verify backups while their revision is not yet compacted, or keep the source's hash beside each backup",
			"the source has compacted past revision %d: the restore was checked by its sha256 and a member starting from it, not against the source's data", rev)
	case err != nil:
		f.add(skip, "", "the source's hash at revision %d could not be read: %v", rev, cluster.ClientProblem(err))
	case want.Hash != got.Hash || want.CompactRevision != got.CompactRevision:
		f.add(fail, "the backup does not hold the source's data: check the source for corruption (etcdctl endpoint hashkv --cluster)",
			"restored hash %08x (compacted at %d) differs from %s's %08x (compacted at %d) at revision %d",
			got.Hash, got.CompactRevision, src.name, want.Hash, want.CompactRevision, rev)
	default:
		f.add(pass, "", "KV hash %08x at revision %d equal on %s and on the restored member%s (%d ms)", got.Hash, rev, src.name, keys, time.Since(t3).Milliseconds())
	}
	return f
}

// snapshotSource is a follower (a snapshot loads the member that streams it), else the leader.
func (p *preflight) snapshotSource() *pfMember {
	var fallback *pfMember
	for _, m := range p.reachedMembers() {
		if m.status.Leader != m.id && !m.learner {
			return m
		}
		fallback = m
	}
	return fallback
}

// restoreReason says what etcd's restore found wrong, without the 64 bytes of two digests.
func restoreReason(err error) string {
	s := err.Error()
	switch {
	case strings.Contains(s, "expected sha256"):
		return "its sha256 does not match the one etcd appended when it saved the snapshot: the file is corrupt"
	case strings.Contains(s, "snapshot missing hash"):
		return "it carries no sha256 (truncated, or not a snapshot saved through the API)"
	}
	return s
}

// snapshotStatus reads the snapshot's revision and key count; bbolt may panic on a damaged file
// that passed nothing, so a panic is an error here.
func snapshotStatus(path string) (st snapshot.Status, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reading the snapshot: %v", r)
		}
	}()
	return snapshot.NewV3(zap.NewNop()).Status(path)
}

// startScratch starts one etcd member in this process on the restored data: it dies with the
// process, so nothing outlives preflight but its folder (which the next preflight removes).
func startScratch(ctx context.Context, name, data, clientURL, peerURL, logPath string, st *scratchTLS) (*embed.Etcd, error) {
	cu, _ := url.Parse(clientURL)
	pu, _ := url.Parse(peerURL)
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = name, data
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster, cfg.InitialClusterToken = name+"="+peerURL, "etcd-chaos-preflight"
	cfg.LogLevel, cfg.LogOutputs = "warn", []string{logPath}
	cfg.UnsafeNoFsync = true // a scratch copy: nothing to keep
	info := transport.TLSInfo{CertFile: st.Cert, KeyFile: st.Key, TrustedCAFile: st.CA, ClientCertAuth: true}
	cfg.ClientTLSInfo, cfg.PeerTLSInfo = info, info
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(time.Minute):
		e.Close()
		return nil, errors.New("not ready within a minute")
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
}

// freeBytes is the space left to unprivileged users on dir's file system (-1: unknown).
func freeBytes(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// removeStaleScratch removes the scratch folders of preflights that were killed: their pid is gone,
// or runs another process (its start time is not the one in the folder's name: a reused pid).
func removeStaleScratch(root string) {
	matches, _ := filepath.Glob(filepath.Join(root, scratchPrefix+"*"))
	for _, m := range matches {
		rest := strings.TrimPrefix(filepath.Base(m), scratchPrefix)
		parts := strings.SplitN(rest, "-", 3)
		pid, err := strconv.Atoi(parts[0])
		if len(parts) < 2 || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		started := ""
		if len(parts) == 3 {
			started = parts[1]
		}
		if !proc.Alive(pid) || (started != "" && proc.StartTime(pid) != started) {
			_ = os.RemoveAll(m)
		}
	}
}
