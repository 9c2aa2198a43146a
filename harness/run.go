package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// Options configures one run.
type Options struct {
	Out         string   // run folder (created)
	NodeCommand []string // see LocalOptions
	KeepData    bool     // keep member data dirs after a passing run
	// DiscardData removes the member data dirs after any run, not only a passing one (a sweep's many
	// runs would otherwise fill the disk at about 120MB a member).
	DiscardData bool
	Progress    io.Writer
	Logger      *slog.Logger
	// RunID names the run; it writes only under the key prefix chaos/<RunID>/ (default: made up).
	RunID string
	// MetricsAddr serves live Prometheus metrics at http://MetricsAddr/metrics during the run.
	MetricsAddr string
}

// ErrInput marks problems with what the user asked for that only show once the cluster is known
// (a fault that would break a remote cluster's quorum, a missing password variable): exit code 2.
var ErrInput = errors.New("bad input")

// NewRunID makes a run id: the UTC time and four random hex digits.
func NewRunID() string {
	return fmt.Sprintf("%s-%04x", time.Now().UTC().Format("20060102-150405"), rand.Uint32()&0xffff)
}

// ErrInfra marks errors where the harness or the cluster could not run (exit code 3).
var ErrInfra = errors.New("the harness or the cluster could not run")

type faultRun struct {
	index    int
	spec     scenarios.Fault
	inj      *faults.Injection
	record   reports.FaultRecord
	failover *loadgen.Failover // fed for every fault: what it cost is decided from what was seen
	injAt    time.Time         // when the fault's acting call began (zero: it never ran)
	healAt   time.Time         // when the heal's acting call began
	recov    []reports.Recovery
	// result is what the fault cost, taken once its window ended (settleFaults): from then on its
	// tracker is no longer fed and keeps nothing.
	result    *loadgen.FailoverResult
	windowEnd time.Time
}

type run struct {
	sc     *scenarios.Scenario
	opts   Options
	log    *slog.Logger
	events *reports.EventLog
	ledger *faults.Ledger
	cl     Cluster

	watcher *loadgen.Watcher
	prober  *loadgen.Prober
	rec     *loadgen.Recorder
	recs    []*loadgen.Recorder // rec and each kv workload's own: they share the phases
	recName []string            // each of recs' workload name ("" for the main KV load)
	// prefixClaimed: a remote run claimed its key prefix, which teardown deletes after healing.
	prefixClaimed bool
	mon           *loadgen.Monitor
	kv            *loadgen.KV
	safety        *loadgen.SafetyLog
	scraper       *memberScraper // nil: cluster.scrape-interval 0s

	workloads []loadgen.Workload
	outcomes  []loadgen.Outcome

	loadStart time.Time
	mu        sync.Mutex
	faults    []*faultRun
	active    string // for the progress line
	phase     string
	recovWG   sync.WaitGroup
	recovCtx  context.Context // recovery probes end with it
	runErrs   []error

	prefix   string // every key the run writes is under it: chaos/<run id>/
	warmEnd  time.Time
	runCtx   context.Context // the schedule's: an abort cancels it
	abortRun context.CancelFunc
	aborted  *reports.Abort
}

