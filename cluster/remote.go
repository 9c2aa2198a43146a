package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// RemoteOptions configures a cluster the team already runs, reached by its endpoints.
type RemoteOptions struct {
	Dir       string
	Endpoints []string
	Conn      *loadgen.Conn // TLS and credentials
	// ClientProxy puts the harness's proxy in front of each endpoint, for client: faults.
	ClientProxy bool
	Seed        int64
	// RunID and KeyPrefix name where the run writes, recorded in cluster.json from the start so
	// that chaos heal deletes what a killed harness left.
	RunID, KeyPrefix string
	// ScenarioFile is the scenario's own path: its TLS and password-file paths are relative to it.
	ScenarioFile string
	// Agents reach chaos agent on each member's node (nil: none): process faults and peer-link
	// faults go through them.
	Agents   *Agents
	readOnly bool // dry run: make the proxy, but listen nowhere
}

// RemoteCluster is a cluster the harness did not start: it learns the members from the cluster,
// controls no process (faults on members need an agent on each node), and stops nothing at the end.
type RemoteCluster struct {
	base
	opts    RemoteOptions
	proxy   *faults.Proxy
	version string
	net     *agentNet
}

// NewRemote prepares to reach the cluster at opts.Endpoints; Start connects.
func NewRemote(opts RemoteOptions) (*RemoteCluster, error) {
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("cluster.endpoints: a remote cluster needs its client URLs, named explicitly")
	}
	c := &RemoteCluster{opts: opts}
	c.base = base{dir: opts.Dir, log: nopLogger(), network: "remote", control: opts.Conn, describe: func(cf *File) {
		cf.Provider, cf.RunID, cf.KeyPrefix, cf.ScenarioFile = "remote", opts.RunID, opts.KeyPrefix, opts.ScenarioFile
		cf.Endpoints = append([]string(nil), opts.Endpoints...)
		if opts.Agents != nil {
			cf.Agents = opts.Agents.URLs
		}
	}}
	if opts.ClientProxy {
		c.proxy = faults.NewProxy(opts.Seed, nopLogger())
	}
	return c, nil
}

// Start connects to every endpoint (read-only: status and the member list), maps each endpoint to
// the member that answers on it, and names the members as the cluster does. With a client proxy,
// it listens on 127.0.0.1 in front of each endpoint.
func (c *RemoteCluster) Start(ctx context.Context) error {
	type found struct {
		id       uint64
		endpoint string
		version  string
	}
	var got []found
	var names map[uint64]string
	peers := map[string]string{}
	for _, ep := range c.opts.Endpoints {
		cli, err := loadgen.MeasureClientVia([]string{ep}, c.opts.Conn)
		if err != nil {
			return fmt.Errorf("connecting to %s: %w", ep, Diagnose(ep, err, c.opts.Conn))
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := cli.Status(sctx, ep)
		if err == nil && names == nil {
			resp, lerr := cli.MemberList(sctx)
			if lerr != nil {
				err = fmt.Errorf("listing the members: %w", lerr)
			} else {
				names = map[uint64]string{}
				for _, m := range resp.Members {
					names[m.ID] = m.Name
					if h, err := peerHost(m.PeerURLs); err == nil {
						peers[m.Name] = h
					}
				}
			}
		}
		cancel()
		_ = cli.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", ep, Diagnose(ep, err, c.opts.Conn))
		}
		got = append(got, found{id: st.Header.MemberId, endpoint: ep, version: st.Version})
	}
	seen := map[uint64]string{}
	for _, f := range got {
		name, ok := names[f.id]
		if !ok {
			return fmt.Errorf("%s answers as member %x, which the member list does not hold", f.endpoint, f.id)
		}
		if name == "" {
			return fmt.Errorf("%s answers as member %x, which has no name yet (not started)", f.endpoint, f.id)
		}
		if prev, dup := seen[f.id]; dup {
			return fmt.Errorf("%s and %s reach the same member (%s); name one client URL per member", prev, f.endpoint, name)
		}
		seen[f.id] = f.endpoint
		m := &member{name: name, realURL: f.endpoint, clientURL: f.endpoint}
		m.run = agentless{name}
		c.members = append(c.members, m)
		c.version = f.version
	}
	for id, name := range names {
		if _, ok := seen[id]; !ok {
			return fmt.Errorf("member %s (%x) is in the cluster's member list but no endpoint reaches it: list its client URL in cluster.endpoints", name, id)
		}
	}
	sort.Slice(c.all(), func(i, j int) bool { return c.all()[i].name < c.all()[j].name })
	if c.opts.Agents != nil {
		if err := c.reachAgents(ctx, peers); err != nil {
			return err
		}
	}
	if c.opts.readOnly {
		return nil
	}
	if c.opts.Agents != nil {
		c.opts.Agents.StartRenewing()
	}
	if c.proxy != nil {
		ports, err := FreePorts(len(c.all()))
		if err != nil {
			return err
		}
		for i, m := range c.all() {
			u, err := url.Parse(m.realURL)
			if err != nil {
				return fmt.Errorf("endpoint %s: %w", m.realURL, err)
			}
			m.proxyAt = fmt.Sprintf("127.0.0.1:%d", ports[i])
			if _, err := c.proxy.Listen(m.name, m.proxyAt, u.Host, false); err != nil {
				return err
			}
			m.clientURL = u.Scheme + "://" + m.proxyAt
		}
	}
	return c.writeClusterFile()
}

