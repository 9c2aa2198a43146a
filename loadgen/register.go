package loadgen

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// RegisterInput is one operation on a register (one etcd key).
type RegisterInput struct {
	Put   bool
	Key   string
	Value string
}

// RegisterOutput is what an operation returned; Unknown marks a put that failed or timed out: it
// may have been applied at any time after it was sent.
type RegisterOutput struct {
	Value   string
	Unknown bool
}

// RegisterModel is a map of registers, partitioned per key: porcupine checks each key's history
// on its own.
var RegisterModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(RegisterInput).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() interface{} { return "" },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		in, out := input.(RegisterInput), output.(RegisterOutput)
		if in.Put {
			return true, in.Value
		}
		return out.Value == state.(string), state
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(RegisterInput), output.(RegisterOutput)
		if in.Put {
			if out.Unknown {
				return fmt.Sprintf("put(%s, %q) -> unknown", in.Key, in.Value)
			}
			return fmt.Sprintf("put(%s, %q)", in.Key, in.Value)
		}
		return fmt.Sprintf("get(%s) -> %q", in.Key, out.Value)
	},
}

// History is a bounded, concurrent record of register operations.
type History struct {
	mu  sync.Mutex
	ops []porcupine.Operation
	max int
	t0  time.Time
}

// NewHistory records up to max operations.
func NewHistory(max int) *History { return &History{max: max, t0: time.Now()} }

// Full says the history has its max.
func (h *History) Full() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops) >= h.max
}

// Add records an operation called at call and returned at ret; a put with an unknown outcome
// returns "never" (it may take effect at any time after its call), a failed get is not recorded.
func (h *History) Add(client int, in RegisterInput, out RegisterOutput, call, ret time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.ops) >= h.max {
		return
	}
	r := ret.Sub(h.t0).Nanoseconds()
	if out.Unknown {
		r = math.MaxInt64
	}
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call.Sub(h.t0).Nanoseconds(), Return: r})
}

// Ops returns the recorded operations.
func (h *History) Ops() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]porcupine.Operation(nil), h.ops...)
}

// CheckLinearizable runs porcupine over a history with a time limit: illegal fails (and writes the
// visualization to vis, when set), a timeout is unknown, never a pass.
func CheckLinearizable(ops []porcupine.Operation, timeout time.Duration, vis string) reports.Check {
	c := reports.Check{Name: "linearizability", Note: "porcupine over the history of a register load on a few keys; a timeout is unknown, never a pass"}
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(RegisterModel, ops, timeout)
	took := time.Since(start)
	c.Summary = fmt.Sprintf("%d operations checked in %s", len(ops), took.Round(time.Millisecond))
	switch res {
	case porcupine.Ok:
		c.Status = reports.CheckPass
	case porcupine.Illegal:
		c.Status, c.Violations = reports.CheckFail, 1
		c.Summary += ": not linearizable"
		if vis != "" {
			if err := porcupine.VisualizePath(RegisterModel, info, vis); err == nil {
				c.Examples = append(c.Examples, "porcupine's visualization: "+filepath.Base(vis))
			} else {
				c.Examples = append(c.Examples, "could not write the visualization: "+err.Error())
			}
		}
	default:
		c.Status = reports.CheckUnknown
		c.Summary += fmt.Sprintf(": porcupine did not finish within %s", timeout)
	}
	return c
}

// registerLoad is the register load the linearizability check records: clients put unique values
// and read (linearizably) a few keys, until max-ops operations are recorded.
type registerLoad struct {
	cfg     scenarios.Linearizability
	env     Env
	clients []*clientv3.Client
	hist    *History
	seq     atomic.Int64
	mu      sync.Mutex
	fullAt  time.Time // when the history reached max-ops (zero: it never did)
}

// NewRegister makes the linearizability register load.
func NewRegister(cfg scenarios.Linearizability, env Env) (Workload, error) {
	env.fill()
	var cs []*clientv3.Client
	for i := 0; i < cfg.Clients; i++ {
		c, err := NewClientVia(env.Endpoints, 1, env.Conn)
		if err != nil {
			closeAll(cs)
			return nil, err
		}
		cs = append(cs, c)
	}
	return &registerLoad{cfg: cfg, env: env, clients: cs, hist: NewHistory(cfg.MaxOps)}, nil
}

func (r *registerLoad) Name() string { return "linearizability" }
func (r *registerLoad) Kind() string { return "register" }
func (r *registerLoad) Close()       { closeAll(r.clients) }

func (r *registerLoad) Run(ctx context.Context, start time.Time) {
	pacer := NewPacer(time.Now(), r.cfg.Rate, 0, time.Second)
	perClient(r.clients, func(c *clientv3.Client, i int) {
		rng := rngFor(r.env.Seed, "register", i)
		timer := time.NewTimer(time.Hour)
		defer timer.Stop()
		for ctx.Err() == nil {
			if r.hist.Full() {
				r.mu.Lock()
				if r.fullAt.IsZero() {
					r.fullAt = time.Now()
				}
				r.mu.Unlock()
				return
			}
			due, ok := pacer.Next(ctx, timer)
			if !ok {
				return
			}
			pacer.Sent(due)
			key := fmt.Sprintf("%sregister/%d", r.env.Prefix, rng.IntN(r.cfg.Keys))
			in := RegisterInput{Put: rng.IntN(2) == 0, Key: key}
			call := time.Now()
			actx, cancel := context.WithTimeout(ctx, time.Second)
			var out RegisterOutput
			var err error
			if in.Put {
				in.Value = fmt.Sprintf("%d", r.seq.Add(1))
				_, err = c.Put(actx, key, in.Value)
				out.Unknown = err != nil
			} else {
				var resp *clientv3.GetResponse
				resp, err = c.Get(actx, key)
				if err == nil && len(resp.Kvs) > 0 {
					out.Value = string(resp.Kvs[0].Value)
				}
			}
			cancel()
			ret := time.Now()
			if ctx.Err() != nil && err != nil && !in.Put {
				return
			}
			if err == nil || in.Put {
				r.hist.Add(i, in, out, call, ret)
			}
		}
	})
}

func (r *registerLoad) Finish(ctx context.Context) Outcome {
	ops := r.hist.Ops()
	vis := ""
	if r.env.Dir != "" {
		vis = filepath.Join(r.env.Dir, "linearizability.html")
	}
	c := CheckLinearizable(ops, r.cfg.Timeout.D(), vis)
	r.mu.Lock()
	fullAt := r.fullAt
	r.mu.Unlock()
	// A history that stopped before the faults ended did not see them: it proves nothing about them.
	if last := r.env.FaultsEnd(); !fullAt.IsZero() && fullAt.Before(last) && c.Status == reports.CheckPass {
		c.Status = reports.CheckUnknown
		c.Summary += fmt.Sprintf("; but the history reached max-ops (%d) at %.3fs, before the last fault ended at %.3fs: raise checks.linearizability.max-ops",
			r.cfg.MaxOps, fullAt.Sub(r.env.Start).Seconds(), last.Sub(r.env.Start).Seconds())
	}
	if len(ops) == 0 {
		c.Status = reports.CheckUnknown
		c.Summary += "; no operation was recorded"
	}
	return Outcome{Checks: []reports.Check{c}, Result: reports.WorkloadResult{Name: "linearizability", Kind: "register",
		Stats: map[string]float64{"operations": float64(len(ops)), "keys": float64(r.cfg.Keys)}}}
}
