package faults

import (
	"context"
	"fmt"
	"time"

	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// compact compacts the key space under load to the current revision minus keep, as an operator's
// compaction schedule does, and waits until every member has compacted its backend (physical).
// It works on any cluster the harness reaches: it needs only the API.
var compactAction = Action{Op: func(f scenarios.Fault) Operation { return compactOp{keep: f.Keep} },
	ActionRules: scenarios.ActionRules{Name: "compact", Instant: true, ThroughAPI: true, Fields: []string{"keep"},
		Check: func(f scenarios.Fault) []scenarios.FieldProblem {
			if f.Keep < 0 {
				return []scenarios.FieldProblem{{Field: "keep", Msg: fmt.Sprintf("%d: valid: 0 (compact to the current revision) or more revisions kept", f.Keep)}}
			}
			return nil
		}},
	Does: func(f scenarios.Fault, _ string) string {
		return fmt.Sprintf("compact to the current revision minus %d and wait until every member compacted physically", f.Keep)
	},
}

type compactOp struct{ keep int64 }

func (compactOp) Name() string { return "compact" }

func (o compactOp) Run(ctx context.Context, env OpEnv, _ []Member, st *Stamp, rep *reports.Operation) error {
	var cur, to int64
	t0 := time.Now()
	err := st.call(func() error {
		var err error
		cur, to, err = env.Cluster.Compact(ctx, o.keep)
		return err
	})
	ms := msSince(t0, time.Now())
	rep.Revision, rep.CompactRevision, rep.CompactMs = cur, to, &ms
	return err
}