// WaitReady waits until every member answers, knows a leader, and a write of key succeeds.
func (c *RemoteCluster) WaitReady(ctx context.Context, timeout time.Duration, key string) error {
	return c.waitReady(ctx, timeout, key, c.Endpoints(), c.LoadConn())
}

// LoadConn is the scenario's TLS and credentials (through the client proxy, if any).
func (c *RemoteCluster) LoadConn() *loadgen.Conn { return c.opts.Conn }

// PeerNetwork is the agents on the nodes (nil without: the harness cannot reach a remote
// cluster's peer links).
func (c *RemoteCluster) PeerNetwork() faults.Network {
	if c.net == nil {
		return nil
	}
	return c.net
}

// ClientNetwork is the proxy in front of the endpoints (nil unless a client: fault needs it).
func (c *RemoteCluster) ClientNetwork() faults.Network {
	if c.proxy == nil {
		return nil
	}
	return c.proxy
}

// Paths: the load reaches the endpoints directly or through the harness's proxy; the peer links
// are the cluster's own.
func (c *RemoteCluster) Paths() (client, peer string) {
	peer = "remote"
	if c.net != nil {
		peer = "agent"
	}
	if c.proxy != nil {
		return "proxy", peer
	}
	return "direct", peer
}

// EtcdVersion is what the members report.
func (c *RemoteCluster) EtcdVersion() string {
	if c.version == "" {
		return "unknown"
	}
	return c.version
}

// Close closes the harness's clients and proxy; the cluster itself runs on.
func (c *RemoteCluster) Close(ctx context.Context, grace time.Duration) error {
	c.closeClients()
	if c.proxy != nil {
		c.proxy.Close()
	}
	if c.opts.Agents != nil && !c.opts.readOnly {
		return c.opts.Agents.Stop(ctx)
	}
	return nil
}

