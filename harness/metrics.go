package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/loadgen"
)

// latencyBuckets are the upper bounds (seconds) of the live latency histograms: 1ms to 60s.
var latencyBuckets = []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60}

// liveMetrics serves the run's figures to Prometheus while it runs (chaos run --metrics-addr): a
// collector reads the recorder, the watcher, the prober and the faults at each scrape, so the hot
// path records nothing twice.
type liveMetrics struct {
	r   *run
	srv *http.Server
	ln  net.Listener

	ops, failed, errs, latency, active, injected, leader, term, changes, sent, acked, outage, elected, restored, faultOutage *prometheus.Desc
	// A kv workload block's own ops: the same figures with its name, as families of their own so
	// the main load's series keep their labels (and no series is exposed twice).
	wlOps, wlFailed, wlLatency *prometheus.Desc
}

func d(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("etcd_chaos_"+name, help, labels, nil)
}

// startMetrics serves /metrics on the run's metrics listener (bound when the run folder was opened,
// so that no member started since can have taken its port), or listens on addr, until stop.
func (r *run) startMetrics(addr string) (*liveMetrics, error) {
	m := &liveMetrics{r: r,
		ops:         d("ops_total", "Operations completed (warm-up excluded), by op.", "op"),
		failed:      d("ops_failed_total", "Operations that failed after their retries, by op.", "op"),
		errs:        d("errors_total", "Failed KV operations by final error class.", "class"),
		latency:     d("latency_seconds", "Latency of the operations that succeeded, by op (open loop: from the intended send time).", "op"),
		active:      d("fault_active", "1 while a fault is applied.", "fault", "action", "members"),
		injected:    d("faults_injected_total", "Faults injected so far."),
		leader:      d("leader", "1 for the member the watcher sees as leader.", "member"),
		term:        d("leader_term", "The newest raft term the watcher has seen."),
		changes:     d("leader_changes_total", "Leader changes seen since the load started."),
		sent:        d("prober_sent_total", "Prober writes sent (warm-up excluded)."),
		acked:       d("prober_acked_total", "Prober writes acknowledged."),
		outage:      d("write_outage_seconds", "How long ago the newest acknowledged prober write was sent: grows while writes are not served."),
		elected:     d("failover_leader_elected_seconds", "From a fault's injection to a new leader seen, for faults that cost an election (so far).", "fault"),
		restored:    d("failover_write_restored_seconds", "From a fault's injection to the first acknowledged write after the election (so far).", "fault"),
		faultOutage: d("fault_outage_write_seconds", "A fault's longest write outage so far (fixed once its window closed).", "fault"),
		wlOps:       d("workload_ops_total", "Operations completed by a kv workload block (warm-up excluded), by workload and op.", "workload", "op"),
		wlFailed:    d("workload_ops_failed_total", "Operations of a kv workload block that failed after their retries.", "workload", "op"),
		wlLatency:   d("workload_latency_seconds", "Latency of a kv workload block's operations that succeeded.", "workload", "op"),
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(m); err != nil {
		return nil, err
	}
	ln := r.metricsLn
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("--metrics-addr %s: %w", addr, err)
		}
	}
	r.metricsLn = nil // the server owns it now
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	m.ln, m.srv = ln, &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Warn("live metrics", "err", err)
		}
	}()
	r.events.Log(time.Now(), "metrics_serving", "addr", ln.Addr().String())
	return m, nil
}

func (m *liveMetrics) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = m.srv.Shutdown(ctx)
}

func (m *liveMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, x := range []*prometheus.Desc{m.ops, m.failed, m.errs, m.latency, m.active, m.injected, m.leader, m.term, m.changes,
		m.sent, m.acked, m.outage, m.elected, m.restored, m.faultOutage, m.wlOps, m.wlFailed, m.wlLatency} {
		ch <- x
	}
}

func (m *liveMetrics) Collect(ch chan<- prometheus.Metric) {
	r := m.r
	counter := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, v, labels...)
	}
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	for k, rec := range r.recs {
		t := rec.Totals()
		opsDesc, failedDesc, latDesc, labels := m.ops, m.failed, m.latency, []string(nil)
		if k < len(r.recName) && r.recName[k] != "" {
			opsDesc, failedDesc, latDesc, labels = m.wlOps, m.wlFailed, m.wlLatency, []string{r.recName[k]}
		}
		for i := range loadgen.NumOps {
			op := loadgen.Op(i)
			if t.Ops[i] == 0 {
				continue
			}
			lv := append(append([]string(nil), labels...), op.String())
			counter(opsDesc, float64(t.Ops[i]), lv...)
			counter(failedDesc, float64(t.Failed[i]), lv...)
			if h := t.Latency[i]; h != nil {
				buckets := map[float64]uint64{}
				var cum uint64
				bars := h.Distribution()
				k := 0
				for _, ub := range latencyBuckets {
					for k < len(bars) && float64(bars[k].To)/1e9 <= ub {
						cum += uint64(bars[k].Count)
						k++
					}
					buckets[ub] = cum
				}
				sum := h.Mean() * float64(h.TotalCount()) / 1e9
				ch <- prometheus.MustNewConstHistogram(latDesc, uint64(h.TotalCount()), sum, buckets, lv...)
			}
		}
		if rec == r.rec {
			for class, n := range t.Errors {
				counter(m.errs, float64(n), class)
			}
		}
	}
	// What each fault cost: so far while its window is open, what was measured once it closed
	// (its tracker is then released, and a figure taken "so far" would grow for ever).
	type faultNow struct {
		fr     *faultRun
		result *loadgen.FailoverResult
	}
	var frs []faultNow
	r.mu.Lock()
	for _, fr := range r.faults {
		frs = append(frs, faultNow{fr, fr.result})
	}
	r.mu.Unlock()
	injected := 0
	now := time.Now()
	for _, f := range frs {
		fr := f.fr
		if fr.inj == nil || fr.injAt.IsZero() {
			continue
		}
		injected++
		idx := strconv.Itoa(fr.index)
		if fr.inj.State() == faults.Applied {
			gauge(m.active, 1, idx, fr.spec.Action, strings.Join(fr.record.Members, ","))
		}
		var fo *loadgen.FailoverResult
		switch {
		case f.result != nil:
			fo = f.result
		case fr.failover != nil:
			x := fr.failover.Result(now)
			fo = &x
		}
		if fo != nil {
			gauge(m.faultOutage, fo.WriteOutage.Seconds(), idx)
			if fo.Election {
				gauge(m.elected, fo.LeaderElected.Seconds(), idx)
				if fo.WriteRestored >= 0 {
					gauge(m.restored, fo.WriteRestored.Seconds(), idx)
				}
			}
		}
	}
	counter(m.injected, float64(injected))
	if r.watcher != nil {
		leader, term := r.watcher.Leader()
		if leader != "" {
			gauge(m.leader, 1, leader)
		}
		gauge(m.term, float64(term))
		counter(m.changes, float64(len(r.watcher.Changes(r.loadStart))))
	}
	if r.prober != nil {
		sent, acked := r.prober.Counts()
		counter(m.sent, float64(sent))
		counter(m.acked, float64(acked))
		gauge(m.outage, r.prober.SinceAck().Seconds())
	}
}
