package loadgen

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// watchLoad writes to P prefixes at a rate and has N watchers (each on its own client over every
// member, so it can move when its member dies) watch them from the revision the load started at.
// latency.watch is from the put's send time to the event's delivery. Checks: each watcher's
// revisions strictly increase; every acknowledged put on a watched prefix is delivered at the
// revision it was acknowledged with (puts with unknown outcome may or may not be); nothing else is,
// except a duplicate that the client's own retry made (an attempt that timed out but was applied,
// then applied again by the retry): that is reported as a finding, not a violation; a compaction
// (ErrCompacted) is reported, not hidden.
type watchLoad struct {
	b        scenarios.Block
	env      Env
	writer   *clientv3.Client
	writes   *Recorder // the writer's own puts: kept out of the KV load's latency.put
	watchers []*clientv3.Client
	policy   RetryPolicy
	start    time.Time
	startRev int64

	mu      sync.Mutex
	sent    map[string]time.Time // key -> when its put was first sent (until its window settles)
	acked   map[string]ackedPut  // key -> its put (until its window settles)
	unknown map[string]bool      // puts whose outcome is unknown: one may land any time, so they stay
	ws      []*watcherState
	nAcked  int
	tally   watchTally
}

// watchTally is what the settled windows found (settle): the check's counts and examples.
type watchTally struct {
	events, violations, dups int
	examples, dupEx          []string
}

func (t *watchTally) violation(format string, args ...any) {
	t.violations++
	if len(t.examples) < 20 {
		t.examples = append(t.examples, fmt.Sprintf(format, args...))
	}
}

// settleEvery is how often the watch checks run on what every watcher has received so far.
const settleEvery = 10 * time.Second

type ackedPut struct {
	rev     int64
	retried bool // acknowledged after failed attempts, any of which may have been applied too
}

type watcherState struct {
	prefix    string
	mu        sync.Mutex
	last      int64
	got       map[int64]string // revision -> key
	disorder  []string
	nDisorder int
	compacted int64 // the compact revision met, 0 if none
	restarts  int
	// missing counts acknowledged puts this watcher never got (in windows already settled).
	missing      int
	excused      int // acknowledged puts at or before the compaction it met: not owed
	firstMissing int64
}

// watchKind is the watch workload as a unit: its rules as the schema reads them and its constructor.
var watchKind = workloadKind{WorkloadRules: scenarios.WorkloadRules{Kind: "watch", Ops: []string{"watch"}, Clients: 4,
	Fields: []string{"rate", "prefixes"},
	Defaults: func(b *scenarios.Block, def func(string, func())) {
		def("prefixes", func() { b.Prefixes = 2 })
		def("rate", func() { b.Rate = 100 })
	},
	Check: func(b scenarios.Block, c scenarios.BlockChecker) {
		if b.Prefixes < 1 || b.Prefixes > 100 {
			c.Bad("prefixes", "%d: valid: 1 to 100", b.Prefixes)
		}
		if b.Rate <= 0 {
			c.Bad("rate", "a watch workload needs a rate (writes per second to the watched prefixes)")
		}
	}},
	new: func(b scenarios.Block, env Env) (Workload, error) { return newWatch(b, env) }}

func newWatch(b scenarios.Block, env Env) (*watchLoad, error) {
	env.fill()
	w, err := NewClientVia(env.Endpoints, 1, env.Conn)
	if err != nil {
		return nil, err
	}
	l := &watchLoad{b: b, env: env, writer: w, writes: NewRecorder(time.Now(), nil), policy: PolicyOf(b.Retry), sent: map[string]time.Time{}, acked: map[string]ackedPut{}, unknown: map[string]bool{}}
	for i := 0; i < b.Clients; i++ {
		c, err := NewClientVia(env.Endpoints, 1, env.Conn)
		if err != nil {
			l.Close()
			return nil, err
		}
		l.watchers = append(l.watchers, c)
		l.ws = append(l.ws, &watcherState{prefix: l.prefix(i % b.Prefixes), got: map[int64]string{}})
	}
	return l, nil
}

func (l *watchLoad) prefix(p int) string {
	return fmt.Sprintf("%swatch/%s/%d/", l.env.Prefix, l.b.Name, p)
}
func (l *watchLoad) Name() string { return l.b.Name }
func (l *watchLoad) Kind() string { return "watch" }
func (l *watchLoad) Close() {
	if l.writer != nil {
		_ = l.writer.Close()
	}
	closeAll(l.watchers)
}

