package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// load is the run's load: the KV load, the workload blocks, and the files their latencies stream to.
type load struct {
	r           *run
	kv          *loadgen.KV
	hlog, hists *os.File
	// seenAtStart is etcd's own count of leader changes on each member as the load started.
	seenAtStart map[string]counterAt
}

// prepareLoad starts the load's clock and makes what it drives and records: the recorder (streaming
// latency.hlog and histograms.hlog), kv-safety's log, the KV load and the workload blocks.
func (r *run) prepareLoad(ctx context.Context, res *reports.Result) (*load, error) {
	sc, w := r.sc, r.sc.Workload
	ld := &load{r: r}
	var err error
	if ld.hlog, err = os.Create(filepath.Join(r.opts.Out, "latency.hlog")); err != nil {
		return nil, err
	}
	ld.seenAtStart = r.etcdLeaderChanges(ctx)
	r.loadStart = time.Now()
	res.LoadStartedAt = r.loadStart.UTC()
	r.events.SetZero(r.loadStart)
	r.rec = loadgen.NewRecorder(r.loadStart, ld.hlog)
	r.recs, r.recName = []*loadgen.Recorder{r.rec}, []string{""}
	// histograms.hlog is written as the run goes: each phase once no op due in it can still end.
	if ld.hists, err = os.Create(filepath.Join(r.opts.Out, "histograms.hlog")); err != nil {
		ld.close()
		return nil, err
	}
	if err := r.rec.StreamHistograms(ld.hists); err != nil {
		ld.close()
		return nil, err
	}
	if sc.Checks.KVSafety && slices.ContainsFunc(w.Mix, func(o scenarios.Op) bool { return o.Op != "get" }) {
		r.safety = loadgen.NewSafetyLog() // a mix without writes has nothing to lose
		r.safety.Window = safetyWindow(sc)
		r.safety.TrackRevisions = slices.ContainsFunc(sc.Faults, func(f scenarios.Fault) bool {
			a := faults.LookupAction(f.Action)
			return a != nil && a.LosesWrites
		})
	}
	ld.kv, err = loadgen.NewKV(loadgen.Config{Endpoints: r.cl.Endpoints(), Clients: w.Clients, Connections: w.Connections, Rate: w.Rate,
		Timeout: w.Timeout.D(), Retry: loadgen.PolicyOf(w.Retry), Mix: w.Mix, Seed: uint64(sc.Seed), Safety: r.safety, Conn: r.cl.LoadConn(),
		KeyPrefix: r.prefix + "kv/", Monitor: r.mon}, r.rec)
	if err != nil {
		ld.close()
		return nil, err
	}
	r.kv = ld.kv
	if err := r.startWorkloads(); err != nil {
		ld.close()
		return nil, err
	}
	for _, rec := range r.recs {
		rec.SettleAfter(settleAfter(sc))
	}
	return ld, nil
}

// close releases the load's clients and files.
func (ld *load) close() {
	for _, wl := range ld.r.workloads {
		wl.Close()
	}
	if ld.kv != nil {
		ld.kv.Close()
	}
	if ld.hists != nil {
		ld.hists.Close()
	}
	ld.hlog.Close()
}

