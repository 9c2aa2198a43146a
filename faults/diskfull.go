package faults

import (
	"context"
	"time"

	"github.com/etcd-chaos/etcd-chaos/faults/diskfs"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// diskFull makes the member's disk full: every write that would allocate space fails with
// ENOSPC and statfs reports no free block, until the heal. Reads and fsyncs still work.
//
// Through chaos agent (a remote cluster's nodes) the agent fills the data dir's filesystem with a
// file of its own until statfs reports no free byte, and removes it at the heal (starting etcd
// again if it exited).
var diskFullAction = Action{Layer: true,
	Kind: fullKind{diskKind{name: "disk-full", fault: diskfs.Fault{Full: true}}},
	ActionRules: scenarios.ActionRules{Name: "disk-full", Selections: onMembers, Cuts: always,
		Available: func(p scenarios.Place, selection string, f scenarios.Fault) error {
			if p.Network == "agent" {
				return nil // the agents fill the nodes' disks
			}
			return needsDiskLayer(p, selection, f)
		}},
	Does: func(scenarios.Fault, string) string {
		return "fail every write that allocates with ENOSPC (statfs: no free block); heal: free it, and start the member again if it exited"
	},
}

// fullKind is disk-full: through the layer, or through the member's node (chaos agent).
type fullKind struct{ diskKind }

func (k fullKind) Inject(ctx context.Context, m Member) error {
	if f, ok := fillerOf(m); ok {
		return f.FillDisk(ctx)
	}
	return k.diskKind.Inject(ctx, m)
}

// VerifyInjected: through an agent, the agent measured the free space (statfs) before answering.
func (k fullKind) VerifyInjected(ctx context.Context, m Member) error {
	if _, ok := fillerOf(m); ok {
		return nil
	}
	return k.diskKind.VerifyInjected(ctx, m)
}

func (k fullKind) Heal(ctx context.Context, m Member) error {
	if f, ok := fillerOf(m); ok {
		restarted, err := f.FreeDisk(ctx)
		rep := diskReport(ctx, m)
		if restarted {
			rep.Exited, rep.Restarted = "exited on the full disk (its node's agent started it again)", true
		}
		return err
	}
	return k.diskKind.Heal(ctx, m)
}

func (k fullKind) VerifyHealed(ctx context.Context, m Member) error {
	if _, ok := fillerOf(m); ok {
		return waitState(ctx, m, Running, 5*time.Second)
	}
	return k.diskKind.VerifyHealed(ctx, m)
}