func (l *watchLoad) Run(ctx context.Context, start time.Time) {
	l.start = start
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	resp, err := l.writer.Get(gctx, l.env.Prefix+"watch/")
	cancel()
	if err != nil {
		l.env.Log("watch workload: reading the start revision", "err", err)
		return
	}
	l.startRev = resp.Header.Revision
	var wg sync.WaitGroup
	for i, c := range l.watchers {
		wg.Add(1)
		go func() { defer wg.Done(); l.watch(ctx, c, l.ws[i]) }()
	}
	// Writers: open loop at the rate, spread over 4 goroutines so one slow put does not hold the rest.
	pacer := NewPacer(time.Now(), l.b.Rate, 0, l.b.Timeout.D())
	var seq atomic.Int64
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rngFor(l.env.Seed, l.b.Name, w)
			timer := time.NewTimer(time.Hour)
			defer timer.Stop()
			for {
				due, ok := pacer.Next(ctx, timer)
				if !ok {
					return
				}
				pacer.Sent(due)
				n := seq.Add(1) - 1
				key := fmt.Sprintf("%s%08d", l.prefix(int(n)%l.b.Prefixes), n)
				var rev int64
				attempts := 0
				l.mu.Lock()
				l.sent[key] = time.Now()
				l.mu.Unlock()
				err, ended := l.policy.Do(ctx, l.writes, OpPut, due, l.b.Timeout.D(), rng, timer, func(actx context.Context) error {
					attempts++
					r, err := l.writer.Put(actx, key, "v")
					if err == nil {
						rev = r.Header.Revision
					}
					return err
				})
				l.mu.Lock()
				if err == nil && !ended {
					l.acked[key] = ackedPut{rev: rev, retried: attempts > 1}
					l.nAcked++
				} else {
					l.unknown[key] = true
				}
				l.mu.Unlock()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(settleEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				l.settle(false)
			}
		}
	}()
	wg.Wait()
}

// settle runs the watch checks on a window and forgets it, so their memory does not grow with the
// run: every watcher has received everything up to R, the lowest revision any of them has reached
// (streams deliver in revision order), so each acknowledged put at or below R is held against
// every watcher of its prefix (missing?) and then forgotten, and each event at or below R against
// the puts (foreign? at another revision?), unless its put's outcome is not known yet. At the end
// (final) every watcher is held up to its own last revision, and every event is judged.
func (l *watchLoad) settle(final bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	low := int64(math.MaxInt64)
	for _, st := range l.ws {
		st.mu.Lock()
		low = min(low, st.last)
		st.mu.Unlock()
	}
	t := &l.tally
	for _, st := range l.ws {
		st.mu.Lock()
		bound := low
		if final {
			bound = st.last // past it, the load's end may have cut the stream
		}
		for key, a := range l.acked {
			if strings.HasPrefix(key, st.prefix) && a.rev <= bound && st.got[a.rev] != key {
				if st.compacted > 0 && a.rev <= st.compacted {
					st.excused++ // compacted away before the watcher reached it: etcd said so (ErrCompacted)
					continue
				}
				st.missing++
				if st.firstMissing == 0 || a.rev < st.firstMissing {
					st.firstMissing = a.rev
				}
			}
		}
		for rev, key := range st.got {
			if !final && rev > low {
				continue
			}
			a, ok := l.acked[key]
			switch {
			case !ok && !l.unknown[key]:
				if _, inFlight := l.sent[key]; inFlight && !final {
					continue // its put has not returned yet: judged in a later window
				}
				t.violation("watcher on %s got %s at revision %d, which nobody wrote", st.prefix, key, rev)
			case ok && a.rev != rev && a.retried:
				// An earlier attempt of a retried put was applied as well: the client's retry wrote
				// it twice. etcd did what it was asked.
				t.dups++
				if len(t.dupEx) < 5 {
					t.dupEx = append(t.dupEx, fmt.Sprintf("watcher on %s got %s at revision %d and again at %d, where its retry was acknowledged: an earlier attempt that timed out had been applied (a duplicate made by the client's retry)", st.prefix, key, rev, a.rev))
				}
			case ok && a.rev != rev:
				t.violation("watcher on %s got %s at revision %d, acknowledged at revision %d in a single attempt", st.prefix, key, rev, a.rev)
			}
			delete(st.got, rev)
			t.events++
		}
		st.mu.Unlock()
	}
	if final {
		return
	}
	for key, a := range l.acked {
		if a.rev <= low {
			delete(l.acked, key)
			delete(l.sent, key)
		}
	}
}

