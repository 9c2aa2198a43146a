package loadgen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// DefaultPrefix is the key prefix of the harness's writes when a run names none.
const DefaultPrefix = "chaos/"

// KeyPrefix is where the KV workload writes by default.
const KeyPrefix = DefaultPrefix + "kv/"

// RetryPolicy says how an op is retried after a failed attempt.
type RetryPolicy struct {
	Attempts   int           // total attempts, 1 = no retries
	Backoff    time.Duration // before the 2nd attempt; doubles after each
	MaxBackoff time.Duration
	Jitter     float64       // the backoff varies by ±Jitter of itself
	Deadline   time.Duration // the op with all its attempts and backoffs; 0: no limit beyond Attempts
	On         []ErrClass    // the classes retried; empty: every class a failover causes (Retryable)
}

// PolicyOf turns a scenario's retry block into a policy.
func PolicyOf(r scenarios.Retry) RetryPolicy {
	p := RetryPolicy{Attempts: r.Attempts, Backoff: r.Backoff.D(), MaxBackoff: r.MaxBackoff.D(), Jitter: r.Jitter, Deadline: r.Deadline.D()}
	for _, name := range r.On {
		for c := ErrClass(1); c < numClasses; c++ {
			if c.String() == name {
				p.On = append(p.On, c)
			}
		}
	}
	return p
}

// retries says whether the policy retries an attempt that failed with class c.
func (p RetryPolicy) retries(c ErrClass) bool {
	if len(p.On) == 0 {
		return Retryable(c)
	}
	for _, x := range p.On {
		if x == c {
			return true
		}
	}
	return false
}

// Do runs f under the policy, each attempt with its own timeout, and records the op in rec (latency
// from due, attempts, backoff, final class). It returns the final error, and ended when the run's
// context ended under it (the op is then counted as cut, in no latency or error figure: the run's
// end cut it, not the cluster).
func (p RetryPolicy) Do(ctx context.Context, rec *Recorder, op Op, due time.Time, timeout time.Duration, rng *rand.Rand, timer *time.Timer,
	f func(ctx context.Context) error) (err error, ended bool) {
	var waited time.Duration
	first := time.Now()
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, timeout)
		err = f(actx)
		cancel()
		if runEnded(ctx) {
			rec.RecordCut(op, due)
			return err, true
		}
		class := Classify(err)
		if class == ClassNone {
			rec.Record(op, due, time.Since(due), attempt, waited, ClassNone)
			return nil, false
		}
		rec.RecordAttemptError(op, due, class, err)
		wait := p.Wait(attempt, rng)
		if !p.retries(class) || attempt >= p.Attempts || (p.Deadline > 0 && time.Since(first)+wait >= p.Deadline) {
			rec.Record(op, due, time.Since(due), attempt, waited, class)
			return err, false
		}
		waited += wait
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			rec.RecordCut(op, due)
			return err, true
		case <-timer.C:
		}
	}
}

// runEnded tells whether the run's context has ended. An attempt's context shares the run's
// deadline and runs its own timer, which can fire a moment before the run's: by then the deadline
// has passed even while ctx.Err() is still nil, and an op cut by the load's end must not be recorded
// as failed.
func runEnded(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// Wait returns the backoff after the given failed attempt (1-based), with jitter from rng.
func (p RetryPolicy) Wait(attempt int, rng *rand.Rand) time.Duration {
	d := p.Backoff
	for i := 1; i < attempt && d < p.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, p.MaxBackoff)
	if p.Jitter > 0 && d > 0 {
		d += time.Duration((rng.Float64()*2 - 1) * p.Jitter * float64(d))
	}
	return max(d, 0)
}

// Config is the KV load.
type Config struct {
	Endpoints   []string
	Clients     int
	Connections int
	Rate        float64 // ops/s; 0 = closed loop
	Timeout     time.Duration
	Retry       RetryPolicy
	Mix         []scenarios.Op
	Seed        uint64
	// MaxOps stops the load after this many ops (0: until the context ends). For benchmarks.
	MaxOps int64
	// Safety, if set, records every write so that no acknowledged one can be lost unseen.
	Safety *SafetyLog
	// KeyPrefix is where the load writes (default KeyPrefix): two KV groups write apart.
	KeyPrefix string
	// Conn is how the clients reach the members (a dialer, TLS, credentials); nil: plain TCP.
	Conn *Conn
	// Monitor, if set, is told the raft term of every response and every failed attempt: the load's
	// own answers reveal an election or an outage at no cost (see Monitor).
	Monitor *Monitor
}

