package faults

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// echoServer answers every line it reads with the same line, until the connection closes.
func echoServer(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return serveEcho(tb, l)
}

// serveEcho echoes every connection l accepts until the test ends.
func serveEcho(tb testing.TB, l net.Listener) string {
	tb.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().String()
}

// peerConn dials the proxy as member from would: an HTTP request naming its advertised peer URL.
func peerConn(t *testing.T, addr, fromURL string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := fmt.Fprintf(c, "GET /raft/stream/message/1 HTTP/1.1\r\nHost: x\r\nX-PeerURLs: %s\r\n\r\n", fromURL); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	// The echo server sends the request back: read through the blank line.
	for {
		line, err := readLine(c, r, 2*time.Second)
		if err != nil {
			t.Fatalf("reading the echoed request: %v", err)
		}
		if line == "\r\n" {
			return c, r
		}
	}
}

func readLine(c net.Conn, r *bufio.Reader, d time.Duration) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	return r.ReadString('\n')
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, d time.Duration) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return 0, err
	}
	line, err := readLine(c, r, d)
	if err != nil {
		return time.Since(start), err
	}
	if line != "ping\n" {
		t.Fatalf("echo = %q", line)
	}
	return time.Since(start), nil
}

func newTestProxy(t *testing.T) (*Proxy, string) {
	t.Helper()
	p := NewProxy(1, nil)
	t.Cleanup(p.Close)
	p.SetPeerURL("http://a.example:2380", "a")
	p.SetPeerURL("http://c.example:2380", "c")
	addr, err := p.Listen("b", "127.0.0.1:0", echoServer(t), true)
	if err != nil {
		t.Fatal(err)
	}
	return p, addr
}

func TestProxyIdentifiesSenderAndCountsBytes(t *testing.T) {
	p, addr := newTestProxy(t)
	c, r := peerConn(t, addr, "http://a.example:2380")
	if _, err := roundTrip(t, c, r, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	// The proxy counts a chunk once it has written it on: the echo can reach the client a moment
	// before its bytes are counted.
	ab, ba := p.Bytes(Link{"a", "b"}), p.Bytes(Link{"b", "a"})
	for deadline := time.Now().Add(time.Second); (ab == 0 || ab != ba) && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		ab, ba = p.Bytes(Link{"a", "b"}), p.Bytes(Link{"b", "a"})
	}
	if ab == 0 || ab != ba {
		t.Fatalf("bytes a->b %d, b->a %d: want equal and non-zero (an echo)", ab, ba)
	}
	if n := p.Conns()[Link{"a", "b"}]; n != 1 {
		t.Fatalf("conns a->b = %d, want 1 (all: %v)", n, p.Conns())
	}
}

