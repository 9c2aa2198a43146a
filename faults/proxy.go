package faults

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Unknown is the sender of a peer connection the proxy could not attribute to a member.
const Unknown = "?"

// Proxy is the userspace network backend: every member advertises a proxy as its peer URL and
// another as its client URL, and every byte between members, or between the load and a member,
// passes through it. Each connection belongs to one pair of directed links, and faults apply per link.
type Proxy struct {
	// Dial opens upstream connections (to the real member); nil is a plain TCP dial.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Owner names the member whose process owns the other end of an accepted connection, when the
	// first request does not say (etcd's version and probing requests carry no sender); nil or ""
	// leaves the sender Unknown.
	Owner func(c net.Conn) string
	Log   *slog.Logger

	mu        sync.Mutex
	links     map[Link]*linkState
	conns     map[*pconn]struct{}
	listeners []net.Listener
	peerURLs  map[string]string // advertised peer URL -> member name
	closed    bool
	wg        sync.WaitGroup
	seed      uint64
}

// NewProxy makes a proxy whose jitter draws derive from seed.
func NewProxy(seed int64, log *slog.Logger) *Proxy {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Proxy{Log: log, links: map[Link]*linkState{}, conns: map[*pconn]struct{}{}, peerURLs: map[string]string{}, seed: uint64(seed)}
}

// Name implements Network.
func (p *Proxy) Name() string { return "proxy" }

// Supports: the proxy gives links any shape.
func (p *Proxy) Supports(Shape) error { return nil }

type linkState struct {
	mu      sync.Mutex
	shape   Shape
	base    Shape         // the standing condition (cluster.peer-delay): faults add to it, heals return to it
	changed chan struct{} // closed and replaced whenever the shape changes
	rng     *rand.Rand
	lastJit float64 // the last jitter draw, in [-1, 1], for correlation
	bytes   atomic.Int64
	// inflight counts writers between their last look at the shape and the end of their write:
	// Apply waits for it to drain, so no byte decided under the old shape lands after Apply returns.
	inflight atomic.Int32
}

func (p *Proxy) link(l Link) *linkState {
	p.mu.Lock()
	defer p.mu.Unlock()
	ls := p.links[l]
	if ls == nil {
		h := uint64(0)
		for _, c := range l.String() {
			h = h*131 + uint64(c)
		}
		ls = &linkState{changed: make(chan struct{}), rng: rand.New(rand.NewPCG(p.seed, h))}
		p.links[l] = ls
	}
	return ls
}

func (ls *linkState) get() (Shape, <-chan struct{}) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.shape, ls.changed
}

// set gives the link the fault's shape on top of its standing condition.
func (ls *linkState) set(s Shape) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.shape = ls.base.Plus(s)
	close(ls.changed)
	ls.changed = make(chan struct{})
}

// want is the shape the link has under fault shape s.
func (ls *linkState) want(s Shape) Shape {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.base.Plus(s)
}

// SetBase gives links a standing condition for the whole run (cluster.peer-delay): every fault's
// shape is added to it and every heal returns to it. Links the proxy has not seen yet get it when
// they appear, as does every connection it cannot attribute to a link.
func (p *Proxy) SetBase(links []Link, s Shape) {
	for _, l := range withUnknown(links) {
		ls := p.link(l)
		ls.mu.Lock()
		ls.base = s
		ls.mu.Unlock()
		ls.set(Shape{})
	}
}

// jitter draws the jitter of one chunk: uniform in [-J, J], correlated with the last draw.
func (ls *linkState) jitter(s Shape) time.Duration {
	if s.Jitter <= 0 {
		return 0
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	x := ls.rng.Float64()*2 - 1
	x = s.Correlation*ls.lastJit + (1-s.Correlation)*x
	ls.lastJit = x
	return time.Duration(x * float64(s.Jitter))
}

// Bytes returns how many bytes the proxy has delivered on a link.
func (p *Proxy) Bytes(l Link) int64 { return p.link(l).bytes.Load() }

// Counters returns the bytes delivered on every link the proxy has seen.
func (p *Proxy) Counters() map[Link]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[Link]int64, len(p.links))
	for l, ls := range p.links {
		out[l] = ls.bytes.Load()
	}
	return out
}

