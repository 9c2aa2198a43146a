package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// LocalOptions configures a cluster of local member processes.
type LocalOptions struct {
	Dir        string // the run folder: members/<name>/{data,etcd.log}
	Size       int
	Etcd       map[string]string // extra etcd flags by name
	EtcdBinary string            // an official etcd binary; "" runs NodeCommand
	// NodeCommand runs an embedded member: the chaos binary and "node" (default: this executable).
	NodeCommand []string
	Token       string
	Logger      *slog.Logger
	// Network is how members are wired: "proxy" (every byte through the harness's per-link proxy),
	// "netns" (each member in its own network namespace; root) or "direct".
	Network string
	Subnet  string // netns addresses
	Seed    int64  // the proxy's jitter draws
	// ClientProxy and PeerProxy put the harness's proxy on the client links and on the peer links
	// (network: proxy): only when a fault of the scenario acts on them, so that no proxy sits in a
	// path no fault needs. With network: netns and no client proxy, the load dials the members in
	// their namespaces from the hub namespace.
	ClientProxy, PeerProxy bool
}

// LocalCluster is a cluster of etcd members, each a real OS process on 127.0.0.1 ports.
type LocalCluster struct {
	opts    LocalOptions
	members []*localMember
	mu      sync.Mutex // guards cluster.json writes

	clientsMu sync.Mutex
	clients   map[string]*clientv3.Client // one control client per member, made on first use

	proxy  *faults.Proxy // nil with network: direct
	netns  *faults.Netns // network: netns, once started
	prefix string        // namespace names: <prefix>-hub, <prefix>-<member>
	docker *docker       // provider container
}

type localMember struct {
	cl        *LocalCluster
	name      string
	clientURL string // what the load, the prober and the watcher use: the client proxy, if any
	realURL   string // the member's own client URL: the harness's control clients use it
	peerURL   string // the advertised peer URL: the peer proxy, if any
	peerReal  string // the member's own peer URL
	proxyAt   string // client proxy listen address
	peerAt    string // peer proxy listen address
	ip        string // netns address
	dataDir   string
	logPath   string
	argv      []string
	ctr       *containerRunner // provider container: the member is a container

	mu   sync.Mutex
	pid  int
	done chan struct{}
}

