package loadgen

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// LeakTTL is the TTL of each lease a leases leak grants: long enough to outlive any run.
const LeakTTL = 3600

// leak is a negative control for the member.* thresholds: it leaks, on purpose and at a rate,
// what a buggy client leaks, spread over the members in turn. connections: a new client
// connection each time, never closed (one more open fd on the member); watchers: a new watch
// stream each time, never cancelled (goroutines and memory on the member); leases: a lease of
// LeakTTL seconds each time, never revoked while the run lasts. Close releases everything (leases
// are revoked), so nothing outlives the run.
type leak struct {
	b       scenarios.Block
	env     Env
	clients []*clientv3.Client // one per member: watchers and leases go through them

	mu      sync.Mutex
	leaked  []*clientv3.Client // connections
	cancels []context.CancelFunc
	leases  []clientv3.LeaseID
	n, errs int
	lastErr string
}

// leaks are what a leak workload leaks on purpose (a negative control for member.* thresholds).
var leaks = []string{"connections", "watchers", "leases"}

// leakKind is the leak workload as a unit: its rules as the schema reads them and its constructor.
var leakKind = workloadKind{WorkloadRules: scenarios.WorkloadRules{Kind: "leak", Clients: 1,
	Fields: []string{"rate", "leaks"},
	Defaults: func(b *scenarios.Block, def func(string, func())) {
		def("leaks", func() { b.Leaks = "connections" })
		def("rate", func() { b.Rate = 10 })
	},
	Check: func(b scenarios.Block, c scenarios.BlockChecker) {
		if c.Shared() {
			c.Bad("kind", "a leak workload leaks connections, watchers or hour-long leases on purpose: never on a cluster the team runs (provider remote); run it on provider local or container")
		}
		c.OneOf("leaks", b.Leaks, leaks)
		if b.Rate <= 0 || b.Rate > 1000 {
			c.Bad("rate", "%v: valid: more than 0, up to 1000 (things leaked per second)", b.Rate)
		}
		if b.Clients != 1 {
			c.Bad("clients", "%d: a leak workload has one client per member; leave clients out", b.Clients)
		}
	}},
	new: func(b scenarios.Block, env Env) (Workload, error) { return newLeak(b, env) }}

func newLeak(b scenarios.Block, env Env) (*leak, error) {
	env.fill()
	l := &leak{b: b, env: env}
	if b.Leaks != "connections" {
		for _, ep := range env.Endpoints {
			c, err := NewClientVia([]string{ep}, 1, env.Conn)
			if err != nil {
				l.Close()
				return nil, err
			}
			l.clients = append(l.clients, c)
		}
	}
	return l, nil
}

func (l *leak) Name() string { return l.b.Name }
func (l *leak) Kind() string { return "leak" }

// Run leaks one thing every 1/rate seconds, from the load's start, until ctx ends.
func (l *leak) Run(ctx context.Context, start time.Time) {
	pacer := NewPacer(start, l.b.Rate, 0, 0)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for k := 0; ; k++ {
		if _, ok := pacer.Next(ctx, timer); !ok {
			return
		}
		err := l.leakOne(ctx, k)
		if err != nil && ctx.Err() != nil {
			return // cut short by the load's end, not a failure to leak
		}
		l.mu.Lock()
		if err != nil {
			l.errs++
			l.lastErr = err.Error()
		} else {
			l.n++
		}
		l.mu.Unlock()
	}
}

func (l *leak) leakOne(ctx context.Context, k int) error {
	m := k % len(l.env.Endpoints)
	octx, cancel := context.WithTimeout(ctx, l.b.Timeout.D())
	defer cancel()
	switch l.b.Leaks {
	case "connections":
		c, err := NewClientVia([]string{l.env.Endpoints[m]}, 1, l.env.Conn)
		if err != nil {
			return err
		}
		l.mu.Lock()
		l.leaked = append(l.leaked, c)
		l.mu.Unlock()
		// A request makes the connection: clientv3 dials lazily.
		_, err = c.Get(octx, l.env.Prefix+"leak")
		return err
	case "watchers":
		// clientv3 shares one stream among watches with the same metadata: a new value, a new stream.
		wctx, wcancel := context.WithCancel(context.WithoutCancel(ctx))
		wctx = metadata.AppendToOutgoingContext(wctx, "chaos-leak", strconv.Itoa(k))
		l.mu.Lock()
		l.cancels = append(l.cancels, wcancel)
		l.mu.Unlock()
		wch := l.clients[m].Watch(clientv3.WithRequireLeader(wctx), fmt.Sprintf("%sleak/%s/%d", l.env.Prefix, l.b.Name, k))
		go func() {
			for range wch { // drained until Close cancels it
			}
		}()
		return nil
	case "leases":
		resp, err := l.clients[m].Grant(octx, LeakTTL)
		if err != nil {
			return err
		}
		l.mu.Lock()
		l.leases = append(l.leases, resp.ID)
		l.mu.Unlock()
		return nil
	}
	return fmt.Errorf("unknown leak %q", l.b.Leaks)
}

func (l *leak) Finish(ctx context.Context) Outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := map[string]float64{"leaked": float64(l.n), "failed": float64(l.errs), "rate": l.b.Rate}
	if l.errs > 0 {
		l.env.Log("leak workload: some leaks failed", "workload", l.b.Name, "failed", l.errs, "last", l.lastErr)
	}
	return Outcome{Result: reports.WorkloadResult{Name: l.b.Name, Kind: "leak", Stats: st}}
}

// Close releases what was leaked: cancels the watches, closes the connections, and revokes the
// leases (within 10s in all; a lease it could not revoke expires after LeakTTL).
func (l *leak) Close() {
	l.mu.Lock()
	cancels, conns, leases := l.cancels, l.leaked, l.leases
	l.cancels, l.leaked, l.leases = nil, nil, nil
	l.mu.Unlock()
	for _, c := range cancels {
		c()
	}
	for _, c := range conns {
		_ = c.Close()
	}
	if len(leases) > 0 && len(l.clients) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		for i, id := range leases {
			if ctx.Err() != nil {
				break
			}
			_, _ = l.clients[i%len(l.clients)].Revoke(ctx, id)
		}
		cancel()
	}
	for _, c := range l.clients {
		_ = c.Close()
	}
	l.clients = nil
}
