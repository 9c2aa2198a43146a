package faults

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Clients names the load generator's side of a client link: {Clients, m} carries requests to member
// m, {m, Clients} its responses.
const Clients = "clients"

// Link is one direction of traffic: the bytes From sends to To.
type Link struct{ From, To string }

func (l Link) String() string { return l.From + "->" + l.To }

// Shape is what a network fault does to a link.
type Shape struct {
	Delay       time.Duration `json:"delay,omitempty"`
	Jitter      time.Duration `json:"jitter,omitempty"`
	Correlation float64       `json:"correlation,omitempty"` // 0..1: how much each jitter draw follows the last
	Rate        int64         `json:"rate,omitempty"`        // bytes per second; 0 is unlimited
	Loss        float64       `json:"loss,omitempty"`        // percent of packets (netns only)
	Blackhole   bool          `json:"blackhole,omitempty"`   // nothing arrives; connections stay open
}

// Plus is a fault's shape s on top of a standing condition b: delays and jitters add, the lower
// rate limits, a blackhole is a blackhole, and the fault's correlation and loss apply.
func (b Shape) Plus(s Shape) Shape {
	out := Shape{Delay: b.Delay + s.Delay, Jitter: b.Jitter + s.Jitter, Correlation: b.Correlation, Rate: b.Rate,
		Loss: max(b.Loss, s.Loss), Blackhole: b.Blackhole || s.Blackhole}
	if s.Jitter > 0 {
		out.Correlation = s.Correlation
	}
	if s.Rate > 0 && (out.Rate == 0 || s.Rate < out.Rate) {
		out.Rate = s.Rate
	}
	return out
}

// IsZero reports a shape that changes nothing.
func (s Shape) IsZero() bool { return s == Shape{} }

func (s Shape) String() string {
	var parts []string
	if s.Blackhole {
		parts = append(parts, "blackhole")
	}
	if s.Delay > 0 || s.Jitter > 0 {
		parts = append(parts, fmt.Sprintf("delay %s±%s", s.Delay, s.Jitter))
	}
	if s.Rate > 0 {
		parts = append(parts, fmt.Sprintf("rate %dB/s", s.Rate))
	}
	if s.Loss > 0 {
		parts = append(parts, fmt.Sprintf("loss %g%%", s.Loss))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// Network is a network fault backend: it shapes directed links and proves it did.
type Network interface {
	Name() string
	// Apply gives every link the shape, replacing what the link had.
	Apply(ctx context.Context, links []Link, s Shape) error
	// Verify proves from the system itself (routes, qdiscs, the proxy's link table) that the links
	// have the shape.
	Verify(ctx context.Context, links []Link, s Shape) error
	// Heal returns the links to normal; VerifyHealed proves it.
	Heal(ctx context.Context, links []Link) error
	VerifyHealed(ctx context.Context, links []Link) error
	// Reset closes every connection carrying the links now.
	Reset(ctx context.Context, links []Link) error
	// Supports says whether the backend can give links the shape here (nil: it can), asked before
	// the run: netns needs the kernel's sch_netem for delay and loss, docker can only cut links.
	Supports(s Shape) error
}

// LinkCounter is a backend the links' bytes pass through, which counts them (the proxy).
type LinkCounter interface {
	Bytes(l Link) int64
}

// SortLinks orders links for stable output.
func SortLinks(ls []Link) {
	sort.Slice(ls, func(i, j int) bool {
		if ls[i].From != ls[j].From {
			return ls[i].From < ls[j].From
		}
		return ls[i].To < ls[j].To
	})
}

// Both returns the links between every member of a and every member of b, in both directions.
func Both(a, b []string) []Link {
	seen := map[Link]bool{}
	var out []Link
	for _, x := range a {
		for _, y := range b {
			if x == y {
				continue
			}
			for _, l := range []Link{{x, y}, {y, x}} {
				if !seen[l] {
					seen[l] = true
					out = append(out, l)
				}
			}
		}
	}
	SortLinks(out)
	return out
}

// OneWay returns the links from every member of from to every member of to.
func OneWay(from, to []string) []Link {
	var out []Link
	for _, x := range from {
		for _, y := range to {
			if x != y {
				out = append(out, Link{x, y})
			}
		}
	}
	SortLinks(out)
	return out
}

// Groups returns the links that cross between different groups, in both directions.
func Groups(groups [][]string) []Link {
	var out []Link
	for i := range groups {
		for j := range groups {
			if i != j {
				out = append(out, OneWay(groups[i], groups[j])...)
			}
		}
	}
	SortLinks(out)
	return out
}

// MajoritiesRing is Jepsen's majorities ring: the members, in the given order, stand in a ring and
// each still reaches its nearest neighbours on both sides, just enough of them to see a majority;
// every other link is cut. Every member sees a majority, and no two see the same one.
func MajoritiesRing(ring []string) []Link {
	n := len(ring)
	d := (n/2 + 1) / 2 // neighbours kept on each side: 2d+1 >= n/2+1
	var out []Link
	for i := range ring {
		for j := range ring {
			dist := (j - i + n) % n
			dist = min(dist, n-dist)
			if dist > d {
				out = append(out, Link{ring[i], ring[j]})
			}
		}
	}
	SortLinks(out)
	return out
}
