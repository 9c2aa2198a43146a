package harness

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// startWorkloads makes the scenario's workload blocks and the linearizability register load.
func (r *run) startWorkloads() error {
	et := int64(1000)
	if v, ok := r.sc.Cluster.Etcd["election-timeout"]; ok {
		if ms, err := scenarios.EtcdMillis(v); err == nil {
			et = ms
		}
	}
	env := loadgen.Env{Endpoints: r.cl.Endpoints(), Members: r.cl.Names(), Rec: r.rec, Seed: uint64(r.sc.Seed), Dir: r.opts.Out,
		Event:     func(kind string, kv ...any) { r.events.Log(time.Now(), kind, kv...) },
		Leaders:   r.leaderChangeTimes,
		Monitor:   r.mon,
		Election:  time.Duration(et) * time.Millisecond,
		Log:       func(msg string, kv ...any) { r.log.Warn(msg, kv...) },
		FaultsEnd: r.faultsEnd,
		Start:     r.loadStart,
		Conn:      r.cl.LoadConn(),
		Prefix:    r.prefix}
	for i, b := range r.sc.Workloads {
		wl, err := loadgen.NewWorkload(b, env)
		if err != nil {
			return fmt.Errorf("workloads[%d] (%s): %w", i, b.Name, err)
		}
		r.workloads = append(r.workloads, wl)
		if g, ok := wl.(interface{ Recorder() *loadgen.Recorder }); ok {
			r.recs, r.recName = append(r.recs, g.Recorder()), append(r.recName, b.Name)
		}
	}
	if l := r.sc.Checks.Linearizability; l.Enabled {
		wl, err := loadgen.NewRegister(l, env)
		if err != nil {
			return fmt.Errorf("checks.linearizability: %w", err)
		}
		r.workloads = append(r.workloads, wl)
	}
	return nil
}

// faultsEnd is when the last fault fired so far was healed (zero: none yet, or never healed).
func (r *run) faultsEnd() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var last time.Time
	for _, fr := range r.faults {
		if fr.healAt.After(last) {
			last = fr.healAt
		}
	}
	return last
}

func (r *run) leaderChangeTimes() []time.Time {
	var out []time.Time
	for _, c := range r.watcher.Changes(r.loadStart) {
		out = append(out, c.At)
	}
	return out
}

// setRecPhase moves every recorder (the main one and each kv workload's) to a new phase.
func (r *run) setRecPhase(name string, at time.Time) {
	for _, rec := range r.recs {
		rec.SetPhase(name, at)
	}
}

// check runs the safety checks after the load: each workload's, and the KV load's own.
func (r *run) check(ctx context.Context, res *reports.Result) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, wl := range r.workloads {
		o := wl.Finish(cctx)
		r.outcomes = append(r.outcomes, o)
		res.Checks = append(res.Checks, o.Checks...)
		res.Workloads = append(res.Workloads, o.Result)
		for _, c := range o.Checks {
			r.events.Log(time.Now(), "check", "name", c.Name, "workload", c.Workload, "status", c.Status, "summary", c.Summary)
		}
	}
	// The KV load's final read, the alarms and HashKV at once: each waits out its own timeout on a
	// cluster that does not answer (a power loss of unsynced members), one after another they added up.
	var safety, hash *reports.Check
	var wg sync.WaitGroup
	if r.safety != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := reports.Check{Name: "kv-safety", Status: reports.CheckUnknown}
			cli, err := loadgen.MeasureClientVia(r.cl.Endpoints(), r.cl.LoadConn())
			if err == nil {
				var final func(int) loadgen.Final
				final, err = loadgen.ReadFinal(cctx, cli, r.kv.Prefix(), r.kv.KeyIndex)
				cli.Close()
				if err == nil {
					c = r.safety.Check(final, r.kv.KeyName)
				}
			}
			if err != nil {
				c.Summary = "could not read the final state: " + err.Error()
			}
			safety = &c
		}()
	}
	if r.sc.Checks.HashKV == nil || *r.sc.Checks.HashKV {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := r.hashKV(cctx)
			hash = &c
		}()
	}
	res.Alarms = r.clusterAlarms(cctx)
	wg.Wait()
	if safety != nil {
		res.Checks = append(res.Checks, *safety)
		r.events.Log(time.Now(), "check", "name", safety.Name, "status", safety.Status, "summary", safety.Summary)
	}
	if len(res.Alarms) > 0 {
		r.events.Log(time.Now(), "alarms", "alarms", res.Alarms)
	}
	if hash != nil {
		res.Checks = append(res.Checks, *hash)
		r.events.Log(time.Now(), "check", "name", hash.Name, "status", hash.Status, "summary", hash.Summary)
	}
}

// holderTarget turns a holder target (lock-holder, election-leader) into the member the holder's
// client uses.
func (r *run) holderTarget(t scenarios.Target) (scenarios.Target, error) {
	want := scenarios.HolderKind(t.Kind)
	if want == "" {
		return t, nil
	}
	for _, wl := range r.workloads {
		if h, ok := wl.(loadgen.Holder); ok && wl.Kind() == want {
			if m, ok := h.HolderMember(); ok {
				return scenarios.Target{Kind: "member", Member: m}, nil
			}
			return t, fmt.Errorf("target %s: nobody holds it right now", t.Kind)
		}
	}
	return t, fmt.Errorf("target %s: no %s workload", t.Kind, want)
}