type opSpec struct {
	op           Op
	cumWeight    int
	keys         int
	dist         string
	value        string
	serializable bool
}

// KV drives the KV workload: closed loop (each client sends its next op when the last completes) or
// open loop (ops are due at start + i/rate whatever happens to the earlier ones, and latency counts
// from that due time, so a stall is not hidden: no coordinated omission).
type KV struct {
	cfg     Config
	rec     *Recorder
	specs   []opSpec
	total   int
	keys    []string
	clients []*clientv3.Client
	pacer   *Pacer
}

// NewKV connects Connections clients to the endpoints. Each attempt is exactly one RPC: the client's
// own hidden retries are off, so the harness counts every attempt and its policy is the only one.
func NewKV(cfg Config, rec *Recorder) (*KV, error) {
	k := &KV{cfg: cfg, rec: rec}
	maxKeys := 0
	for _, m := range cfg.Mix {
		op, err := OpByName(m.Op)
		if err != nil {
			return nil, err
		}
		k.total += m.Weight
		k.specs = append(k.specs, opSpec{op: op, cumWeight: k.total, keys: m.Keys, dist: m.Distribution,
			value: strings.Repeat("v", m.ValueSize), serializable: m.Consistency == "serializable"})
		maxKeys = max(maxKeys, m.Keys)
	}
	if k.total == 0 {
		return nil, fmt.Errorf("the op mix is empty")
	}
	// Keys are made once, so that the request loop formats nothing.
	if cfg.KeyPrefix == "" {
		k.cfg.KeyPrefix = KeyPrefix
	}
	k.keys = make([]string, maxKeys)
	for i := range k.keys {
		k.keys[i] = fmt.Sprintf("%s%08d", k.cfg.KeyPrefix, i)
	}
	for i := 0; i < cfg.Connections; i++ {
		c, err := NewClientVia(cfg.Endpoints, 1, cfg.Conn)
		if err != nil {
			k.Close()
			return nil, err
		}
		k.clients = append(k.clients, c)
	}
	return k, nil
}

// NewClient returns an etcd client with the given cap on the client's own unary retries (1 = none).
func NewClient(endpoints []string, unaryRetries uint) (*clientv3.Client, error) {
	return NewClientVia(endpoints, unaryRetries, nil)
}

// NewClientVia is NewClient reaching the members through conn (nil: plain TCP).
func NewClientVia(endpoints []string, unaryRetries uint, conn *Conn) (*clientv3.Client, error) {
	c, err := conn.newClient(clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          2 * time.Second,
		DialKeepAliveTime:    10 * time.Second, // etcd refuses pings more often than every 5s (grpc-keepalive-min-time)
		DialKeepAliveTimeout: 3 * time.Second,
		MaxUnaryRetries:      unaryRetries,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to %v: %w", endpoints, err)
	}
	return c, nil
}

// Close closes the clients.
func (k *KV) Close() {
	for _, c := range k.clients {
		_ = c.Close()
	}
	k.clients = nil
}

// Run drives the load from start until ctx ends (or MaxOps ops). Ops still in flight when ctx ends are
// not counted: the run's end cut them, not the cluster.
func (k *KV) Run(ctx context.Context, start time.Time) {
	k.pacer = NewPacer(start, k.cfg.Rate, k.cfg.MaxOps, k.cfg.Timeout)
	if dl, ok := ctx.Deadline(); ok {
		k.pacer.Until(dl)
	}
	var wg sync.WaitGroup
	for w := 0; w < k.cfg.Clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k.worker(ctx, w, start)
		}()
	}
	wg.Wait()
}

type workerState struct {
	rng       *rand.Rand
	zipfs     []*rand.Zipf
	seq       []int
	writeBase uint64 // the worker's id in the top bits of its write ids
	writes    uint64
}