// Run runs a scenario: start the cluster, warm up, drive the load, inject and heal the faults on
// schedule, measure recovery, hold the thresholds, and tear everything down. The result is returned
// whenever the run got far enough to have one; err wraps ErrInfra when the harness or cluster failed.
// When ctx is cancelled (SIGINT) every fault is healed and the cluster stopped on a fresh context.
func Run(ctx context.Context, sc *scenarios.Scenario, opts Options) (res *reports.Result, err error) {
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
	if r.events, err = reports.OpenEventLog(filepath.Join(opts.Out, "events.jsonl")); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInfra, err)
	}
	defer r.events.Close()
	if r.ledger, err = faults.OpenLedger(filepath.Join(opts.Out, "ledger.jsonl")); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInfra, err)
	}
	defer r.ledger.Close()

	if opts.RunID == "" {
		opts.RunID = NewRunID()
		r.opts.RunID = opts.RunID
	}
	r.prefix = loadgen.DefaultPrefix + opts.RunID + "/"
	res = &reports.Result{Version: reports.ResultVersion, Scenario: sc.Name, Description: sc.Description, File: sc.File,
		Fingerprint: sc.Fingerprint(), Seed: sc.Seed, StartedAt: time.Now().UTC(), RunID: opts.RunID, KeyPrefix: r.prefix}
	lopts := LocalOptions{Dir: opts.Out, Size: sc.Cluster.Size, Etcd: sc.Cluster.Etcd, EtcdBinary: sc.Cluster.EtcdBinary,
		NodeCommand: opts.NodeCommand, Token: fmt.Sprintf("chaos-%s-%d", sc.Name, time.Now().UnixNano()), Logger: r.log,
		Network: sc.Cluster.Network, Subnet: sc.Cluster.Subnet, Seed: sc.Seed}
	// A proxy only where a fault of the scenario needs one: the harness stays out of the path it measures.
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
	copts, err := clusterOptions(sc, lopts, opts.RunID, r.prefix)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInput, err)
	}
	if r.cl, err = NewCluster(sc.Cluster.Provider, copts); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInfra, err)
	}
	res.Cluster = describeCluster(sc, r.cl)

	// Teardown runs on a context that ignores the run's cancellation, so an interrupt still heals.
	defer func() {
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
		if r.prefixClaimed && !opts.KeepData {
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
		if res != nil && (res.Passed || opts.DiscardData) && !opts.KeepData {
			if rerr := r.cl.RemoveData(); rerr != nil {
				r.log.Warn("removing data dirs", "err", rerr)
			}
		}
		if res != nil {
			res.EndedAt = time.Now().UTC()
			if werr := res.WriteJSON(opts.Out); werr != nil {
				err = errors.Join(err, fmt.Errorf("%w: %v", ErrInfra, werr))
			}
		}
	}()

	if err := r.cl.Start(ctx); err != nil {
		res.Verdict, res.Reason = reports.VerdictError, err.Error()
		return res, fmt.Errorf("%w: %v", ErrInfra, err)
	}
	res.Cluster = describeCluster(sc, r.cl)
	if providerOf(sc).caps.Shared {
		if err := quorumGuard(sc, len(r.cl.Names())); err != nil {
			res.Verdict, res.Reason = reports.VerdictError, err.Error()
			return res, fmt.Errorf("%w: %v", ErrInput, err)
		}
		if err := r.claimPrefix(ctx); err != nil {
			res.Verdict, res.Reason = reports.VerdictError, err.Error()
			return res, fmt.Errorf("%w: %v", ErrInfra, err)
		}
		r.prefixClaimed = true // the teardown deletes it, after healing every fault
	}
	r.events.Log(time.Now(), "cluster_started", "members", r.cl.Names(), "network", sc.Cluster.Network,
		"client_path", res.Cluster.ClientPath, "peer_path", res.Cluster.PeerPath)
	if err := r.checkBackends(); err != nil {
		res.Verdict, res.Reason = reports.VerdictError, err.Error()
		return res, fmt.Errorf("%w: %v", ErrInfra, err)
	}
	if err := r.cl.WaitReady(ctx, sc.Cluster.ReadyTimeout.D(), r.prefix+"ready"); err != nil {
		if ctx.Err() != nil {
			res.Verdict, res.Reason = reports.VerdictInterrupted, "interrupted before the cluster was ready"
			return res, nil
		}
		var nr *NotReadyError
		if errors.As(err, &nr) && nr.Elections != nil {
			res.Leader.Unheld = nr.Elections
		}
		res.Verdict, res.Reason = reports.VerdictError, err.Error()
		return res, fmt.Errorf("%w: %v", ErrInfra, err)
	}
	r.events.Log(time.Now(), "cluster_ready")
	return r.drive(ctx, res)
}