// freePorts asks the kernel for n free loopback ports.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// NewLocal lays out the members (ports, folders, flags) without starting them.
func NewLocal(opts LocalOptions) (*LocalCluster, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.EtcdBinary == "" && len(opts.NodeCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the chaos binary to run members: %w", err)
		}
		opts.NodeCommand = []string{exe, "node"}
	}
	if opts.Network == "" {
		opts.Network = "direct"
	}
	perMember := map[string]int{"direct": 2, "proxy": 4, "netns": 1}[opts.Network]
	if perMember == 0 {
		return nil, fmt.Errorf("unknown network %q", opts.Network)
	}
	ports, err := freePorts(perMember * opts.Size)
	if err != nil {
		return nil, err
	}
	c := &LocalCluster{opts: opts, prefix: fmt.Sprintf("chaos-%d-%04x", os.Getpid()%100000, time.Now().UnixNano()&0xffff)}
	if opts.Network != "direct" {
		c.proxy = faults.NewProxy(opts.Seed, opts.Logger)
	}
	var initial []string
	for i := 0; i < opts.Size; i++ {
		name := scenarios.MemberName(i)
		dir := filepath.Join(opts.Dir, "members", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", dir, err)
		}
		m := &localMember{cl: c, name: name, dataDir: filepath.Join(dir, "data"), logPath: filepath.Join(dir, "etcd.log")}
		pt := ports[perMember*i:]
		url := func(port int) string { return fmt.Sprintf("http://127.0.0.1:%d", port) }
		switch opts.Network {
		case "direct":
			m.realURL, m.peerReal = url(pt[0]), url(pt[1])
			m.clientURL, m.peerURL = m.realURL, m.peerReal
		case "proxy":
			m.realURL, m.peerReal = url(pt[0]), url(pt[1])
			m.clientURL, m.peerURL = m.realURL, m.peerReal
			if opts.ClientProxy {
				m.clientURL, m.proxyAt = url(pt[2]), fmt.Sprintf("127.0.0.1:%d", pt[2])
			}
			if opts.PeerProxy {
				m.peerURL, m.peerAt = url(pt[3]), fmt.Sprintf("127.0.0.1:%d", pt[3])
			}
		case "netns":
			if m.ip, err = faults.NetnsAddr(opts.Subnet, i+1); err != nil {
				return nil, err
			}
			m.realURL, m.peerReal = "http://"+m.ip+":2379", "http://"+m.ip+":2380"
			m.peerURL = m.peerReal
			m.clientURL = m.realURL // the load dials it from the hub namespace (LoadDialer)
			if opts.ClientProxy {
				m.clientURL, m.proxyAt = url(pt[0]), fmt.Sprintf("127.0.0.1:%d", pt[0])
			}
		}
		c.members = append(c.members, m)
		initial = append(initial, name+"="+m.peerURL)
	}
	extra, err := etcdFlags(opts.Etcd)
	if err != nil {
		return nil, err
	}
	for _, m := range c.members {
		// Members advertise the proxies, so that peers and clients that learn URLs from the cluster
		// go through them too.
		args := []string{"--name=" + m.name, "--data-dir=" + m.dataDir,
			"--listen-client-urls=" + m.realURL, "--advertise-client-urls=" + m.clientURL,
			"--listen-peer-urls=" + m.peerReal, "--initial-advertise-peer-urls=" + m.peerURL,
			"--initial-cluster=" + strings.Join(initial, ","), "--initial-cluster-state=new",
			"--initial-cluster-token=" + opts.Token}
		if opts.Network == "netns" {
			args[3] = "--advertise-client-urls=" + m.realURL
		}
		args = append(args, extra...)
		if opts.EtcdBinary != "" {
			m.argv = append([]string{opts.EtcdBinary}, args...)
		} else {
			m.argv = append(append(append([]string{}, opts.NodeCommand...), "--"), args...)
		}
		if opts.Network == "netns" {
			// nsenter joins the namespace and execs the member: the PID is the member's own.
			m.argv = append([]string{"nsenter", "--net=" + filepath.Join(faults.NetnsDir, c.prefix+"-"+m.name), "--"}, m.argv...)
		}
	}
	return c, nil
}

// etcdFlags turns the scenario's etcd settings into flags; the millisecond flags accept durations.
func etcdFlags(m map[string]string) ([]string, error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		v := m[k]
		if k == "heartbeat-interval" || k == "election-timeout" {
			ms, err := scenarios.EtcdMillis(v)
			if err != nil {
				return nil, fmt.Errorf("cluster.etcd.%s: %w", k, err)
			}
			v = fmt.Sprint(ms)
		}
		out = append(out, "--"+k+"="+v)
	}
	return out, nil
}