func (k *KV) worker(ctx context.Context, w int, start time.Time) {
	rng := rand.New(rand.NewPCG(k.cfg.Seed, uint64(w)+1))
	st := &workerState{rng: rng, zipfs: make([]*rand.Zipf, len(k.specs)), seq: make([]int, len(k.specs)), writeBase: uint64(w+1) << 40}
	for i, s := range k.specs {
		if s.dist == "zipf" && s.keys > 1 {
			st.zipfs[i] = rand.NewZipf(rng, 1.1, 1, uint64(s.keys-1))
		}
		st.seq[i] = w
	}
	kv := k.clients[w%len(k.clients)].KV
	// Each op's timeout context is a child of the worker's own: 16 workers registering a child per
	// op with the run's context contended on its lock.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		due, ok := k.pacer.Next(ctx, timer)
		if !ok {
			return
		}
		k.pacer.Sent(due)
		si := k.pick(st)
		ki := k.key(st, si)
		k.do(ctx, kv, &k.specs[si], k.keys[ki], ki, due, st, timer)
	}
}

// Load says how the load kept to its schedule up to end (the load's end).
func (k *KV) Load(end time.Time) reports.LoadStats {
	if k.pacer == nil {
		return reports.LoadStats{TargetRate: k.cfg.Rate}
	}
	return k.pacer.Stats(end)
}

func (k *KV) pick(st *workerState) int {
	if len(k.specs) == 1 {
		return 0
	}
	x := st.rng.IntN(k.total)
	for i, s := range k.specs {
		if x < s.cumWeight {
			return i
		}
	}
	return len(k.specs) - 1
}

func (k *KV) key(st *workerState, si int) int {
	s := &k.specs[si]
	switch {
	case s.keys <= 1:
		return 0
	case st.zipfs[si] != nil:
		return int(st.zipfs[si].Uint64())
	case s.dist == "sequential":
		st.seq[si] = (st.seq[si] + k.cfg.Clients) % s.keys
		return st.seq[si]
	}
	return st.rng.IntN(s.keys)
}

// do runs one op with the retry policy and records it; writes go to the safety log, if any.
func (k *KV) do(ctx context.Context, kv clientv3.KV, s *opSpec, key string, ki int, due time.Time, st *workerState, timer *time.Timer) {
	value, id := s.value, uint64(0)
	write := s.op != OpGet
	if write && k.cfg.Safety != nil {
		st.writes++
		id = st.writeBase | st.writes
		value = stampValue(id, s.value)
		k.cfg.Safety.Begin(ki, id, s.op == OpDelete)
	}
	attempts := 0
	var rev int64
	err, ended := k.cfg.Retry.Do(ctx, k.rec, s.op, due, k.cfg.Timeout, st.rng, timer, func(actx context.Context) error {
		attempts++
		var err error
		var term uint64
		rev, term, err = exec(actx, kv, s, key, value)
		if err == nil || !runEnded(ctx) { // not the load's own end
			k.cfg.Monitor.Observe(term, err != nil)
		}
		return err
	})
	if write && k.cfg.Safety != nil {
		// An op the run's end cut, or one that failed, may still have been applied: its outcome is
		// unknown. One acknowledged after failed attempts may be applied again by a late attempt.
		k.cfg.Safety.End(ki, id, err == nil && !ended, rev, attempts > 1)
	}
}

// exec runs one attempt and returns the revision and raft term of the response.
func exec(ctx context.Context, kv clientv3.KV, s *opSpec, key, value string) (int64, uint64, error) {
	switch s.op {
	case OpPut:
		r, err := kv.Put(ctx, key, value)
		if err != nil {
			return 0, 0, err
		}
		return r.Header.Revision, r.Header.RaftTerm, nil
	case OpGet:
		var r *clientv3.GetResponse
		var err error
		if s.serializable {
			r, err = kv.Get(ctx, key, clientv3.WithSerializable())
		} else {
			r, err = kv.Get(ctx, key)
		}
		if err != nil {
			return 0, 0, err
		}
		return 0, r.Header.RaftTerm, nil
	case OpDelete:
		r, err := kv.Delete(ctx, key)
		if err != nil {
			return 0, 0, err
		}
		return r.Header.Revision, r.Header.RaftTerm, nil
	case OpTxn:
		r, err := kv.Txn(ctx).
			If(clientv3.Compare(clientv3.Version(key), ">", 0)).
			Then(clientv3.OpPut(key, value)).
			Else(clientv3.OpPut(key, value), clientv3.OpGet(key)).
			Commit()
		if err != nil {
			return 0, 0, err
		}
		return r.Header.Revision, r.Header.RaftTerm, nil
	}
	return 0, 0, nil
}
