package loadgen

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Failover records what one fault cost, whatever the fault was, and decides only afterwards from
// what it saw, never from what the fault was expected to do:
//   - an election: the first sighting after the fault of a newer term with a leader, by a member's
//     Status or by a prober write committed in a newer term (only a new leader commits in one);
//   - writes restored, when there was an election: the first prober write acknowledged that was
//     sent after the fault and committed in a newer term, or sent after the heal (a paused leader
//     may keep its leadership on resume);
//   - the write outage: the longest span, from the fault to the end of its window, in which no
//     prober write sent in that span was acknowledged.
//
// It is fed from before the injection (Track), so nothing is missed while the fault's own call runs;
// Injected sets the fault's time, and sightings before it are ignored.
type Failover struct {
	OldLeader string
	OldTerm   uint64

	mu        sync.Mutex
	faultAt   time.Time
	healAt    time.Time
	closedAt  time.Time // acknowledgements of writes sent after this are not kept
	elections []sighting
	sends     []time.Time     // send times of acknowledged prober writes, from the fault on
	lats      []time.Duration // and how long each took
	restored  time.Time       // ack time of the first write that counts as restored
	restTerm  uint64
	// early are the acknowledgements that came while the injection's own call ran (a graceful
	// stop waits for the member to exit): whether they restored writes is decided once the fault's
	// time is known.
	early []earlyAck
}

type earlyAck struct {
	sent, acked time.Time
	term        uint64
}

type sighting struct {
	at     time.Time
	term   uint64
	leader string
	by     string
}

// maxSightings bounds the elections one fault keeps (the first of each newer term).
const maxSightings = 16

// Injected tells the tracker when the fault took effect.
func (f *Failover) Injected(t time.Time) {
	f.mu.Lock()
	f.faultAt = t
	for _, a := range f.early {
		f.restore(a.sent, a.acked, a.term)
	}
	f.early = nil
	f.mu.Unlock()
}

// Healed tells the tracker that the fault was healed at t.
func (f *Failover) Healed(t time.Time) {
	f.mu.Lock()
	f.healAt = t
	f.mu.Unlock()
}

// Close ends what the tracker keeps at t (the next fault's injection, or the load's end).
func (f *Failover) Close(t time.Time) {
	f.mu.Lock()
	if f.closedAt.IsZero() || t.Before(f.closedAt) {
		f.closedAt = t
	}
	f.mu.Unlock()
}

// Release drops what the tracker kept once its result is taken (Result) and it is no longer fed:
// a soak's hundreds of faults keep their results, not each one's prober acknowledgements.
func (f *Failover) Release() {
	f.mu.Lock()
	f.elections, f.sends, f.lats = nil, nil, nil
	f.mu.Unlock()
}

func (f *Failover) sight(at time.Time, term uint64, leader, by string) {
	for i := range f.elections {
		if f.elections[i].term == term {
			if at.Before(f.elections[i].at) {
				f.elections[i].at, f.elections[i].by = at, by
			}
			if f.elections[i].leader == "" {
				f.elections[i].leader = leader
			}
			return
		}
	}
	if len(f.elections) < maxSightings {
		f.elections = append(f.elections, sighting{at: at, term: term, leader: leader, by: by})
	}
}

