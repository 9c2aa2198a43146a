package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"

	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// RNG returns the random source of fault index i: every random choice of a run derives from its seed,
// and each fault has its own stream, so one fault's choices do not shift another's.
func RNG(seed int64, i int) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), uint64(i)+0x9e3779b97f4a7c15))
}

// Resolution is a target resolved against the live cluster.
type Resolution struct {
	Members    []Member
	Leader     string // the leader when the fault fired ("" if none)
	LeaderTerm uint64
}

// Resolve picks the members a target names, from the cluster as it is now.
func Resolve(ctx context.Context, c Cluster, t scenarios.Target, rng *rand.Rand) (Resolution, error) {
	leader, term, lerr := c.Leader(ctx)
	return ResolveAmong(c.Members(), leader, term, lerr, t, rng)
}

// ResolveAmong picks the members a target names from all, given the leader as last asked (lerr is
// why there is none). Size-based targets (minority, majority, percent) count all.
func ResolveAmong(all []Member, leader string, term uint64, lerr error, t scenarios.Target, rng *rand.Rand) (Resolution, error) {
	all = append([]Member(nil), all...)
	sort.Slice(all, func(i, j int) bool { return all[i].Name() < all[j].Name() })
	res := Resolution{Leader: leader, LeaderTerm: term}
	pick := func(from []Member, n int) []Member {
		cp := append([]Member(nil), from...)
		rng.Shuffle(len(cp), func(i, j int) { cp[i], cp[j] = cp[j], cp[i] })
		cp = cp[:n]
		sort.Slice(cp, func(i, j int) bool { return cp[i].Name() < cp[j].Name() })
		return cp
	}
	size := len(all)
	switch t.Kind {
	case "leader", "follower":
		if lerr != nil {
			return res, fmt.Errorf("target %s: %w", t.Kind, lerr)
		}
		var followers []Member
		for _, m := range all {
			if m.Name() == leader {
				if t.Kind == "leader" {
					res.Members = []Member{m}
				}
			} else {
				followers = append(followers, m)
			}
		}
		if t.Kind == "follower" {
			if len(followers) == 0 {
				return res, fmt.Errorf("target follower: the cluster has no follower")
			}
			res.Members = pick(followers, 1)
		}
		if len(res.Members) == 0 {
			return res, fmt.Errorf("target leader: leader %q is not a member of this cluster", leader)
		}
	case "member":
		for _, m := range all {
			if m.Name() == t.Member {
				res.Members = []Member{m}
			}
		}
		if res.Members == nil {
			return res, fmt.Errorf("target %q is not a member", t.Member)
		}
	case "random":
		res.Members = pick(all, 1)
	case "count":
		if t.Count < 1 || t.Count > size {
			return res, fmt.Errorf("target count %d: the cluster has %d members", t.Count, size)
		}
		res.Members = pick(all, t.Count)
	case "percent":
		n := (t.Percent*size + 99) / 100
		res.Members = pick(all, max(n, 1))
	case "minority":
		if (size-1)/2 < 1 {
			return res, fmt.Errorf("target minority: a %d-member cluster has no minority", size)
		}
		res.Members = pick(all, (size-1)/2)
	case "majority":
		res.Members = pick(all, size/2+1)
	case "all", "each":
		res.Members = all
	default:
		return res, fmt.Errorf("unknown target kind %q", t.Kind)
	}
	return res, nil
}
