package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/etcd-chaos/etcd-chaos/agent"
	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// Agents are the harness's clients of chaos agent on the nodes of a remote cluster, one per member,
// with the run's lease: every fault they hold carries Owner and is renewed every TTL/4 while the
// harness lives (the dead man's switch heals it TTL after the harness dies).
type Agents struct {
	Clients map[string]*agent.Client
	URLs    map[string]string
	Owner   string
	TTL     time.Duration

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// AgentsFor builds the scenario's agent clients (nil when it names none): TLS from
// cluster.agent-tls, paths relative to the scenario file; errors name the field, never the token.
func AgentsFor(sc *scenarios.Scenario, owner string) (*Agents, error) {
	c := sc.Cluster
	if len(c.Agents) == 0 {
		return nil, nil
	}
	tlsCfg, token, err := AgentTLSConfig(sc)
	if err != nil {
		return nil, err
	}
	ttl := c.AgentTTL.D()
	if ttl == 0 {
		ttl = scenarios.DefaultAgentTTL
	}
	a := &Agents{Clients: map[string]*agent.Client{}, URLs: map[string]string{}, Owner: owner, TTL: ttl}
	for name, u := range c.Agents {
		cl, err := agent.NewClient(u, tlsCfg, token)
		if err != nil {
			return nil, fmt.Errorf("cluster.agents.%s: %w", name, err)
		}
		a.Clients[name], a.URLs[name] = cl, u
	}
	return a, nil
}

// AgentTLSConfig reads cluster.agent-tls: the CA (the system's roots when none), the controller's
// certificate for mutual TLS, and the bearer token.
func AgentTLSConfig(sc *scenarios.Scenario) (*tls.Config, string, error) {
	t := sc.Cluster.AgentTLS
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) || strings.HasPrefix(sc.File, "builtin:") || sc.File == "" {
			return p
		}
		return filepath.Join(filepath.Dir(sc.File), p)
	}
	cfg := &tls.Config{ServerName: t.ServerName, MinVersion: tls.VersionTLS12}
	if t.CA != "" {
		pem, err := os.ReadFile(rel(t.CA))
		if err != nil {
			return nil, "", fmt.Errorf("cluster.agent-tls.ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, "", fmt.Errorf("cluster.agent-tls.ca: %s holds no PEM certificate", rel(t.CA))
		}
		cfg.RootCAs = pool
	}
	if (t.Cert == "") != (t.Key == "") {
		return nil, "", errors.New("cluster.agent-tls: cert and key go together; give both or neither")
	}
	if t.Cert != "" {
		pair, err := tls.LoadX509KeyPair(rel(t.Cert), rel(t.Key))
		if err != nil {
			return nil, "", fmt.Errorf("cluster.agent-tls.cert/key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	token := ""
	if t.TokenFile != "" {
		b, err := os.ReadFile(rel(t.TokenFile))
		if err != nil {
			return nil, "", fmt.Errorf("cluster.agent-tls.token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	return cfg, token, nil
}

// lease is a fault's lease for the agents: the run's owner and TTL, and its scheduled end.
func (a *Agents) lease(until time.Time) agent.Lease {
	return agent.Lease{Owner: a.Owner, TTLMs: a.TTL.Milliseconds(), Until: until}
}

// StartRenewing renews the run's holds on every agent every TTL/4 until Stop.
func (a *Agents) StartRenewing() {
	a.stop, a.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(a.done)
		t := time.NewTicker(a.TTL / 4)
		defer t.Stop()
		for {
			select {
			case <-a.stop:
				return
			case <-t.C:
			}
			var wg sync.WaitGroup
			for _, cl := range a.Clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), a.TTL/4)
					defer cancel()
					_ = cl.Renew(ctx, a.Owner, a.TTL)
				}()
			}
			wg.Wait()
		}
	}()
}

// Stop stops renewing and heals whatever the run still holds on any agent.
func (a *Agents) Stop(ctx context.Context) error {
	var errs []error
	a.once.Do(func() {
		if a.stop != nil {
			close(a.stop)
			<-a.done
		}
		res := a.HealAll(ctx, a.Owner)
		for _, r := range res {
			if r.Err != nil {
				errs = append(errs, r.Err)
			}
		}
		for _, cl := range a.Clients {
			cl.Close()
		}
	})
	return errors.Join(errs...)
}

// AgentHeal is what one agent healed.
type AgentHeal struct {
	Member, URL string
	Healed      []agent.Hold
	Err         error
}

// HealAll asks every agent to heal owner's holds (every hold with owner "").
func (a *Agents) HealAll(ctx context.Context, owner string) []AgentHeal {
	names := make([]string, 0, len(a.Clients))
	for n := range a.Clients {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]AgentHeal, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			res, err := a.Clients[n].Heal(hctx, owner)
			out[i] = AgentHeal{Member: n, URL: a.URLs[n], Healed: res.Healed, Err: err}
		}()
	}
	wg.Wait()
	return out
}

