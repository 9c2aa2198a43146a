package faults

import (
	"context"
	"syscall"
	"time"

	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// stopTimeout bounds a graceful stop. A leader that gets SIGTERM hands leadership over first, which
// etcd bounds by its request timeout (5s) plus two election timeouts.
const stopTimeout = 20 * time.Second

// stop sends SIGTERM: etcd shuts down gracefully, and a leader hands leadership over first. Heal
// starts the member again.
type stop struct{}

var stopAction = Action{Kind: stop{}, ActionRules: scenarios.ActionRules{Name: "stop", Selections: onMembers, Cuts: always},
	Does: func(scenarios.Fault, string) string { return "SIGTERM; heal: start it again" }}

func (stop) Name() string { return "stop" }

func (stop) Inject(ctx context.Context, m Member) error { return m.Signal(syscall.SIGTERM) }

func (stop) VerifyInjected(ctx context.Context, m Member) error {
	return waitExit(ctx, m, stopTimeout)
}

func (stop) Heal(ctx context.Context, m Member) error { return m.Start(ctx) }

func (stop) VerifyHealed(ctx context.Context, m Member) error {
	return waitState(ctx, m, Running, time.Second)
}
