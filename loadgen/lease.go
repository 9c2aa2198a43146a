package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// leaseLoad runs lease lifecycles, each client one at a time: grant a lease, put keys under it,
// keep it alive for a TTL, then either revoke it or let it expire, and check what etcd did with the
// keys:
//   - after a revoke is acknowledged the keys are gone;
//   - while keep-alives are acknowledged within the TTL the lease does not expire;
//   - once keep-alives stop, the keys are gone within TTL + tolerance of the last acknowledged one,
//     where a leader change restarts the clock (a new leader renews every lease: etcd's lessor
//     promotes with a full TTL), and tolerance is 1s + the election timeout (the leader checks
//     expiries every 500ms, and the revoke is a raft proposal).
type leaseLoad struct {
	b       scenarios.Block
	env     Env
	clients []*clientv3.Client
	policy  RetryPolicy
	start   time.Time

	mu                                    sync.Mutex
	granted, revoked, expired, keepalives int
	keptAcrossLeaderChange, lateExpiry    int
	maxExpiryOverTTL                      time.Duration
	revokeFail, keptFail, lateFail        []string
	revokeN, keptN, lateN                 int
}

// leaseKind is the lease workload as a unit: its rules as the schema reads them and its constructor.
var leaseKind = workloadKind{WorkloadRules: scenarios.WorkloadRules{Kind: "lease", Ops: []string{"lease_grant", "lease_keepalive", "lease_revoke"}, Clients: 4,
	Fields: []string{"rate", "ttl", "keys"},
	Defaults: func(b *scenarios.Block, def func(string, func())) {
		def("ttl", func() { b.TTL = scenarios.Duration(5 * time.Second) })
		def("keys", func() { b.Keys = 2 })
		def("rate", func() { b.Rate = 5 })
	},
	Check: func(b scenarios.Block, c scenarios.BlockChecker) {
		if b.TTL < scenarios.Duration(time.Second) || b.TTL%scenarios.Duration(time.Second) != 0 {
			c.Bad("ttl", "%s: a lease TTL is whole seconds, at least 1s", b.TTL)
		}
		if b.Keys < 0 || b.Keys > 100 {
			c.Bad("keys", "%d: valid: 0 to 100 keys per lease", b.Keys)
		}
		if b.Rate <= 0 {
			c.Bad("rate", "a lease workload needs a rate (leases granted per second)")
		}
	}},
	new: func(b scenarios.Block, env Env) (Workload, error) { return newLease(b, env) }}

func newLease(b scenarios.Block, env Env) (*leaseLoad, error) {
	env.fill()
	cs, _, err := pinnedClients(env, b.Clients)
	if err != nil {
		return nil, err
	}
	return &leaseLoad{b: b, env: env, clients: cs, policy: PolicyOf(b.Retry)}, nil
}

func (l *leaseLoad) Name() string { return l.b.Name }
func (l *leaseLoad) Kind() string { return "lease" }
func (l *leaseLoad) Close()       { closeAll(l.clients) }

func (l *leaseLoad) Run(ctx context.Context, start time.Time) {
	l.start = start
	perClient(l.clients, func(c *clientv3.Client, i int) {
		rng := rngFor(l.env.Seed, l.b.Name, i)
		timer := time.NewTimer(time.Hour)
		defer timer.Stop()
		interval := time.Duration(float64(time.Second) * float64(len(l.clients)) / l.b.Rate)
		for n := 0; ctx.Err() == nil; n++ {
			next := time.Now().Add(interval)
			l.lifecycle(ctx, c, i, n, rng.IntN(2) == 0, timer)
			if d := time.Until(next); d > 0 && !sleepCtx(ctx, d) {
				return
			}
		}
	})
}

func (l *leaseLoad) note(list *[]string, n *int, format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	*n++
	if len(*list) < 20 {
		*list = append(*list, fmt.Sprintf(format, args...))
	}
}

func (l *leaseLoad) since(t time.Time) float64 { return t.Sub(l.start).Seconds() }