// agentRunner is a remote member's runner through the agent on its node.
type agentRunner struct {
	name  string
	a     *Agents
	cl    *agent.Client
	mu    sync.Mutex
	last  int       // the PID last read
	until time.Time // the scheduled end of the fault about to act
}

// HoldUntil implements faults.Scheduled (through member.HoldUntil).
func (r *agentRunner) holdUntil(t time.Time) {
	r.mu.Lock()
	r.until = t
	r.mu.Unlock()
}

func (r *agentRunner) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

func (r *agentRunner) op(ctx context.Context, op string) error {
	r.mu.Lock()
	until := r.until
	r.mu.Unlock()
	st, err := r.cl.Process(ctx, agent.ProcRequest{Op: op, Lease: r.a.lease(until)})
	if err != nil {
		return fmt.Errorf("%s: %w", r.name, err)
	}
	r.mu.Lock()
	if st.PID != 0 {
		r.last = st.PID
	}
	r.mu.Unlock()
	return nil
}

func (r *agentRunner) start(ctx context.Context) error { return r.op(ctx, agent.OpStart) }

func (r *agentRunner) signal(sig syscall.Signal) error {
	op := map[syscall.Signal]string{syscall.SIGKILL: agent.OpKill, syscall.SIGTERM: agent.OpStop,
		syscall.SIGSTOP: agent.OpPause, syscall.SIGCONT: agent.OpResume}[sig]
	if op == "" {
		return fmt.Errorf("%s: the agent sends SIGKILL, SIGTERM, SIGSTOP and SIGCONT only, not %s", r.name, sig)
	}
	ctx, cancel := r.ctx()
	defer cancel()
	return r.op(ctx, op)
}

func (r *agentRunner) state() (faults.ProcState, error) {
	ctx, cancel := r.ctx()
	defer cancel()
	st, err := r.cl.State(ctx)
	if err != nil {
		return "", fmt.Errorf("%s: %w", r.name, err)
	}
	r.mu.Lock()
	if st.PID != 0 {
		r.last = st.PID
	}
	r.mu.Unlock()
	return st.State, nil
}

