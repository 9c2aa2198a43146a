package harness

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/reports"
)

// hashKVWait bounds how long the check waits for every member to reach the revision it compares.
const hashKVWait = 15 * time.Second

// hashKV is the end-of-run check that the replicas agree: every member's HashKV at one revision
// (the cluster's current one, read through a linearizable get), as etcd's robustness suite ends.
// Divergent hashes fail the run; a member that does not answer makes it unknown, and is named
// with how its process ended and its last log line, where the harness ran it. A cluster that refuses HashKV to the run's user (auth without the root
// role) skips the check and says so.
func (r *run) hashKV(ctx context.Context) reports.Check {
	c := reports.Check{Name: "hashkv", Status: reports.CheckUnknown,
		Note: "every member's HashKV at one revision: replicas that applied the same history hash the same"}
	ctx, cancel := context.WithTimeout(ctx, hashKVWait+5*time.Second)
	defer cancel()
	cli, err := loadgen.MeasureClientVia(r.cl.Endpoints(), r.cl.LoadConn())
	if err != nil {
		c.Summary = "no client: " + err.Error()
		return c
	}
	gctx, gcancel := context.WithTimeout(ctx, 5*time.Second)
	resp, err := cli.Get(gctx, r.prefix+"hashkv", clientv3.WithCountOnly())
	gcancel()
	cli.Close()
	if err != nil {
		c.Summary = "could not read the cluster's revision: " + err.Error()
		c.Examples = r.downMembers()
		return c
	}
	rev := resp.Header.Revision
	type answer struct {
		hash    uint32
		compact int64
		err     error
	}
	urls := r.cl.ClientURLs()
	names := r.cl.Names()
	answers := make([]answer, len(names))
	deadline := time.Now().Add(hashKVWait)
	for i, name := range names {
		answers[i].err = errors.New("not asked")
		mc, err := loadgen.MeasureClientVia([]string{urls[name]}, r.cl.LoadConn())
		if err != nil {
			answers[i].err = err
			continue
		}
		for ctx.Err() == nil {
			hctx, hcancel := context.WithTimeout(ctx, 2*time.Second)
			h, err := mc.HashKV(hctx, urls[name], rev)
			hcancel()
			if err == nil {
				answers[i] = answer{hash: h.Hash, compact: h.CompactRevision}
				break
			}
			answers[i].err = err
			if errors.Is(err, rpctypes.ErrPermissionDenied) || errors.Is(err, rpctypes.ErrGRPCPermissionDenied) {
				mc.Close()
				c.Status = reports.CheckSkipped
				c.Summary = "the cluster refuses HashKV to the run's user (it needs the root role): replicas not compared"
				return c
			}
			if time.Now().After(deadline) || r.exitOf(name) != "" {
				break // out of time, or its process has ended: no use asking again
			}
			time.Sleep(100 * time.Millisecond) // a member behind the revision, or restarting
		}
		mc.Close()
	}
	byHash := map[uint32][]string{}
	var missing []string
	for i, a := range answers {
		if a.err != nil {
			missing = append(missing, fmt.Sprintf("%s did not answer: %v%s", names[i], a.err, r.exitOf(names[i])))
			continue
		}
		byHash[a.hash] = append(byHash[a.hash], names[i])
	}
	compared := len(names) - len(missing)
	c.Examples = missing
	switch {
	case len(byHash) > 1:
		var groups []string
		for h, ms := range byHash {
			groups = append(groups, fmt.Sprintf("%s: %08x", strings.Join(ms, ", "), h))
		}
		sort.Strings(groups)
		c.Status, c.Violations = reports.CheckFail, len(byHash)-1
		c.Summary = fmt.Sprintf("replicas diverge at revision %d: %s", rev, strings.Join(groups, "; "))
	case compared < len(names):
		// A member down at the end is a finding (etcd refused its data, or died of it): the
		// cluster cannot be vouched for.
		c.Summary = fmt.Sprintf("%d of %d members answered HashKV at revision %d", compared, len(names), rev)
	default:
		c.Status = reports.CheckPass
		for h := range byHash {
			c.Summary = fmt.Sprintf("%d of %d members hash %08x at revision %d", compared, len(names), h, rev)
		}
	}
	return c
}

// clusterAlarms lists the alarms the cluster holds (NOSPACE after its quota, CORRUPT after etcd's own
// corruption check), as "NOSPACE on member-1"; a cluster that cannot be asked gives none.
func (r *run) clusterAlarms(ctx context.Context) []string {
	cli, err := loadgen.MeasureClientVia(r.cl.Endpoints(), r.cl.LoadConn())
	if err != nil {
		return nil
	}
	defer cli.Close()
	actx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := cli.AlarmList(actx)
	if err != nil {
		return nil
	}
	ids := map[uint64]string{}
	if ml, err := cli.MemberList(actx); err == nil {
		for _, m := range ml.Members {
			ids[m.ID] = m.Name
		}
	}
	var out []string
	for _, a := range resp.Alarms {
		name := ids[a.MemberID]
		if name == "" {
			name = fmt.Sprintf("%x", a.MemberID)
		}
		out = append(out, fmt.Sprintf("%s on %s", a.Alarm, name))
	}
	return out
}

// exitOf says how a member's process ended, where the harness ran it and it is not running.
func (r *run) exitOf(name string) string {
	for _, m := range r.cl.Members() {
		if m.Name() != name {
			continue
		}
		dm, ok := m.(faults.DiskMember)
		if st, err := m.State(); !ok || err != nil || st != faults.Exited {
			return ""
		}
		return " (its process ended: " + dm.ExitReport() + ")"
	}
	return ""
}

// downMembers names the members whose process ended, with how.
func (r *run) downMembers() []string {
	var out []string
	for _, n := range r.cl.Names() {
		if e := r.exitOf(n); e != "" {
			out = append(out, n+e)
		}
	}
	return out
}