func (r *run) drive(ctx context.Context, res *reports.Result) (*reports.Result, error) {
	sc := r.sc
	w := sc.Workload
	var err error
	r.watcher, err = loadgen.NewWatcher(r.cl.ClientURLs(), r.cl.Names(), r.mon, func(c loadgen.LeaderChange) {
		r.events.Log(c.At, "leader_changed", "from", c.From, "to", c.To, "term", c.ToTerm, "reported_by", c.ReportedBy)
	}, r.cl.LoadConn())
	if err != nil {
		return failInfra(res, err)
	}
	defer r.watcher.Close()
	if r.prober, err = loadgen.NewProber(r.cl.Endpoints(), r.mon, w.Prober.Interval.D(), w.Prober.Timeout.D(), r.cl.LoadConn()); err != nil {
		return failInfra(res, err)
	}
	defer r.prober.Close()
	r.prober.Key = r.prefix + "probe"
	hlog, err := os.Create(filepath.Join(r.opts.Out, "latency.hlog"))
	if err != nil {
		return failInfra(res, err)
	}
	defer hlog.Close()

	seenAtStart := r.etcdLeaderChanges(ctx)
	r.loadStart = time.Now()
	res.LoadStartedAt = r.loadStart.UTC()
	r.events.SetZero(r.loadStart)
	r.rec = loadgen.NewRecorder(r.loadStart, hlog)
	r.recs, r.recName = []*loadgen.Recorder{r.rec}, []string{""}
	// histograms.hlog is written as the run goes: each phase once no op due in it can still end.
	hists, err := os.Create(filepath.Join(r.opts.Out, "histograms.hlog"))
	if err != nil {
		return failInfra(res, err)
	}
	defer hists.Close()
	if err := r.rec.StreamHistograms(hists); err != nil {
		return failInfra(res, err)
	}
	if sc.Checks.KVSafety && slices.ContainsFunc(w.Mix, func(o scenarios.Op) bool { return o.Op != "get" }) {
		r.safety = loadgen.NewSafetyLog() // a mix without writes has nothing to lose
		r.safety.Window = safetyWindow(sc)
	}
	kv, err := loadgen.NewKV(loadgen.Config{Endpoints: r.cl.Endpoints(), Clients: w.Clients, Connections: w.Connections, Rate: w.Rate,
		Timeout: w.Timeout.D(), Retry: loadgen.PolicyOf(w.Retry), Mix: w.Mix, Seed: uint64(sc.Seed), Safety: r.safety, Conn: r.cl.LoadConn(), KeyPrefix: r.prefix + "kv/", Monitor: r.mon}, r.rec)
	if err != nil {
		return failInfra(res, err)
	}
	defer kv.Close()
	r.kv = kv
	if err := r.startWorkloads(); err != nil {
		return failInfra(res, err)
	}
	for _, rec := range r.recs {
		rec.SettleAfter(settleAfter(sc))
	}
	defer func() {
		for _, wl := range r.workloads {
			wl.Close()
		}
	}()

	recovCtx, stopRecovery := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRecovery()
	r.recovCtx = recovCtx
	measCtx, stopMeasuring := context.WithCancel(ctx)
	var measWG sync.WaitGroup
	measWG.Add(2)
	go func() { defer measWG.Done(); r.watcher.Run(measCtx) }()
	go func() { defer measWG.Done(); r.prober.Run(measCtx) }()
	defer func() { stopMeasuring(); measWG.Wait() }()
	if every := sc.Cluster.ScrapeInterval.D(); every > 0 {
		if r.scraper, err = r.newMemberScraper(); err != nil {
			return failInfra(res, err)
		}
		defer func() {
			if err := r.scraper.close(); err != nil {
				r.log.Warn("members.jsonl", "err", err)
			}
		}()
		measWG.Add(1)
		go func() { defer measWG.Done(); r.scraper.run(measCtx, every) }()
	}

	if r.opts.MetricsAddr != "" {
		lm, err := r.startMetrics(r.opts.MetricsAddr)
		if err != nil {
			return failInfra(res, err)
		}
		defer lm.stop()
	}
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
	var loadWG sync.WaitGroup
	loadWG.Add(3 + len(r.workloads))
	go func() { defer loadWG.Done(); kv.Run(loadCtx, r.loadStart) }()
	for _, wl := range r.workloads {
		go func() { defer loadWG.Done(); wl.Run(loadCtx, r.loadStart) }()
	}
	go func() { defer loadWG.Done(); r.tick(loadCtx, loadEnd) }()
	go func() { defer loadWG.Done(); r.schedule(loadCtx, runCtx) }()
	loadWG.Wait()
	end := time.Now()
	r.rec.Flush(end)
	r.prober.StopCounting()
	r.events.Log(end, "load_ended")
	// etcd's own count of the leader changes each member saw during the load: a witness for
	// leader_changes. A member restarted meanwhile counts from its restart, so it is left out.
	for name, after := range r.etcdLeaderChanges(ctx) {
		if before, ok := seenAtStart[name]; ok && before.pid == after.pid && after.n >= before.n {
			if res.Leader.SeenByEtcd == nil {
				res.Leader.SeenByEtcd = map[string]int{}
			}
			res.Leader.SeenByEtcd[name] = int(after.n - before.n)
		}
	}

	res.Cluster.PeerRTT = r.peerRTT(ctx)
	// Recovery measurements may still be running: give them workload.recovery at most.
	if ctx.Err() == nil {
		r.waitMeasurements(ctx, w.Recovery.D())
	}
	stopRecovery()
	r.recovWG.Wait()
	if ctx.Err() == nil {
		r.check(ctx, res)
	}
	stopMeasuring()
	measWG.Wait()
	return r.finish(ctx, res, end)
}

