package loadgen

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Failover measures one fault that took the leader away:
//   - leader elected: the earliest evidence of a new leader after the fault: a surviving member's
//     Status naming a leader in a newer term, or a prober write acknowledged in a newer term (only a
//     new leader can commit in a newer term);
//   - write restored: the first prober write acknowledged that was sent after the fault and committed
//     in a newer term, or sent after the heal (a paused leader may keep its leadership on resume).
//
// Requiring a newer term keeps out a write the old leader committed in the instant before it died.
type Failover struct {
	FaultAt   time.Time
	OldLeader string
	OldTerm   uint64

	mu           sync.Mutex
	healAt       time.Time
	electedAt    time.Time
	electedBy    string
	newLeader    string
	newTerm      uint64
	restoredAt   time.Time
	restoredTerm uint64
}

// Healed tells the tracker that the fault was healed at t.
func (f *Failover) Healed(t time.Time) {
	f.mu.Lock()
	f.healAt = t
	f.mu.Unlock()
}

func (f *Failover) status(st MemberStatus, nameOf func(uint64) string) {
	if st.At.Before(f.FaultAt) || st.Leader == 0 || st.Term <= f.OldTerm {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.electedAt.IsZero() || st.At.Before(f.electedAt) {
		f.electedAt, f.electedBy, f.newTerm = st.At, "status", st.Term
		f.newLeader = nameOf(st.Leader)
	} else if f.newLeader == "" && st.Term == f.newTerm {
		f.newLeader = nameOf(st.Leader)
	}
}

func (f *Failover) ack(sent, acked time.Time, term uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	newer := !sent.Before(f.FaultAt) && term > f.OldTerm
	afterHeal := !f.healAt.IsZero() && !sent.Before(f.healAt)
	if !newer && !afterHeal {
		return
	}
	if newer && (f.electedAt.IsZero() || acked.Before(f.electedAt)) {
		f.electedAt, f.electedBy, f.newTerm = acked, "write", term
	}
	if f.restoredAt.IsZero() || acked.Before(f.restoredAt) {
		f.restoredAt, f.restoredTerm = acked, term
	}
}

// FailoverResult is what a Failover measured; a negative duration means not seen.
type FailoverResult struct {
	LeaderElected time.Duration
	ElectedBy     string
	NewLeader     string
	NewTerm       uint64
	WriteRestored time.Duration
	// SameLeaderAfterHeal: writes resumed under the old leader in its old term after the heal.
	SameLeaderAfterHeal bool
}

// Result returns the measurements so far.
func (f *Failover) Result() FailoverResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := FailoverResult{LeaderElected: -1, WriteRestored: -1, ElectedBy: f.electedBy, NewLeader: f.newLeader, NewTerm: f.newTerm}
	if !f.electedAt.IsZero() {
		r.LeaderElected = f.electedAt.Sub(f.FaultAt)
	}
	if !f.restoredAt.IsZero() {
		r.WriteRestored = f.restoredAt.Sub(f.FaultAt)
		r.SameLeaderAfterHeal = f.restoredTerm <= f.OldTerm
	}
	return r
}

// Done tells whether both measurements are in.
func (f *Failover) Done() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.electedAt.IsZero() && !f.restoredAt.IsZero()
}

// Monitor fans watcher answers and prober acknowledgements out to the failovers being measured.
type Monitor struct {
	mu        sync.Mutex
	failovers []*Failover
}

// Track starts feeding f.
func (m *Monitor) Track(f *Failover) {
	m.mu.Lock()
	m.failovers = append(m.failovers, f)
	m.mu.Unlock()
}

func (m *Monitor) active() []*Failover {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.failovers
}

func (m *Monitor) status(st MemberStatus, nameOf func(uint64) string) {
	for _, f := range m.active() {
		f.status(st, nameOf)
	}
}

func (m *Monitor) ack(sent, acked time.Time, term uint64) {
	for _, f := range m.active() {
		f.ack(sent, acked, term)
	}
}

// ProbeKey is the key the failover prober writes.
const ProbeKey = "chaos/probe"

// Prober writes ProbeKey every Interval (10ms) with a short Timeout (100ms), open loop: a probe is
// sent on time even while earlier ones hang, so the first write after an outage is seen within one
// interval. It runs beside the load and is not part of it.
type Prober struct {
	Interval time.Duration
	Timeout  time.Duration
	client   *clientv3.Client
	mon      *Monitor
	sent     atomic.Int64
	acked    atomic.Int64
	from     atomic.Int64 // probes sent before this (unix ns) are not counted
}

// NewProber connects to all endpoints.
func NewProber(endpoints []string, mon *Monitor) (*Prober, error) {
	c, err := MeasureClient(endpoints)
	if err != nil {
		return nil, err
	}
	return &Prober{Interval: 10 * time.Millisecond, Timeout: 100 * time.Millisecond, client: c, mon: mon}, nil
}

// Close closes the client.
func (p *Prober) Close() { _ = p.client.Close() }

// Counts returns probes sent and acknowledged.
func (p *Prober) Counts() (sent, acked int64) { return p.sent.Load(), p.acked.Load() }

// ResetCounts zeroes the counts (at the end of the warm-up): probes sent before now are not counted,
// even when their answer comes later.
func (p *Prober) ResetCounts() {
	p.from.Store(time.Now().UnixNano())
	p.sent.Store(0)
	p.acked.Store(0)
}

// Run probes until ctx ends.
func (p *Prober) Run(ctx context.Context) {
	tick := time.NewTicker(p.Interval)
	defer tick.Stop()
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	defer wg.Wait()
	var seq int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			continue // 64 probes in flight: the cluster is not answering; skip this one
		}
		seq++
		wg.Add(1)
		go func(n int64) {
			defer wg.Done()
			defer func() { <-sem }()
			sent := time.Now()
			counted := sent.UnixNano() >= p.from.Load()
			if counted {
				p.sent.Add(1)
			}
			pctx, cancel := context.WithTimeout(ctx, p.Timeout)
			resp, err := p.client.Put(pctx, ProbeKey, strconv.FormatInt(n, 10))
			cancel()
			if err != nil {
				return
			}
			acked := time.Now()
			if counted && sent.UnixNano() >= p.from.Load() {
				p.acked.Add(1)
			}
			p.mon.ack(sent, acked, resp.Header.RaftTerm)
		}(seq)
	}
}

// Recovery measures how a healed member comes back: until its applied index reaches target (the
// leader's applied index when the heal was done), and until a linearizable read through it succeeds.
// A negative duration means not seen before ctx ended.
func Recovery(ctx context.Context, endpoint string, healedAt time.Time, target uint64) (caughtUp, readRestored time.Duration, err error) {
	c, err := MeasureClient([]string{endpoint})
	if err != nil {
		return -1, -1, err
	}
	defer c.Close()
	caughtUp, readRestored = -1, -1
	var wg sync.WaitGroup
	wg.Add(2)
	loop := func(try func(context.Context) bool) {
		defer wg.Done()
		for ctx.Err() == nil {
			actx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			ok := try(actx)
			cancel()
			if ok {
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	go loop(func(actx context.Context) bool {
		st, err := Status(actx, c)
		if err == nil && st.RaftAppliedIndex >= target {
			caughtUp = time.Since(healedAt)
			return true
		}
		return false
	})
	go loop(func(actx context.Context) bool {
		if _, err := c.Get(actx, ProbeKey); err == nil {
			readRestored = time.Since(healedAt)
			return true
		}
		return false
	})
	wg.Wait()
	return caughtUp, readRestored, nil
}