// keysLeft counts the lease's keys still there (a linearizable read).
func (l *leaseLoad) keysLeft(ctx context.Context, c *clientv3.Client, prefix string) (int64, error) {
	gctx, cancel := context.WithTimeout(ctx, l.b.Timeout.D())
	defer cancel()
	resp, err := c.Get(gctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return resp.Count, nil
}

func (l *leaseLoad) lifecycle(ctx context.Context, c *clientv3.Client, client, n int, revoke bool, timer *time.Timer) {
	rng := rngFor(l.env.Seed, l.b.Name, client*100000+n)
	var id clientv3.LeaseID
	var ttl time.Duration
	// renewed is the send time of the attempt that last renewed the lease (its grant, then each
	// acknowledged keep-alive): the leader renews it after that, so it cannot expire before
	// renewed + TTL. lastAck, when the renewal was acknowledged, bounds it from above.
	var renewed, attemptSent time.Time
	if err, ended := l.policy.Do(ctx, l.env.Rec, OpLeaseGrant, time.Now(), l.b.Timeout.D(), rng, timer, func(actx context.Context) error {
		attemptSent = time.Now()
		resp, err := c.Grant(actx, int64(l.b.TTL.D().Seconds()))
		if err == nil {
			id, ttl = resp.ID, time.Duration(resp.TTL)*time.Second
		}
		return err
	}); err != nil || ended {
		return
	}
	renewed = attemptSent
	l.mu.Lock()
	l.granted++
	l.mu.Unlock()
	prefix := fmt.Sprintf("%slease/%s/%x/", l.env.Prefix, l.b.Name, int64(id))
	for k := 0; k < l.b.Keys; k++ {
		pctx, cancel := context.WithTimeout(ctx, l.b.Timeout.D())
		_, err := c.Put(pctx, fmt.Sprintf("%s%d", prefix, k), "v", clientv3.WithLease(id))
		cancel()
		if err != nil {
			// The lease may be left with fewer keys: it still gets its lifecycle, counted on what is there.
			break
		}
	}
	lastAck := time.Now()
	leadersBefore := len(l.env.Leaders())
	keepUntil := time.Now().Add(ttl)
	for time.Now().Before(keepUntil) && ctx.Err() == nil {
		if !sleepCtx(ctx, ttl/4) {
			return
		}
		sent := time.Now()
		err, ended := l.policy.Do(ctx, l.env.Rec, OpLeaseKeepAlive, sent, l.b.Timeout.D(), rng, timer, func(actx context.Context) error {
			attemptSent = time.Now()
			_, err := c.KeepAliveOnce(actx, id)
			return err
		})
		if ended {
			return
		}
		switch {
		case err == nil:
			lastAck, renewed = time.Now(), attemptSent
			l.mu.Lock()
			l.keepalives++
			l.mu.Unlock()
		case errors.Is(rpctypes.Error(err), rpctypes.ErrLeaseNotFound):
			// Gone: a violation only if it was gone before its TTL ran out from the last acknowledged
			// keep-alive (keep-alives that failed, as through a dead member, let it expire rightly).
			if got := time.Now(); expiredEarly(renewed, ttl, got) {
				l.note(&l.keptFail, &l.keptN, "lease %x was gone at %.3fs although a keep-alive sent at %.3fs was acknowledged at %.3fs (TTL %s)", int64(id), l.since(got), l.since(renewed), l.since(lastAck), ttl)
			}
			return
		}
	}
	if len(l.env.Leaders()) > leadersBefore {
		l.mu.Lock()
		l.keptAcrossLeaderChange++
		l.mu.Unlock()
	}
	if revoke {
		err, ended := l.policy.Do(ctx, l.env.Rec, OpLeaseRevoke, time.Now(), l.b.Timeout.D(), rng, timer, func(actx context.Context) error {
			_, err := c.Revoke(actx, id)
			return err
		})
		if ended || (err != nil && !errors.Is(rpctypes.Error(err), rpctypes.ErrLeaseNotFound)) {
			return
		}
		left, err := l.keysLeft(ctx, c, prefix)
		if err == nil && left > 0 {
			l.note(&l.revokeFail, &l.revokeN, "lease %x: %d keys still there after its revoke was acknowledged (%.3fs)", int64(id), left, l.since(time.Now()))
		}
		l.mu.Lock()
		l.revoked++
		l.mu.Unlock()
		return
	}
	// Let it expire: poll until the keys are gone, and hold the time against the bound. Only a read
	// that succeeded counts: a client whose member is down cannot see, and says nothing.
	tolerance := time.Second + l.env.Election
	for giveUp := time.Now().Add(ttl + 30*time.Second); ctx.Err() == nil && time.Now().Before(giveUp); {
		left, err := l.keysLeft(ctx, c, prefix)
		now := time.Now()
		bound := expiryBound(lastAck, ttl, l.env.Election, l.env.Leaders(), now)
		if err == nil && left == 0 {
			over := now.Sub(lastAck) - ttl
			l.mu.Lock()
			l.expired++
			l.maxExpiryOverTTL = max(l.maxExpiryOverTTL, over)
			l.mu.Unlock()
			if expiredEarly(renewed, ttl, now) {
				l.note(&l.keptFail, &l.keptN, "lease %x expired by %.3fs, before its TTL %s from the send time %.3fs of its last acknowledged keep-alive", int64(id), l.since(now), ttl, l.since(renewed))
			}
			return
		}
		if err == nil && now.After(bound) {
			l.note(&l.lateFail, &l.lateN, "lease %x: %d keys still there at %.3fs (read through %s), %s after the last keep-alive at %.3fs; bound %.3fs (TTL %s, tolerance %s, leader changes renew)",
				int64(id), left, l.since(now), c.Endpoints()[0], now.Sub(lastAck).Round(time.Millisecond), l.since(lastAck), l.since(bound), ttl, tolerance)
			l.mu.Lock()
			l.lateExpiry++
			l.mu.Unlock()
			return
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return
		}
	}
}

// expiryBound is when a lease's keys must be gone: TTL + tolerance after its last acknowledged
// keep-alive, or, after a later leader change, TTL + the election timeout (etcd's lessor extends
// every lease by it on promotion) + tolerance after the change. tolerance is 1s + the election
// timeout: the leader looks for expired leases every 500ms and the revoke is a raft proposal.
func expiryBound(lastAck time.Time, ttl, election time.Duration, leaders []time.Time, now time.Time) time.Time {
	tolerance := time.Second + election
	bound := lastAck.Add(ttl + tolerance)
	for _, t := range leaders {
		if t.After(lastAck) && t.Before(now) {
			if b := t.Add(ttl + election + tolerance); b.After(bound) {
				bound = b
			}
		}
	}
	return bound
}

// expiredEarly says a lease seen gone at gone went before its TTL from renewed, the send time of
// the attempt that last renewed it (the leader renewed it after that instant, so no slack is due).
func expiredEarly(renewed time.Time, ttl time.Duration, gone time.Time) bool {
	return gone.Before(renewed.Add(ttl))
}

func (l *leaseLoad) Finish(ctx context.Context) Outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	// exercised is how many times the property was put to the test: none makes the check unknown.
	mk := func(name string, n int, ex []string, exercised int, summary, note string) reports.Check {
		c := reports.Check{Name: name, Workload: l.b.Name, Status: reports.CheckPass, Violations: n, Examples: ex, Summary: summary, Note: note}
		switch {
		case n > 0:
			c.Status = reports.CheckFail
		case exercised == 0:
			c.Status = reports.CheckUnknown
			c.Summary += "; not exercised"
		}
		return c
	}
	tol := time.Second + l.env.Election
	return Outcome{
		Checks: []reports.Check{
			mk("lease-revoke", l.revokeN, l.revokeFail, l.revoked, fmt.Sprintf("%d leases revoked, %d left keys behind", l.revoked, l.revokeN),
				"after an acknowledged revoke, the lease's keys are gone"),
			mk("lease-kept-alive", l.keptN, l.keptFail, l.keepalives, fmt.Sprintf("%d keep-alives acknowledged; %d leases kept alive across a leader change; %d expired while kept alive", l.keepalives, l.keptAcrossLeaderChange, l.keptN),
				"no lease expires while its keep-alives are acknowledged within its TTL"),
			mk("lease-expiry", l.lateN, l.lateFail, l.expired+l.lateExpiry, fmt.Sprintf("%d leases expired, at most %s after their TTL; %d late", l.expired, l.maxExpiryOverTTL.Round(time.Millisecond), l.lateN),
				fmt.Sprintf("keys under an expired lease are gone within TTL + %s of its last keep-alive (or of a later leader change, which renews leases)", tol)),
		},
		Result: reports.WorkloadResult{Name: l.b.Name, Kind: "lease", Stats: map[string]float64{
			"granted": float64(l.granted), "revoked": float64(l.revoked), "expired": float64(l.expired), "keepalives": float64(l.keepalives),
			"kept_alive_across_leader_change": float64(l.keptAcrossLeaderChange), "max_expiry_after_ttl_ms": float64(l.maxExpiryOverTTL.Milliseconds()),
		}},
	}
}
