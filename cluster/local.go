package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/version"

	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/faults/diskfs"
	"github.com/etcd-chaos/etcd-chaos/internal/proc"
	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// LocalOptions configures a cluster of local member processes.
type LocalOptions struct {
	Dir        string // the run folder: members/<name>/{data,etcd.log}
	Size       int
	Etcd       map[string]string // extra etcd flags by name
	EtcdBinary string            // an official etcd binary; "" runs NodeCommand
	// MemberBinaries start the named members on other binaries ("builtin": NodeCommand).
	MemberBinaries map[string]string
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
	// PeerDelay is a standing shape on every peer link (needs PeerProxy).
	PeerDelay faults.Shape
	// Disk, if set, serves the harness's disk layer under each member's data dir.
	Disk *DiskOptions
}

// DiskOptions configure the disk layer under the members' data dirs.
type DiskOptions struct {
	// Standing delays each op of a class for the whole run (cluster.disk-delay).
	Standing map[diskfs.Op]time.Duration
	// Unsynced keeps what a power loss drops (a read before each write over synced data).
	Unsynced bool
	Seed     uint64
	// Passthrough: the faults act on fsync alone; reads and writes may bypass the layer.
	Passthrough bool
}

// LocalCluster is a cluster of etcd members, each a real OS process on 127.0.0.1 ports (or on
// addresses of network namespaces of its own).
type LocalCluster struct {
	base
	opts   LocalOptions
	proxy  *faults.Proxy // nil with network: direct
	netns  *faults.Netns // network: netns, once started
	prefix string        // namespace names: <prefix>-hub, <prefix>-<member>
}

// FreePorts asks the kernel for n free loopback ports.
func FreePorts(n int) ([]int, error) {
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
		opts.Logger = nopLogger()
	}
	cmd, err := defaultNodeCommand(opts.NodeCommand)
	if err != nil && opts.EtcdBinary == "" {
		return nil, err
	}
	opts.NodeCommand = cmd
	if opts.Network == "" {
		opts.Network = "direct"
	}
	perMember := map[string]int{"direct": 2, "proxy": 4, "netns": 1}[opts.Network]
	if perMember == 0 {
		return nil, fmt.Errorf("unknown network %q", opts.Network)
	}
	ports, err := FreePorts(perMember * opts.Size)
	if err != nil {
		return nil, err
	}
	c := &LocalCluster{opts: opts, prefix: newPrefix()}
	c.base = base{dir: opts.Dir, log: opts.Logger, network: opts.Network, describe: func(cf *File) {
		cf.Provider = "local"
		if c.netns != nil {
			cf.Namespaces = c.netns.Namespaces()
		}
	}}
	c.files = files{wipe: wipeLocal, restore: restoreLocal(opts.Token)}
	if opts.Network != "direct" {
		c.proxy = faults.NewProxy(opts.Seed, opts.Logger)
	}
	var initial []string
	for i, name := range MemberNames(opts.Size) {
		dir := filepath.Join(opts.Dir, "members", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", dir, err)
		}
		m := &member{name: name, dataDir: filepath.Join(dir, "data"), logPath: filepath.Join(dir, "etcd.log")}
		if opts.Disk != nil {
			m.backing, m.stash = filepath.Join(dir, "disk"), filepath.Join(dir, "disk-stash")
		}
		pr := &procRunner{m: m, log: opts.Logger, started: c.writeClusterFile}
		m.run, m.exit = pr, pr.exitStatus
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
			m.clientURL = m.realURL // the load dials it from the hub namespace (LoadConn)
			if opts.ClientProxy {
				m.clientURL, m.proxyAt = url(pt[0]), fmt.Sprintf("127.0.0.1:%d", pt[0])
			}
		}
		c.members = append(c.members, m)
		initial = append(initial, name+"="+m.peerURL)
	}
	if !opts.PeerDelay.IsZero() {
		if c.proxy == nil || !opts.PeerProxy {
			return nil, errors.New("cluster.peer-delay needs the proxy on the peer links (network: proxy)")
		}
		var links []faults.Link
		for _, a := range c.all() {
			for _, b := range c.all() {
				if a != b {
					links = append(links, faults.Link{From: a.name, To: b.name})
				}
			}
		}
		c.proxy.SetBase(links, opts.PeerDelay) // before any member starts: the first election crosses it too
	}
	extra, err := etcdFlags(opts.Etcd)
	if err != nil {
		return nil, err
	}
	for _, m := range c.all() {
		// Members advertise the proxies, so that peers and clients that learn URLs from the cluster
		// go through them too (with network: netns, the member's own address: the hub reaches it).
		advertise := m.clientURL
		if opts.Network == "netns" {
			advertise = m.realURL
		}
		args := memberArgs(m.name, m.dataDir, m.realURL, advertise, m.peerReal, m.peerURL, initial, opts.Token, extra)
		m.exe = c.etcdCommand(opts.MemberBinaries[m.name])
		m.argv = append(append([]string{}, m.exe...), args...)
		if opts.Network == "netns" {
			// nsenter joins the namespace and execs the member: the PID is the member's own.
			m.argv = append([]string{"nsenter", "--net=" + filepath.Join(faults.NetnsDir, c.prefix+"-"+m.name), "--"}, m.argv...)
			m.exeAt = 3
		}
	}
	return c, nil
}

