package faults

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named network namespaces are bound (as ip netns does).
const NetnsDir = "/run/netns"

// Netns is the privileged network backend: every member runs in its own network namespace, joined
// to the others by a bridge in a hub namespace, on addresses from a range no real network uses.
// Faults are routes and qdiscs inside the members' namespaces, so nothing touches the root
// namespace: the harness reaches the members by dialling from the hub namespace.
type Netns struct {
	hub     string
	hubNS   netns.NsHandle
	hubIP   net.IP
	members map[string]*nsMember
	order   []string

	netemOnce sync.Once
	netemErr  error

	// lookup, when set, adopts namespaces the backend did not make (containers'): it names a
	// member's process and address, looked up anew for every step (a restarted container has a new
	// PID).
	lookup  func(member string) (pid int, ip string, err error)
	adoptMu sync.Mutex
	adopted map[string]*nsMember
}

// NetnsOfPIDs is the namespace backend over namespaces that exist already, each entered through a
// process in it (a container's, by its PID): routes and qdiscs go on its eth0.
func NetnsOfPIDs(lookup func(member string) (pid int, ip string, err error)) *Netns {
	return &Netns{lookup: lookup, adopted: map[string]*nsMember{}}
}

func (n *Netns) adopt(name string) (*nsMember, error) {
	pid, ip, err := n.lookup(name)
	if err != nil {
		return nil, err
	}
	n.adoptMu.Lock()
	defer n.adoptMu.Unlock()
	if m := n.adopted[name]; m != nil && m.pid == pid {
		return m, nil
	}
	if m := n.adopted[name]; m != nil {
		m.h.Close()
	}
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		return nil, fmt.Errorf("entering %s's network namespace (pid %d): %w", name, pid, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, err
	}
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("%s has no eth0: %w", name, err)
	}
	m := &nsMember{ns: fmt.Sprintf("pid %d", pid), h: h, ip: net.ParseIP(ip).To4(), link: eth0.Attrs().Index, pid: pid}
	if m.ip == nil {
		h.Close()
		return nil, fmt.Errorf("%s's address %q is not IPv4", name, ip)
	}
	n.adopted[name] = m
	return m, nil
}

type nsMember struct {
	ns   string
	h    *netlink.Handle
	ip   net.IP
	link int // eth0's index inside the namespace
	pid  int // adopted namespaces: the process it was entered through
}

// NetnsAddr is the i-th address of subnet (members are 1..N, the hub N+1).
func NetnsAddr(subnet string, i int) (string, error) {
	ip, ipnet, err := net.ParseCIDR(subnet)
	if err != nil || ip.To4() == nil {
		return "", fmt.Errorf("subnet %q is not an IPv4 CIDR such as 198.18.0.0/15", subnet)
	}
	out := make(net.IP, 4)
	binary.BigEndian.PutUint32(out, binary.BigEndian.Uint32(ipnet.IP.To4())+uint32(i))
	return out.String(), nil
}