// Apply implements Network.
func (p *Proxy) Apply(ctx context.Context, links []Link, s Shape) error {
	if s.Loss > 0 {
		return errors.New("packet loss is not a TCP proxy's to give (TCP retransmits what a proxy drops, and a dropped chunk corrupts the stream); use network: netns")
	}
	all := withUnknown(links)
	for _, l := range all {
		p.link(l).set(s)
	}
	if !s.Blackhole {
		return nil
	}
	deadline := time.Now().Add(2 * time.Second)
	for _, l := range all {
		ls := p.link(l)
		for ls.inflight.Load() > 0 {
			if time.Now().After(deadline) {
				return fmt.Errorf("a write on %s has been blocked for 2s (the receiver is not reading)", l)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	return nil
}

// withUnknown adds, for every member a link reaches, the links between it and Unknown senders: a
// connection the proxy could not attribute gets every fault on a link into its member (conservative).
func withUnknown(links []Link) []Link {
	out := append([]Link(nil), links...)
	seen := map[string]bool{}
	for _, l := range links {
		if l.From == Clients || l.To == Clients {
			continue
		}
		if !seen[l.To] {
			seen[l.To] = true
			out = append(out, Link{Unknown, l.To}, Link{l.To, Unknown})
		}
	}
	return out
}

// Verify implements Network: it reads the proxy's link table back.
func (p *Proxy) Verify(ctx context.Context, links []Link, s Shape) error {
	for _, l := range links {
		ls := p.link(l)
		if got, _ := ls.get(); got != ls.want(s) {
			return fmt.Errorf("link %s has %s, want %s", l, got, ls.want(s))
		}
	}
	return nil
}

// Heal implements Network.
func (p *Proxy) Heal(ctx context.Context, links []Link) error {
	return p.Apply(ctx, links, Shape{})
}

// VerifyHealed implements Network.
func (p *Proxy) VerifyHealed(ctx context.Context, links []Link) error {
	return p.Verify(ctx, links, Shape{})
}

// Reset implements Network: it closes every connection that carries one of the links.
func (p *Proxy) Reset(ctx context.Context, links []Link) error {
	want := map[Link]bool{}
	for _, l := range links {
		want[l] = true
	}
	p.mu.Lock()
	var hit []*pconn
	for c := range p.conns {
		if want[Link{c.from, c.to}] || want[Link{c.to, c.from}] {
			hit = append(hit, c)
		}
	}
	p.mu.Unlock()
	for _, c := range hit {
		c.close()
	}
	return nil
}

// Conns counts the open connections per link pair (from the side that dialled).
func (p *Proxy) Conns() map[Link]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[Link]int{}
	for c := range p.conns {
		out[Link{c.from, c.to}]++
	}
	return out
}

// Listen starts a proxy for member to on listen, forwarding to upstream. A peer proxy learns each
// connection's sender from its first HTTP request; a client proxy's sender is always Clients.
func (p *Proxy) Listen(to, listen, upstream string, peer bool) (addr string, err error) {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return "", fmt.Errorf("proxy for %s: %w", to, err)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = l.Close()
		return "", errors.New("proxy is closed")
	}
	p.listeners = append(p.listeners, l)
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.serve(c, to, upstream, peer)
			}()
		}
	}()
	return l.Addr().String(), nil
}

// SetPeerURL tells the proxy which member advertises a peer URL (the sender's X-PeerURLs header
// names it).
func (p *Proxy) SetPeerURL(url, member string) {
	p.mu.Lock()
	p.peerURLs[strings.TrimSuffix(url, "/")] = member
	p.mu.Unlock()
}

// Close stops listening, closes every connection and waits for the proxy's goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	ls := p.listeners
	p.listeners = nil
	var cs []*pconn
	for c := range p.conns {
		cs = append(cs, c)
	}
	p.mu.Unlock()
	for _, l := range ls {
		_ = l.Close()
	}
	for _, c := range cs {
		c.close()
	}
	p.wg.Wait()
}

// pconn is one proxied connection: down is the accepted side, up the dialled member.
type pconn struct {
	from, to string
	down, up net.Conn
	mu       sync.Mutex
	done     chan struct{}
	once     sync.Once
	halves   atomic.Int32
}

func (c *pconn) close() {
	c.once.Do(func() {
		close(c.done)
		_ = c.down.Close()
		c.mu.Lock()
		if c.up != nil {
			_ = c.up.Close()
		}
		c.mu.Unlock()
	})
}

// identify reads the first HTTP request on a peer connection and names its sender: from the
// advertised peer URLs rafthttp sends, or else from the process that owns the other end. ok is false
// when no request came (the dialler closed, or sent no HTTP within 10s): such a connection is closed.
func (p *Proxy) identify(c net.Conn) (from string, first []byte, ok bool) {
	var raw bytes.Buffer
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	req, err := http.ReadRequest(bufio.NewReader(io.TeeReader(c, &raw)))
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		return "", nil, false
	}
	{
		p.mu.Lock()
		for _, u := range strings.Split(req.Header.Get("X-PeerURLs"), ",") {
			if name, ok := p.peerURLs[strings.TrimSuffix(u, "/")]; ok {
				from = name
			}
		}
		p.mu.Unlock()
	}
	if from == "" && p.Owner != nil {
		from = p.Owner(c)
	}
	if from == "" {
		from = Unknown
		p.Log.Warn("proxy: cannot tell which member opened a peer connection; faults on any link into its member apply to it", "to", c.LocalAddr().String(), "from", c.RemoteAddr().String())
	}
	return from, raw.Bytes(), true
}

