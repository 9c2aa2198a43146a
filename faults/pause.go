package faults

import (
	"context"
	"syscall"
	"time"

	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// pause sends SIGSTOP: the member freezes with its connections open, as in a long GC pause or a VM
// stall. Heal sends SIGCONT. Both are proven from the process state (T while stopped).
type pause struct{}

var pauseAction = Action{Kind: pause{}, ActionRules: scenarios.ActionRules{Name: "pause", Selections: onMembers, Cuts: always},
	Does: func(scenarios.Fault, string) string { return "SIGSTOP; heal: SIGCONT" }}

func (pause) Name() string { return "pause" }

func (pause) Inject(ctx context.Context, m Member) error { return m.Signal(syscall.SIGSTOP) }

func (pause) VerifyInjected(ctx context.Context, m Member) error {
	return waitState(ctx, m, Stopped, time.Second)
}

func (pause) Heal(ctx context.Context, m Member) error { return m.Signal(syscall.SIGCONT) }

func (pause) VerifyHealed(ctx context.Context, m Member) error {
	return waitState(ctx, m, Running, time.Second)
}
