package harness

import (
	"context"
	"math"
	"sync"

	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/reports"
)

// observers are what watches the cluster beside the load: the leader watcher, the failover prober,
// the member scraper (cluster.scrape-interval) and the live metrics (--metrics-addr). They own the
// context and the goroutines they run on.
type observers struct {
	r       *run
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	metrics *liveMetrics
}

// newObservers makes the leader watcher and the failover prober; start runs them.
func (r *run) newObservers() (*observers, error) {
	w := r.sc.Workload
	var err error
	r.watcher, err = loadgen.NewWatcher(r.cl.ClientURLs(), r.cl.Names(), r.mon, func(c loadgen.LeaderChange) {
		r.events.Log(c.At, "leader_changed", "from", c.From, "to", c.To, "term", c.ToTerm, "reported_by", c.ReportedBy)
	}, r.cl.LoadConn())
	if err != nil {
		return nil, err
	}
	if r.prober, err = loadgen.NewProber(r.cl.Endpoints(), r.mon, w.Prober.Interval.D(), w.Prober.Timeout.D(), r.cl.LoadConn()); err != nil {
		r.watcher.Close()
		return nil, err
	}
	r.prober.Key = r.prefix + "probe"
	return &observers{r: r, cancel: func() {}}, nil
}

// start runs the watcher and the prober, the member scraper and the live metrics until stop.
func (o *observers) start(ctx context.Context) error {
	r := o.r
	mctx, cancel := context.WithCancel(ctx)
	o.cancel = cancel
	o.wg.Add(2)
	go func() { defer o.wg.Done(); r.watcher.Run(mctx) }()
	go func() { defer o.wg.Done(); r.prober.Run(mctx) }()
	if every := r.sc.Cluster.ScrapeInterval.D(); every > 0 {
		var err error
		if r.scraper, err = r.newMemberScraper(); err != nil {
			return err
		}
		o.wg.Add(1)
		go func() { defer o.wg.Done(); r.scraper.run(mctx, every) }()
	}
	if r.opts.MetricsAddr != "" {
		lm, err := r.startMetrics(r.opts.MetricsAddr)
		if err != nil {
			return err
		}
		o.metrics = lm
	}
	return nil
}

// stop ends the observers' goroutines and waits for them; a second call does nothing more.
func (o *observers) stop() {
	o.cancel()
	o.wg.Wait()
}

// close releases what the observers hold, once they stopped: the live metrics' server, the
// scraper's members.jsonl, the prober's and the watcher's clients.
func (o *observers) close() {
	o.stop()
	r := o.r
	if o.metrics != nil {
		o.metrics.stop()
	}
	if r.scraper != nil {
		if err := r.scraper.close(); err != nil {
			r.log.Warn("members.jsonl", "err", err)
		}
	}
	r.prober.Close()
	r.watcher.Close()
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
	// The members at once, each asked no further once it fails to answer (a member that is not
	// serving yet answers nothing, and each read waits out its timeout).
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range r.cl.Members() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := r.cl.MemberMetric(ctx, m.Name(), metric+"_sum")
			if err != nil {
				return
			}
			n, nerr := r.cl.MemberMetric(ctx, m.Name(), metric+"_count")
			z, zerr := r.cl.MemberMetric(ctx, m.Name(), metric+`_bucket{le="0.0001"}`)
			if nerr == nil && zerr == nil {
				mu.Lock()
				sum, count, zeros = sum+s, count+n, zeros+z
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if count-zeros <= 0 {
		return nil
	}
	return &reports.PeerRTT{MeanMs: math.Round(sum/(count-zeros)*1e6) / 1e3, Samples: int(count - zeros)}
}

// etcdLeaderChanges reads etcd_server_leader_changes_seen_total from every member that answers.
func (r *run) etcdLeaderChanges(ctx context.Context) map[string]counterAt {
	out := map[string]counterAt{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range r.cl.Members() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, err := r.cl.MemberMetric(ctx, m.Name(), "etcd_server_leader_changes_seen_total"); err == nil {
				mu.Lock()
				out[m.Name()] = counterAt{n: v, pid: m.PID()}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}