func (f *Failover) status(st MemberStatus, nameOf func(uint64) string) {
	if st.Leader == 0 || st.Term <= f.OldTerm {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closedAt.IsZero() && st.At.After(f.closedAt) {
		return
	}
	f.sight(st.At, st.Term, nameOf(st.Leader), "status")
}

func (f *Failover) ack(sent, acked time.Time, term uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closedAt.IsZero() && sent.After(f.closedAt) {
		return
	}
	if term > f.OldTerm {
		f.sight(acked, term, "", "write")
	}
	if !f.faultAt.IsZero() && sent.Before(f.faultAt) {
		return
	}
	f.sends = append(f.sends, sent)
	f.lats = append(f.lats, acked.Sub(sent))
	if f.faultAt.IsZero() {
		// Before the injection's own call ended: kept, decided once the fault's time is known.
		f.early = append(f.early, earlyAck{sent, acked, term})
		return
	}
	f.restore(sent, acked, term)
}

// restore counts an acknowledged write sent after the fault as restoring writes if it was
// committed in a newer term, or sent after the heal.
func (f *Failover) restore(sent, acked time.Time, term uint64) {
	if sent.Before(f.faultAt) {
		return
	}
	afterHeal := !f.healAt.IsZero() && !sent.Before(f.healAt)
	if (term > f.OldTerm || afterHeal) && (f.restored.IsZero() || acked.Before(f.restored)) {
		f.restored, f.restTerm = acked, term
	}
}

// FailoverResult is what a Failover measured. Election false: no leader change was seen in the
// window, and the fault adds no failover sample. A negative duration means not seen.
type FailoverResult struct {
	Election      bool
	LeaderElected time.Duration
	ElectedBy     string
	NewLeader     string
	NewTerm       uint64
	WriteRestored time.Duration
	// SameLeaderAfterHeal: writes resumed under the old leader in its old term after the heal.
	SameLeaderAfterHeal bool
	// WriteOutage is the longest span of the window in which no prober write sent in it was
	// acknowledged; OutageFrom is when it began.
	WriteOutage time.Duration
	OutageFrom  time.Time
	// Acked is how many prober writes sent in the window were acknowledged; SlowestAck the longest
	// any of them took (a stall shorter than the prober's timeout shows here, not as an outage).
	Acked      int
	SlowestAck time.Duration
}

// Result decides what the fault cost in the window from its injection to windowEnd.
func (f *Failover) Result(windowEnd time.Time) FailoverResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := FailoverResult{LeaderElected: -1, WriteRestored: -1}
	if f.faultAt.IsZero() {
		return r
	}
	var first *sighting
	for i := range f.elections {
		e := &f.elections[i]
		if e.at.Before(f.faultAt) || e.at.After(windowEnd) {
			continue
		}
		if first == nil || e.at.Before(first.at) {
			first = e
		}
	}
	if first != nil {
		r.Election = true
		r.LeaderElected, r.ElectedBy, r.NewTerm, r.NewLeader = first.at.Sub(f.faultAt), first.by, first.term, first.leader
		if r.NewLeader == "" { // seen first by a write: a member's Status may name it
			for _, e := range f.elections {
				if e.term == first.term && e.leader != "" {
					r.NewLeader = e.leader
				}
			}
		}
		if !f.restored.IsZero() {
			r.WriteRestored = f.restored.Sub(f.faultAt)
			r.SameLeaderAfterHeal = f.restTerm <= f.OldTerm
		}
	}
	// The outage: the longest gap between the fault, the send times of acknowledged writes in the
	// window, and the window's end.
	sends := make([]time.Time, 0, len(f.sends))
	for i, t := range f.sends {
		if !t.Before(f.faultAt) && !t.After(windowEnd) {
			sends = append(sends, t)
			r.SlowestAck = max(r.SlowestAck, f.lats[i])
		}
	}
	slices.SortFunc(sends, func(a, b time.Time) int { return a.Compare(b) })
	r.Acked = len(sends)
	prev := f.faultAt
	for _, t := range append(sends, windowEnd) {
		if gap := t.Sub(prev); gap > r.WriteOutage {
			r.WriteOutage, r.OutageFrom = gap, prev
		}
		prev = t
	}
	return r
}

// Pending tells whether a measurement is still open: a leader change was seen and writes are not
// restored yet.
func (f *Failover) Pending() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.faultAt.IsZero() || !f.restored.IsZero() {
		return false
	}
	for _, e := range f.elections {
		if !e.at.Before(f.faultAt) {
			return true
		}
	}
	return false
}