// NewNetns makes the namespaces of a cluster: prefix names them (chaos-<id>-hub, chaos-<id>-<member>),
// subnet gives the addresses (members from its first address on, then the hub). If it fails
// part-way, what it made is removed.
func NewNetns(prefix, subnet string, members []string) (n *Netns, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("network: netns needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN to make namespaces); run as root or use network: proxy")
	}
	ip, ipnet, err := net.ParseCIDR(subnet)
	if err != nil || ip.To4() == nil {
		return nil, fmt.Errorf("subnet %q is not an IPv4 CIDR such as 198.18.0.0/15", subnet)
	}
	ones, bits := ipnet.Mask.Size()
	if 1<<(bits-ones) < len(members)+3 {
		return nil, fmt.Errorf("subnet %s has too few addresses for %d members and the hub", subnet, len(members))
	}
	base := binary.BigEndian.Uint32(ipnet.IP.To4())
	addr := func(i int) net.IP {
		out := make(net.IP, 4)
		binary.BigEndian.PutUint32(out, base+uint32(i))
		return out
	}
	n = &Netns{hub: prefix + "-hub", hubIP: addr(len(members) + 1), members: map[string]*nsMember{}, order: members}
	defer func() {
		if err != nil {
			_ = n.Close()
			n = nil
		}
	}()
	if n.hubNS, err = newNamedNS(n.hub); err != nil {
		return n, fmt.Errorf("creating namespace %s: %w", n.hub, err)
	}
	hh, err := netlink.NewHandleAt(n.hubNS)
	if err != nil {
		return n, err
	}
	defer hh.Close()
	mask := net.CIDRMask(ones, bits)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := hh.LinkAdd(br); err != nil {
		return n, fmt.Errorf("hub bridge: %w", err)
	}
	if err := upWithAddr(hh, "br0", &net.IPNet{IP: n.hubIP, Mask: mask}); err != nil {
		return n, fmt.Errorf("hub bridge: %w", err)
	}
	if err := upWithAddr(hh, "lo", nil); err != nil {
		return n, err
	}
	brLink, err := hh.LinkByName("br0")
	if err != nil {
		return n, err
	}
	for i, name := range members {
		m := &nsMember{ns: prefix + "-" + name, ip: addr(i + 1)}
		n.members[name] = m
		h, err := newNamedNS(m.ns)
		if err != nil {
			return n, fmt.Errorf("creating namespace %s: %w", m.ns, err)
		}
		m.h, err = netlink.NewHandleAt(h)
		if err != nil {
			h.Close()
			return n, err
		}
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("m%d", i+1), MasterIndex: brLink.Attrs().Index},
			PeerName: "eth0", PeerNamespace: netlink.NsFd(int(h))}
		err = hh.LinkAdd(veth)
		h.Close()
		if err != nil {
			return n, fmt.Errorf("veth for %s: %w", name, err)
		}
		if err := upWithAddr(hh, veth.Name, nil); err != nil {
			return n, err
		}
		if err := upWithAddr(m.h, "eth0", &net.IPNet{IP: m.ip, Mask: mask}); err != nil {
			return n, fmt.Errorf("%s eth0: %w", name, err)
		}
		if err := upWithAddr(m.h, "lo", nil); err != nil {
			return n, err
		}
		eth0, err := m.h.LinkByName("eth0")
		if err != nil {
			return n, err
		}
		m.link = eth0.Attrs().Index
	}
	return n, nil
}

func upWithAddr(h *netlink.Handle, name string, a *net.IPNet) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	if a != nil {
		if err := h.AddrAdd(l, &netlink.Addr{IPNet: a}); err != nil {
			return fmt.Errorf("address %s on %s: %w", a, name, err)
		}
	}
	return h.LinkSetUp(l)
}

// inNS runs f on an OS thread switched into ns, in a goroutine of its own: if the thread cannot be
// switched back it stays locked and dies with the goroutine, so no other code runs in ns by accident.
func inNS(ns netns.NsHandle, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("returning to the root namespace: %w", err))
			return // the thread stays locked and ends with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// newScratchNS makes an unnamed namespace (gone when its handle closes) without moving the caller.
func newScratchNS() (h netns.NsHandle, err error) {
	orig, err := netns.Get()
	if err != nil {
		return 0, err
	}
	defer orig.Close()
	err = inNS(orig, func() error {
		var e error
		h, e = netns.New()
		return e
	})
	return h, err
}

// newNamedNS creates a named namespace (bound under /run/netns) without moving the caller into it.
func newNamedNS(name string) (h netns.NsHandle, err error) {
	orig, err := netns.Get()
	if err != nil {
		return 0, err
	}
	defer orig.Close()
	err = inNS(orig, func() error {
		var e error
		h, e = netns.NewNamed(name)
		return e
	})
	return h, err
}

// Name implements Network.
func (n *Netns) Name() string { return "netns" }

// Supports: delay and loss need the kernel's sch_netem (NetemAvailable); the rest is routes and tbf.
func (n *Netns) Supports(s Shape) error {
	if s.Delay > 0 || s.Jitter > 0 || s.Loss > 0 {
		return n.NetemAvailable()
	}
	return nil
}

// IP returns a member's address.
func (n *Netns) IP(member string) string { return n.members[member].ip.String() }

// NsPath returns the path of a member's namespace, for nsenter --net.
func (n *Netns) NsPath(member string) string { return filepath.Join(NetnsDir, n.members[member].ns) }

// Namespaces names every namespace of the cluster, hub first.
func (n *Netns) Namespaces() []string {
	out := []string{n.hub}
	for _, name := range n.order {
		if m := n.members[name]; m != nil {
			out = append(out, m.ns)
		}
	}
	return out
}

