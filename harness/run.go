package harness

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/etcd-chaos/etcd-chaos/cluster"
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
var ErrInput = cluster.ErrInput

// NewRunID makes a run id: the UTC time and four random hex digits.
func NewRunID() string {
	return fmt.Sprintf("%s-%04x", time.Now().UTC().Format("20060102-150405"), rand.Uint32()&0xffff)
}

// ErrInfra marks errors where the harness or the cluster could not run (exit code 3).
var ErrInfra = cluster.ErrInfra

type run struct {
	sc     *scenarios.Scenario
	opts   Options
	log    *slog.Logger
	events *reports.EventLog
	ledger *faults.Ledger
	cl     cluster.Cluster

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
	// stopRecovery ends the recovery probes (recover).
	stopRecovery context.CancelFunc
	runErrs      []error

	// metricsLn holds --metrics-addr's port from the run's start until the live metrics serve it.
	metricsLn net.Listener

	prefix   string // every key the run writes is under it: chaos/<run id>/
	warmEnd  time.Time
	runCtx   context.Context // the schedule's: an abort cancels it
	abortRun context.CancelFunc
	aborted  *reports.Abort

	// The harness's backups (cluster.backup): those a disaster may restore, newest last, and the
	// record of every one saved.
	snapshots  []faults.Snapshot
	backupRecs []reports.Backup
	gauges     map[string]reports.Samples // what operations measured, as plain numbers
}

// Run runs a scenario: start the cluster, warm up, drive the load, inject and heal the faults on
// schedule, measure recovery, hold the thresholds, and tear everything down. The result is returned
// whenever the run got far enough to have one; err wraps ErrInfra when the harness or cluster failed.
// When ctx is cancelled (SIGINT) every fault is healed and the cluster stopped on a fresh context.
//
// Each step is a method in a file of its own: start.go (the run folder, the cluster, the teardown),
// observe.go (the leader watcher, the failover prober, the member scraper, live metrics), load.go
// (the load and its clock), schedule.go (firing and healing the faults), measure.go (each fault's
// window, recovery) and result.go (the result's assembly and the verdict).
func Run(ctx context.Context, sc *scenarios.Scenario, opts Options) (res *reports.Result, err error) {
	r, err := open(sc, opts) // the run folder: scenario.yaml, events.jsonl, ledger.jsonl
	if err != nil {
		return nil, err
	}
	defer r.close()
	res = r.newResult()
	if err := r.newCluster(res); err != nil {
		return nil, err
	}
	// From here every way out heals every fault, stops the cluster and writes result.json, on a
	// context that survives an interrupt.
	defer func() { err = r.teardown(ctx, res, err) }()
	if ready, err := r.startCluster(ctx, res); !ready || err != nil {
		return res, err // not ready: interrupted, or the cluster failed (the verdict says which)
	}

	obs, err := r.newObservers() // the leader watcher and the failover prober
	if err != nil {
		return failInfra(res, err)
	}
	defer obs.close()
	ld, err := r.prepareLoad(ctx, res) // the load's clock, its latency logs, the KV load and workloads
	if err != nil {
		return failInfra(res, err)
	}
	defer ld.close()
	r.recovCtx, r.stopRecovery = context.WithCancel(context.WithoutCancel(ctx)) // recovery probes
	defer r.stopRecovery()
	if err := obs.start(ctx); err != nil { // watcher, prober, member scraper and live metrics run
		return failInfra(res, err)
	}
	defer obs.stop()

	end := r.runLoad(ctx, ld, res) // warm-up, the fault schedule and stop conditions, to the load's end
	r.recover(ctx)                 // the recovery measurements still under way, workload.recovery at most
	if ctx.Err() == nil {
		r.check(ctx, res) // the safety checks, on the cluster still up
	}
	obs.stop()
	return r.finish(ctx, res, end) // the result: what each fault cost, thresholds, the verdict
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

func (r *run) sinceStart(t time.Time) float64 {
	return math.Round(t.Sub(r.loadStart).Seconds()*1000) / 1000
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