// etcdCommand is the words that run etcd from bin: an official binary, or the chaos binary's own
// ("" is cluster.etcd-binary, or the built-in one when that is empty too).
func (c *LocalCluster) etcdCommand(bin string) []string {
	if bin == "" {
		bin = c.opts.EtcdBinary
	}
	if bin == "" || bin == scenarios.BuiltinEtcd {
		return append(append([]string{}, c.opts.NodeCommand...), "--")
	}
	return []string{bin}
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
	if c.opts.Network == "netns" {
		n, err := faults.NewNetns(c.prefix, c.opts.Subnet, c.Names())
		if err != nil {
			return err
		}
		c.netns = n
		c.proxy.Dial = n.Dial
		c.control = &loadgen.Conn{Dial: func(ctx context.Context, addr string) (net.Conn, error) { return n.Dial(ctx, "tcp", addr) }}
		if err := c.writeClusterFile(); err != nil {
			return err
		}
	}
	if c.proxy != nil {
		c.proxy.Owner = faults.SocketOwner(c.pids)
		for _, m := range c.all() {
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
	if err := c.mountDisks(); err != nil {
		return err
	}
	for _, m := range c.all() {
		if err := m.Start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// mountDisks serves the disk layer at each member's data dir, and records it in cluster.json
// before any member starts, so chaos heal finds a layer a killed harness left.
func (c *LocalCluster) mountDisks() error {
	o := c.opts.Disk
	if o == nil {
		return nil
	}
	for i, m := range c.all() {
		d, err := diskfs.Mount(diskfs.Options{Backing: m.backing, Mountpoint: m.dataDir, Stash: m.stash,
			TrackUnsynced: o.Unsynced, Standing: o.Standing, Seed: o.Seed + uint64(i), Passthrough: o.Passthrough})
		if err != nil {
			return err
		}
		m.disk = d
		c.opts.Logger.Info("disk layer mounted", "member", m.name, "at", m.dataDir, "over", m.backing)
	}
	return c.writeClusterFile()
}

// unmountDisks takes the disk layers down once their members have exited.
func (c *LocalCluster) unmountDisks() error {
	var errs []error
	for _, m := range c.all() {
		if m.disk != nil {
			if err := m.disk.Unmount(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (c *LocalCluster) pids() map[string]int {
	out := map[string]int{}
	for _, m := range c.all() {
		if pid, done := m.run.(*procRunner).running(); done != nil {
			out[m.name] = pid
		}
	}
	return out
}

// PeerNetwork is the backend of faults between members: the proxy (when it carries the peer
// links), the namespaces, or nil.
func (c *LocalCluster) PeerNetwork() faults.Network {
	switch {
	case c.netns != nil:
		return c.netns
	case c.proxy != nil && c.opts.PeerProxy:
		return c.proxy
	}
	return nil
}

// Paths says what sits on the client links (load to members) and on the peer links: "direct",
// "proxy" (the harness's) or "netns".
func (c *LocalCluster) Paths() (client, peer string) {
	client, peer = "direct", "direct"
	for _, m := range c.all() {
		if m.clientURL != m.realURL {
			client = "proxy"
		}
		if m.peerAt != "" {
			peer = "proxy"
		}
	}
	if c.opts.Network == "netns" {
		peer = "netns"
	}
	return client, peer
}

// ClientNetwork is the client proxies' backend (nil unless a client: fault needs it).
func (c *LocalCluster) ClientNetwork() faults.Network {
	if !c.opts.ClientProxy || c.proxy == nil {
		return nil
	}
	return c.proxy
}

// Proxy is the proxies' backend (client and, with network: proxy, peer links); nil if direct.
func (c *LocalCluster) Proxy() *faults.Proxy { return c.proxy }

// Netns is the namespace backend with network: netns (nil otherwise, or before Start).
func (c *LocalCluster) Netns() *faults.Netns { return c.netns }

// LoadConn is how the load reaches the members: from the hub namespace when its endpoints are the
// members' own namespace addresses, else plain TCP (nil).
func (c *LocalCluster) LoadConn() *loadgen.Conn {
	for _, m := range c.all() {
		if m.clientURL != m.realURL {
			return nil // through the client proxy on 127.0.0.1, which the hub cannot reach
		}
	}
	return c.control
}

// WaitReady waits until every member answers, knows a leader, and a write of key succeeds.
func (c *LocalCluster) WaitReady(ctx context.Context, timeout time.Duration, key string) error {
	return c.waitReady(ctx, timeout, key, c.Endpoints(), c.LoadConn())
}

// Close stops every member: SIGCONT (a paused member cannot act on SIGTERM), SIGTERM, and SIGKILL for
// any still running after grace; then the proxies and the namespaces.
func (c *LocalCluster) Close(ctx context.Context, grace time.Duration) error {
	errs := c.stopMembers(ctx, grace)
	if err := errors.Join(errs...); err == nil {
		errs = append(errs, c.unmountDisks())
	} else if c.opts.Disk != nil {
		errs = append(errs, errors.New("disk layers kept mounted: a member did not exit; chaos heal detaches them"))
	}
	if c.proxy != nil {
		c.proxy.Close()
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

// EtcdVersion returns the version of etcd the members run.
func (c *LocalCluster) EtcdVersion() string {
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

// --- one member as a local process ---

// procRunner runs a member as a child process, its output appended to the member's etcd.log.
type procRunner struct {
	m       *member
	log     *slog.Logger
	started func() error // after each start: rewrite cluster.json

	mu   sync.Mutex
	p    int
	done chan struct{}
	exit string // how the last process ended
}

// exitStatus says how the member's last process ended ("" while it runs).
func (r *procRunner) exitStatus() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exit
}

func (r *procRunner) pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.p
}

func (r *procRunner) running() (int, chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.p, r.done
}

func (r *procRunner) flushLogs() {}

// start launches the member's process (again) with its log appended to etcd.log.
func (r *procRunner) start(ctx context.Context) error {
	m := r.m
	r.mu.Lock()
	if r.done != nil {
		select {
		case <-r.done:
		default:
			r.mu.Unlock()
			return fmt.Errorf("member %s is already running (pid %d)", m.name, r.p)
		}
	}
	logf, err := writeBanner(m.logPath, m.name, m.argv, "")
	if err != nil {
		r.mu.Unlock()
		return err
	}
	cmd := exec.Command(m.argv[0], m.argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = proc.SysProcAttr()
	if err := cmd.Start(); err != nil {
		r.mu.Unlock()
		logf.Close()
		return fmt.Errorf("starting member %s: %w", m.name, err)
	}
	done := make(chan struct{})
	r.p, r.done = cmd.Process.Pid, done
	r.mu.Unlock()
	r.exit = ""
	go func() {
		err := cmd.Wait()
		logf.Close()
		how := "exited"
		if err != nil {
			how = err.Error() // "exit status 2", "signal: killed"
		}
		r.mu.Lock()
		r.exit = how
		r.mu.Unlock()
		close(done)
	}()
	r.log.Info("member started", "member", m.name, "pid", cmd.Process.Pid)
	return r.started()
}

// signal sends sig to the member's process (by PID, only while the harness knows it to be alive).
func (r *procRunner) signal(sig syscall.Signal) error {
	pid, done := r.running()
	if done == nil {
		return fmt.Errorf("member %s was never started", r.m.name)
	}
	select {
	case <-done:
		return fmt.Errorf("member %s (pid %d) is not running", r.m.name, pid)
	default:
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("sending %s to %s (pid %d): %w", sig, r.m.name, pid, err)
	}
	return nil
}

func (r *procRunner) waitExit(ctx context.Context) error {
	_, done := r.running()
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

func (r *procRunner) state() (faults.ProcState, error) {
	pid, done := r.running()
	if done == nil {
		return faults.Exited, nil
	}
	select {
	case <-done:
		return faults.Exited, nil
	default:
	}
	return proc.State(pid)
}

func (r *procRunner) stop(ctx context.Context, grace time.Duration) error {
	if st, _ := r.state(); st == faults.Exited {
		return nil
	}
	_ = r.signal(syscall.SIGCONT)
	_ = r.signal(syscall.SIGTERM)
	gctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	if r.waitExit(gctx) == nil {
		return nil
	}
	r.log.Info("member did not stop within the grace period (a leader handing over to peers that are stopping too); killing it", "member", r.m.name, "grace", grace)
	_ = r.signal(syscall.SIGKILL)
	kctx, kcancel := context.WithTimeout(ctx, 5*time.Second)
	defer kcancel()
	if err := r.waitExit(kctx); err != nil {
		return fmt.Errorf("member %s (pid %d) did not exit after SIGKILL: %w", r.m.name, r.pid(), err)
	}
	return nil
}

func nopLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
