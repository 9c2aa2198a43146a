package faults

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/etcd-chaos/etcd-chaos/internal/testbin"
)

// listenIn starts an echo server inside a member's namespace.
func listenIn(t *testing.T, n *Netns, member string) string {
	t.Helper()
	var l net.Listener
	if err := inNS(nsOf(n, member), func() error {
		var err error
		l, err = net.Listen("tcp", n.IP(member)+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return serveEcho(t, l)
}

func dialFrom(n *Netns, member, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNS(nsOf(n, member), func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 500*time.Millisecond)
		return err
	})
	return c, err
}

func TestNetnsBlackholeAndShaping(t *testing.T) {
	testbin.NeedRoot(t)
	prefix := fmt.Sprintf("chaos-t%d", os.Getpid())
	n, err := NewNetns(prefix, "198.18.0.0/15", []string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
		if left, _ := ListNamespaces(prefix); len(left) > 0 {
			t.Errorf("namespaces left after Close: %v", left)
		}
	}()
	if got, _ := ListNamespaces(prefix); len(got) != 4 {
		t.Fatalf("namespaces = %v, want hub and 3 members", got)
	}
	ctx := context.Background()
	bAddr := listenIn(t, n, "b")
	// The harness reaches members from the hub namespace; nothing is routed in the root namespace.
	c, err := n.Dial(ctx, "tcp", bAddr)
	if err != nil {
		t.Fatalf("dial from the hub: %v", err)
	}
	c.Close()
	if _, err := net.DialTimeout("tcp", bAddr, 200*time.Millisecond); err == nil {
		t.Fatal("the root namespace reaches a member address: something was routed there")
	}
	if c, err := dialFrom(n, "a", bAddr); err != nil {
		t.Fatalf("a -> b before the fault: %v", err)
	} else {
		c.Close()
	}

	links := []Link{{"a", "b"}} // one-way
	if err := n.Apply(ctx, links, Shape{Blackhole: true}); err != nil {
		t.Fatal(err)
	}
	if err := n.Verify(ctx, links, Shape{Blackhole: true}); err != nil {
		t.Fatal(err)
	}
	if bh, _ := n.Blackholes("a"); len(bh) != 1 || bh[0] != (Link{"a", "b"}) {
		t.Fatalf("blackholes of a = %v", bh)
	}
	if _, err := dialFrom(n, "a", bAddr); err == nil {
		t.Fatal("a reached b through a blackhole route")
	}
	if c, err := dialFrom(n, "c", bAddr); err != nil {
		t.Fatalf("c -> b is not part of the fault: %v", err)
	} else {
		c.Close()
	}
	if err := n.Heal(ctx, links); err != nil {
		t.Fatal(err)
	}
	if err := n.VerifyHealed(ctx, links); err != nil {
		t.Fatal(err)
	}
	if c, err := dialFrom(n, "a", bAddr); err != nil {
		t.Fatalf("a -> b after the heal: %v", err)
	} else {
		c.Close()
	}

	// tbf works on this kernel: a rate on a->b is a tbf under the prio, with one filter.
	if err := n.Apply(ctx, links, Shape{Rate: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := n.Verify(ctx, links, Shape{Rate: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := n.Heal(ctx, links); err != nil {
		t.Fatal(err)
	}
	if err := n.VerifyHealed(ctx, links); err != nil {
		t.Fatal(err)
	}

	// netem: either it works, or the error says the kernel lacks it and points to the proxy.
	if err := n.NetemAvailable(); err != nil {
		if !strings.Contains(err.Error(), "sch_netem") || !strings.Contains(err.Error(), "network: proxy") {
			t.Fatalf("netem error %q does not name sch_netem and network: proxy", err)
		}
		if aerr := n.Apply(ctx, links, Shape{Delay: 50 * time.Millisecond}); aerr == nil || aerr.Error() != err.Error() {
			t.Fatalf("delay without netem: %v", aerr)
		}
		t.Logf("as expected on this kernel: %v", err)
	}
}

func nsOf(n *Netns, member string) netns.NsHandle {
	h, err := netns.GetFromPath(n.NsPath(member))
	if err != nil {
		panic(err)
	}
	return h
}
