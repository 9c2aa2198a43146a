package faults

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/etcd-chaos/etcd-chaos/faults/diskfs"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// diskError fails the named ops on the member's data dir with an errno (fsync and EIO by
// default: the error etcd cannot recover from). etcd exits on a failed WAL fsync; the member is
// then reported with its last log line and started again at the heal.
var diskErrorAction = Action{Layer: true,
	IO:   func(f scenarios.Fault) diskfs.Op { return diskOps(f, diskfs.Fsync) },
	Kind: diskKind{name: "disk-error"},
	KindOf: func(f scenarios.Fault) Kind {
		return diskKind{name: "disk-error", fault: diskfs.Fault{Ops: diskOps(f, diskfs.Fsync), Errno: errnoOf(f), Percent: f.Percent}}
	},
	ActionRules: scenarios.ActionRules{Name: "disk-error", Selections: onMembers, Cuts: always,
		Fields: []string{"ops", "errno", "percent"},
		Check: func(f scenarios.Fault) []scenarios.FieldProblem {
			out := append(checkOps(f), checkPercent(f)...)
			if _, ok := diskfs.Errnos[f.Errno]; f.Errno != "" && !ok {
				var names []string
				for n := range diskfs.Errnos {
					names = append(names, n)
				}
				sort.Strings(names)
				out = append(out, scenarios.FieldProblem{Field: "errno", Msg: fmt.Sprintf("%q: valid: %s (default EIO)", f.Errno, strings.Join(names, ", "))})
			}
			if slices.Contains(f.Ops, "all") {
				out = append(out, scenarios.FieldProblem{Field: "ops", Msg: "all would fail even the lookups that find the data dir; name fsync, write or read"})
			}
			return out
		},
		Available: needsDiskLayer},
	Does: func(f scenarios.Fault, _ string) string {
		e := f.Errno
		if e == "" {
			e = "EIO"
		}
		return fmt.Sprintf("fail %s%s on its data dir with %s; heal: remove it, and start the member again if it exited", percentText(f), diskOps(f, diskfs.Fsync), e)
	},
}