// reachAgents pairs every member with the agent the scenario names for it, and asks each agent
// which etcd it manages: its --name must be the member's (an agent on the wrong node is refused
// before any fault).
func (c *RemoteCluster) reachAgents(ctx context.Context, peers map[string]string) error {
	a := c.opts.Agents
	var errs []error
	for name := range a.Clients {
		if !slices.ContainsFunc(c.all(), func(m *member) bool { return m.name == name }) {
			errs = append(errs, fmt.Errorf("cluster.agents.%s: the cluster has no member %s (its members: %s)", name, name, strings.Join(c.Names(), ", ")))
		}
	}
	for _, m := range c.all() {
		if a.Clients[m.name] == nil {
			errs = append(errs, fmt.Errorf("cluster.agents: member %s has no agent; name one for every member (a fault may pick any)", m.name))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInput, errors.Join(errs...))
	}
	errs = make([]error, len(c.all()))
	var wg sync.WaitGroup
	for i, m := range c.all() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			f, _, _, err := a.Clients[m.name].Facts(fctx)
			switch {
			case err != nil:
				errs[i] = fmt.Errorf("member %s's agent: %w", m.name, err)
			case f.Etcd.Error != "":
				errs[i] = fmt.Errorf("member %s's agent (%s): %s", m.name, f.Etcd.Managed, f.Etcd.Error)
			case f.Etcd.Flags["name"] != "" && f.Etcd.Flags["name"] != m.name:
				errs[i] = fmt.Errorf("member %s's agent manages etcd --name %s (%s): the agents are mixed up", m.name, f.Etcd.Flags["name"], f.Etcd.Managed)
			default:
				m.run = &agentRunner{name: m.name, a: a, cl: a.Clients[m.name], last: f.Etcd.PID}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	c.net = &agentNet{a: a, peers: peers}
	return nil
}

// RemoveData: the harness owns no data dir of a remote cluster (DeletePrefix removes its keys).
func (c *RemoteCluster) RemoveData() error { return nil }

// agentless is the runner of a remote member: the harness controls no process there.
type agentless struct{ name string }

var errNoAgent = errors.New("process faults on a remote cluster need an agent on its nodes (cluster.agents)")

func (a agentless) start(context.Context) error { return fmt.Errorf("%s: %w", a.name, errNoAgent) }
func (a agentless) signal(syscall.Signal) error { return fmt.Errorf("%s: %w", a.name, errNoAgent) }
func (a agentless) state() (faults.ProcState, error) {
	return "", fmt.Errorf("%s: %w", a.name, errNoAgent)
}
func (a agentless) waitExit(context.Context) error { return fmt.Errorf("%s: %w", a.name, errNoAgent) }
func (a agentless) pid() int                       { return 0 }
func (a agentless) stop(context.Context, time.Duration) error {
	return nil
}
func (a agentless) flushLogs() {}

var envVarShape = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)

