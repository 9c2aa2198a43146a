package loadgen

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// lockLoad has N contenders, each with its own session on its own member, take M locks in turn:
// acquire (latency.lock_acquire), write a fencing token guarded by its own lock key's revision (a
// holder whose session expired cannot write it), hold, release. Mutual exclusion is checked on the
// tenures as the holders saw them: two holders of one lock at once are reported with their times.
// A holder whose member is paused past the session TTL loses the lock without knowing it: etcd's
// known caveat (found by Jepsen), reported as a finding, not a crash.
type lockLoad struct {
	b       scenarios.Block
	env     Env
	clients []*clientv3.Client
	members []string
	policy  RetryPolicy
	start   time.Time
	ten     tenures

	waiting, maxWaiting atomic.Int64
	acquired, fenced    atomic.Int64 // fenced: fencing writes refused (the holder had lost its lock)
	sessionsLost        atomic.Int64
	holdMu              sync.Mutex
	holds               reports.Samples
	holderMu            sync.Mutex
	holder              map[string]int // lock name -> contender holding it now
}

// lockHoldMetric is the lock workload's trend metric: how long each holder held the lock.
const lockHoldMetric = "lock_hold"

// lockKind is the lock workload as a unit: its rules as the schema reads them and its constructor.
var lockKind = workloadKind{WorkloadRules: scenarios.WorkloadRules{Kind: "lock", Ops: []string{"lock_acquire"}, Holder: "lock-holder", Trends: []string{lockHoldMetric}, Clients: 4,
	Fields: []string{"locks", "hold", "session-ttl"},
	Defaults: func(b *scenarios.Block, def func(string, func())) {
		def("locks", func() { b.Locks = 1 })
		def("hold", func() { b.Hold = scenarios.Duration(50 * time.Millisecond) })
		def("session-ttl", func() { b.SessionTTL = scenarios.Duration(5 * time.Second) })
	},
	Check: func(b scenarios.Block, c scenarios.BlockChecker) {
		if b.Locks < 1 || b.Locks > b.Clients {
			c.Bad("locks", "%d: valid: 1 to clients (%d)", b.Locks, b.Clients)
		}
		checkHolds(b, c)
	}},
	new: func(b scenarios.Block, env Env) (Workload, error) { return newLock(b, env) }}

// checkHolds checks what a lock and an election share: how long a holder holds, the session TTL.
func checkHolds(b scenarios.Block, c scenarios.BlockChecker) {
	if b.Hold <= 0 {
		c.Bad("hold", "must be more than 0")
	}
	if b.SessionTTL < scenarios.Duration(time.Second) || b.SessionTTL%scenarios.Duration(time.Second) != 0 {
		c.Bad("session-ttl", "%s: a session TTL is whole seconds, at least 1s", b.SessionTTL)
	}
}

func newLock(b scenarios.Block, env Env) (*lockLoad, error) {
	env.fill()
	cs, members, err := pinnedClients(env, b.Clients)
	if err != nil {
		return nil, err
	}
	return &lockLoad{b: b, env: env, clients: cs, members: members, policy: PolicyOf(b.Retry), holder: map[string]int{}}, nil
}

func (l *lockLoad) Name() string { return l.b.Name }
func (l *lockLoad) Kind() string { return "lock" }
func (l *lockLoad) Close()       { closeAll(l.clients) }

// HolderMember names the member the holder of the first lock talks to.
func (l *lockLoad) HolderMember() (string, bool) {
	l.holderMu.Lock()
	defer l.holderMu.Unlock()
	i, ok := l.holder[l.lockName(0)]
	if !ok {
		return "", false
	}
	return l.members[i], true
}

func (l *lockLoad) lockName(i int) string { return fmt.Sprintf("%s-%d", l.b.Name, i) }

func (l *lockLoad) Run(ctx context.Context, start time.Time) {
	l.start = start
	perClient(l.clients, func(c *clientv3.Client, i int) { l.contend(ctx, c, i) })
}

