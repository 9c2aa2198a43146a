package harness

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// plan is one fault resolved against the live cluster when it fires.
type plan struct {
	inj       *faults.Injection
	members   []string // whom the fault is about: recovery is measured on them
	leader    string   // the leader when the fault fired
	term      uint64
	links     []faults.Link      // network faults
	counter   faults.LinkCounter // set when the links' backend counts their bytes (the proxy)
	blackhole bool
	resets    bool // the fault closes its links' connections: no bytes to count
}

// plan resolves fault i: its members or links, and its injection.
func (r *run) plan(ctx context.Context, i int, f scenarios.Fault) (*plan, error) {
	rng := faults.RNG(r.sc.Seed, i)
	var err error
	for _, t := range []*scenarios.Target{&f.Target, &f.Client, &f.OneWay.From, &f.OneWay.To} {
		if *t, err = r.holderTarget(*t); err != nil {
			return nil, fmt.Errorf("fault #%d: %w", i, err)
		}
	}
	f.Isolate = append(scenarios.Targets(nil), f.Isolate...) // f shares the scenario's slice
	for k := range f.Isolate {
		if f.Isolate[k], err = r.holderTarget(f.Isolate[k]); err != nil {
			return nil, fmt.Errorf("fault #%d: %w", i, err)
		}
	}
	a := faults.LookupAction(f.Action)
	if a == nil {
		return nil, fmt.Errorf("fault #%d: no action %q; valid: %v", i, f.Action, scenarios.ActionNames())
	}
	if a.Operation {
		return r.planOperation(ctx, i, f, a, rng)
	}
	if !a.OnLinks {
		res, err := faults.Resolve(ctx, r.cl, f.Target, rng)
		if err != nil {
			return nil, fmt.Errorf("fault #%d: resolving target %s: %w", i, f.Target, err)
		}
		inj := faults.NewInjection(i, a.KindFor(f), f.Target.String(), res.Members, r.ledger)
		return &plan{inj: inj, members: inj.MemberNames(), leader: res.Leader, term: res.LeaderTerm}, nil
	}

	all := r.cl.Members()
	leader, term, lerr := r.cl.Leader(ctx)
	p := &plan{leader: leader, term: term}
	// resolve picks a target's members among those not in exclude.
	resolve := func(t scenarios.Target, exclude []string) ([]string, error) {
		var among []faults.Member
		for _, m := range all {
			if !slices.Contains(exclude, m.Name()) {
				among = append(among, m)
			}
		}
		if t.Kind == "member" && slices.Contains(exclude, t.Member) {
			return nil, fmt.Errorf("%s is already on the other side", t.Member)
		}
		res, err := faults.ResolveAmong(among, leader, term, lerr, t, rng)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, m := range res.Members {
			out = append(out, m.Name())
		}
		return out, nil
	}
	names := r.cl.Names()
	majority := len(names)/2 + 1
	var what string
	switch {
	case f.Target.Kind != "":
		what = "target " + f.Target.String()
		p.members, err = resolve(f.Target, nil)
		p.links = faults.Both(p.members, names)
	case f.Client.Kind != "":
		what = "client " + f.Client.String()
		p.members, err = resolve(f.Client, nil)
		p.links = faults.Both([]string{faults.Clients}, p.members)
	case len(f.Isolate) > 0:
		what = "isolate " + f.Isolate.String()
		for _, t := range f.Isolate {
			var got []string
			if got, err = resolve(t, p.members); err != nil {
				break
			}
			p.members = append(p.members, got...)
		}
		sort.Strings(p.members)
		var rest []string
		for _, n := range names {
			if !slices.Contains(p.members, n) {
				rest = append(rest, n)
			}
		}
		p.links = faults.Both(p.members, rest)
	case len(f.Groups) > 0:
		what = "groups"
		p.links = faults.Groups(f.Groups)
		for _, g := range f.Groups {
			if len(g) < majority {
				p.members = append(p.members, g...)
			}
		}
		sort.Strings(p.members)
	case f.OneWay.From.Kind != "":
		what = fmt.Sprintf("one-way from %s to %s", f.OneWay.From, f.OneWay.To)
		var to []string
		if p.members, err = resolve(f.OneWay.From, nil); err == nil {
			to, err = resolve(f.OneWay.To, nil)
			to = slices.DeleteFunc(to, func(n string) bool { return slices.Contains(p.members, n) })
			if err == nil && len(to) == 0 {
				err = fmt.Errorf("to %s leaves nobody but the senders %v", f.OneWay.To, p.members)
			}
		}
		p.links = faults.OneWay(p.members, to)
	case f.MajoritiesRing:
		what = "majorities-ring"
		ring := append([]string(nil), names...)
		rng.Shuffle(len(ring), func(a, b int) { ring[a], ring[b] = ring[b], ring[a] })
		p.links = faults.MajoritiesRing(ring)
		p.members = names
	}
	if err != nil {
		return nil, fmt.Errorf("fault #%d: resolving %s: %w", i, what, err)
	}
	shape := a.ShapeOf(f)
	nw := r.networkOf(f)
	if nw == nil {
		return nil, fmt.Errorf("fault #%d: %s needs cluster.network proxy or netns", i, f.Action)
	}
	if lc, ok := nw.(faults.LinkCounter); ok {
		p.counter = lc
	}
	p.blackhole, p.resets = shape.Blackhole, a.Resets()
	p.inj = faults.NewNetInjection(i, f.Action, what, nw, p.links, shape, a.Resets(), p.members, r.ledger)
	return p, nil
}

// networkOf is the backend a network fault acts through: the client links' for a client: fault,
// else the peer links' (nil: none here).
func (r *run) networkOf(f scenarios.Fault) faults.Network {
	if f.Client.Kind != "" {
		return r.cl.ClientNetwork()
	}
	return r.cl.PeerNetwork()
}

// linkBytes reads the backend's byte counters of the plan's links (nil when it counts none).
func (p *plan) linkBytes() map[string]int64 {
	if p.counter == nil {
		return nil
	}
	out := map[string]int64{}
	for _, l := range p.links {
		out[l.String()] = p.counter.Bytes(l)
	}
	return out
}

// checkBackends fails a run early when a network fault asks of its backend what it cannot do here
// (delay or loss through netns on a kernel without sch_netem).
func (r *run) checkBackends() error {
	for i, f := range r.sc.Faults {
		a := faults.LookupAction(f.Action)
		if a == nil || !a.OnLinks {
			continue
		}
		if nw := r.networkOf(f); nw != nil {
			if err := nw.Supports(a.ShapeOf(f)); err != nil {
				return fmt.Errorf("faults[%d] (%s): %w", i, f.Action, err)
			}
		}
	}
	return nil
}