// RemoteConn builds the TLS and credentials of a remote cluster from the scenario: paths relative
// to the scenario file, the password from the environment or a file (never the scenario itself).
// Errors name the field and never the secret.
func RemoteConn(sc *scenarios.Scenario) (*loadgen.Conn, error) {
	c := sc.Cluster
	conn := &loadgen.Conn{}
	dir := "."
	if !strings.HasPrefix(sc.File, "builtin:") && sc.File != "" {
		dir = filepath.Dir(sc.File)
	}
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	if t := c.TLS; t.CA != "" || t.Cert != "" || t.Key != "" || t.ServerName != "" {
		cfg := &tls.Config{ServerName: t.ServerName, MinVersion: tls.VersionTLS12}
		if t.CA != "" {
			pem, err := os.ReadFile(rel(t.CA))
			if err != nil {
				return nil, fmt.Errorf("cluster.tls.ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("cluster.tls.ca: %s holds no PEM certificate", rel(t.CA))
			}
			cfg.RootCAs = pool
		}
		if (t.Cert == "") != (t.Key == "") {
			return nil, errors.New("cluster.tls: cert and key go together; give both or neither")
		}
		if t.Cert != "" {
			pair, err := tls.LoadX509KeyPair(rel(t.Cert), rel(t.Key))
			if err != nil {
				return nil, fmt.Errorf("cluster.tls.cert/key: %w", err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		conn.TLS = cfg
	}
	if a := c.Auth; a.User != "" {
		conn.Username = a.User
		switch {
		case a.PasswordEnv != "":
			v, ok := os.LookupEnv(a.PasswordEnv)
			if !ok || v == "" {
				// Name the variable only when it reads as one (upper case, digits, '_'): a name in any
				// other shape may be the password itself, written where its variable's name belongs.
				if envVarShape.MatchString(a.PasswordEnv) {
					return nil, fmt.Errorf("cluster.auth.password-env: the environment variable %s is not set", a.PasswordEnv)
				}
				return nil, errors.New("cluster.auth.password-env: the environment variable it names is not set (its name is not shown: it does not read as a variable's name, and may be the password itself)")
			}
			conn.Password = v
		case a.PasswordFile != "":
			b, err := os.ReadFile(rel(a.PasswordFile))
			if err != nil {
				return nil, fmt.Errorf("cluster.auth.password-file: %w", err)
			}
			conn.Password = strings.TrimRight(string(b), "\r\n")
		}
	}
	return conn, nil
}

// fatalClientError says what is wrong when err is one that waiting will not mend: a refused
// credential, a permission, a TLS handshake. The text is etcd's or TLS's, never the secret.
func fatalClientError(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, rpctypes.ErrAuthFailed), errors.Is(err, rpctypes.ErrGRPCAuthFailed):
		return errors.New("authentication failed: the user or password is wrong")
	case errors.Is(err, rpctypes.ErrPermissionDenied), errors.Is(err, rpctypes.ErrGRPCPermissionDenied):
		return errors.New("permission denied: the user's role does not cover the harness's key prefix")
	case errors.Is(err, rpctypes.ErrUserEmpty), errors.Is(err, rpctypes.ErrGRPCUserEmpty), errors.Is(err, rpctypes.ErrInvalidAuthToken):
		return errors.New("the cluster has auth enabled: set cluster.auth (user and password-env or password-file)")
	}
	if s, ok := status.FromError(err); ok && s.Code() == codes.Unauthenticated {
		return fmt.Errorf("authentication failed: %s", s.Message())
	}
	msg := err.Error()
	for _, hint := range []string{"x509:", "tls:", "certificate", "authentication handshake failed"} {
		if strings.Contains(msg, hint) {
			return fmt.Errorf("TLS failed: %s", TLSReason(msg))
		}
	}
	return nil
}

// TLSReason keeps the part of a gRPC transport error that says what TLS refused.
func TLSReason(msg string) string {
	for _, k := range []string{"x509: ", "tls: "} {
		if i := strings.Index(msg, k); i >= 0 {
			return strings.TrimRight(msg[i:], "\")")
		}
	}
	return msg
}

// Diagnose says why ep could not be reached with conn: the client's own error when it names the
// problem, else what a TLS handshake of its own finds (gRPC often reports only a deadline).
func Diagnose(ep string, err error, conn *loadgen.Conn) error {
	if f := fatalClientError(err); f != nil {
		return f
	}
	if conn == nil || conn.TLS == nil {
		return err
	}
	u, perr := url.Parse(ep)
	if perr != nil {
		return err
	}
	if terr := tlsProbe(u.Host, conn.TLS); terr != nil {
		return fmt.Errorf("TLS failed: %s", TLSReason(terr.Error()))
	}
	return err
}

// tlsProbe does a TLS handshake with addr and waits briefly for the server's verdict on the
// client certificate (TLS 1.3 sends it after the handshake), returning what TLS refused, if anything.
func tlsProbe(addr string, base *tls.Config) error {
	cfg := base.Clone()
	cfg.NextProtos = []string{"h2"}
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		cfg.ServerName = host
	}
	d := &net.Dialer{Timeout: 3 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		if strings.Contains(err.Error(), "tls:") || strings.Contains(err.Error(), "x509:") {
			return err
		}
		return nil
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := conn.Read(make([]byte, 1)); err != nil && strings.Contains(err.Error(), "tls:") {
		return err
	}
	return nil
}

// ClientProblem names a fatal client error plainly, else returns err.
func ClientProblem(err error) error {
	if f := fatalClientError(err); f != nil {
		return f
	}
	return err
}

// reachRemote is the dry run's account of a remote cluster: reached read-only (member list, status,
// leader, versions, alarms), described on w, and returned for the faults' targets (the caller closes it).
func reachRemote(ctx context.Context, sc *scenarios.Scenario, w io.Writer) (Cluster, error) {
	conn, err := RemoteConn(sc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInput, err)
	}
	cl, err := NewRemote(RemoteOptions{Endpoints: sc.Cluster.Endpoints, Conn: conn, ClientProxy: true, Seed: sc.Seed, readOnly: true})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInput, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = cl.Close(context.WithoutCancel(ctx), 0)
		}
	}()
	if err := cl.Start(ctx); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInfra, err)
	}
	fmt.Fprintf(w, "\nremote cluster at %s (%s), etcd %s\n", strings.Join(sc.Cluster.Endpoints, ", "), conn, cl.EtcdVersion())
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  member\tendpoint\tversion\tterm\tleader\tdb size\talarms and errors")
	for _, m := range cl.members {
		st, err := cl.status(ctx, m, 2*time.Second)
		if err != nil {
			fmt.Fprintf(tw, "  %s\t%s\t-\t-\t-\t-\tdoes not answer: %v\n", m.name, m.realURL, ClientProblem(err))
			continue
		}
		lead := ""
		if st.Leader == st.Header.MemberId {
			lead = "leader"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%.1f MB\t%s\n", m.name, m.realURL, st.Version, st.RaftTerm, lead, float64(st.DbSize)/1e6, dash(strings.Join(st.Errors, "; ")))
	}
	tw.Flush()
	if leader, term, err := cl.Leader(ctx); err != nil {
		fmt.Fprintf(w, "  leader: none (%v): the quorum guard would skip every fault\n", err)
	} else {
		fmt.Fprintf(w, "  leader: %s (term %d)\n", leader, term)
	}
	if err := cl.Health(ctx); err != nil {
		fmt.Fprintf(w, "  health: %v: the quorum guard would skip faults until it mends\n", err)
	}
	if sc.Cluster.HasAgents() {
		describeAgents(ctx, sc, cl, w)
	}
	fmt.Fprintf(w, "  the run would write only under chaos/<run id>/, and delete it at the end\n")
	ok = true
	return cl, nil
}