// Monitor fans watcher answers and prober acknowledgements out to the failovers being measured, and
// paces the observers: they run at their full rate (10ms) only while a fault is being measured or a
// change is suspected, and at IdleInterval otherwise, so that a calm cluster is not taxed by a
// hundred probe writes and three hundred Status calls a second. A change is suspected when any
// response (the load's own, a probe's, a Status) carries a newer raft term than seen so far, when an
// op or a probe fails, or when a probe is slower than SlowProbe; the suspicion lasts SuspectHold.
type Monitor struct {
	mu        sync.Mutex
	failovers []*Failover

	tracked    atomic.Int32
	suspected  atomic.Int64  // how many suspicions woke idle observers
	alertUntil atomic.Int64  // unix ns
	term       atomic.Uint64 // the newest raft term any response carried
	// Steady: the observers never slow down (every probe and poll at the full rate).
	Steady bool

	wakeMu sync.Mutex
	wake   chan struct{} // closed when the observers must speed up now
}

// Wake returns a channel closed when the observers go from their idle pace to their full rate:
// an idle observer sleeps a whole IdleInterval, but not through a suspicion (nil Monitor: never).
func (m *Monitor) Wake() <-chan struct{} {
	if m == nil {
		return nil
	}
	m.wakeMu.Lock()
	defer m.wakeMu.Unlock()
	if m.wake == nil {
		m.wake = make(chan struct{})
	}
	return m.wake
}

func (m *Monitor) wakeUp() {
	m.wakeMu.Lock()
	if m.wake != nil {
		close(m.wake)
		m.wake = nil
	}
	m.wakeMu.Unlock()
}

// Pacing of the observers between faults (see Monitor).
const (
	IdleInterval = 100 * time.Millisecond
	SuspectHold  = 5 * time.Second
	SlowProbe    = 100 * time.Millisecond
)

// Track starts feeding f; the observers run at their full rate until it is untracked.
func (m *Monitor) Track(f *Failover) {
	m.mu.Lock()
	m.failovers = append(m.failovers, f)
	m.tracked.Store(int32(len(m.failovers)))
	m.mu.Unlock()
	m.wakeUp()
}

// Untrack stops feeding f.
func (m *Monitor) Untrack(f *Failover) {
	m.mu.Lock()
	m.failovers = slices.DeleteFunc(slices.Clone(m.failovers), func(x *Failover) bool { return x == f })
	m.tracked.Store(int32(len(m.failovers)))
	m.mu.Unlock()
}

// Suspect makes the observers run at their full rate from at for SuspectHold.
func (m *Monitor) Suspect(at time.Time) {
	until := at.Add(SuspectHold).UnixNano()
	for {
		prev := m.alertUntil.Load()
		if prev >= until {
			return
		}
		if m.alertUntil.CompareAndSwap(prev, until) {
			if prev < time.Now().UnixNano() { // it was idle: wake the observers now
				m.suspected.Add(1)
				m.wakeUp()
			}
			return
		}
	}
}

// Suspicions is how many times a suspicion woke the observers from their idle pace so far.
func (m *Monitor) Suspicions() int64 { return m.suspected.Load() }

// Fast tells whether the observers run at their full rate at now.
func (m *Monitor) Fast(now time.Time) bool {
	return m == nil || m.Steady || m.tracked.Load() > 0 || now.UnixNano() < m.alertUntil.Load()
}

// Observe is what one response or failure of any client says: the raft term its header carried (0:
// none), and whether the call failed. A newer term than any seen, or a failure, is a suspected change.
func (m *Monitor) Observe(term uint64, failed bool) {
	if m == nil {
		return
	}
	if failed {
		m.Suspect(time.Now())
		return
	}
	if term == 0 {
		return
	}
	for {
		prev := m.term.Load()
		if term <= prev {
			return
		}
		if m.term.CompareAndSwap(prev, term) {
			if prev != 0 {
				m.Suspect(time.Now())
			}
			return
		}
	}
}

func (m *Monitor) active() []*Failover {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.failovers
}

func (m *Monitor) status(st MemberStatus, nameOf func(uint64) string) {
	m.Observe(st.Term, false)
	if st.Leader == 0 {
		m.Suspect(st.At)
	}
	for _, f := range m.active() {
		f.status(st, nameOf)
	}
}

