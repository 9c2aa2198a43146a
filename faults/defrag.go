package faults

import (
	"context"
	"fmt"
	"time"

	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// defrag defragments each target member's backend in turn, under load. etcd blocks the member's
// reads and writes while it rewrites its database: how long, and what the load saw of it, is the
// finding. It needs only the API; defragmenting the leader blocks the cluster's writes.
var defragAction = Action{Op: func(scenarios.Fault) Operation { return defragOp{} },
	ActionRules: scenarios.ActionRules{Name: "defrag", Instant: true, ThroughAPI: true, Selections: onMembers},
	Does: func(scenarios.Fault, string) string {
		return "defragment each member's backend in turn (it blocks the member meanwhile); db size before and after"
	},
}

type defragOp struct{}

func (defragOp) Name() string { return "defrag" }

func (defragOp) Run(ctx context.Context, env OpEnv, members []Member, st *Stamp, rep *reports.Operation) error {
	for _, m := range members {
		before, err := env.Cluster.MemberState(ctx, m.Name())
		if err != nil {
			return fmt.Errorf("%s before defragmenting: %w", m.Name(), err)
		}
		d := reports.Defrag{Member: m.Name(), DBSizeBefore: before.DBSize, DBInUseBefore: before.DBInUse}
		// A serializable read of the member every 5ms while it defragments: the longest wait is what
		// a client of that member saw.
		pctx, stop := context.WithCancel(ctx)
		probed := make(chan struct{})
		go func() {
			defer close(probed)
			d.MemberLatencyMs, d.Probes = probeMember(pctx, env.Cluster, m.Name())
		}()
		t0 := time.Now()
		err = st.call(func() error { return env.Cluster.Defragment(ctx, m.Name()) })
		d.Ms = msSince(t0, time.Now())
		// One more probe's worth, so a read queued behind the defrag is counted.
		time.Sleep(10 * time.Millisecond)
		stop()
		<-probed
		if err != nil {
			rep.Defrag = append(rep.Defrag, d)
			return fmt.Errorf("defragmenting %s: %w", m.Name(), err)
		}
		after, err := env.Cluster.MemberState(ctx, m.Name())
		if err != nil {
			rep.Defrag = append(rep.Defrag, d)
			return fmt.Errorf("%s after defragmenting: %w", m.Name(), err)
		}
		d.DBSizeAfter = after.DBSize
		rep.Defrag = append(rep.Defrag, d)
	}
	return nil
}

// probeMember reads a key from the member alone (serializable) every 5ms until ctx ends; it returns the longest
// answer in ms and how many it sent. A probe cut by ctx counts for as long as it waited.
func probeMember(ctx context.Context, c Operator, member string) (float64, int) {
	var worst time.Duration
	n := 0
	for ctx.Err() == nil {
		t0 := time.Now()
		_ = c.ReadLocal(ctx, member)
		worst = max(worst, time.Since(t0))
		n++
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}
	return float64(worst) / float64(time.Millisecond), n
}