func TestProxyBlackholeHoldsBytesAndHeals(t *testing.T) {
	p, addr := newTestProxy(t)
	ctx := context.Background()
	c, r := peerConn(t, addr, "http://a.example:2380")
	cc, cr := peerConn(t, addr, "http://c.example:2380")
	links := Both([]string{"a"}, []string{"b"})
	if err := p.Apply(ctx, links, Shape{Blackhole: true}); err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(ctx, links, Shape{Blackhole: true}); err != nil {
		t.Fatal(err)
	}
	before := p.Bytes(Link{"a", "b"})
	if _, err := roundTrip(t, c, r, 300*time.Millisecond); err == nil {
		t.Fatal("a round trip crossed a blackholed link")
	}
	if got := p.Bytes(Link{"a", "b"}); got != before {
		t.Fatalf("%d bytes crossed a->b during the blackhole", got-before)
	}
	// The other member's link is untouched.
	if _, err := roundTrip(t, cc, cr, 2*time.Second); err != nil {
		t.Fatalf("c->b round trip during a's blackhole: %v", err)
	}
	// A new connection from a is not even opened to b while the link is cut.
	c2, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	fmt.Fprintf(c2, "GET /raft/probing HTTP/1.1\r\nHost: x\r\nX-PeerURLs: http://a.example:2380\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	if got := p.Bytes(Link{"a", "b"}); got != before {
		t.Fatalf("a new connection sent %d bytes across the blackhole", got-before)
	}
	// After the heal the held ping arrives, on the same connection: it was never closed.
	if err := p.Heal(ctx, links); err != nil {
		t.Fatal(err)
	}
	if err := p.VerifyHealed(ctx, links); err != nil {
		t.Fatal(err)
	}
	line, err := readLine(c, r, 2*time.Second)
	if err != nil || line != "ping\n" {
		t.Fatalf("after the heal: %q, %v; want the held ping", line, err)
	}
	if _, err := roundTrip(t, c, r, 2*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestProxyDelayJitterAndOrder(t *testing.T) {
	p, addr := newTestProxy(t)
	c, r := peerConn(t, addr, "http://a.example:2380")
	base, err := roundTrip(t, c, r, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	const d = 40 * time.Millisecond
	if err := p.Apply(context.Background(), []Link{{"a", "b"}}, Shape{Delay: d, Jitter: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		rtt, err := roundTrip(t, c, r, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// One direction delayed d±10ms: the round trip is at least d-10ms and well under 2d.
		if rtt < d-10*time.Millisecond || rtt > base+d+40*time.Millisecond {
			t.Fatalf("round trip %d = %s with a %s±10ms one-way delay (base %s)", i, rtt, d, base)
		}
	}
	// Order: many small writes come back in order even with jitter larger than their spacing.
	var want strings.Builder
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&want, "%d\n", i)
		fmt.Fprintf(c, "%d\n", i)
		time.Sleep(time.Millisecond)
	}
	for i := 0; i < 50; i++ {
		line, err := readLine(c, r, 2*time.Second)
		if err != nil || line != fmt.Sprintf("%d\n", i) {
			t.Fatalf("line %d = %q, %v: bytes reordered or lost", i, line, err)
		}
	}
}

func TestProxyBandwidth(t *testing.T) {
	p, addr := newTestProxy(t)
	c, r := peerConn(t, addr, "http://a.example:2380")
	const rate = 200_000 // bytes/s
	if err := p.Apply(context.Background(), []Link{{"a", "b"}}, Shape{Rate: rate}); err != nil {
		t.Fatal(err)
	}
	payload := strings.Repeat("x", 99_999) + "\n" // 100 kB: half a second at the rate
	start := time.Now()
	go func() { _, _ = io.WriteString(c, payload) }()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := r.ReadString('\n')
	took := time.Since(start)
	if err != nil || len(got) != len(payload) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if took < 400*time.Millisecond || took > 1500*time.Millisecond {
		t.Fatalf("100 kB at %d B/s took %s; want about 500ms", rate, took)
	}
}

func TestProxyResetClosesTheLinksConnections(t *testing.T) {
	p, addr := newTestProxy(t)
	c, r := peerConn(t, addr, "http://a.example:2380")
	cc, cr := peerConn(t, addr, "http://c.example:2380")
	if err := p.Reset(context.Background(), []Link{{"b", "a"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := readLine(c, r, time.Second); err == nil {
		t.Fatal("a's connection still open after a reset of b->a")
	}
	if _, err := roundTrip(t, cc, cr, time.Second); err != nil {
		t.Fatalf("c's connection was reset too: %v", err)
	}
}

func TestProxyRefusesLoss(t *testing.T) {
	p := NewProxy(1, nil)
	err := p.Apply(context.Background(), []Link{{"a", "b"}}, Shape{Loss: 5})
	if err == nil || !strings.Contains(err.Error(), "network: netns") {
		t.Fatalf("loss through the proxy: %v; want an error pointing to network: netns", err)
	}
}

func TestProxyUnknownSenderGetsFaultsIntoItsMember(t *testing.T) {
	p, addr := newTestProxy(t)
	c, r := peerConn(t, addr, "http://nobody.example:2380")
	if err := p.Apply(context.Background(), Both([]string{"a"}, []string{"b"}), Shape{Blackhole: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(t, c, r, 300*time.Millisecond); err == nil {
		t.Fatal("an unattributed connection into b crossed while a<->b was blackholed")
	}
}

func TestLinkSets(t *testing.T) {
	ring := MajoritiesRing([]string{"a", "b", "c", "d", "e"})
	// Each member keeps its two ring neighbours: 5*2 directed links cut.
	if len(ring) != 10 {
		t.Fatalf("majorities ring cuts %d links, want 10: %v", len(ring), ring)
	}
	sees := map[string]int{}
	for _, x := range []string{"a", "b", "c", "d", "e"} {
		sees[x] = 5
	}
	for _, l := range ring {
		sees[l.From]--
	}
	for x, n := range sees {
		if n != 3 {
			t.Fatalf("%s reaches %d members, want a majority of exactly 3", x, n)
		}
	}
	if g := Groups([][]string{{"a", "b"}, {"c", "d", "e"}}); len(g) != 12 {
		t.Fatalf("groups 2|3 cut %d directed links, want 12", len(g))
	}
	if ow := OneWay([]string{"a"}, []string{"b", "c"}); len(ow) != 2 || ow[0] != (Link{"a", "b"}) {
		t.Fatalf("one-way = %v", ow)
	}
}

func TestSocketOwnerFindsTheDiallingProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("socket owners are looked up in /proc")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	owner := SocketOwner(func() map[string]int { return map[string]int{"other": 1, "me": os.Getpid()} })
	if got := owner(a); got != "me" {
		t.Fatalf("owner of a connection this process dialled = %q, want me", got)
	}
}

// A standing condition (cluster.peer-delay): a fault's delay adds to it, and its heal returns the
// link to it, not to nothing.
func TestProxyBaseShapeUnderFaults(t *testing.T) {
	p, addr := newTestProxy(t)
	const base, fault = 30 * time.Millisecond, 60 * time.Millisecond
	links := []Link{{"a", "b"}, {"b", "a"}}
	p.SetBase(links, Shape{Delay: base})
	c, r := peerConn(t, addr, "http://a.example:2380")
	median := func() time.Duration {
		var rtts []time.Duration
		for i := 0; i < 5; i++ {
			rtt, err := roundTrip(t, c, r, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			rtts = append(rtts, rtt)
		}
		slices.Sort(rtts)
		return rtts[2]
	}
	within := func(what string, got, want time.Duration) {
		t.Helper()
		if got < want || got > want+25*time.Millisecond {
			t.Errorf("%s: round trip %s, want %s (both directions) and a little", what, got, want)
		}
	}
	within("standing delay", median(), 2*base)
	if err := p.Apply(context.Background(), links[:1], Shape{Delay: fault}); err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(context.Background(), links[:1], Shape{Delay: fault}); err != nil {
		t.Errorf("verify under a base: %v", err)
	}
	within("fault on the standing delay", median(), 2*base+fault)
	if err := p.Heal(context.Background(), links[:1]); err != nil {
		t.Fatal(err)
	}
	if err := p.VerifyHealed(context.Background(), links[:1]); err != nil {
		t.Errorf("verify healed under a base: %v", err)
	}
	within("healed back to the standing delay", median(), 2*base)
}

func TestShapePlus(t *testing.T) {
	b := Shape{Delay: 10 * time.Millisecond, Jitter: 2 * time.Millisecond, Rate: 1000}
	got := b.Plus(Shape{Delay: 5 * time.Millisecond, Jitter: time.Millisecond, Correlation: 0.5, Rate: 500, Blackhole: true})
	want := Shape{Delay: 15 * time.Millisecond, Jitter: 3 * time.Millisecond, Correlation: 0.5, Rate: 500, Blackhole: true}
	if got != want || b.Plus(Shape{}) != b || (Shape{}).Plus(Shape{}) != (Shape{}) {
		t.Errorf("Plus = %+v, want %+v", got, want)
	}
}
