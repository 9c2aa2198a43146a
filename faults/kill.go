package faults

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// kill sends SIGKILL: the member dies without a word to its peers. Heal starts it again on the same
// data dir.
type kill struct{}

var killAction = Action{Kind: kill{}, ActionRules: scenarios.ActionRules{Name: "kill", Selections: onMembers, Cuts: always},
	Does: func(scenarios.Fault, string) string { return "SIGKILL; heal: start it again on its data dir" }}

func (kill) Name() string { return "kill" }

func (kill) Inject(ctx context.Context, m Member) error { return m.Signal(syscall.SIGKILL) }

func (kill) VerifyInjected(ctx context.Context, m Member) error {
	return waitExit(ctx, m, 5*time.Second)
}

func (kill) Heal(ctx context.Context, m Member) error { return m.Start(ctx) }

func (kill) VerifyHealed(ctx context.Context, m Member) error {
	return waitState(ctx, m, Running, time.Second)
}

func waitExit(ctx context.Context, m Member, d time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := m.WaitExit(wctx); err != nil {
		return fmt.Errorf("process %d has not exited after %s: %w", m.PID(), d, err)
	}
	return nil
}