func (m *Monitor) ack(sent, acked time.Time, term uint64) {
	m.Observe(term, false)
	for _, f := range m.active() {
		f.ack(sent, acked, term)
	}
}

// ProbeKey is the key the failover prober writes by default (Prober.Key).
const ProbeKey = DefaultPrefix + "probe"

// Prober writes ProbeKey every Interval (10ms) with a Timeout per write (the workload's timeout by
// default: a slow cluster that still answers is not an outage), open loop: a probe is sent on time
// even while earlier ones hang, so the first write after an outage is seen within one interval. It
// runs beside the load and is not part of it. Its counts (availability) cover the load only.
//
// Between faults, with nothing suspected (Monitor.Fast), it writes every IdleInterval instead; so
// that availability stays a share of time, not of probes, each probe stands for the time since the
// one before it (its weight), and availability is the acknowledged probes' weight over all of it.
type Prober struct {
	Key      string // the key it writes (default ProbeKey)
	Interval time.Duration
	Timeout  time.Duration
	client   *clientv3.Client
	mon      *Monitor
	// sent and acked count the probes of the load (after the warm-up); sentW and ackedW sum their
	// weights (ns of the load each stands for).
	sent, acked   atomic.Int64
	sentW, ackedW atomic.Int64
	// total and totalAcked count every probe since Run began (never reset).
	total, totalAcked atomic.Int64
	lastAck           atomic.Int64 // unix ns of the newest acknowledged probe's send time
	// settled and settledOK sum the weights of every probe that returned (acknowledged or failed),
	// the whole run long: differences over a window give its availability (a stop condition's).
	settled, settledOK atomic.Int64
	from               atomic.Int64 // probes sent before this (unix ns) are not counted
	until              atomic.Int64 // nor those sent after this (0: no end yet)
}

// NewProber connects to all endpoints (through conn; nil: plain TCP); timeout is each write's (0: 1s).
func NewProber(endpoints []string, mon *Monitor, interval, timeout time.Duration, conn *Conn) (*Prober, error) {
	c, err := MeasureClientVia(endpoints, conn)
	if err != nil {
		return nil, err
	}
	if interval <= 0 {
		interval = 10 * time.Millisecond
	}
	if timeout <= 0 {
		timeout = time.Second
	}
	return &Prober{Key: ProbeKey, Interval: interval, Timeout: timeout, client: c, mon: mon}, nil
}

// SinceAck is how long ago the newest acknowledged probe was sent (0 before any): a live write outage.
func (p *Prober) SinceAck() time.Duration {
	ns := p.lastAck.Load()
	if ns == 0 {
		return 0
	}
	return time.Since(time.Unix(0, ns))
}

// Close closes the client.
func (p *Prober) Close() { _ = p.client.Close() }

// Counts returns probes sent and acknowledged during the load.
func (p *Prober) Counts() (sent, acked int64) { return p.sent.Load(), p.acked.Load() }

// Totals returns every probe sent since Run began and those acknowledged (never reset).
func (p *Prober) Totals() (sent, acked int64) { return p.total.Load(), p.totalAcked.Load() }

// Availability is the share of the load's time for which the probe sent was acknowledged (each
// probe weighs the time since the one before it), and the time the probes stood for; ok false
// before any probe of the load.
func (p *Prober) Availability() (share float64, probed time.Duration, ok bool) {
	sw := p.sentW.Load()
	if sw == 0 {
		return 0, 0, false
	}
	return float64(p.ackedW.Load()) / float64(sw), time.Duration(sw), true
}

// Settled returns the weight (ns) of the probes that have returned so far, and of those of them
// that were acknowledged, since the prober started (never reset): a window's availability is the
// ratio of differences.
func (p *Prober) Settled() (done, acked int64) {
	acked = p.settledOK.Load()
	return p.settled.Load(), acked
}

// ResetCounts zeroes the counts (at the end of the warm-up): probes sent before now are not counted,
// even when their answer comes later.
func (p *Prober) ResetCounts() {
	p.from.Store(time.Now().UnixNano())
	p.sent.Store(0)
	p.acked.Store(0)
	p.sentW.Store(0)
	p.ackedW.Store(0)
}