type counterAt struct {
	n   float64
	pid int
}

// peerRTT is the peer round trip etcd itself measured: etcd probes each peer every 4s and records
// the smoothed round trip (SRTT) in etcd_network_peer_round_trip_time_seconds 5s after a peer is
// added and then every 30s (every 5s while the prober is unhealthy). A prober with no successful
// probe yet records 0, which the mean leaves out (the first bucket, at most 0.1ms, is not counted;
// its few real samples still add their time to the sum). Nil when no member recorded a round trip.
func (r *run) peerRTT(ctx context.Context) *reports.PeerRTT {
	var sum, count, zeros float64
	const metric = "etcd_network_peer_round_trip_time_seconds"
	for _, m := range r.cl.Members() {
		s, serr := r.cl.MemberMetric(ctx, m.Name(), metric+"_sum")
		n, nerr := r.cl.MemberMetric(ctx, m.Name(), metric+"_count")
		z, zerr := r.cl.MemberMetric(ctx, m.Name(), metric+`_bucket{le="0.0001"}`)
		if serr == nil && nerr == nil && zerr == nil {
			sum, count, zeros = sum+s, count+n, zeros+z
		}
	}
	if count-zeros <= 0 {
		return nil
	}
	return &reports.PeerRTT{MeanMs: math.Round(sum/(count-zeros)*1e6) / 1e3, Samples: int(count - zeros)}
}

// etcdLeaderChanges reads etcd_server_leader_changes_seen_total from every member that answers.
func (r *run) etcdLeaderChanges(ctx context.Context) map[string]counterAt {
	out := map[string]counterAt{}
	for _, m := range r.cl.Members() {
		if v, err := r.cl.MemberMetric(ctx, m.Name(), "etcd_server_leader_changes_seen_total"); err == nil {
			out[m.Name()] = counterAt{n: v, pid: m.PID()}
		}
	}
	return out
}

// faultWindowEnd is where fault k's window ends: at the next fault, its heal plus
// workload.recovery, or the load's end, whichever comes first.
func (r *run) faultWindowEnd(frs []*faultRun, k int, end time.Time) time.Time {
	fr, windowEnd := frs[k], end
	if k+1 < len(frs) && !frs[k+1].injAt.IsZero() && frs[k+1].injAt.Before(windowEnd) {
		windowEnd = frs[k+1].injAt
	}
	if !fr.healAt.IsZero() {
		if w := fr.healAt.Add(r.sc.Workload.Recovery.D()); w.Before(windowEnd) {
			windowEnd = w
		}
	}
	return windowEnd
}

func failInfra(res *reports.Result, err error) (*reports.Result, error) {
	res.Verdict, res.Reason = reports.VerdictError, err.Error()
	return res, fmt.Errorf("%w: %v", ErrInfra, err)
}

