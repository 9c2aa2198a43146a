package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/etcd-chaos/etcd-chaos/cluster"
	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// open makes the run folder and what the run appends to as it goes: scenario.yaml, events.jsonl
// and the fault ledger.
func open(sc *scenarios.Scenario, opts Options) (*run, error) {
	r := &run{sc: sc, opts: opts, log: opts.Logger, mon: &loadgen.Monitor{}}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return nil, fmt.Errorf("%w: creating the run folder: %v", ErrInfra, err)
	}
	if err := os.WriteFile(filepath.Join(opts.Out, "scenario.yaml"), sc.Source, 0o644); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInfra, err)
	}
	var err error
	if r.events, err = reports.OpenEventLog(filepath.Join(opts.Out, "events.jsonl")); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInfra, err)
	}
	if r.ledger, err = faults.OpenLedger(filepath.Join(opts.Out, "ledger.jsonl")); err != nil {
		r.events.Close()
		return nil, fmt.Errorf("%w: %v", ErrInfra, err)
	}
	if opts.MetricsAddr != "" {
		// Bound now, before any member port is handed out: a member started later cannot take it.
		if r.metricsLn, err = net.Listen("tcp", opts.MetricsAddr); err != nil {
			r.close()
			return nil, fmt.Errorf("%w: --metrics-addr %s: %v", ErrInfra, opts.MetricsAddr, err)
		}
	}
	if r.opts.RunID == "" {
		r.opts.RunID = NewRunID()
	}
	r.prefix = loadgen.DefaultPrefix + r.opts.RunID + "/"
	return r, nil
}

// close closes the run folder's logs, after the teardown has written its last events.
func (r *run) close() {
	if r.metricsLn != nil {
		r.metricsLn.Close() // the run ended before its live metrics served
	}
	r.ledger.Close()
	r.events.Close()
}

// newResult is the result as far as the scenario says.
func (r *run) newResult() *reports.Result {
	sc := r.sc
	return &reports.Result{Version: reports.ResultVersion, Scenario: sc.Name, Description: sc.Description, File: sc.File,
		Fingerprint: sc.Fingerprint(), Seed: sc.Seed, StartedAt: time.Now().UTC(), RunID: r.opts.RunID, KeyPrefix: r.prefix}
}

// newCluster makes the scenario's provider's cluster, with a proxy only where a fault of the
// scenario needs one: the harness stays out of the path it measures.
func (r *run) newCluster(res *reports.Result) error {
	sc, opts := r.sc, r.opts
	lopts := cluster.LocalOptions{Dir: opts.Out, Size: sc.Cluster.Size, Etcd: sc.Cluster.Etcd, EtcdBinary: sc.Cluster.EtcdBinary,
		MemberBinaries: sc.Cluster.MemberBinaries, NodeCommand: opts.NodeCommand, Token: fmt.Sprintf("chaos-%s-%d", sc.Name, time.Now().UnixNano()), Logger: r.log,
		Network: sc.Cluster.Network, Subnet: sc.Cluster.Subnet, Seed: sc.Seed}
	for _, f := range sc.Faults {
		if a := f.Rules(); a != nil && a.OnLinks {
			if f.Client.Kind != "" {
				lopts.ClientProxy = true
			} else {
				lopts.PeerProxy = true
			}
		}
	}
	if d := sc.Cluster.PeerDelay; !d.IsZero() {
		lopts.PeerProxy = true
		lopts.PeerDelay = faults.Shape{Delay: time.Duration(d.Latency), Jitter: time.Duration(d.Jitter)}
	}
	lopts.Disk = diskOptions(sc)
	copts, err := cluster.OptionsFor(sc, lopts, opts.RunID, r.prefix)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInput, err)
	}
	if r.cl, err = cluster.New(sc.Cluster.Provider, copts); err != nil {
		return fmt.Errorf("%w: %v", ErrInfra, err)
	}
	res.Cluster = describeCluster(sc, r.cl)
	return nil
}

