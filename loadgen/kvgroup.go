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

// kvKind is a second KV group as a unit (its own clients and retry policy, to compare policies
// under the same fault): its rules as the schema reads them and its constructor.
var kvKind = workloadKind{WorkloadRules: scenarios.WorkloadRules{Kind: "kv", Clients: 8,
	Fields: []string{"rate", "connections", "mix"},
	Defaults: func(b *scenarios.Block, def func(string, func())) {
		def("connections", func() { b.Connections = min(max(b.Clients, 1), 8) })
		def("mix", func() { b.Mix = scenarios.DefaultMix() })
		scenarios.MixDefaults(def, "mix", b.Mix)
	},
	Check: func(b scenarios.Block, c scenarios.BlockChecker) {
		if b.Connections < 1 || b.Connections > b.Clients {
			c.Bad("connections", "%d: valid: 1 to clients (%d)", b.Connections, b.Clients)
		}
		c.Mix("mix", b.Mix)
	}},
	new: func(b scenarios.Block, env Env) (Workload, error) { return newKVGroup(b, env) }}

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
