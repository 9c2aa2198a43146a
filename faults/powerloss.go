package faults

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// powerLoss is a crash of the machine, not of the process: SIGKILL, then the disk keeps only what
// was synced (every byte written since its file's last fsync, and every name change since the
// last journal commit, are dropped by the disk layer), then the member starts again on what is
// left. It is instantaneous, like crash.
type powerLoss struct{ bounced }

var powerLossAction = Action{Layer: true, Unsynced: true, Kind: powerLoss{},
	ActionRules: scenarios.ActionRules{Name: "power-loss", Instant: true, Selections: onMembers, Cuts: always, Available: needsDiskLayer},
	Does: func(scenarios.Fault, string) string {
		return "SIGKILL, drop every byte and name change its data dir never synced, start again"
	}}

func (powerLoss) Name() string { return "power-loss" }

func (powerLoss) Inject(ctx context.Context, m Member) error {
	_, d, err := diskOf(m)
	if err != nil {
		return err
	}
	if err := m.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	if err := waitExit(ctx, m, 5*time.Second); err != nil {
		return err
	}
	dropped, err := d.PowerLoss()
	rep := diskReport(ctx, m)
	rep.Dropped = &dropped
	if err != nil {
		return fmt.Errorf("power loss on %s's disk: %w", m.Name(), err)
	}
	return m.Start(ctx)
}