func (l *watchLoad) watch(ctx context.Context, c *clientv3.Client, st *watcherState) {
	next := l.startRev + 1
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		ch := c.Watch(wctx, st.prefix, clientv3.WithPrefix(), clientv3.WithRev(next))
		for resp := range ch {
			if resp.CompactRevision > 0 {
				st.mu.Lock()
				st.compacted = resp.CompactRevision
				st.mu.Unlock()
				next = resp.CompactRevision
				break
			}
			if err := resp.Err(); err != nil {
				break
			}
			now := time.Now()
			for _, ev := range resp.Events {
				rev, key := ev.Kv.ModRevision, string(ev.Kv.Key)
				st.mu.Lock()
				if rev <= st.last {
					st.nDisorder++
					if len(st.disorder) < 20 {
						st.disorder = append(st.disorder, fmt.Sprintf("watcher on %s got revision %d after %d (%.3fs)", st.prefix, rev, st.last, now.Sub(l.start).Seconds()))
					}
				} else {
					st.last = rev
				}
				st.got[rev] = key
				st.mu.Unlock()
				next = max(next, rev+1)
				l.mu.Lock()
				sent, ok := l.sent[key]
				l.mu.Unlock()
				if ok { // a foreign key has no send time: the check reports it
					l.env.Rec.Record(OpWatch, sent, now.Sub(sent), 1, 0, ClassNone)
				}
			}
		}
		cancel()
		st.mu.Lock()
		st.restarts++
		st.mu.Unlock()
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return
		}
	}
}

func (l *watchLoad) Finish(ctx context.Context) Outcome {
	// Watch streams deliver in revision order, so every acknowledged put at or below the last
	// revision a watcher saw must have reached it; later ones the load's end may have cut.
	l.settle(true)
	l.mu.Lock()
	defer l.mu.Unlock()
	order := reports.Check{Name: "watch-order", Workload: l.b.Name, Status: reports.CheckPass,
		Note: "each watcher's events come in strictly increasing revisions, across reconnects"}
	complete := reports.Check{Name: "watch-complete", Workload: l.b.Name, Status: reports.CheckPass,
		Note: "every acknowledged put on a watched prefix reaches its watchers, resumed from the last revision after a reconnect; nothing unwritten arrives; a watcher that meets a compaction (ErrCompacted) resumes at its revision and is owed every put after it, not those at or before it (reported); checked every 10s on what every watcher has received, and forgotten"}
	restarts, compacted, excused := 0, 0, 0
	t := &l.tally
	for _, st := range l.ws {
		st.mu.Lock()
		order.Violations += st.nDisorder
		order.Examples = append(order.Examples, st.disorder...)
		restarts += st.restarts
		if st.compacted > 0 {
			compacted++
			excused += st.excused
			complete.Examples = append(complete.Examples, fmt.Sprintf("watcher on %s met a compaction at revision %d (ErrCompacted) and resumed there; %d acknowledged puts at or before it were not owed", st.prefix, st.compacted, st.excused))
		}
		if st.missing > 0 {
			complete.Violations += st.missing
			complete.Examples = append(complete.Examples, fmt.Sprintf("watcher on %s never got %d acknowledged puts, first at revision %d", st.prefix, st.missing, st.firstMissing))
		}
		st.mu.Unlock()
	}
	complete.Violations += t.violations
	complete.Examples = append(complete.Examples, t.examples...)
	events, dups, dupEx := t.events, t.dups, t.dupEx
	if len(order.Examples) > 20 {
		order.Examples = order.Examples[:20]
	}
	if len(complete.Examples) > 20 {
		complete.Examples = complete.Examples[:20]
	}
	order.Summary = fmt.Sprintf("%d watchers, %d events, %d out of order", len(l.ws), events, order.Violations)
	complete.Summary = fmt.Sprintf("%d acknowledged puts (%d unknown), %d missing or foreign events, %d watchers met a compaction, %d watch restarts",
		l.nAcked, len(l.unknown), complete.Violations, compacted, restarts)
	if compacted > 0 {
		complete.Summary += fmt.Sprintf("; %d acknowledged puts at or before a compaction a watcher met were not owed to it (every put after it was)", excused)
	}
	if dups > 0 {
		complete.Summary += fmt.Sprintf("; %d events were duplicates made by client retries (not an etcd fault)", dups)
		complete.Examples = append(complete.Examples, dupEx...)
	}
	if order.Violations > 0 {
		order.Status = reports.CheckFail
	}
	switch {
	case complete.Violations > 0:
		complete.Status = reports.CheckFail
	case events == 0 || l.nAcked == 0:
		complete.Status = reports.CheckUnknown
		complete.Summary += "; nothing was delivered or acknowledged: the check exercised nothing"
	}
	if events < 2 && order.Status == reports.CheckPass {
		order.Status = reports.CheckUnknown
		order.Summary += "; fewer than 2 events: order was not exercised"
	}
	return Outcome{
		Checks: []reports.Check{order, complete},
		Result: reports.WorkloadResult{Name: l.b.Name, Kind: "watch", Stats: map[string]float64{
			"watchers": float64(len(l.ws)), "events": float64(events), "acked_puts": float64(l.nAcked),
			"unknown_puts": float64(len(l.unknown)), "watch_restarts": float64(restarts), "compacted": float64(compacted),
		}},
	}
}