func (p *Proxy) serve(c net.Conn, to, upstream string, peer bool) {
	from := Clients
	var first []byte
	if peer {
		var ok bool
		if from, first, ok = p.identify(c); !ok {
			_ = c.Close()
			return
		}
	}
	pc := &pconn{from: from, to: to, down: c, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = c.Close()
		return
	}
	p.conns[pc] = struct{}{}
	p.mu.Unlock()
	defer func() {
		pc.close()
		p.mu.Lock()
		delete(p.conns, pc)
		p.mu.Unlock()
	}()
	upLink, downLink := p.link(Link{from, to}), p.link(Link{to, from})
	// A blackholed link opens no connection either: the member does not see the dial until the heal.
	for {
		s, changed := upLink.get()
		if !s.Blackhole {
			break
		}
		select {
		case <-changed:
		case <-pc.done:
			return
		}
	}
	dial := p.Dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: 5 * time.Second}).DialContext
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	go func() {
		select {
		case <-pc.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	up, err := dial(ctx, "tcp", upstream)
	cancel()
	if err != nil {
		return
	}
	pc.mu.Lock()
	pc.up = up
	pc.mu.Unlock()
	select {
	case <-pc.done:
		_ = up.Close()
		return
	default:
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); pipe(pc, c, up, upLink, first) }()
	go func() { defer wg.Done(); pipe(pc, up, c, downLink, nil) }()
	wg.Wait()
}

const chunkSize = 32 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

type chunk struct {
	buf *[]byte
	n   int
	at  time.Time
	eof bool
}

// pipe copies src to dst through the link's shape: each chunk is held until its arrival time plus
// the delay and its jitter (never before the chunk ahead of it, so bytes keep their order), paced to
// the rate, and not delivered at all while the link is blackholed.
func pipe(pc *pconn, src, dst net.Conn, ls *linkState, first []byte) {
	q := make(chan chunk, 64) // at most 2 MiB in flight per direction
	go func() {
		defer close(q)
		if len(first) > 0 {
			b := chunkPool.Get().(*[]byte)
			for len(first) > 0 {
				n := copy(*b, first)
				first = first[n:]
				select {
				case q <- chunk{buf: b, n: n, at: time.Now()}:
				case <-pc.done:
					return
				}
				b = chunkPool.Get().(*[]byte)
			}
			chunkPool.Put(b)
		}
		for {
			b := chunkPool.Get().(*[]byte)
			n, err := src.Read(*b)
			at := time.Now()
			if n > 0 {
				select {
				case q <- chunk{buf: b, n: n, at: at}:
				case <-pc.done:
					return
				}
			} else {
				chunkPool.Put(b)
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					select {
					case q <- chunk{eof: true}:
					case <-pc.done:
					}
				} else {
					pc.close()
				}
				return
			}
		}
	}()
	var last time.Time // the due time of the chunk ahead
	var nextFree time.Time
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	wait := func(d time.Duration, changed <-chan struct{}) bool {
		timer.Reset(d)
		select {
		case <-timer.C:
			return true
		case <-changed:
			if !timer.Stop() {
				<-timer.C
			}
			return true
		case <-pc.done:
			return false
		}
	}
	for ch := range q {
		if ch.eof {
			if tc, ok := dst.(*net.TCPConn); ok && pc.halves.Add(1) < 2 {
				_ = tc.CloseWrite()
				continue
			}
			pc.close()
			return
		}
		var jit time.Duration
		jitDrawn := false
		data := (*ch.buf)[:ch.n]
		for len(data) > 0 {
			s, changed := ls.get()
			if s.Blackhole {
				select {
				case <-changed:
					continue
				case <-pc.done:
					chunkPool.Put(ch.buf)
					return
				}
			}
			if !jitDrawn {
				jit, jitDrawn = ls.jitter(s), true
			}
			due := ch.at.Add(s.Delay + jit)
			if due.Before(last) {
				due = last
			}
			if d := time.Until(due); d > 0 {
				if !wait(d, changed) {
					chunkPool.Put(ch.buf)
					return
				}
				continue // the shape may have changed: look again
			}
			last = due
			n := len(data)
			if s.Rate > 0 {
				n = min(n, max(int(s.Rate/50), 512)) // 20 ms worth at a time
				if d := time.Until(nextFree); d > 0 {
					if !wait(d, changed) {
						chunkPool.Put(ch.buf)
						return
					}
					continue
				}
				start := time.Now()
				if start.Before(nextFree) {
					start = nextFree
				}
				nextFree = start.Add(time.Duration(float64(n) / float64(s.Rate) * float64(time.Second)))
			}
			ls.inflight.Add(1)
			if now, _ := ls.get(); now != s {
				ls.inflight.Add(-1)
				continue // the shape changed since the look above: look again
			}
			w, err := dst.Write(data[:n])
			ls.bytes.Add(int64(w))
			ls.inflight.Add(-1)
			if err != nil {
				chunkPool.Put(ch.buf)
				pc.close()
				return
			}
			data = data[n:]
		}
		chunkPool.Put(ch.buf)
	}
}
