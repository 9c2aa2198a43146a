package faults

import (
	"context"
	"syscall"
	"time"
)

// restart stops a member gracefully (SIGTERM) and starts it again at once, as a rolling upgrade does.
// It is instantaneous: Inject does both, and Heal only checks that the member runs.
type restart struct{}

func (restart) Name() string { return "restart" }

func (restart) Inject(ctx context.Context, m Member) error {
	if err := m.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	if err := waitExit(ctx, m, stopTimeout); err != nil {
		return err
	}
	return m.Start(ctx)
}

func (restart) VerifyInjected(ctx context.Context, m Member) error {
	return waitState(ctx, m, Running, time.Second)
}

func (restart) Heal(ctx context.Context, m Member) error { return nil }

func (restart) VerifyHealed(ctx context.Context, m Member) error {
	return waitState(ctx, m, Running, time.Second)
}