// runLoad drives the load for workload.duration, with its clock (warm-up, progress line), the
// fault schedule and the stop conditions beside it, and returns when it ended: at its duration,
// at an abort, or at an interrupt. It then records what etcd saw of it and the peer round trip.
func (r *run) runLoad(ctx context.Context, ld *load, res *reports.Result) time.Time {
	sc, w := r.sc, r.sc.Workload
	// An abort cancels runCtx: the schedule stops, the load stops, and abort heals every fault.
	runCtx, abortRun := context.WithCancel(ctx)
	defer abortRun()
	r.mu.Lock()
	r.runCtx, r.abortRun = runCtx, abortRun
	r.mu.Unlock()
	if len(sc.Abort) > 0 {
		st := newStopper(sc.Abort, r.prober.Settled, r.abort)
		r.rec.OnInterval(st.add, st.ops())
		go st.run(runCtx, func() time.Time {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.warmEnd
		}, r.alarms)
	}
	loadEnd := r.loadStart.Add(w.Duration.D())
	loadCtx, stopLoad := context.WithDeadline(runCtx, loadEnd)
	defer stopLoad()
	r.events.Log(r.loadStart, "load_started", "duration", w.Duration.String(), "warmup", w.Warmup.String(), "rate", w.Rate, "clients", w.Clients)
	r.setPhase("warmup")
	var wg sync.WaitGroup
	wg.Add(4 + len(r.workloads))
	go func() { defer wg.Done(); r.backups(loadCtx) }()
	go func() { defer wg.Done(); ld.kv.Run(loadCtx, r.loadStart) }()
	for _, wl := range r.workloads {
		go func() { defer wg.Done(); wl.Run(loadCtx, r.loadStart) }()
	}
	go func() { defer wg.Done(); r.tick(loadCtx, loadEnd) }()
	go func() { defer wg.Done(); r.schedule(loadCtx, runCtx) }()
	wg.Wait()
	end := time.Now()
	r.rec.Flush(end)
	r.prober.StopCounting()
	r.events.Log(end, "load_ended")
	// etcd's own count of the leader changes each member saw during the load: a witness for
	// leader_changes. A member restarted meanwhile counts from its restart, so it is left out.
	for name, after := range r.etcdLeaderChanges(ctx) {
		if before, ok := ld.seenAtStart[name]; ok && before.pid == after.pid && after.n >= before.n {
			if res.Leader.SeenByEtcd == nil {
				res.Leader.SeenByEtcd = map[string]int{}
			}
			res.Leader.SeenByEtcd[name] = int(after.n - before.n)
		}
	}
	res.Cluster.PeerRTT = r.peerRTT(ctx)
	return end
}

// tick closes one-second latency intervals, ends the warm-up and draws the progress line.
func (r *run) tick(ctx context.Context, loadEnd time.Time) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	warm := time.NewTimer(r.sc.Workload.Warmup.D())
	defer warm.Stop()
	total := r.sc.Workload.Duration.D()
	for {
		select {
		case <-ctx.Done():
			if r.opts.Progress != nil {
				fmt.Fprint(r.opts.Progress, "\r\033[K")
			}
			return
		case now := <-warm.C:
			r.mu.Lock()
			r.warmEnd = now
			r.mu.Unlock()
			r.setRecPhase("before", now)
			r.prober.ResetCounts()
			r.setPhase("before")
			r.events.Log(now, "phase", "name", "before")
		case now := <-t.C:
			r.rec.Flush(now)
			if r.opts.Progress != nil {
				ops, failed := r.rec.OpsPerSecondLast()
				leader, term := r.watcher.Leader()
				r.mu.Lock()
				phase, active := r.phase, r.active
				r.mu.Unlock()
				if active != "" {
					active = "  fault: " + active
				}
				fmt.Fprintf(r.opts.Progress, "\r\033[K%3.0fs/%.0fs  %-12s %6.0f ops/s  errors %d  leader %s (term %d)%s",
					now.Sub(r.loadStart).Seconds(), total.Seconds(), phase, ops, failed, orDash(leader), term, active)
			}
		}
	}
}

// settleAfter is how long after a phase ends an op due in it may still complete: every attempt's
// timeout and the longest backoff between them (or the retry deadline), of the KV load and every
// workload, twice, and at least 30s.
func settleAfter(sc *scenarios.Scenario) time.Duration {
	longest := func(timeout scenarios.Duration, r scenarios.Retry) time.Duration {
		if r.Deadline > 0 {
			return r.Deadline.D()
		}
		return time.Duration(r.Attempts) * (timeout.D() + r.MaxBackoff.D())
	}
	d := longest(sc.Workload.Timeout, sc.Workload.Retry)
	for _, b := range sc.Workloads {
		d = max(d, longest(b.Timeout, b.Retry))
	}
	return max(2*d, 30*time.Second)
}

// safetyWindow is how long kv-safety keeps a write of open fate: the default, or longer than the
// scenario's longest fault and its recovery (a proposal held through a fault may land at its heal).
func safetyWindow(sc *scenarios.Scenario) time.Duration {
	longest := time.Duration(0)
	for _, f := range sc.Faults {
		longest = max(longest, f.Duration.D())
	}
	return max(loadgen.DefaultSafetyWindow, longest+sc.Workload.Recovery.D()+2*sc.Workload.Timeout.D())
}