// Start makes the network (namespaces, proxies) and starts every member.
func (c *LocalCluster) Start(ctx context.Context) error {
	if c.docker != nil {
		if err := c.startDocker(ctx); err != nil {
			return err
		}
		for _, m := range c.members {
			if err := m.Start(ctx); err != nil {
				return err
			}
		}
		return c.routeContainers(ctx)
	}
	if c.opts.Network == "netns" {
		var names []string
		for _, m := range c.members {
			names = append(names, m.name)
		}
		n, err := faults.NewNetns(c.prefix, c.opts.Subnet, names)
		if err != nil {
			return err
		}
		c.netns = n
		c.proxy.Dial = n.Dial
		if err := c.writeClusterFile(); err != nil {
			return err
		}
	}
	if c.proxy != nil {
		c.proxy.Owner = faults.SocketOwner(c.pids)
		for _, m := range c.members {
			if m.proxyAt != "" {
				if _, err := c.proxy.Listen(m.name, m.proxyAt, strings.TrimPrefix(m.realURL, "http://"), false); err != nil {
					return err
				}
			}
			if m.peerAt != "" {
				c.proxy.SetPeerURL(m.peerURL, m.name)
				if _, err := c.proxy.Listen(m.name, m.peerAt, strings.TrimPrefix(m.peerReal, "http://"), true); err != nil {
					return err
				}
			}
		}
	}
	for _, m := range c.members {
		if err := m.Start(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (c *LocalCluster) pids() map[string]int {
	out := map[string]int{}
	for _, m := range c.members {
		if pid, done := m.running(); done != nil {
			out[m.name] = pid
		}
	}
	return out
}

// PeerNetwork is the backend of faults between members: the proxy (when it carries the peer
// links), the namespaces, Docker's network, or nil.
func (c *LocalCluster) PeerNetwork() faults.Network {
	switch {
	case c.docker != nil && c.opts.Network == "docker":
		return dockerNet{c}
	case c.netns != nil:
		return c.netns
	case c.proxy != nil && c.opts.PeerProxy:
		return c.proxy
	}
	return nil
}

// Paths says what sits on the client links (load to members) and on the peer links: "direct",
// "proxy" (the harness's), "netns", "docker-proxy" (Docker's published port), "docker".
func (c *LocalCluster) Paths() (client, peer string) {
	client, peer = "direct", "direct"
	for _, m := range c.members {
		if m.clientURL != m.realURL {
			client = "proxy"
		}
		if m.peerAt != "" {
			peer = "proxy"
		}
	}
	if c.docker != nil {
		if client == "direct" && c.docker.published {
			client = "docker-proxy"
		}
		peer = "docker"
		if c.opts.Network == "netns" {
			peer = "netns"
		}
	}
	if c.opts.Network == "netns" && c.docker == nil {
		peer = "netns"
	}
	return client, peer
}

// Proxy is the client proxies' (and with network: proxy, the peer proxies') backend; nil if direct.
func (c *LocalCluster) Proxy() *faults.Proxy { return c.proxy }

// Netns is the namespace backend with network: netns (nil otherwise, or before Start).
func (c *LocalCluster) Netns() *faults.Netns { return c.netns }

// dial opens the control clients' connections: from the hub namespace with network: netns.
func (c *LocalCluster) dial() loadgen.Dialer {
	if c.netns == nil || c.docker != nil { // containers publish their client ports on 127.0.0.1
		return nil
	}
	return func(ctx context.Context, addr string) (net.Conn, error) { return c.netns.Dial(ctx, "tcp", addr) }
}

// LoadDialer opens the load's connections (the KV load, workloads, watcher, prober): from the hub
// namespace when its endpoints are the members' own namespace addresses, else plain TCP (nil).
func (c *LocalCluster) LoadDialer() loadgen.Dialer {
	for _, m := range c.members {
		if m.clientURL != m.realURL {
			return nil // through the client proxy on 127.0.0.1, which the hub cannot reach
		}
	}
	return c.dial()
}

// Members returns the members sorted by name.
func (c *LocalCluster) Members() []faults.Member {
	out := make([]faults.Member, len(c.members))
	for i, m := range c.members {
		out[i] = m
	}
	return out
}

// ClientURLs maps member names to client URLs.
func (c *LocalCluster) ClientURLs() map[string]string {
	out := map[string]string{}
	for _, m := range c.members {
		out[m.name] = m.clientURL
	}
	return out
}

// Endpoints lists the client URLs in member order.
func (c *LocalCluster) Endpoints() []string {
	var out []string
	for _, m := range c.members {
		out = append(out, m.clientURL)
	}
	return out
}

// Names lists the member names in order.
func (c *LocalCluster) Names() []string {
	var out []string
	for _, m := range c.members {
		out = append(out, m.name)
	}
	return out
}

// Leader asks every member for its status at once and returns the leader of the newest term.
func (c *LocalCluster) Leader(ctx context.Context) (string, uint64, error) {
	type answer struct {
		id, leader, term uint64
	}
	answers := make([]*answer, len(c.members))
	var wg sync.WaitGroup
	for i, m := range c.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := c.status(ctx, m, 500*time.Millisecond)
			if err == nil {
				answers[i] = &answer{st.Header.MemberId, st.Leader, st.RaftTerm}
			}
		}()
	}
	wg.Wait()
	ids := map[uint64]string{}
	var best *answer
	for i, a := range answers {
		if a == nil {
			continue
		}
		ids[a.id] = c.members[i].name
		if a.leader != 0 && (best == nil || a.term > best.term) {
			best = a
		}
	}
	if best == nil {
		return "", 0, errors.New("no member reports a leader")
	}
	name, ok := ids[best.leader]
	if !ok {
		return "", 0, fmt.Errorf("the leader (id %x) did not answer", best.leader)
	}
	return name, best.term, nil
}

// status asks one member for its status over a client kept for that member (made on first use and
// closed by Close), so readiness polls and fault-time leader lookups do not dial anew each time.
func (c *LocalCluster) status(ctx context.Context, m *localMember, timeout time.Duration) (*pb.StatusResponse, error) {
	c.clientsMu.Lock()
	cli, ok := c.clients[m.name]
	if !ok {
		var err error
		if cli, err = loadgen.MeasureClientVia([]string{m.realURL}, c.dial()); err != nil {
			c.clientsMu.Unlock()
			return nil, err
		}
		if c.clients == nil {
			c.clients = map[string]*clientv3.Client{}
		}
		c.clients[m.name] = cli
	}
	c.clientsMu.Unlock()
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return loadgen.Status(sctx, cli)
}

// WaitReady waits until every member answers, knows a leader, and a write succeeds.
func (c *LocalCluster) WaitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cli, err := loadgen.MeasureClientVia(c.Endpoints(), c.LoadDialer())
	if err != nil {
		return err
	}
	defer cli.Close()
	var last error
	for {
		last = c.ready(ctx, cli)
		if last == nil {
			return nil
		}
		for _, m := range c.members {
			if st, _ := m.State(); st == faults.Exited {
				if m.ctr != nil {
					m.ctr.flushLogs()
				}
				return fmt.Errorf("member %s exited while starting; its log (%s) says:\n%s", m.name, m.logPath, lastStart(m.logPath))
			}
		}
		select {
		case <-ctx.Done():
			var logs []string
			for _, m := range c.members {
				logs = append(logs, fmt.Sprintf("--- %s (%s):\n%s", m.name, m.logPath, tail(m.logPath, 8)))
			}
			return fmt.Errorf("the cluster was not ready within %s: %v\n%s", timeout, last, strings.Join(logs, "\n"))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *LocalCluster) ready(ctx context.Context, cli *clientv3.Client) error {
	for _, m := range c.members {
		st, err := c.status(ctx, m, time.Second)
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		if st.Leader == 0 {
			return fmt.Errorf("%s has no leader yet", m.name)
		}
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := cli.Put(pctx, "chaos/ready", time.Now().String()); err != nil {
		return fmt.Errorf("a write failed: %w", err)
	}
	return nil
}

// lastStart returns what the member logged since its last start: all of it if short, else the first
// lines (where etcd reports a bad flag, before its usage text) and the last ones.
func lastStart(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	text := string(b)
	if i := strings.LastIndex(text, "=== etcd-chaos: starting"); i >= 0 {
		if j := strings.IndexByte(text[i:], '\n'); j >= 0 {
			text = text[i+j+1:]
		}
	}
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) <= 20 {
		return strings.Join(lines, "\n")
	}
	return strings.Join(lines[:6], "\n") + "\n  ...\n" + strings.Join(lines[len(lines)-10:], "\n")
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// Close stops every member: SIGCONT (a paused member cannot act on SIGTERM), SIGTERM, and SIGKILL for
// any still running after grace. Members stop in parallel: a leader given SIGTERM while its peers also
// stop can block in a leadership hand-over that cannot complete; the WAL is crash-safe, so SIGKILL
// after the grace period loses nothing.
func (c *LocalCluster) Close(ctx context.Context, grace time.Duration) error {
	var wg sync.WaitGroup
	errs := make([]error, len(c.members))
	for i, m := range c.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.stop(ctx, grace)
		}()
	}
	wg.Wait()
	c.clientsMu.Lock()
	for name, cli := range c.clients {
		_ = cli.Close()
		delete(c.clients, name)
	}
	c.clientsMu.Unlock()
	if c.proxy != nil {
		c.proxy.Close()
	}
	if c.docker != nil {
		if c.netns != nil {
			_ = c.netns.Close()
		}
		errs = append(errs, c.closeDocker(ctx, false))
		return errors.Join(errs...)
	}
	if c.netns != nil {
		// The namespaces go once their processes have: a member still running keeps its own alive.
		if err := errors.Join(errs...); err == nil {
			errs = append(errs, c.netns.Close())
		} else {
			errs = append(errs, fmt.Errorf("namespaces %v kept: a member did not exit; chaos heal removes them", c.netns.Namespaces()))
		}
	}
	return errors.Join(errs...)
}

// RemoveData deletes the members' data dirs (about 120MB each), keeping their logs.
func (c *LocalCluster) RemoveData() error {
	var errs []error
	for _, m := range c.members {
		if err := os.RemoveAll(m.dataDir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// EtcdVersion returns the version of etcd the members run.
func (c *LocalCluster) EtcdVersion() string {
	if c.docker != nil && c.docker.image != "" && !strings.HasPrefix(c.docker.image, "etcd-chaos-node:") {
		return "image " + c.docker.image
	}
	if c.opts.EtcdBinary == "" {
		return version.Version
	}
	out, err := exec.Command(c.opts.EtcdBinary, "--version").Output()
	if err != nil {
		return "unknown"
	}
	if m := regexp.MustCompile(`etcd Version: (\S+)`).FindSubmatch(out); m != nil {
		return string(m[1])
	}
	return "unknown"
}

// ClusterFile is cluster.json: what chaos heal needs to find a run's processes.
type ClusterFile struct {
	HarnessPID int      `json:"harness_pid"`
	Dir        string   `json:"dir"`
	Network    string   `json:"network"`
	Namespaces []string `json:"namespaces,omitempty"` // network: netns, for chaos heal
	// Provider container: everything the run made carries the label etcd-chaos.run=<Prefix>.
	Prefix     string          `json:"prefix,omitempty"`
	Containers []string        `json:"containers,omitempty"`
	Image      string          `json:"image,omitempty"`
	Members    []ClusterMember `json:"members"`
}

// ClusterMember is one member in cluster.json.
type ClusterMember struct {
	Name      string `json:"name"`
	PID       int    `json:"pid"`
	ClientURL string `json:"client_url"`   // what the load uses (the client proxy, if any)
	MemberURL string `json:"member_url"`   // the member's own client URL
	PeerURL   string `json:"peer_url"`     // advertised to peers (the peer proxy, if any)
	IP        string `json:"ip,omitempty"` // network: netns
	DataDir   string `json:"data_dir"`
	Log       string `json:"log"`
}

// writeClusterFile rewrites cluster.json (atomically) with the members' current PIDs.
func (c *LocalCluster) writeClusterFile() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cf := ClusterFile{HarnessPID: os.Getpid(), Dir: c.opts.Dir, Network: c.opts.Network}
	if c.docker != nil {
		cf.Prefix, cf.Image = c.prefix, c.docker.image
		for _, m := range c.members {
			if id := m.ctr.ID(); id != "" {
				cf.Containers = append(cf.Containers, id)
			}
		}
	}
	if c.netns != nil {
		cf.Namespaces = c.netns.Namespaces()
	}
	for _, m := range c.members {
		cf.Members = append(cf.Members, ClusterMember{Name: m.name, PID: m.PID(), ClientURL: m.clientURL, MemberURL: m.realURL,
			PeerURL: m.peerURL, IP: m.ip, DataDir: m.dataDir, Log: m.logPath})
	}
	b, err := json.MarshalIndent(cf, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(c.opts.Dir, "cluster.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("writing cluster.json: %w", err)
	}
	return os.Rename(tmp, filepath.Join(c.opts.Dir, "cluster.json"))
}

// --- one member ---

func (m *localMember) Name() string { return m.name }

func (m *localMember) PID() int {
	if m.ctr != nil {
		return m.ctr.pid()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pid
}

func (m *localMember) running() (int, chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pid, m.done
}

// Start launches the member's process (again) with its log appended to etcd.log.
func (m *localMember) Start(ctx context.Context) error {
	if m.ctr != nil {
		return m.ctr.start(ctx)
	}
	m.mu.Lock()
	if m.done != nil {
		select {
		case <-m.done:
		default:
			m.mu.Unlock()
			return fmt.Errorf("member %s is already running (pid %d)", m.name, m.pid)
		}
	}
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		m.mu.Unlock()
		return fmt.Errorf("opening %s: %w", m.logPath, err)
	}
	fmt.Fprintf(logf, "=== etcd-chaos: starting %s at %s: %s\n", m.name, time.Now().UTC().Format(time.RFC3339Nano), strings.Join(m.argv, " "))
	cmd := exec.Command(m.argv[0], m.argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = memberSysProcAttr()
	if err := cmd.Start(); err != nil {
		m.mu.Unlock()
		logf.Close()
		return fmt.Errorf("starting member %s: %w", m.name, err)
	}
	done := make(chan struct{})
	m.pid, m.done = cmd.Process.Pid, done
	m.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	m.cl.opts.Logger.Info("member started", "member", m.name, "pid", cmd.Process.Pid)
	return m.cl.writeClusterFile()
}

// Signal sends sig to the member's process (by PID, only while the harness knows it to be alive).
func (m *localMember) Signal(sig syscall.Signal) error {
	if m.ctr != nil {
		return m.ctr.signal(sig)
	}
	pid, done := m.running()
	if done == nil {
		return fmt.Errorf("member %s was never started", m.name)
	}
	select {
	case <-done:
		return fmt.Errorf("member %s (pid %d) is not running", m.name, pid)
	default:
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("sending %s to %s (pid %d): %w", sig, m.name, pid, err)
	}
	return nil
}

func (m *localMember) WaitExit(ctx context.Context) error {
	if m.ctr != nil {
		return m.ctr.waitExit(ctx)
	}
	_, done := m.running()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *localMember) State() (faults.ProcState, error) {
	if m.ctr != nil {
		return m.ctr.state()
	}
	pid, done := m.running()
	if done == nil {
		return faults.Exited, nil
	}
	select {
	case <-done:
		return faults.Exited, nil
	default:
	}
	return procState(pid)
}

func (m *localMember) stop(ctx context.Context, grace time.Duration) error {
	if m.ctr != nil {
		return m.ctr.stop(ctx, grace)
	}
	if st, _ := m.State(); st == faults.Exited {
		return nil
	}
	_ = m.Signal(syscall.SIGCONT)
	_ = m.Signal(syscall.SIGTERM)
	gctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	if m.WaitExit(gctx) == nil {
		return nil
	}
	m.cl.opts.Logger.Info("member did not stop within the grace period (a leader handing over to peers that are stopping too); killing it", "member", m.name, "grace", grace)
	_ = m.Signal(syscall.SIGKILL)
	kctx, kcancel := context.WithTimeout(ctx, 5*time.Second)
	defer kcancel()
	if err := m.WaitExit(kctx); err != nil {
		return fmt.Errorf("member %s (pid %d) did not exit after SIGKILL: %w", m.name, m.PID(), err)
	}
	return nil
}

func nopLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// MemberMetric reads one unlabelled metric from a member's own /metrics (etcd's Prometheus
// endpoint on its client URL), over the harness's control path.
func (c *LocalCluster) MemberMetric(ctx context.Context, member, name string) (float64, error) {
	var m *localMember
	for _, x := range c.members {
		if x.name == member {
			m = x
		}
	}
	if m == nil {
		return 0, fmt.Errorf("no member %s", member)
	}
	tr := &http.Transport{}
	if d := c.dial(); d != nil {
		tr.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) { return d(ctx, addr) }
	}
	defer tr.CloseIdleConnections()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, m.realURL+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return 0, fmt.Errorf("reading the metrics of %s: %w", member, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("%s has no metric %s", member, name)
}
