package faults

import (
	"context"
	"syscall"
	"time"

	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// crash sends SIGKILL and starts the member again at once on its data dir, as a supervisor
// (systemd's Restart=always, a kubelet) brings a crashed etcd back: no hand-over of leadership,
// the WAL replayed on start. It is instantaneous, like restart, its graceful twin.
type crash struct{ bounced }

var crashAction = Action{Kind: crash{}, ActionRules: scenarios.ActionRules{Name: "crash", Instant: true, Selections: onMembers, Cuts: always},
	Does: func(scenarios.Fault, string) string { return "SIGKILL and start again at once, as a supervisor does" }}

func (crash) Name() string { return "crash" }

func (crash) Inject(ctx context.Context, m Member) error {
	return bounce(ctx, m, syscall.SIGKILL, 5*time.Second)
}
