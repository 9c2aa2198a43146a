package loadgen

import (
	"context"
	"time"

	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// kvGroup is a second KV load with its own clients, retry policy and recorder, writing under its
// own prefix: two groups under the same fault compare retry policies side by side.
type kvGroup struct {
	b   scenarios.Block
	kv  *KV
	rec *Recorder
}

func newKVGroup(b scenarios.Block, env Env) (*kvGroup, error) {
	rec := NewRecorder(time.Now(), nil)
	kv, err := NewKV(Config{Endpoints: env.Endpoints, Clients: b.Clients, Connections: b.Connections, Rate: b.Rate,
		Timeout: b.Timeout.D(), Retry: PolicyOf(b.Retry), Mix: b.Mix, Seed: env.Seed ^ 0x5eed, KeyPrefix: env.Prefix + "kv-" + b.Name + "/", Conn: env.Conn, Monitor: env.Monitor}, rec)
	if err != nil {
		return nil, err
	}
	return &kvGroup{b: b, kv: kv, rec: rec}, nil
}

func (g *kvGroup) Name() string { return g.b.Name }
func (g *kvGroup) Kind() string { return "kv" }
func (g *kvGroup) Close()       { g.kv.Close() }

// Recorder is the group's own recorder: the harness moves it through the run's phases.
func (g *kvGroup) Recorder() *Recorder { return g.rec }

func (g *kvGroup) Run(ctx context.Context, start time.Time) { g.kv.Run(ctx, start) }

func (g *kvGroup) Finish(ctx context.Context) Outcome {
	s := g.rec.Summarize(time.Now())
	return Outcome{Result: reports.WorkloadResult{Name: g.b.Name, Kind: "kv", Latency: s.Latency, Ops: s.Ops, Failed: s.Failed,
		Errors: s.Errors, Attempts: s.Attempts, Retries: s.Retries}}
}