// StopCounting ends the counts at now (the load's end): probes sent after it still feed the
// failover measurements, but not availability.
func (p *Prober) StopCounting() { p.until.Store(time.Now().UnixNano()) }

func (p *Prober) counted(sent time.Time) bool {
	ns := sent.UnixNano()
	until := p.until.Load()
	return ns >= p.from.Load() && (until == 0 || ns <= until)
}

// Run probes until ctx ends.
func (p *Prober) Run(ctx context.Context) {
	timer := time.NewTimer(p.Interval)
	defer timer.Stop()
	// Enough room for every probe of one timeout in flight (and then some): a probe skipped for
	// lack of room would hide the first write after an outage.
	sem := make(chan struct{}, max(64, 2*int(p.Timeout/p.Interval)+1))
	var wg sync.WaitGroup
	defer wg.Wait()
	var seq int64
	var last time.Time
	var carry time.Duration // the time of skipped slots, for the next probe's weight
	for {
		// The next probe is due an interval after the last one was sent (not after this loop came
		// round), so that a late wake-up does not push every later probe back.
		wake := p.mon.Wake()
		every := p.Interval
		if !p.mon.Fast(time.Now()) {
			every = max(p.Interval, IdleInterval)
		}
		timer.Reset(max(0, every-time.Since(last)))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-wake:
		}
		now := time.Now()
		fast := p.mon.Fast(now)
		weight := p.Interval
		if !last.IsZero() {
			weight = min(now.Sub(last), max(IdleInterval, p.Interval))
		}
		select {
		case sem <- struct{}{}:
		default:
			// No room (more probes hang than one timeout can hold): this slot is skipped, and its
			// time goes to the next probe sent, so that availability still covers it.
			carry += weight
			last = now
			continue
		}
		weight, carry = weight+carry, 0
		last = now
		seq++
		wg.Add(1)
		go func(n int64) {
			defer wg.Done()
			defer func() { <-sem }()
			sent := time.Now()
			p.total.Add(1)
			counted := p.counted(sent)
			if counted {
				p.sent.Add(1)
				p.sentW.Add(int64(weight))
			}
			var slow *time.Timer
			if !fast { // a probe slower than usual between faults: observe at the full rate
				slow = time.AfterFunc(SlowProbe, func() { p.mon.Suspect(time.Now()) })
			}
			pctx, cancel := context.WithTimeout(ctx, p.Timeout)
			resp, err := p.client.Put(pctx, p.Key, strconv.FormatInt(n, 10))
			cancel()
			if slow != nil {
				slow.Stop()
			}
			if err != nil {
				if ctx.Err() == nil {
					p.settled.Add(int64(weight))
					p.mon.Observe(0, true)
				}
				return
			}
			p.settled.Add(int64(weight)) // before settledOK, which Settled reads first: acked never exceeds done
			p.settledOK.Add(int64(weight))
			p.totalAcked.Add(1)
			acked := time.Now()
			if counted && p.counted(sent) { // ResetCounts may have come in between
				p.acked.Add(1)
				p.ackedW.Add(int64(weight))
			}
			for {
				prev := p.lastAck.Load()
				if sent.UnixNano() <= prev || p.lastAck.CompareAndSwap(prev, sent.UnixNano()) {
					break
				}
			}
			p.mon.ack(sent, acked, resp.Header.RaftTerm)
		}(seq)
	}
}

// Recovery measures how a healed member comes back: until its applied index reaches target (the
// leader's applied index when the heal was done), and until a linearizable read of key through it succeeds.
// A negative duration means not seen before ctx ended.
func Recovery(ctx context.Context, endpoint, key string, healedAt time.Time, target uint64, conn *Conn) (caughtUp, readRestored time.Duration, err error) {
	c, err := MeasureClientVia([]string{endpoint}, conn)
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
		if _, err := c.Get(actx, key); err == nil {
			readRestored = time.Since(healedAt)
			return true
		}
		return false
	})
	wg.Wait()
	return caughtUp, readRestored, nil
}