func (l *lockLoad) contend(ctx context.Context, c *clientv3.Client, i int) {
	rng := rngFor(l.env.Seed, l.b.Name, i)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	holderName := fmt.Sprintf("contender-%d@%s", i, l.members[i])
	var sess *concurrency.Session
	defer func() {
		if sess != nil {
			_ = sess.Close()
		}
	}()
	for ctx.Err() == nil {
		if sess == nil {
			var ok bool
			if sess, ok = newSession(ctx, c, l.b.SessionTTL.D()); !ok {
				return
			}
		}
		name := l.lockName(rng.IntN(l.b.Locks))
		m := concurrency.NewMutex(sess, l.env.Prefix+"lock/"+name)
		n := l.waiting.Add(1)
		for {
			mx := l.maxWaiting.Load()
			if n <= mx || l.maxWaiting.CompareAndSwap(mx, n) {
				break
			}
		}
		err, ended := l.policy.Do(ctx, l.env.Rec, OpLockAcquire, time.Now(), l.b.Timeout.D(), rng, timer, func(actx context.Context) error {
			return m.Lock(actx)
		})
		l.waiting.Add(-1)
		if ended {
			return
		}
		if err != nil {
			select {
			case <-sess.Done():
				l.sessionsLost.Add(1)
				sess = nil
			default:
			}
			continue
		}
		from := time.Now()
		l.acquired.Add(1)
		l.holderMu.Lock()
		l.holder[name] = i
		l.holderMu.Unlock()
		// The fencing token: written only while this holder's lock key is still the one it created.
		fctx, cancel := context.WithTimeout(ctx, l.b.Timeout.D())
		resp, ferr := c.Txn(fctx).If(m.IsOwner()).Then(clientv3.OpPut(l.env.Prefix+"lock/"+name+"-fence", holderName)).Commit()
		cancel()
		if ferr == nil && !resp.Succeeded {
			l.fenced.Add(1)
		}
		lost := false
		select {
		case <-sess.Done():
			lost = true
		case <-ctx.Done():
		case <-time.After(l.b.Hold.D()):
		}
		select {
		case <-sess.Done():
			lost = true
		default:
		}
		to := time.Now()
		// The holder's work ends with a second fenced write: refused if it lost the lock meanwhile,
		// which is how fencing keeps a holder that was cut off from doing harm.
		fctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), l.b.Timeout.D())
		resp, ferr = c.Txn(fctx).If(m.IsOwner()).Then(clientv3.OpPut(l.env.Prefix+"lock/"+name+"-fence", holderName+" done")).Commit()
		cancel()
		refused := ferr == nil && !resp.Succeeded
		if refused {
			l.fenced.Add(1)
		}
		l.holderMu.Lock()
		if l.holder[name] == i {
			delete(l.holder, name)
		}
		l.holderMu.Unlock()
		how := "released"
		if lost {
			how = "session_lost"
		}
		l.ten.add(Interval{Name: name, Holder: holderName, From: from, To: to, SessionLost: lost, FenceRefused: refused, Ended: how})
		l.holdMu.Lock()
		l.holds = append(l.holds, float64(to.Sub(from)))
		l.holdMu.Unlock()
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.b.Timeout.D())
		_ = m.Unlock(uctx)
		cancel()
		if lost {
			l.sessionsLost.Add(1)
			_ = sess.Close()
			sess = nil
		}
	}
}

func (l *lockLoad) Finish(ctx context.Context) Outcome {
	iv := l.ten.all()
	c := exclusionCheck("lock-exclusion", l.b.Name, iv, l.start,
		"no two contenders hold one lock at the same time, as the holders saw it; a holder whose session expired while it held the lock (its member paused or cut off past the session TTL) is etcd's known caveat")
	if c.Violations > 0 {
		c.Summary += fmt.Sprintf("; %d fencing writes were refused (a holder that had lost its lock tried to write)", l.fenced.Load())
	}
	if err := writeTenures(l.env.Dir, l.b.Name, iv, l.start); err != nil {
		l.env.Log("writing the lock's tenures", "err", err)
	}
	l.holdMu.Lock()
	holds := append(reports.Samples(nil), l.holds...)
	l.holdMu.Unlock()
	return Outcome{
		Checks: []reports.Check{c},
		Result: reports.WorkloadResult{Name: l.b.Name, Kind: "lock", Stats: map[string]float64{
			"acquired": float64(l.acquired.Load()), "max_waiters": float64(l.maxWaiting.Load()), "fencing_refused": float64(l.fenced.Load()),
			"sessions_lost": float64(l.sessionsLost.Load()), "tenures": float64(len(iv)),
		}},
		Trends: map[string]reports.Samples{lockHoldMetric: holds},
	}
}