// startCluster starts the members (or reaches a cluster the team runs, holds its faults against
// the quorum guard and claims the run's key prefix), checks that each network fault's backend can
// do it here, and waits until the cluster is ready. ready is false when the run cannot go on: the
// verdict says why (interrupted before the cluster was ready, or an error, returned too).
func (r *run) startCluster(ctx context.Context, res *reports.Result) (ready bool, err error) {
	sc := r.sc
	refuse := func(kind error, err error) (bool, error) {
		res.Verdict, res.Reason = reports.VerdictError, err.Error()
		return false, fmt.Errorf("%w: %v", kind, err)
	}
	if err := r.cl.Start(ctx); err != nil {
		return refuse(ErrInfra, err)
	}
	res.Cluster = describeCluster(sc, r.cl)
	if cluster.CapabilitiesOf(sc.Cluster.Provider).Shared {
		if err := quorumGuard(sc, len(r.cl.Names())); err != nil {
			return refuse(ErrInput, err)
		}
		if err := r.claimPrefix(ctx); err != nil {
			return refuse(ErrInfra, err)
		}
		r.prefixClaimed = true // the teardown deletes it, after healing every fault
	}
	r.events.Log(time.Now(), "cluster_started", "members", r.cl.Names(), "network", sc.Cluster.Network,
		"client_path", res.Cluster.ClientPath, "peer_path", res.Cluster.PeerPath)
	if err := r.checkBackends(); err != nil {
		return refuse(ErrInfra, err)
	}
	if err := r.cl.WaitReady(ctx, sc.Cluster.ReadyTimeout.D(), r.prefix+"ready"); err != nil {
		if ctx.Err() != nil {
			res.Verdict, res.Reason = reports.VerdictInterrupted, "interrupted before the cluster was ready"
			return false, nil
		}
		var nr *cluster.NotReadyError
		if errors.As(err, &nr) && nr.Elections != nil {
			res.Leader.Unheld = nr.Elections
		}
		return refuse(ErrInfra, err)
	}
	r.events.Log(time.Now(), "cluster_ready")
	return true, nil
}

// teardown heals every fault still applied, deletes a remote run's keys, stops the cluster (and
// removes its data after a pass) and writes result.json, on a context that ignores the run's
// cancellation, so an interrupt still heals. It returns err joined with whatever failed here.
func (r *run) teardown(ctx context.Context, res *reports.Result, err error) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
	defer cancel()
	by := "teardown"
	if ctx.Err() != nil {
		by = "interrupt"
	}
	if herr := r.healAll(cctx, by); herr != nil {
		err = errors.Join(err, fmt.Errorf("%w: healing: %v", ErrInfra, herr))
	}
	// A remote run's keys go after its faults are healed (a Ctrl-C mid-fault included), and
	// before anything else can fail: they are on a cluster the team runs.
	if r.prefixClaimed && !r.opts.KeepData {
		if n, derr := r.deletePrefix(cctx); derr != nil {
			r.log.Warn("deleting the run's keys", "prefix", r.prefix, "err", derr)
			r.events.Log(time.Now(), "keys_kept", "prefix", r.prefix, "error", derr.Error())
		} else {
			r.events.Log(time.Now(), "keys_deleted", "prefix", r.prefix, "deleted", n)
		}
	}
	if res != nil {
		r.mu.Lock()
		for i := range res.Faults {
			if i < len(r.faults) {
				res.Faults[i].HealedAtS = r.faults[i].record.HealedAtS
			}
		}
		r.mu.Unlock()
	}
	if cerr := r.cl.Close(cctx, 2*time.Second); cerr != nil {
		err = errors.Join(err, fmt.Errorf("%w: stopping members: %v", ErrInfra, cerr))
	}
	r.events.Log(time.Now(), "cluster_stopped")
	if res != nil && (res.Passed || r.opts.DiscardData) && !r.opts.KeepData {
		if rerr := r.cl.RemoveData(); rerr != nil {
			r.log.Warn("removing data dirs", "err", rerr)
		}
	}
	if res != nil {
		res.EndedAt = time.Now().UTC()
		if werr := res.WriteJSON(r.opts.Out); werr != nil {
			err = errors.Join(err, fmt.Errorf("%w: %v", ErrInfra, werr))
		}
	}
	return err
}