// remoteOptions fills a remote cluster's options from the scenario: its endpoints, TLS and
// credentials (errors name the field, never the secret), and where the run writes.
func remoteOptions(sc *scenarios.Scenario, o *Options, runID, keyPrefix string) error {
	conn, err := RemoteConn(sc)
	if err != nil {
		return err
	}
	agents, err := AgentsFor(sc, runID)
	if err != nil {
		return err
	}
	o.Remote = RemoteOptions{Dir: o.Local.Dir, Endpoints: sc.Cluster.Endpoints, Conn: conn, ClientProxy: o.Local.ClientProxy, Seed: sc.Seed,
		RunID: runID, KeyPrefix: keyPrefix, ScenarioFile: sc.File, Agents: agents}
	if abs, err := filepath.Abs(sc.File); err == nil {
		o.Remote.ScenarioFile = abs
	}
	return nil
}

// dash is s, or "-" for nothing.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// describeAgents asks each agent, read-only, what it manages and what it holds, for the dry run.
func describeAgents(ctx context.Context, sc *scenarios.Scenario, cl *RemoteCluster, w io.Writer) {
	a, err := AgentsFor(sc, "")
	if err != nil {
		fmt.Fprintf(w, "  agents: %v\n", err)
		return
	}
	defer func() {
		for _, c := range a.Clients {
			c.Close()
		}
	}()
	ttl := sc.Cluster.AgentTTL.D()
	if ttl == 0 {
		ttl = scenarios.DefaultAgentTTL
	}
	fmt.Fprintf(w, "  agents (faults held with a %s TTL the run renews every %s):\n", ttl, ttl/4)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  member\tagent\tmanages\tetcd\tholds now\tnetem")
	names := append([]string(nil), cl.Names()...)
	for n := range a.Clients {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, n := range names {
		c := a.Clients[n]
		if c == nil {
			fmt.Fprintf(tw, "  %s\t-\t-\t-\t-\tno agent named: process and peer faults on it would fail\n", n)
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		f, _, _, err := c.Facts(fctx)
		holds, herr := c.Holds(fctx)
		cancel()
		if err != nil {
			fmt.Fprintf(tw, "  %s\t%s\t-\t-\t-\tdoes not answer: %v\n", n, c.URL, err)
			continue
		}
		held := "nothing"
		if herr != nil {
			held = herr.Error()
		} else if len(holds) > 0 {
			var what []string
			for _, h := range holds {
				what = append(what, h.What)
			}
			held = strings.Join(what, "; ")
		}
		etcd := fmt.Sprintf("pid %d %s", f.Etcd.PID, f.Etcd.State)
		if name := f.Etcd.Flags["name"]; name != "" && name != n {
			etcd += fmt.Sprintf(" (--name %s: not this member!)", name)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", n, c.URL, f.Etcd.Managed, etcd, held, f.Netem)
	}
	tw.Flush()
}