func (r *agentRunner) waitExit(ctx context.Context) error {
	for {
		st, err := r.state()
		if err == nil && st == faults.Exited {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (r *agentRunner) pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

func (r *agentRunner) stop(context.Context, time.Duration) error { return nil } // the cluster runs on
func (r *agentRunner) flushLogs()                                {}

// HoldUntil passes a fault's scheduled end to the agent of a remote member.
func (m *member) HoldUntil(t time.Time) {
	if r, ok := m.run.(*agentRunner); ok {
		r.holdUntil(t)
	}
}

// FillsDisk: a remote member's disk is filled by the agent on its node.
func (m *member) FillsDisk() bool {
	_, ok := m.run.(*agentRunner)
	return ok
}

// FillDisk has the member's agent fill its data dir's filesystem until no byte is free.
func (m *member) FillDisk(ctx context.Context) error {
	r, ok := m.run.(*agentRunner)
	if !ok {
		return fmt.Errorf("member %s has no agent to fill its disk", m.name)
	}
	r.mu.Lock()
	until := r.until
	r.mu.Unlock()
	_, err := r.cl.Disk(ctx, agent.DiskRequest{Op: "fill", FreeBytes: 0, Lease: r.a.lease(until)})
	if err != nil {
		return fmt.Errorf("%s: %w", m.name, err)
	}
	return nil
}

// FreeDisk has the member's agent remove the fill (and start etcd again if it exited).
func (m *member) FreeDisk(ctx context.Context) (bool, error) {
	r, ok := m.run.(*agentRunner)
	if !ok {
		return false, fmt.Errorf("member %s has no agent", m.name)
	}
	res, err := r.cl.Disk(ctx, agent.DiskRequest{Op: "heal"})
	if err != nil {
		return false, fmt.Errorf("%s: %w", m.name, err)
	}
	return res.Restarted, nil
}

// agentNet is the peer-link backend through the agents: a link from A to B is cut or shaped by the
// agent on A's node, on the traffic to B's peer address.
type agentNet struct {
	a     *Agents
	peers map[string]string // member name -> the host of its peer URL

	netemOnce sync.Once
	netemErr  error
}

func (n *agentNet) Name() string { return "agent" }

// Supports: delay and loss need sch_netem on the nodes (the first agent's facts say); cutting and
// rate limiting are routes and htb.
func (n *agentNet) Supports(s faults.Shape) error {
	if s.Delay == 0 && s.Jitter == 0 && s.Loss == 0 {
		return nil
	}
	n.netemOnce.Do(func() {
		for name, cl := range n.a.Clients {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			f, _, _, err := cl.Facts(ctx)
			cancel()
			switch {
			case err != nil:
				n.netemErr = fmt.Errorf("asking %s's agent whether its kernel has sch_netem: %w", name, err)
			case f.Netem != "yes":
				n.netemErr = fmt.Errorf("%s's node: %s", name, f.Netem)
			}
			if n.netemErr != nil {
				return
			}
		}
	})
	return n.netemErr
}

// bySender groups links by sender, as the peers each sender's agent acts on.
func (n *agentNet) bySender(links []faults.Link) (map[string][]agent.Peer, []string, error) {
	out := map[string][]agent.Peer{}
	var senders []string
	for _, l := range links {
		if n.a.Clients[l.From] == nil {
			return nil, nil, fmt.Errorf("%q has no agent (client links go through the proxy)", l.From)
		}
		host, ok := n.peers[l.To]
		if !ok {
			return nil, nil, fmt.Errorf("%q is not a member with a known peer URL", l.To)
		}
		if out[l.From] == nil {
			senders = append(senders, l.From)
		}
		out[l.From] = append(out[l.From], agent.Peer{Name: l.To, Host: host})
	}
	sort.Strings(senders)
	return out, senders, nil
}

// Apply asks each sender's agent, at once, to cut or shape its traffic to the receivers; each agent
// proves it from its kernel's routes and qdiscs before it answers.
func (n *agentNet) Apply(ctx context.Context, links []faults.Link, s faults.Shape) error {
	groups, senders, err := n.bySender(links)
	if err != nil {
		return err
	}
	lease := n.a.lease(faults.UntilOf(ctx))
	return n.each(senders, func(from string) error {
		_, err := n.a.Clients[from].Net(ctx, agent.NetRequest{Op: "apply", Peers: groups[from], Shape: s, Lease: lease})
		return err
	})
}

// Verify: each agent listed its routes or qdisc back before Apply returned; here each is asked
// what it holds, which must be the fault.
func (n *agentNet) Verify(ctx context.Context, links []faults.Link, s faults.Shape) error {
	return n.eachHold(ctx, links, func(from string, h *agent.Hold) error {
		if h == nil || h.Shape == nil || *h.Shape != s {
			return fmt.Errorf("%s's agent holds no %s on its peer links", from, s)
		}
		return nil
	})
}

func (n *agentNet) Heal(ctx context.Context, links []faults.Link) error {
	_, senders, err := n.bySender(links)
	if err != nil {
		return err
	}
	return n.each(senders, func(from string) error {
		_, err := n.a.Clients[from].Net(ctx, agent.NetRequest{Op: "heal"})
		return err
	})
}

func (n *agentNet) VerifyHealed(ctx context.Context, links []faults.Link) error {
	return n.eachHold(ctx, links, func(from string, h *agent.Hold) error {
		if h != nil {
			return fmt.Errorf("%s's agent still holds %s", from, h.What)
		}
		return nil
	})
}

// eachHold asks every sender's agent, at once, what it holds on its peer links (nil: nothing).
func (n *agentNet) eachHold(ctx context.Context, links []faults.Link, check func(from string, h *agent.Hold) error) error {
	_, senders, err := n.bySender(links)
	if err != nil {
		return err
	}
	return n.each(senders, func(from string) error {
		hs, err := n.a.Clients[from].Holds(ctx)
		if err != nil {
			return err
		}
		for i := range hs {
			if hs[i].Kind == agent.KindNet {
				return check(from, &hs[i])
			}
		}
		return check(from, nil)
	})
}

func (n *agentNet) Reset(context.Context, []faults.Link) error {
	return errors.New("reset closes a link's connections, which only the proxy holds; through chaos agent, reset client links")
}

// each runs f for every sender at once (a partition takes hold on every node together).
func (n *agentNet) each(senders []string, f func(from string) error) error {
	errs := make([]error, len(senders))
	var wg sync.WaitGroup
	for i, from := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(from); err != nil {
				errs[i] = fmt.Errorf("%s: %w", from, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// peerHost is the host of a member's first peer URL.
func peerHost(peerURLs []string) (string, error) {
	if len(peerURLs) == 0 {
		return "", errors.New("no peer URL")
	}
	u, err := url.Parse(peerURLs[0])
	if err != nil {
		return "", err
	}
	host, _, err := net.SplitHostPort(u.Host)
	if err != nil {
		return u.Host, nil
	}
	return host, nil
}