func (r *run) setPhase(p string) {
	r.mu.Lock()
	r.phase = p
	r.mu.Unlock()
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

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// schedule fires the faults in order (validation guarantees they do not overlap). A fault fires only
// while the load runs (loadCtx); once fired it is held and healed on the run's context, so a heal due
// at the load's last instant still happens on schedule and is measured.
func (r *run) schedule(loadCtx, ctx context.Context) {
	for i, f := range r.sc.Faults {
		if !sleepUntil(loadCtx, r.loadStart.Add(f.At.D())) {
			return
		}
		r.fire(ctx, i, f)
		if ctx.Err() != nil {
			return
		}
	}
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

func (r *run) sinceStart(t time.Time) float64 {
	return math.Round(t.Sub(r.loadStart).Seconds()*1000) / 1000
}

// fire resolves, injects, holds and heals one fault, and starts its recovery measurements.
func (r *run) fire(ctx context.Context, i int, f scenarios.Fault) {
	fr := &faultRun{index: i, spec: f, record: reports.FaultRecord{Index: i, Template: f.Template, Occurrence: f.Occurrence, Action: f.Action, Target: f.Target.String()}}
	r.mu.Lock()
	r.faults = append(r.faults, fr)
	r.mu.Unlock()
	fail := func(err error) {
		fr.record.Error = err.Error()
		r.events.Log(time.Now(), "fault_error", "fault", i, "error", err.Error())
		r.mu.Lock()
		r.runErrs = append(r.runErrs, err)
		r.mu.Unlock()
	}
	// The quorum guard: a fault fires only into a cluster with a leader and every member answering.
	if err := r.guard(ctx); err != nil {
		fr.record.Skipped = err.Error()
		r.events.Log(time.Now(), "fault_skipped", "fault", i, "action", f.Action, "reason", err.Error())
		r.log.Warn("fault skipped by the quorum guard", "fault", i, "reason", err)
		return
	}
	p, err := r.plan(ctx, i, f)
	if err != nil {
		fail(err)
		return
	}
	inj := p.inj
	fr.inj = inj
	fr.record.Target = inj.Target
	fr.record.Members = inj.MemberNames()
	fr.record.WasLeader = slices.Contains(fr.record.Members, p.leader)
	if p.links != nil {
		fr.record.Network = p.inj.Network()
		for _, l := range p.links {
			fr.record.Links = append(fr.record.Links, l.String())
		}
	}
	// Every fault is watched for what it costs, from before its injection: an election and the
	// write outage are what was seen, never what the fault's shape suggests.
	fr.failover = &loadgen.Failover{OldLeader: p.leader, OldTerm: p.term}
	r.mon.Track(fr.failover)
	label := fmt.Sprintf("#%d %s %s", i, f.Action, strings.Join(fr.record.Members, ","))
	r.setRecPhase(fmt.Sprintf("during #%d", i), time.Now())
	r.mu.Lock()
	r.phase, r.active = fmt.Sprintf("during #%d", i), label
	r.mu.Unlock()
	injErr := inj.Inject(ctx)
	// The fault's time is its acting call's (the signal, route change or API call), not the
	// ledger's fsync before it nor the proof after it.
	st := inj.Injected()
	now := st.Start
	if now.IsZero() {
		now = time.Now()
	} else {
		fr.record.CallMs = reports.Ms(st.End.Sub(st.Start))
	}
	fr.injAt = now
	fr.failover.Injected(now)
	r.mu.Lock()
	for _, prev := range r.faults {
		if prev != fr && prev.failover != nil {
			prev.failover.Close(now) // the next fault ends the previous one's window
		}
	}
	r.mu.Unlock()
	r.settleFaults()
	fr.record.AtS = r.sinceStart(now)
	r.events.Log(now, "fault_injected", "fault", i, "action", f.Action, "target", inj.Target, "members", fr.record.Members,
		"leader", p.leader, "term", p.term, "links", fr.record.Links)
	var bytesAt map[string]int64
	if injErr != nil {
		fail(injErr)
	} else {
		bytesAt = p.linkBytes()
		if f.Duration > 0 {
			sleepUntil(ctx, now.Add(f.Duration.D()))
		}
	}
	if bytesAt != nil && !faults.LookupAction(f.Action).Resets() {
		// What crossed each link while the fault held, counted by the proxy itself.
		fr.record.LinkBytes = map[string]int64{}
		var leaked []string
		for l, n := range p.linkBytes() {
			fr.record.LinkBytes[l] = n - bytesAt[l]
			if p.blackhole && n > bytesAt[l] {
				leaked = append(leaked, fmt.Sprintf("%s %d bytes", l, n-bytesAt[l]))
			}
		}
		if len(leaked) > 0 {
			sort.Strings(leaked)
			fail(fmt.Errorf("fault #%d: bytes crossed the partition: %s", i, strings.Join(leaked, ", ")))
		}
	}
	if ctx.Err() != nil && injErr == nil {
		// Interrupted or the load ended: teardown heals. A stop condition that tripped while this
		// injection was under way found nothing applied to heal: it is healed now.
		r.healIfAborted(ctx)
		return
	}
	by := "schedule"
	if injErr != nil {
		by = "error"
	}
	healCtx := context.WithoutCancel(ctx)
	target := r.leaderApplied()
	herr := inj.Heal(healCtx, by)
	healAt := inj.HealedStamp().Start
	if healAt.IsZero() {
		healAt = time.Now()
	}
	if f.Rules().Instant {
		healAt = now // over within Inject (a restart restarts, a reset closes): recovery counts from it
	}
	// Writes sent from here on count as restored even under the old leader (a resumed pause).
	fr.failover.Healed(healAt)
	healed := r.sinceStart(healAt)
	r.mu.Lock()
	fr.healAt = healAt
	fr.record.HealedAtS = &healed
	r.mu.Unlock()
	r.setRecPhase(fmt.Sprintf("after #%d", i), healAt)
	r.mu.Lock()
	r.phase, r.active = fmt.Sprintf("after #%d", i), ""
	r.mu.Unlock()
	if herr != nil {
		fail(herr)
		return
	}
	r.events.Log(healAt, "fault_healed", "fault", i, "by", by)
	if injErr != nil {
		return
	}
	urls := r.cl.ClientURLs()
	fr.recov = make([]reports.Recovery, len(fr.record.Members))
	for k, name := range fr.record.Members {
		r.recovWG.Add(1)
		go func() {
			defer r.recovWG.Done()
			cu, rr, err := loadgen.Recovery(r.recovCtx, urls[name], r.prober.Key, healAt, target, r.cl.LoadConn())
			if err != nil {
				r.log.Warn("recovery probe", "member", name, "err", err)
			}
			fr.recov[k] = reports.Recovery{Fault: i, Member: name, CaughtUpMs: reports.Ms(cu), ReadRestoredMs: reports.Ms(rr)}
			r.events.Log(time.Now(), "member_recovered", "fault", i, "member", name, "caught_up_ms", fr.recov[k].CaughtUpMs, "read_restored_ms", fr.recov[k].ReadRestoredMs)
		}()
	}
}

// healIfAborted heals every applied fault at once when a stop condition has tripped (abort healed
// what was applied when it tripped; a fault whose injection was still under way is applied after).
func (r *run) healIfAborted(ctx context.Context) {
	r.mu.Lock()
	a := r.aborted
	r.mu.Unlock()
	if a == nil {
		return
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if _, err := r.healActive(hctx, "abort"); err != nil {
		r.mu.Lock()
		r.runErrs = append(r.runErrs, fmt.Errorf("healing after the stop condition %q: %w", a.Condition, err))
		r.mu.Unlock()
	}
}

// settleFaults takes the result of every fault whose window has ended (the next fault fired, or its
// heal plus workload.recovery passed) and stops tracking it, so what a run keeps per fault does not
// grow with its length. The last faults are measured at the run's end.
func (r *run) settleFaults() {
	now := time.Now()
	r.mu.Lock()
	frs := append([]*faultRun(nil), r.faults...)
	r.mu.Unlock()
	never := now.Add(24 * time.Hour)
	for k, fr := range frs {
		if fr.result != nil || fr.failover == nil || fr.inj == nil || fr.record.Error != "" || fr.injAt.IsZero() {
			continue
		}
		nextFired := k+1 < len(frs) && !frs[k+1].injAt.IsZero()
		r.mu.Lock()
		healAt := fr.healAt
		r.mu.Unlock()
		if !nextFired && (healAt.IsZero() || now.Before(healAt.Add(r.sc.Workload.Recovery.D()))) {
			continue
		}
		r.mu.Lock()
		we := r.faultWindowEnd(frs, k, never)
		r.mu.Unlock()
		fo := fr.failover.Result(we)
		r.mon.Untrack(fr.failover)
		fr.failover.Release()
		r.mu.Lock() // the live metrics read it
		fr.result, fr.windowEnd = &fo, we
		r.mu.Unlock()
	}
}

// leaderApplied is the leader's applied index as last seen: the index a healed member must reach.
func (r *run) leaderApplied() uint64 {
	leader, _ := r.watcher.Leader()
	if st, ok := r.watcher.Latest(leader); ok {
		return st.Applied
	}
	return 0
}

// waitMeasurements waits, at most d, for failovers and recoveries still being measured.
func (r *run) waitMeasurements(ctx context.Context, d time.Duration) {
	done := make(chan struct{})
	go func() {
		r.recovWG.Wait()
		close(done)
	}()
	deadline := time.After(d)
	for {
		pending := false
		r.mu.Lock()
		for _, fr := range r.faults {
			if fr.failover != nil && fr.failover.Pending() {
				pending = true
			}
		}
		r.mu.Unlock()
		select {
		case <-done:
			if !pending {
				return
			}
		default:
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// healAll heals every injection still applied (after an interrupt or an error).
func (r *run) healAll(ctx context.Context, by string) error {
	_, err := r.healActive(ctx, by)
	return err
}

// healActive heals every injection still applied, at once, and says how many it healed.
func (r *run) healActive(ctx context.Context, by string) (int, error) {
	r.mu.Lock()
	frs := append([]*faultRun(nil), r.faults...)
	r.mu.Unlock()
	var mu sync.Mutex
	var errs []error
	n := 0
	var wg sync.WaitGroup
	for _, fr := range frs {
		if fr.inj == nil || fr.inj.State() != faults.Applied {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fr.inj.Heal(ctx, by); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			at := fr.inj.HealedStamp().Start
			if at.IsZero() {
				at = time.Now()
			}
			healed := r.sinceStart(at)
			r.mu.Lock()
			fr.record.HealedAtS = &healed
			if fr.healAt.IsZero() {
				fr.healAt = at
				if fr.failover != nil {
					fr.failover.Healed(at)
				}
			}
			r.active = ""
			r.mu.Unlock()
			mu.Lock()
			n++
			mu.Unlock()
			r.events.Log(at, "fault_healed", "fault", fr.index, "by", by)
		}()
	}
	wg.Wait()
	return n, errors.Join(errs...)
}

func (r *run) finish(ctx context.Context, res *reports.Result, end time.Time) (*reports.Result, error) {
	sum := r.rec.Summarize(end)
	if sum.HlogErr != nil {
		r.log.Warn("writing latency.hlog", "err", sum.HlogErr)
	}
	res.Latency, res.Phases, res.Ops, res.FailedOps = sum.Latency, sum.Phases, sum.Ops, sum.Failed
	res.Load = r.kv.Load(end)
	res.Load.AchievedRate, res.Load.Cut = sum.AchievedRate, sum.Cut
	res.Errors, res.Attempts, res.Retries, res.AttemptCodes = sum.Errors, sum.Attempts, sum.Retries, sum.Codes
	tp := reports.Samples(sum.PerSecond)
	res.Throughput = reports.Throughput{PerSecond: sum.PerSecond, Timeline: sum.Timeline}
	if err := r.rec.CloseHistograms(); err != nil {
		r.log.Warn("writing histograms.hlog", "err", err)
	}
	if sum.LateOps > 0 {
		r.log.Warn("ops outlived their phase's settling: counted in the totals, not in their phase", "ops", sum.LateOps)
	}
	if len(tp) > 0 {
		res.Throughput.Avg, res.Throughput.Min, res.Throughput.Max = tp.Mean(), tp.Min(), tp.Max()
	}
	changes := r.watcher.Changes(r.loadStart)
	res.Leader.Changes = len(changes)
	for _, c := range changes {
		res.Leader.Terms = append(res.Leader.Terms, c.ToTerm)
	}
	if len(changes) > 0 {
		res.Leader.Initial = changes[0].From
	}
	res.Leader.Final, _ = r.watcher.Leader()
	if res.Leader.Initial == "" {
		res.Leader.Initial = res.Leader.Final
	}
	sent, acked := r.prober.Counts()
	res.Prober = reports.ProberStats{Sent: sent, Acked: acked}
	if share, probed, ok := r.prober.Availability(); ok {
		res.Prober.Availability, res.Prober.ProbedS = share, probed.Seconds()
	}

	trends := map[string]reports.Dist{}
	for k, v := range sum.Dists {
		trends[k] = v
	}
	var elected, restored, outage, caught, read reports.Samples
	sample := func(s *reports.Samples, d time.Duration) {
		if d < 0 {
			*s = append(*s, math.Inf(1))
		} else {
			*s = append(*s, float64(d))
		}
	}
	r.mu.Lock()
	frs := append([]*faultRun(nil), r.faults...)
	r.mu.Unlock()
	for k, fr := range frs {
		if fr.failover != nil && fr.inj != nil && fr.record.Error == "" {
			windowEnd := r.faultWindowEnd(frs, k, end)
			var fo loadgen.FailoverResult
			if fr.result != nil {
				fo, windowEnd = *fr.result, fr.windowEnd
			} else {
				fo = fr.failover.Result(windowEnd)
				r.mon.Untrack(fr.failover)
			}
			fr.record.Election = fo.Election
			fr.record.OutageWriteMs = reports.Ms(fo.WriteOutage)
			from, we := r.sinceStart(fo.OutageFrom), r.sinceStart(windowEnd)
			fr.record.OutageFromS, fr.record.WindowEndS = &from, &we
			fr.record.ProbesAcked = fo.Acked
			fr.record.SlowestProbeMs = reports.Ms(fo.SlowestAck)
			sample(&outage, fo.WriteOutage)
			if fo.Election {
				res.Failovers = append(res.Failovers, reports.Failover{Fault: fr.index, Action: fr.spec.Action, Target: fr.spec.Target.String(),
					Member: fr.failover.OldLeader, OldTerm: fr.failover.OldTerm, NewLeader: fo.NewLeader, NewTerm: fo.NewTerm,
					LeaderElectedMs: reports.Ms(fo.LeaderElected), LeaderElectedBy: fo.ElectedBy, WriteRestoredMs: reports.Ms(fo.WriteRestored)})
				sample(&elected, fo.LeaderElected)
				sample(&restored, fo.WriteRestored)
			}
		}
		res.Faults = append(res.Faults, fr.record)
		for _, rc := range fr.recov {
			res.Recoveries = append(res.Recoveries, rc)
			sample(&caught, msDur(rc.CaughtUpMs))
			sample(&read, msDur(rc.ReadRestoredMs))
		}
	}
	res.FaultStats = reports.FaultStatsOf(res)
	// Leader changes no fault's window holds are spurious: nothing the scenario did explains them.
	// Here a window is not cut at the load's end: an election a fault caused may complete after it.
	never := end.Add(24 * time.Hour)
	for _, c := range changes {
		explained := false
		for k, fr := range frs {
			if fr.injAt.IsZero() || c.At.Before(fr.injAt) {
				continue
			}
			if c.At.Before(r.faultWindowEnd(frs, k, never)) || c.At.Equal(fr.injAt) {
				explained = true
				break
			}
		}
		if !explained {
			res.Leader.Spurious++
			res.Leader.SpuriousAtS = append(res.Leader.SpuriousAtS, r.sinceStart(c.At))
		}
	}
	trends["outage.write"] = outage
	trends["failover.leader_elected"] = elected
	trends["failover.write_restored"] = restored
	trends["recovery.caught_up"] = caught
	trends["recovery.read_restored"] = read
	for _, o := range r.outcomes {
		for k, v := range o.Trends {
			prev, _ := trends[k].(reports.Samples)
			trends[k] = append(prev, v...)
		}
	}
	if r.scraper != nil {
		res.MemberHealth = r.scraper.health()
	}
	res.Thresholds = reports.Evaluate(r.sc.Thresholds, reports.Metrics{Trends: trends, Ops: sum.Ops, Failed: sum.Failed,
		LeaderChanges: res.Leader.Changes, Throughput: sum.PerSecond, Retries: sum.Retries, ProbesSent: sent, ProbesAcked: acked,
		FaultsMeasured: len(outage), Members: res.MemberHealth})

	var failed []string
	for _, t := range res.Thresholds {
		if t.Status == reports.ThresholdFail {
			failed = append(failed, fmt.Sprintf("%s %s (observed %s)", t.Metric, t.Condition, t.Observed))
		}
	}
	sort.Strings(failed)
	var badChecks []string
	for _, c := range res.Checks {
		if c.Status != reports.CheckPass {
			badChecks = append(badChecks, fmt.Sprintf("check %s %s (%s)", c.Name, c.Status, c.Summary))
		}
	}
	r.mu.Lock()
	aborted := r.aborted
	r.mu.Unlock()
	skipped := 0
	for _, f := range res.Faults {
		if f.Skipped != "" {
			skipped++
		}
	}
	switch {
	case ctx.Err() != nil:
		res.Verdict, res.Reason = reports.VerdictInterrupted, "interrupted; every fault was healed and the cluster stopped"
	case aborted != nil:
		res.Aborted = aborted
		res.Verdict = reports.VerdictAborted
		res.Reason = fmt.Sprintf("stop condition %q tripped at %.1fs (observed %s); every fault was healed and the load stopped", aborted.Condition, aborted.AtS, aborted.Observed)
		if len(r.runErrs) > 0 {
			res.Reason += "; " + errors.Join(r.runErrs...).Error()
		}
	case len(r.runErrs) > 0:
		res.Verdict, res.Reason = reports.VerdictError, errors.Join(r.runErrs...).Error()
		return res, fmt.Errorf("%w: %v", ErrInfra, errors.Join(r.runErrs...))
	case len(failed) > 0 || len(badChecks) > 0:
		var why []string
		if len(failed) > 0 {
			why = append(why, "threshold failed: "+strings.Join(failed, "; "))
		}
		why = append(why, badChecks...)
		res.Verdict, res.Reason = reports.VerdictFail, strings.Join(why, "; ")
	case skipped > r.sc.MaxSkipped:
		res.Verdict = reports.VerdictUnknown
		res.Reason = fmt.Sprintf("%d of %d faults were skipped by the quorum guard (max-skipped: %d): the run exercised too little to pass", skipped, len(res.Faults), r.sc.MaxSkipped)
	default:
		res.Verdict, res.Passed = reports.VerdictPass, true
	}
	r.events.Log(time.Now(), "verdict", "verdict", res.Verdict)
	return res, nil
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

func msDur(v *float64) time.Duration {
	if v == nil {
		return -1
	}
	return time.Duration(*v * float64(time.Millisecond))
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