// Dial connects from the hub namespace, where the members' addresses are reachable.
func (n *Netns) Dial(ctx context.Context, network, addr string) (c net.Conn, err error) {
	err = inNS(n.hubNS, func() error {
		var e error
		c, e = (&net.Dialer{}).DialContext(ctx, network, addr)
		return e
	})
	return c, err
}

// Close deletes the namespaces; with them go their links, routes and qdiscs. The member processes
// must have exited first. Adopted namespaces are not ours: only the handles close.
func (n *Netns) Close() error {
	if n.lookup != nil {
		n.adoptMu.Lock()
		defer n.adoptMu.Unlock()
		for _, m := range n.adopted {
			m.h.Close()
		}
		n.adopted = map[string]*nsMember{}
		return nil
	}
	for _, m := range n.members {
		if m.h != nil {
			m.h.Close()
		}
	}
	if n.hubNS != 0 {
		n.hubNS.Close()
	}
	return DeleteNamespaces(n.Namespaces())
}

// DeleteNamespaces removes named namespaces that exist (chaos heal uses it on what a killed harness
// left).
func DeleteNamespaces(names []string) error {
	var errs []error
	for _, name := range names {
		if _, err := os.Stat(filepath.Join(NetnsDir, name)); os.IsNotExist(err) {
			continue
		}
		if err := netns.DeleteNamed(name); err != nil {
			errs = append(errs, fmt.Errorf("deleting namespace %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// NetemAvailable says whether the kernel has sch_netem, checked once by adding a netem qdisc to the
// hub's loopback.
func (n *Netns) NetemAvailable() error {
	n.netemOnce.Do(func() {
		var h *netlink.Handle
		var err error
		if n.lookup != nil {
			// Adopted namespaces: try in a scratch namespace of our own.
			scratch, serr := newScratchNS()
			if serr != nil {
				n.netemErr = serr
				return
			}
			defer scratch.Close()
			h, err = netlink.NewHandleAt(scratch)
		} else {
			h, err = netlink.NewHandleAt(n.hubNS)
		}
		if err != nil {
			n.netemErr = err
			return
		}
		defer h.Close()
		if err := netemProbe(h); err != nil {
			n.netemErr = fmt.Errorf("%v: network: netns cannot delay, jitter or drop packets; use network: proxy for delay and jitter", err)
		}
	})
	return n.netemErr
}

func (n *Netns) member(name string) (*nsMember, error) {
	if n.lookup != nil {
		return n.adopt(name)
	}
	m := n.members[name]
	if m == nil {
		return nil, fmt.Errorf("%q is not a member in a namespace (client links go through the proxy)", name)
	}
	return m, nil
}

func hostRoute(ip net.IP) *net.IPNet { return &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)} }

// bySender groups links by sender: routes and qdiscs live in the sender's namespace.
func (n *Netns) bySender(links []Link) (map[string][]*nsMember, []string, error) {
	out := map[string][]*nsMember{}
	var senders []string
	for _, l := range links {
		if _, err := n.member(l.From); err != nil {
			return nil, nil, err
		}
		to, err := n.member(l.To)
		if err != nil {
			return nil, nil, err
		}
		if out[l.From] == nil {
			senders = append(senders, l.From)
		}
		out[l.From] = append(out[l.From], to)
	}
	sort.Strings(senders)
	return out, senders, nil
}

// Apply implements Network: a blackhole is a blackhole route to the receiver in the sender's
// namespace (packets vanish, connections stay open); delay, jitter and loss are a netem qdisc, and a
// rate an htb class, on the sender's eth0, where u32 filters pick the receivers.
func (n *Netns) Apply(ctx context.Context, links []Link, s Shape) error {
	groups, senders, err := n.bySender(links)
	if err != nil {
		return err
	}
	if !s.Blackhole && netemShape(s) {
		if err := n.NetemAvailable(); err != nil {
			return err
		}
	}
	for _, from := range senders {
		m, _ := n.member(from)
		if s.Blackhole {
			for _, to := range groups[from] {
				if err := m.h.RouteAdd(&netlink.Route{Dst: hostRoute(to.ip), Type: unix.RTN_BLACKHOLE}); err != nil && !errors.Is(err, unix.EEXIST) {
					return fmt.Errorf("blackhole route %s -> %s: %w", from, to.ip, err)
				}
			}
			continue
		}
		if err := m.shape(groups[from], s); err != nil {
			return fmt.Errorf("qdisc on %s: %w", from, err)
		}
	}
	return nil
}

var (
	rootHandle  = netlink.MakeHandle(1, 0)
	shapedClass = netlink.MakeHandle(1, 3)
)

// shape puts an htb qdisc at the root of eth0 (unfiltered traffic passes unshaped: default 0), a
// class 1:3 that u32 filters on the receivers' addresses feed, and under it netem for delay, jitter
// and loss. A rate alone is the class's own rate. (htb, not prio: some kernels, this CI's among
// them, have sch_htb and sch_tbf but no sch_prio.)
func (m *nsMember) shape(to []*nsMember, s Shape) error {
	_ = m.clearQdisc()
	if err := m.h.QdiscAdd(netlink.NewHtb(netlink.QdiscAttrs{LinkIndex: m.link, Parent: netlink.HANDLE_ROOT, Handle: rootHandle})); err != nil {
		return fmt.Errorf("htb qdisc: %w", err)
	}
	bits := uint64(10_000_000_000) // 10 Gbit/s: no limit but the netem below
	if s.Rate > 0 && s.Delay == 0 && s.Jitter == 0 && s.Loss == 0 {
		bits = uint64(s.Rate) * 8
	}
	class := netlink.NewHtbClass(netlink.ClassAttrs{LinkIndex: m.link, Parent: rootHandle, Handle: shapedClass}, netlink.HtbClassAttrs{Rate: bits})
	if err := m.h.ClassAdd(class); err != nil {
		return fmt.Errorf("htb class: %w", err)
	}
	if netemShape(s) {
		q := netlink.NewNetem(netlink.QdiscAttrs{LinkIndex: m.link, Parent: shapedClass, Handle: netlink.MakeHandle(30, 0)},
			netlink.NetemQdiscAttrs{Latency: uint32(s.Delay.Microseconds()), Jitter: uint32(s.Jitter.Microseconds()),
				DelayCorr: float32(s.Correlation * 100), Loss: float32(s.Loss), Rate64: uint64(s.Rate)})
		if err := m.h.QdiscAdd(q); err != nil {
			return fmt.Errorf("netem qdisc: %w", err)
		}
	}
	for _, t := range to {
		f := &netlink.U32{FilterAttrs: netlink.FilterAttrs{LinkIndex: m.link, Parent: rootHandle, Priority: 1, Protocol: unix.ETH_P_IP},
			ClassId: shapedClass, Sel: &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL,
				Keys: []netlink.TcU32Key{{Mask: 0xffffffff, Val: binary.BigEndian.Uint32(t.ip.To4()), Off: 16}}}}
		if err := m.h.FilterAdd(f); err != nil {
			return fmt.Errorf("u32 filter for %s: %w", t.ip, err)
		}
	}
	return nil
}

func netemShape(s Shape) bool { return s.Delay > 0 || s.Jitter > 0 || s.Loss > 0 }

func (m *nsMember) clearQdisc() error {
	return m.h.QdiscDel(netlink.NewHtb(netlink.QdiscAttrs{LinkIndex: m.link, Parent: netlink.HANDLE_ROOT, Handle: rootHandle}))
}

// shapedQdisc says what shapes eth0: "" (nothing), "htb" (a rate) or "netem", and how many filters
// lead to it.
func (m *nsMember) shapedQdisc() (string, int, error) {
	l, err := m.h.LinkByIndex(m.link)
	if err != nil {
		return "", 0, err
	}
	qs, err := m.h.QdiscList(l)
	if err != nil {
		return "", 0, err
	}
	kind := ""
	for _, q := range qs {
		switch {
		case q.Attrs().Parent == netlink.HANDLE_ROOT && q.Type() == "htb" && kind == "":
			kind = "htb"
		case q.Attrs().Parent == shapedClass:
			kind = q.Type()
		}
	}
	if kind == "" {
		return "", 0, nil
	}
	fs, err := m.h.FilterList(l, rootHandle)
	if err != nil {
		return kind, 0, err
	}
	n := 0
	for _, f := range fs {
		if u, ok := f.(*netlink.U32); ok && u.ClassId == shapedClass {
			n++
		}
	}
	return kind, n, nil
}

func (m *nsMember) blackholes() (map[string]bool, error) {
	rs, err := m.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Type: unix.RTN_BLACKHOLE, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_TYPE|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, r := range rs {
		if r.Dst != nil {
			out[r.Dst.IP.String()] = true
		}
	}
	return out, nil
}

// Verify implements Network: it lists the routes and qdiscs back from the kernel.
func (n *Netns) Verify(ctx context.Context, links []Link, s Shape) error {
	groups, senders, err := n.bySender(links)
	if err != nil {
		return err
	}
	for _, from := range senders {
		m, _ := n.member(from)
		if s.Blackhole {
			bh, err := m.blackholes()
			if err != nil {
				return err
			}
			for _, to := range groups[from] {
				if !bh[to.ip.String()] {
					return fmt.Errorf("no blackhole route to %s in %s", to.ip, m.ns)
				}
			}
			continue
		}
		kind, filters, err := m.shapedQdisc()
		if err != nil {
			return err
		}
		want := "htb"
		if netemShape(s) {
			want = "netem"
		}
		if kind != want || filters != len(groups[from]) {
			return fmt.Errorf("%s has a %q qdisc with %d filters, want %s with %d", m.ns, kind, filters, want, len(groups[from]))
		}
	}
	return nil
}

// Heal implements Network: it removes the links' blackhole routes and the senders' qdiscs.
func (n *Netns) Heal(ctx context.Context, links []Link) error {
	groups, senders, err := n.bySender(links)
	if err != nil {
		return err
	}
	var errs []error
	for _, from := range senders {
		m, _ := n.member(from)
		bh, err := m.blackholes()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, to := range groups[from] {
			if bh[to.ip.String()] {
				if err := m.h.RouteDel(&netlink.Route{Dst: hostRoute(to.ip), Type: unix.RTN_BLACKHOLE}); err != nil {
					errs = append(errs, fmt.Errorf("removing the blackhole route %s -> %s: %w", from, to.ip, err))
				}
			}
		}
		if kind, _, err := m.shapedQdisc(); err == nil && kind != "" {
			if err := m.clearQdisc(); err != nil {
				errs = append(errs, fmt.Errorf("removing the qdisc on %s: %w", from, err))
			}
		}
	}
	return errors.Join(errs...)
}

// VerifyHealed implements Network.
func (n *Netns) VerifyHealed(ctx context.Context, links []Link) error {
	groups, senders, err := n.bySender(links)
	if err != nil {
		return err
	}
	for _, from := range senders {
		m, _ := n.member(from)
		bh, err := m.blackholes()
		if err != nil {
			return err
		}
		for _, to := range groups[from] {
			if bh[to.ip.String()] {
				return fmt.Errorf("the blackhole route %s -> %s is still there", from, to.ip)
			}
		}
		if kind, _, err := m.shapedQdisc(); err != nil || kind != "" {
			return fmt.Errorf("%s still has a %q qdisc (%v)", m.ns, kind, err)
		}
	}
	return nil
}

// Reset implements Network: the kernel has no switch that closes one link's connections.
func (n *Netns) Reset(ctx context.Context, links []Link) error {
	return errors.New("reset needs network: proxy (in network: netns a link's connections cannot be closed from outside)")
}

// Blackholes lists a member's blackhole routes as "member->member" links, for tests and reports.
func (n *Netns) Blackholes(member string) ([]Link, error) {
	m, err := n.member(member)
	if err != nil {
		return nil, err
	}
	bh, err := m.blackholes()
	if err != nil {
		return nil, err
	}
	var out []Link
	for name, o := range n.members {
		if bh[o.ip.String()] {
			out = append(out, Link{member, name})
		}
	}
	SortLinks(out)
	return out, nil
}

// ListNamespaces lists the named namespaces whose names start with prefix.
func ListNamespaces(prefix string) ([]string, error) {
	es, err := os.ReadDir(NetnsDir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var out []string
	for _, e := range es {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// BlackholeRoutes lists the destinations of the blackhole routes in a named namespace (for tests
// and for chaos heal's report).
func BlackholeRoutes(ns string) ([]string, error) {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, err
	}
	defer nh.Close()
	m := &nsMember{h: nh}
	bh, err := m.blackholes()
	if err != nil {
		return nil, err
	}
	var out []string
	for ip := range bh {
		out = append(out, ip)
	}
	sort.Strings(out)
	return out, nil
}
