package faults

import (
	"context"
	"syscall"
	"time"

	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// restart stops a member gracefully (SIGTERM) and starts it again at once, as a rolling upgrade does.
// It is instantaneous: Inject does both, and Heal only checks that the member runs.
type restart struct{ bounced }

var restartAction = Action{Kind: restart{}, ActionRules: scenarios.ActionRules{Name: "restart", Instant: true, Selections: onMembers, Cuts: always},
	Does: func(scenarios.Fault, string) string { return "SIGTERM and start again at once" }}

func (restart) Name() string { return "restart" }

func (restart) Inject(ctx context.Context, m Member) error {
	return bounce(ctx, m, syscall.SIGTERM, stopTimeout)
}

// bounced is the rest of a Kind that starts its member again within Inject: nothing is left to
// heal, and each step proves the member runs.
type bounced struct{}

func (bounced) VerifyInjected(ctx context.Context, m Member) error {
	return waitState(ctx, m, Running, time.Second)
}

func (bounced) Heal(ctx context.Context, m Member) error { return nil }

func (bounced) VerifyHealed(ctx context.Context, m Member) error {
	return waitState(ctx, m, Running, time.Second)
}

// bounce signals a member, waits up to wait for it to exit, and starts it again.
func bounce(ctx context.Context, m Member, sig syscall.Signal, wait time.Duration) error {
	if err := m.Signal(sig); err != nil {
		return err
	}
	if err := waitExit(ctx, m, wait); err != nil {
		return err
	}
	return m.Start(ctx)
}
