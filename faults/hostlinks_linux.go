package faults

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// HostLinks shapes this host's own traffic to its peers, in the network namespace the caller runs
// in: chaos agent on a node uses it for the peer links of the member beside it. It is the netns
// backend's injectors on one interface: a blackhole route per peer (packets vanish, connections
// stay open), and an htb root qdisc whose u32 filters pick the peers, with netem under it for
// delay and loss where the kernel has sch_netem.
type HostLinks struct {
	m *nsMember
}

// EgressLink names the interface this host sends to ip through (the route the kernel picks now).
func EgressLink(ip net.IP) (string, error) {
	rs, err := netlink.RouteGet(ip)
	if err != nil {
		return "", fmt.Errorf("no route to %s: %w", ip, err)
	}
	if len(rs) == 0 || rs[0].LinkIndex == 0 {
		return "", fmt.Errorf("no interface routes to %s", ip)
	}
	l, err := netlink.LinkByIndex(rs[0].LinkIndex)
	if err != nil {
		return "", err
	}
	return l.Attrs().Name, nil
}

// NewHostLinks works on the interface named iface, in the caller's network namespace.
func NewHostLinks(iface string) (*HostLinks, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, err
	}
	l, err := h.LinkByName(iface)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("interface %s: %w", iface, err)
	}
	return &HostLinks{m: &nsMember{ns: iface, h: h, link: l.Attrs().Index}}, nil
}

// Close releases the netlink handle.
func (hl *HostLinks) Close() { hl.m.h.Close() }

func peersOf(ips []net.IP) []*nsMember {
	out := make([]*nsMember, len(ips))
	for i, ip := range ips {
		out[i] = &nsMember{ip: ip.To4()}
	}
	return out
}

// Shaped says what shapes the interface now: "" (nothing), "htb" or "netem" under the root htb
// qdisc this package puts there.
func (hl *HostLinks) Shaped() (string, error) {
	kind, _, err := hl.m.shapedQdisc()
	return kind, err
}

// Apply cuts or shapes the traffic to the peers (delay and loss need sch_netem: NetemHere).
func (hl *HostLinks) Apply(peers []net.IP, s Shape) error {
	if s.Blackhole {
		for _, ip := range peers {
			if err := hl.m.h.RouteAdd(&netlink.Route{Dst: hostRoute(ip.To4()), Type: unix.RTN_BLACKHOLE}); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("blackhole route to %s: %w", ip, err)
			}
		}
		return nil
	}
	if netemShape(s) {
		if err := NetemHere(); err != nil {
			return err
		}
	}
	return hl.m.shape(peersOf(peers), s)
}

// Verify lists the routes and the qdisc back from the kernel.
func (hl *HostLinks) Verify(peers []net.IP, s Shape) error {
	if s.Blackhole {
		bh, err := hl.m.blackholes()
		if err != nil {
			return err
		}
		for _, ip := range peers {
			if !bh[ip.To4().String()] {
				return fmt.Errorf("no blackhole route to %s", ip)
			}
		}
		return nil
	}
	kind, filters, err := hl.m.shapedQdisc()
	if err != nil {
		return err
	}
	want := "htb"
	if netemShape(s) {
		want = "netem"
	}
	if kind != want || filters != len(peers) {
		return fmt.Errorf("%s has a %q qdisc with %d filters, want %s with %d", hl.m.ns, kind, filters, want, len(peers))
	}
	return nil
}

// Heal removes the peers' blackhole routes and, when shaped is set, the interface's root qdisc.
func (hl *HostLinks) Heal(peers []net.IP, shaped bool) error {
	bh, err := hl.m.blackholes()
	if err != nil {
		return err
	}
	var errs []error
	for _, ip := range peers {
		if bh[ip.To4().String()] {
			if err := hl.m.h.RouteDel(&netlink.Route{Dst: hostRoute(ip.To4()), Type: unix.RTN_BLACKHOLE}); err != nil {
				errs = append(errs, fmt.Errorf("removing the blackhole route to %s: %w", ip, err))
			}
		}
	}
	if shaped {
		if kind, _, err := hl.m.shapedQdisc(); err == nil && kind != "" {
			if err := hl.m.clearQdisc(); err != nil {
				errs = append(errs, fmt.Errorf("removing the qdisc on %s: %w", hl.m.ns, err))
			}
		}
	}
	return errors.Join(errs...)
}

// VerifyHealed proves no blackhole route to the peers is left, and (shaped) no qdisc of ours.
func (hl *HostLinks) VerifyHealed(peers []net.IP, shaped bool) error {
	bh, err := hl.m.blackholes()
	if err != nil {
		return err
	}
	for _, ip := range peers {
		if bh[ip.To4().String()] {
			return fmt.Errorf("the blackhole route to %s is still there", ip)
		}
	}
	if shaped {
		if kind, _, err := hl.m.shapedQdisc(); err != nil || kind != "" {
			return fmt.Errorf("%s still has a %q qdisc (%v)", hl.m.ns, kind, err)
		}
	}
	return nil
}

// NetemHere says whether this kernel has sch_netem, by adding a netem qdisc in a scratch namespace
// of its own (nothing of the host's is touched).
func NetemHere() error {
	scratch, err := newScratchNS()
	if err != nil {
		return err
	}
	defer scratch.Close()
	h, err := netlink.NewHandleAt(scratch)
	if err != nil {
		return err
	}
	defer h.Close()
	return netemProbe(h)
}

// netemProbe adds and removes a netem qdisc on h's loopback.
func netemProbe(h *netlink.Handle) error {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	q := netlink.NewNetem(netlink.QdiscAttrs{LinkIndex: lo.Attrs().Index, Parent: netlink.HANDLE_ROOT, Handle: netlink.MakeHandle(1, 0)},
		netlink.NetemQdiscAttrs{Latency: 1000})
	if err := h.QdiscAdd(q); err != nil {
		return fmt.Errorf("the kernel lacks sch_netem (adding a netem qdisc failed: %v), so delay, jitter and loss cannot be put on links here", err)
	}
	_ = h.QdiscDel(q)
	return nil
}
