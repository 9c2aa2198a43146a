package harness

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/cluster"
	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/faults/diskfs"
	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// describeCluster is the result's account of the cluster (after Start, a remote one's members;
// with cl nil, only what the scenario says).
func describeCluster(sc *scenarios.Scenario, cl cluster.Cluster) reports.Cluster {
	c := reports.Cluster{Provider: sc.Cluster.Provider, EtcdBinary: sc.Cluster.EtcdBinary, Etcd: sc.Cluster.Etcd, Network: sc.Cluster.Network}
	if cl != nil {
		c.Size, c.Members, c.EtcdVersion = len(cl.Names()), cl.Names(), cl.EtcdVersion()
		c.ClientPath, c.PeerPath = cl.Paths()
	}
	if d := sc.Cluster.PeerDelay; !d.IsZero() {
		c.PeerDelay = fmt.Sprintf("%s±%s", time.Duration(d.Latency), time.Duration(d.Jitter))
	}
	if o := diskOptions(sc); o != nil {
		c.DiskPath = "fuse"
		if o.Passthrough {
			c.DiskPath = "fuse-passthrough" // fsyncs through the layer, reads and writes past it
		}
	}
	if d := sc.Cluster.DiskDelay; !d.IsZero() {
		var parts []string
		for _, p := range []struct {
			op string
			d  scenarios.Duration
		}{{"fsync", d.Fsync}, {"write", d.Write}, {"read", d.Read}} {
			if p.d > 0 {
				parts = append(parts, p.op+" "+p.d.String())
			}
		}
		c.DiskDelay = strings.Join(parts, ", ")
	}
	if cluster.CapabilitiesOf(sc.Cluster.Provider).Shared {
		c.Endpoints, c.TLS, c.AuthUser = sc.Cluster.Endpoints, sc.Cluster.TLS != (scenarios.TLS{}), sc.Cluster.Auth.User
		c.Etcd = nil
	}
	return c
}

// diskOptions are the disk layer's options for the scenario (nil: it needs none).
func diskOptions(sc *scenarios.Scenario) *cluster.DiskOptions {
	if sc.Cluster.DiskLayer() != nil {
		return nil // no layer here: a remote cluster's disk faults go through its agents
	}
	var o *cluster.DiskOptions
	var io diskfs.Op // the I/O classes the faults need the layer to see
	for _, f := range sc.Faults {
		if a := faults.LookupAction(f.Action); a != nil && a.Layer {
			if o == nil {
				o = &cluster.DiskOptions{Seed: uint64(sc.Seed)}
			}
			o.Unsynced = o.Unsynced || a.Unsynced
			if a.IO == nil {
				io |= diskfs.All
			} else {
				io |= a.IO(f)
			}
		}
	}
	if d := sc.Cluster.DiskDelay; !d.IsZero() {
		if o == nil {
			o = &cluster.DiskOptions{Seed: uint64(sc.Seed)}
		}
		o.Standing = map[diskfs.Op]time.Duration{diskfs.Fsync: d.Fsync.D(), diskfs.Write: d.Write.D(), diskfs.Read: d.Read.D()}
		if d.Write > 0 {
			io |= diskfs.Write
		}
		if d.Read > 0 {
			io |= diskfs.Read
		}
	}
	if o != nil {
		// Faults on fsyncs alone (a slow disk): the kernel reads and writes past the layer.
		o.Passthrough = io&^diskfs.Fsync == 0
	}
	return o
}

// quorumGuard refuses, before the run, a fault that would leave fewer than a quorum of members
// reachable, unless it says allow-quorum-loss (validation does it for clusters of a known size;
// a remote cluster's size is known once it is reached).
func quorumGuard(sc *scenarios.Scenario, size int) error {
	var errs []error
	seen := map[string]bool{}
	for _, f := range sc.Faults {
		if f.AllowQuorumLoss {
			continue
		}
		if lose, why := scenarios.QuorumLoss(f, size); lose {
			e := fmt.Sprintf("%s (line %d): %s: the quorum guard refuses it; set allow-quorum-loss: true on the fault to run it anyway", f.Path(), f.Line, why)
			if !seen[e] { // once per fault of the file, not per occurrence
				seen[e] = true
				errs = append(errs, errors.New(e))
			}
		}
	}
	return errors.Join(errs...)
}

// guard checks, before an injection, that the cluster has a leader and every member answers: it
// waits up to 2s for that (a member restarted by the previous fault may still be starting), and
// says why not.
func (r *run) guard(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := r.cl.Health(ctx)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// claimPrefix refuses to start when the run's key prefix already holds keys: they are another
// run's (or someone's), and the harness would mix its writes with them and delete them at the end.
func (r *run) claimPrefix(ctx context.Context) error {
	cli, err := loadgen.MeasureClientVia(r.cl.Endpoints(), r.cl.LoadConn())
	if err != nil {
		return err
	}
	defer cli.Close()
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := cli.Get(gctx, r.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("reading the run's key prefix %s: %w", r.prefix, cluster.ClientProblem(err))
	}
	if resp.Count > 0 {
		return fmt.Errorf("the key prefix %s already holds %d keys that are not this run's: refusing to write there (choose another --run-id, or delete them)", r.prefix, resp.Count)
	}
	return nil
}

// deletePrefix deletes every key the run wrote. It tries a few times: at the end of a run a
// client's TLS handshake and token may take longer than one dial timeout on a loaded machine.
func (r *run) deletePrefix(ctx context.Context) (int64, error) {
	return cluster.DeletePrefix(ctx, r.cl.Endpoints(), r.cl.LoadConn(), r.prefix)
}

// alarms are the alarms the members reported in their last status ("NOSPACE", "CORRUPT").
func (r *run) alarms() []string {
	var out []string
	if r.watcher == nil {
		return nil
	}
	for _, name := range r.cl.Names() {
		st, ok := r.watcher.Latest(name)
		if !ok {
			continue
		}
		for _, e := range st.Errors {
			if _, a, ok := strings.Cut(e, "alarm:"); ok {
				a = strings.TrimSpace(a)
				if !slices.Contains(out, a) {
					out = append(out, a)
				}
			}
		}
	}
	return out
}
