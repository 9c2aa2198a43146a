package loadgen

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// electionLoad has candidates, each with its own session on its own member, campaign for one
// election; the leader holds it for hold, then resigns. failover.election_handover is the time from
// a leader's loss (its resignation, or the moment it saw its session end) to the next leader's
// Campaign returning. Two leaders at once are reported like two lock holders.
type electionLoad struct {
	b       scenarios.Block
	env     Env
	clients []*clientv3.Client
	members []string
	start   time.Time
	ten     tenures
	policy  RetryPolicy
	resigns *Recorder // resign attempts: kept out of latency.campaign

	mu        sync.Mutex
	leader    int // -1: none known
	elections int
	lost      int
}

// handoverMetric is the election workload's trend metric: the time from a leader's resignation
// (or loss) to the next leader's win.
const handoverMetric = "failover.election_handover"

// electionKind is the election workload as a unit: its rules as the schema reads them and its
// constructor.
var electionKind = workloadKind{WorkloadRules: scenarios.WorkloadRules{Kind: "election", Ops: []string{"campaign"}, Holder: "election-leader", Trends: []string{handoverMetric}, Clients: 3,
	Fields: []string{"hold", "session-ttl"},
	Defaults: func(b *scenarios.Block, def func(string, func())) {
		def("hold", func() { b.Hold = scenarios.Duration(time.Second) })
		def("session-ttl", func() { b.SessionTTL = scenarios.Duration(3 * time.Second) })
	},
	Check: checkHolds},
	new: func(b scenarios.Block, env Env) (Workload, error) { return newElection(b, env) }}

func newElection(b scenarios.Block, env Env) (*electionLoad, error) {
	env.fill()
	cs, members, err := pinnedClients(env, b.Clients)
	if err != nil {
		return nil, err
	}
	return &electionLoad{b: b, env: env, clients: cs, members: members, leader: -1, policy: PolicyOf(b.Retry), resigns: NewRecorder(time.Now(), nil)}, nil
}

func (e *electionLoad) Name() string { return e.b.Name }
func (e *electionLoad) Kind() string { return "election" }
func (e *electionLoad) Close()       { closeAll(e.clients) }

// HolderMember names the member the current leader's client talks to.
func (e *electionLoad) HolderMember() (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.leader < 0 {
		return "", false
	}
	return e.members[e.leader], true
}

func (e *electionLoad) Run(ctx context.Context, start time.Time) {
	e.start = start
	perClient(e.clients, func(c *clientv3.Client, i int) { e.candidate(ctx, c, i) })
}

// loss records that candidate i stopped leading.
func (e *electionLoad) loss(at time.Time, i int) {
	e.mu.Lock()
	if e.leader == i {
		e.leader = -1
	}
	e.mu.Unlock()
}

// handovers are the gaps between consecutive tenures: from the end of one leader's tenure, as it
// saw it end (its resignation, or its session ending), to the next leader's Campaign returning.
// A next tenure that began before the last one ended is an overlap (the exclusion check reports
// it), not a handover.
func handovers(iv []Interval) (gaps reports.Samples, overlapped int) {
	sort.Slice(iv, func(i, j int) bool { return iv[i].From.Before(iv[j].From) })
	for k := 1; k < len(iv); k++ {
		if gap := iv[k].From.Sub(iv[k-1].To); gap >= 0 {
			gaps = append(gaps, float64(gap))
		} else {
			overlapped++
		}
	}
	return gaps, overlapped
}

func (e *electionLoad) candidate(ctx context.Context, c *clientv3.Client, i int) {
	name := fmt.Sprintf("candidate-%d@%s", i, e.members[i])
	rng := rngFor(e.env.Seed, e.b.Name, i)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var sess *concurrency.Session
	defer func() {
		if sess != nil {
			_ = sess.Close()
		}
	}()
	for ctx.Err() == nil {
		if sess == nil {
			var ok bool
			if sess, ok = newSession(ctx, c, e.b.SessionTTL.D()); !ok {
				return
			}
		}
		el := concurrency.NewElection(sess, e.env.Prefix+"election/"+e.b.Name)
		called := time.Now()
		cctx, cancel := context.WithCancel(ctx)
		go func() { // a campaign ends with the session: a new session campaigns again
			select {
			case <-sess.Done():
				cancel()
			case <-cctx.Done():
			}
		}()
		err := el.Campaign(cctx, name)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			select {
			case <-sess.Done():
				sess = nil
			default:
				sleepCtx(ctx, 50*time.Millisecond)
			}
			continue
		}
		won := time.Now()
		e.env.Rec.Record(OpCampaign, called, won.Sub(called), 1, 0, ClassNone)
		e.mu.Lock()
		e.leader = i
		e.elections++
		e.mu.Unlock()
		lost := false
		select {
		case <-sess.Done():
			lost = true
		case <-ctx.Done():
		case <-time.After(e.b.Hold.D()):
		}
		end := time.Now()
		tenure := Interval{Name: e.b.Name, Holder: name, From: won, To: end, SessionLost: lost}
		if ctx.Err() != nil {
			tenure.Ended = "load_end"
			e.ten.add(tenure)
			return
		}
		if lost {
			tenure.Ended = "session_lost"
			e.ten.add(tenure)
			e.mu.Lock()
			e.lost++
			e.mu.Unlock()
			e.loss(end, i)
			sess = nil
			continue
		}
		e.loss(end, i)
		// Resign under the block's retry policy: a resign forwarded to a leader that dies is lost
		// and waits out the attempt's timeout; the next leader waits for it (or for the session's
		// lease to expire: its TTL, plus the election timeout etcd adds to every lease when a new
		// leader takes over).
		// etcd's Election.Resign forgets the leadership even when its delete failed, so a second
		// Resign is a no-op that returns nil while the key stays: each attempt here is the delete
		// itself, guarded by the key's create revision as Resign's is.
		key, rev := el.Key(), el.Rev()
		rerr, ended := e.policy.Do(ctx, e.resigns, OpCampaign, time.Now(), e.b.Timeout.D(), rng, timer, func(actx context.Context) error {
			_, err := c.Txn(actx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", rev)).Then(clientv3.OpDelete(key)).Commit()
			return err
		})
		tenure.ResignMs = float64(time.Since(end)) / 1e6
		tenure.Ended = "resigned"
		if rerr != nil {
			tenure.Ended = "resign_failed: " + Classify(rerr).String()
		}
		e.ten.add(tenure)
		if ended {
			return
		}
	}
}

func (e *electionLoad) Finish(ctx context.Context) Outcome {
	iv := e.ten.all()
	c := exclusionCheck("election-exclusion", e.b.Name, iv, e.start,
		"no two candidates lead the election at the same time, as the leaders saw it")
	gaps, _ := handovers(iv)
	if err := writeTenures(e.env.Dir, e.b.Name, iv, e.start); err != nil {
		e.env.Log("writing the election's tenures", "err", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	o := Outcome{
		Checks: []reports.Check{c},
		Result: reports.WorkloadResult{Name: e.b.Name, Kind: "election", Stats: map[string]float64{
			"elections": float64(e.elections), "leaders_lost_session": float64(e.lost), "handovers": float64(len(gaps)),
		}},
		Trends: map[string]reports.Samples{handoverMetric: gaps},
	}
	if len(gaps) > 0 { // JSON has no NaN
		o.Result.Stats["handover_p50_ms"] = gaps.Quantile(50) / 1e6
		o.Result.Stats["handover_max_ms"] = gaps.Max() / 1e6
	}
	return o
}
