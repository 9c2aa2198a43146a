package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/faults/diskfs"
	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// ErrInput marks problems with what the user asked for that only show once the cluster is known
// (a fault that would break a remote cluster's quorum, a missing password variable): exit code 2.
var ErrInput = errors.New("bad input")

// ErrInfra marks errors where the harness or the cluster could not run (exit code 3).
var ErrInfra = errors.New("the harness or the cluster could not run")

// Cluster is what a run needs of a cluster, whoever provides it: local processes, containers, or
// a cluster the team already runs. One file per provider implements it (local.go, container.go,
// remote.go); providers maps the scenario's cluster.provider to it.
type Cluster interface {
	faults.Cluster // Members (process control for each) and Leader

	// Start makes the network and starts the members (a remote cluster: connects and learns them).
	Start(ctx context.Context) error
	// WaitReady waits until every member answers, knows a leader, and a write under key succeeds.
	WaitReady(ctx context.Context, timeout time.Duration, key string) error
	Names() []string
	Endpoints() []string           // what the load uses, in member order
	ClientURLs() map[string]string // the same by member name
	// LoadConn is how the load, workloads, watcher and prober reach Endpoints (dialer, TLS, auth).
	LoadConn() *loadgen.Conn
	// PeerNetwork is the backend of faults between members (nil: none); ClientNetwork that of
	// client: faults (nil: nothing on the client links can take one). What a backend can do is
	// asked of it (faults.Network.Supports), never of its type.
	PeerNetwork() faults.Network
	ClientNetwork() faults.Network
	// Paths says what sits on the client links and on the peer links.
	Paths() (client, peer string)
	EtcdVersion() string
	// MemberMetric reads a metric from a member's own /metrics, summed over its labelled series.
	MemberMetric(ctx context.Context, member, name string) (float64, error)
	// MemberMetrics reads a member's whole /metrics page (members.jsonl is scraped from it).
	MemberMetrics(ctx context.Context, member string) (map[string]*dto.MetricFamily, error)
	// Close stops what the harness started (members, proxies, namespaces, containers).
	Close(ctx context.Context, grace time.Duration) error
	// RemoveData deletes the members' data dirs, where the harness owns them.
	RemoveData() error
	// Health is nil when the cluster has a leader and every member answers.
	Health(ctx context.Context) error
}

// Capabilities are what a provider's clusters are and can do. The run, the dry run, the sweep and
// chaos heal ask them; no code outside a provider's own files and this registry names a provider.
type Capabilities struct {
	// StartsMembers: the harness lays out and starts the members with the scenario's settings
	// (size, cluster.etcd), so a sweep can start one per cell with each cell's settings.
	StartsMembers bool
	// Shared: the cluster is one the team already runs. Its size is known once it is reached (the
	// quorum guard runs then); the run writes only under its key prefix, claims it first and deletes
	// it at the end (chaos heal after a killed run); the user confirms the run; the result names its
	// endpoints, TLS and user instead of etcd settings.
	Shared bool
}

// provider is one cluster.provider: what it can do, how its clusters are made, and the parts a
// run asks of it by capability.
type provider struct {
	caps Capabilities
	new  func(Options) (Cluster, error)
	// options fills the provider's own options from the scenario (nil: it has none beyond Local's).
	options func(sc *scenarios.Scenario, o *Options, runID, keyPrefix string) error
	// reach, for a cluster already running, reaches it read-only for a dry run and describes it on
	// w (nil: a dry run describes the cluster the run would start).
	reach func(ctx context.Context, sc *scenarios.Scenario, w io.Writer) (Cluster, error)
}

// providers maps cluster.provider to its provider.
var providers = map[string]provider{
	"local":     {caps: Capabilities{StartsMembers: true}, new: func(o Options) (Cluster, error) { return NewLocal(o.Local) }},
	"container": {caps: Capabilities{StartsMembers: true}, new: func(o Options) (Cluster, error) { return NewContainers(o.Local, o.Container) }},
	"remote": {caps: Capabilities{Shared: true}, new: func(o Options) (Cluster, error) { return NewRemote(o.Remote) },
		options: remoteOptions, reach: reachRemote},
}

// CapabilitiesOf says what the named provider's clusters can do (zero for an unknown name).
func CapabilitiesOf(name string) Capabilities { return providers[name].caps }

// providerOf is the scenario's provider (zero for an unknown name, which validation refuses).
func providerOf(sc *scenarios.Scenario) provider { return providers[sc.Cluster.Provider] }

// OptionsFor builds every provider's options from the scenario (a remote cluster's TLS and
// credentials among them; their errors name the field, never the secret). keyPrefix is where a
// remote run writes: cluster.json records it from the start, so chaos heal can delete what a
// killed harness left.
func OptionsFor(sc *scenarios.Scenario, lopts LocalOptions, runID, keyPrefix string) (Options, error) {
	o := Options{Local: lopts, Container: ContainerOptions{Image: sc.Cluster.Image, Entrypoint: sc.Cluster.Entrypoint}}
	if p := providerOf(sc); p.options != nil {
		if err := p.options(sc, &o, runID, keyPrefix); err != nil {
			return o, err
		}
	}
	return o, nil
}

// Reach reaches, read-only, the cluster already running that the scenario names, and describes
// it on w, for a dry run; ok is false when the scenario's provider starts its own cluster (the dry
// run describes the one the run would start).
func Reach(ctx context.Context, sc *scenarios.Scenario, w io.Writer) (cl Cluster, ok bool, err error) {
	p := providerOf(sc)
	if p.reach == nil {
		return nil, false, nil
	}
	cl, err = p.reach(ctx, sc, w)
	return cl, true, err
}

// Options holds every provider's options; each reads its own.
type Options struct {
	Local     LocalOptions
	Container ContainerOptions
	Remote    RemoteOptions
}

// New lays out the cluster of the named provider without starting it.
func New(provider string, o Options) (Cluster, error) {
	p, ok := providers[provider]
	if !ok {
		return nil, fmt.Errorf("unknown cluster provider %q", provider)
	}
	return p.new(o)
}

// runner runs one member: a process, a container, or (remote) nothing the harness controls.
type runner interface {
	start(ctx context.Context) error
	signal(sig syscall.Signal) error
	state() (faults.ProcState, error)
	waitExit(ctx context.Context) error
	pid() int
	stop(ctx context.Context, grace time.Duration) error
	flushLogs() // copy what the member logged into its etcd.log, where the runner does not write it there
}

// member is one member of any provider: its URLs and files, and its runner.
type member struct {
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
	// exe is the words of argv that run etcd (an etcd binary, or the chaos binary's node command
	// and "--"), from exeAt: an upgrade swaps them.
	exe   []string
	exeAt int
	run   runner
	// The disk layer (local provider, a scenario with a disk fault or cluster.disk-delay): served
	// at dataDir over backing, with the stash a power loss needs.
	disk           *diskfs.Disk
	backing, stash string
	exit           func() string // how the member's last process ended ("" unknown)
}

// Disk is the layer under the member's data dir (nil: none).
func (m *member) Disk() *diskfs.Disk { return m.disk }

// DataDir is where the member's data is on this machine: the layer's backing folder, if any.
func (m *member) DataDir() string {
	if m.backing != "" {
		return m.backing
	}
	return m.dataDir
}

// ExitReport says how the member's last process ended and the last thing it logged.
func (m *member) ExitReport() string {
	how := ""
	if m.exit != nil {
		how = m.exit()
	}
	words := lastWords(m.logPath)
	switch {
	case how == "":
		return words
	case words == "":
		return how
	}
	return how + ": " + words
}

func (m *member) Name() string                                    { return m.name }
func (m *member) PID() int                                        { return m.run.pid() }
func (m *member) Signal(sig syscall.Signal) error                 { return m.run.signal(sig) }
func (m *member) WaitExit(ctx context.Context) error              { return m.run.waitExit(ctx) }
func (m *member) Start(ctx context.Context) error                 { return m.run.start(ctx) }
func (m *member) State() (faults.ProcState, error)                { return m.run.state() }
func (m *member) stop(ctx context.Context, d time.Duration) error { return m.run.stop(ctx, d) }

// base is what every provider shares: the members, one control client per member, readiness,
// leader lookups, member metrics, cluster.json.
type base struct {
	dir string
	log *slog.Logger
	// members are the cluster's members, sorted by name; a member added or removed while the run
	// goes (member-add, member-remove) replaces the slice, never changes it: read it with all().
	membersMu sync.RWMutex
	members   []*member
	// removed are members taken out of the cluster, kept so that Close and RemoveData still end
	// and delete what they left.
	removed []*member
	// files: the operations on members' data dirs and flags, where the provider reaches them.
	files files
	// control is how the harness's control clients reach each member's own URL (realURL).
	control *loadgen.Conn
	// describe adds the provider's fields to cluster.json.
	describe func(*File)
	network  string

	mu        sync.Mutex // guards cluster.json writes
	clientsMu sync.Mutex
	clients   map[string]*clientv3.Client // one control client per member, made on first use
}

// all is the members as they are now (a slice no one changes).
func (c *base) all() []*member {
	c.membersMu.RLock()
	defer c.membersMu.RUnlock()
	return c.members
}

// everyMember is the members and those removed while the run went: what the harness started and
// must stop, record and delete.
func (c *base) everyMember() []*member {
	c.membersMu.RLock()
	defer c.membersMu.RUnlock()
	return append(append([]*member(nil), c.members...), c.removed...)
}

// Members returns the members sorted by name.
func (c *base) Members() []faults.Member {
	ms := c.all()
	out := make([]faults.Member, len(ms))
	for i, m := range ms {
		out[i] = m
	}
	return out
}

// ClientURLs maps member names to client URLs.
func (c *base) ClientURLs() map[string]string {
	out := map[string]string{}
	for _, m := range c.all() {
		out[m.name] = m.clientURL
	}
	return out
}

// Endpoints lists the client URLs in member order.
func (c *base) Endpoints() []string {
	var out []string
	for _, m := range c.all() {
		out = append(out, m.clientURL)
	}
	return out
}

// Names lists the member names in order.
func (c *base) Names() []string {
	var out []string
	for _, m := range c.all() {
		out = append(out, m.name)
	}
	return out
}

// Leader asks every member for its status at once and returns the leader of the newest term.
func (c *base) Leader(ctx context.Context) (string, uint64, error) {
	type answer struct {
		id, leader, term uint64
	}
	ms := c.all()
	answers := make([]*answer, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
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
		ids[a.id] = ms[i].name
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

// control client of one member, made on first use and closed by closeClients, so readiness polls
// and fault-time leader lookups do not dial anew each time.
func (c *base) controlClient(m *member) (*clientv3.Client, error) {
	c.clientsMu.Lock()
	defer c.clientsMu.Unlock()
	if cli, ok := c.clients[m.name]; ok {
		return cli, nil
	}
	cli, err := loadgen.MeasureClientVia([]string{m.realURL}, c.control)
	if err != nil {
		return nil, err
	}
	if c.clients == nil {
		c.clients = map[string]*clientv3.Client{}
	}
	c.clients[m.name] = cli
	return cli, nil
}

// MemberStatus asks the named member for its status over the harness's control client (its own
// URL, never through a fault's proxy).
func (c *base) MemberStatus(ctx context.Context, name string, timeout time.Duration) (*pb.StatusResponse, error) {
	m := c.byName(name)
	if m == nil {
		return nil, fmt.Errorf("no member %s", name)
	}
	return c.status(ctx, m, timeout)
}

// status asks one member for its status over its control client.
func (c *base) status(ctx context.Context, m *member, timeout time.Duration) (*pb.StatusResponse, error) {
	cli, err := c.controlClient(m)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return loadgen.Status(sctx, cli)
}

func (c *base) closeClients() {
	c.clientsMu.Lock()
	defer c.clientsMu.Unlock()
	for name, cli := range c.clients {
		_ = cli.Close()
		delete(c.clients, name)
	}
}

// waitReady waits until every member answers, knows a leader, and a write of key through load's
// endpoints succeeds; a member that exits meanwhile ends the wait with its log.
func (c *base) waitReady(ctx context.Context, timeout time.Duration, key string, endpoints []string, load *loadgen.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cli, err := loadgen.MeasureClientVia(endpoints, load)
	if err != nil {
		return err
	}
	defer cli.Close()
	var last error
	for {
		err := c.ready(ctx, cli, key)
		if err == nil {
			return nil
		}
		if errors.Is(err, errFatal) {
			return err
		}
		// An attempt the deadline cut short says only that it was cut ("use of closed network
		// connection"): the reason is what the attempt before it found.
		if ctx.Err() == nil || last == nil {
			last = err
		}
		for _, m := range c.all() {
			if st, _ := m.State(); st == faults.Exited {
				m.run.flushLogs()
				return fmt.Errorf("member %s exited while starting; its log (%s) says:\n%s", m.name, m.logPath, lastStart(m.logPath))
			}
		}
		select {
		case <-ctx.Done():
			var logs []string
			for _, m := range c.all() {
				if m.logPath != "" {
					logs = append(logs, fmt.Sprintf("--- %s (%s):\n%s", m.name, m.logPath, tail(m.logPath, 8)))
				}
			}
			return &NotReadyError{Timeout: timeout, Last: last, Elections: c.leaderless(), Logs: strings.Join(logs, "\n")}
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// NotReadyError is a cluster that did not become ready in time: the last attempt's error, what
// etcd's own logs say of its elections when they did not hold, and the tail of each member's log.
type NotReadyError struct {
	Timeout   time.Duration
	Last      error
	Elections *reports.Unheld // nil: the logs do not show elections that failed to hold
	Logs      string
}

func (e *NotReadyError) Error() string {
	var unheld string
	if u := e.Elections; u != nil {
		unheld = "; elections do not hold (etcd's logs: " + strings.Join(u.PerMember, ", ") + "): is the peer round trip near the election timeout?"
	}
	return fmt.Sprintf("the cluster was not ready within %s: %v%s\n%s", e.Timeout, e.Last, unheld, e.Logs)
}

func (e *NotReadyError) Unwrap() error { return e.Last }

// leaderless says, from the members' own logs, when elections kept starting without a leader that
// held: etcd serves clients only once a leader has committed its membership, so before that
// neither the API nor /metrics answers, and raft's log lines are the witness (nil when they do not
// say so). Each term has at most one leader and its leader logs it once, so the leaders summed over
// the members are the elections that completed.
func (c *base) leaderless() *reports.Unheld {
	u := &reports.Unheld{}
	most := 0
	for _, m := range c.all() {
		if m.logPath == "" {
			continue
		}
		m.run.flushLogs()
		b, err := os.ReadFile(m.logPath)
		if err != nil {
			continue
		}
		cand, lead := bytes.Count(b, []byte("became candidate at term")), bytes.Count(b, []byte("became leader at term"))
		most = max(most, cand)
		u.Candidacies += cand
		u.Leaders += lead
		u.PerMember = append(u.PerMember, fmt.Sprintf("%s became candidate %d times and leader %d", m.name, cand, lead))
	}
	if most < 3 {
		return nil
	}
	return u
}

// errFatal marks readiness errors that waiting will not mend (a refused credential, say).
var errFatal = errors.New("fatal")

func (c *base) ready(ctx context.Context, cli *clientv3.Client, key string) error {
	for _, m := range c.all() {
		st, err := c.status(ctx, m, time.Second)
		if err != nil {
			if ferr := fatalClientError(err); ferr != nil {
				return fmt.Errorf("%w: %s: %v", errFatal, m.name, ferr)
			}
			return fmt.Errorf("%s: %w", m.name, err)
		}
		if st.Leader == 0 {
			return fmt.Errorf("%s has no leader yet", m.name)
		}
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := cli.Put(pctx, key, time.Now().String()); err != nil {
		if ferr := fatalClientError(err); ferr != nil {
			return fmt.Errorf("%w: a write of %s: %v", errFatal, key, ferr)
		}
		return fmt.Errorf("a write failed: %w", err)
	}
	return nil
}

// memberMetric reads one unlabelled metric from m's own /metrics (etcd's Prometheus endpoint on
// its client URL), over tr.
func memberMetric(ctx context.Context, tr *http.Transport, m *member, name string) (float64, error) {
	body, err := fetchMetrics(ctx, tr, m)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	sum, seen := 0.0, false
	base, label, _ := strings.Cut(name, "{") // name{le="0.0001"}: only the series with that label
	label = strings.TrimSuffix(label, "}")
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, base)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if rest[0] == '{' {
			i := strings.LastIndexByte(rest, '}')
			if i < 0 {
				continue
			}
			if label != "" && !slices.Contains(strings.Split(rest[1:i], ","), label) {
				continue
			}
			rest = rest[i+1:]
		} else if label != "" {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %s: %w", m.name, line, err)
		}
		sum, seen = sum+v, true
	}
	if !seen {
		return 0, fmt.Errorf("%s has no metric %s", m.name, name)
	}
	return sum, nil
}

// fetchMetrics reads m's /metrics page (at most 32 MiB, within 2s) over tr.
func fetchMetrics(ctx context.Context, tr *http.Transport, m *member) ([]byte, error) {
	defer tr.CloseIdleConnections()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, m.realURL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading the metrics of %s: %w", m.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reading the metrics of %s: HTTP %d", m.name, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the metrics of %s: %w", m.name, err)
	}
	return b, nil
}

// MemberMetrics reads a member's whole /metrics page over the control path, parsed.
func (c *base) MemberMetrics(ctx context.Context, member string) (map[string]*dto.MetricFamily, error) {
	m := c.byName(member)
	if m == nil {
		return nil, fmt.Errorf("no member %s", member)
	}
	body, err := fetchMetrics(ctx, c.metricsTransport(), m)
	if err != nil {
		return nil, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("parsing the metrics of %s: %w", member, err)
	}
	return fams, nil
}

func (c *base) metricsTransport() *http.Transport {
	tr := &http.Transport{}
	if c.control != nil {
		tr.TLSClientConfig = c.control.TLS
		if d := c.control.Dial; d != nil {
			tr.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) { return d(ctx, addr) }
		}
	}
	return tr
}

// MemberMetric reads a metric from a member's /metrics over the control path, summed over its
// labelled series (etcd_network_peer_round_trip_time_seconds_sum has one per peer); a name with one
// label, name{le="0.0001"}, sums only the series that have it.
func (c *base) MemberMetric(ctx context.Context, member, name string) (float64, error) {
	m := c.byName(member)
	if m == nil {
		return 0, fmt.Errorf("no member %s", member)
	}
	return memberMetric(ctx, c.metricsTransport(), m, name)
}

func (c *base) byName(name string) *member {
	for _, m := range c.all() {
		if m.name == name {
			return m
		}
	}
	return nil
}

// stopMembers stops every member in parallel: a leader given SIGTERM while its peers also stop can
// block in a leadership hand-over that cannot complete; the WAL is crash-safe, so SIGKILL after the
// grace period loses nothing.
//
// The followers stop first, together, and the leader after them: a leader that gets SIGTERM while
// its peers run hands leadership over first, and one whose peers are stopping too waits out its
// transfer (and the grace) for nothing. With its peers gone it has no one to hand over to and stops.
func (c *base) stopMembers(ctx context.Context, grace time.Duration) []error {
	ms := c.everyMember()
	errs := make([]error, len(ms))
	leader := ""
	if len(ms) > 1 {
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		leader, _, _ = c.Leader(lctx)
		cancel()
	}
	stop := func(last bool) {
		var wg sync.WaitGroup
		for i, m := range ms {
			if (m.name == leader) != last {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = m.stop(ctx, grace)
			}()
		}
		wg.Wait()
	}
	stop(false)
	stop(true)
	c.closeClients()
	return errs
}

// RemoveData deletes the members' data dirs (about 120MB each), keeping their logs.
func (c *base) RemoveData() error {
	var errs []error
	for _, m := range c.everyMember() {
		for _, d := range []string{m.dataDir, m.backing, m.stash} {
			if d != "" && filepath.IsAbs(d) && strings.HasPrefix(d, c.dir) {
				if err := os.RemoveAll(d); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// File is cluster.json: what chaos heal needs to find a run's processes.
type File struct {
	HarnessPID int      `json:"harness_pid"`
	Dir        string   `json:"dir"`
	Provider   string   `json:"provider,omitempty"`
	Network    string   `json:"network"`
	Namespaces []string `json:"namespaces,omitempty"` // network: netns, for chaos heal
	// Provider container: everything the run made carries the label etcd-chaos.run=<Prefix>.
	Prefix     string       `json:"prefix,omitempty"`
	Containers []string     `json:"containers,omitempty"`
	Image      string       `json:"image,omitempty"`
	Members    []FileMember `json:"members"`
	// Provider remote: the run's id and the key prefix it writes under, and the endpoints (never a
	// credential), so chaos heal can delete the keys of a killed run.
	RunID     string   `json:"run_id,omitempty"`
	KeyPrefix string   `json:"key_prefix,omitempty"`
	Endpoints []string `json:"endpoints,omitempty"`
	// ScenarioFile is where the run's scenario came from: TLS and password-file paths are relative to it.
	ScenarioFile string `json:"scenario_file,omitempty"`
	// Agents: chaos agent on each member's node (provider remote), for chaos heal.
	Agents map[string]string `json:"agents,omitempty"`
}

// FileMember is one member in cluster.json.
type FileMember struct {
	Name      string `json:"name"`
	PID       int    `json:"pid"`
	ClientURL string `json:"client_url"`   // what the load uses (the client proxy, if any)
	MemberURL string `json:"member_url"`   // the member's own client URL
	PeerURL   string `json:"peer_url"`     // advertised to peers (the peer proxy, if any)
	IP        string `json:"ip,omitempty"` // network: netns
	DataDir   string `json:"data_dir"`
	Log       string `json:"log"`
	// Mount: the disk layer is served at DataDir (chaos heal detaches one a killed harness left).
	Mount bool `json:"mount,omitempty"`
}

// writeClusterFile rewrites cluster.json (atomically) with the members' current PIDs.
func (c *base) writeClusterFile() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cf := File{HarnessPID: os.Getpid(), Dir: c.dir, Network: c.network}
	if c.describe != nil {
		c.describe(&cf)
	}
	for _, m := range c.everyMember() {
		cf.Members = append(cf.Members, FileMember{Name: m.name, PID: m.PID(), ClientURL: m.clientURL, MemberURL: m.realURL,
			PeerURL: m.peerURL, IP: m.ip, DataDir: m.dataDir, Log: m.logPath, Mount: m.disk != nil})
	}
	b, err := json.MarshalIndent(cf, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(c.dir, "cluster.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("writing cluster.json: %w", err)
	}
	return os.Rename(tmp, filepath.Join(c.dir, "cluster.json"))
}

// --- shared by the providers that start members ---

// startBanner is the line a member's etcd.log gets before each start; lastStart finds it.
const startBanner = "=== etcd-chaos: starting"

func writeBanner(logPath, name string, argv []string, extra string) (*os.File, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", logPath, err)
	}
	fmt.Fprintf(logf, "%s %s at %s: %s%s\n", startBanner, name, time.Now().UTC().Format(time.RFC3339Nano), strings.Join(argv, " "), extra)
	return logf, nil
}

// defaultNodeCommand is how an embedded member runs: this executable, as chaos node.
func defaultNodeCommand(cmd []string) ([]string, error) {
	if len(cmd) > 0 {
		return cmd, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the chaos binary to run members: %w", err)
	}
	return []string{exe, "node"}, nil
}

// newPrefix names what one run makes (namespaces, containers, networks, volumes).
func newPrefix() string {
	return fmt.Sprintf("chaos-%d-%04x", os.Getpid()%100000, time.Now().UnixNano()&0xffff)
}

// memberArgs is the etcd command line of a member that starts a new cluster.
func memberArgs(name, dataDir, listenClient, advertiseClient, listenPeer, advertisePeer string, initial []string, token string, extra []string) []string {
	return append([]string{"--name=" + name, "--data-dir=" + dataDir,
		"--listen-client-urls=" + listenClient, "--advertise-client-urls=" + advertiseClient,
		"--listen-peer-urls=" + listenPeer, "--initial-advertise-peer-urls=" + advertisePeer,
		"--initial-cluster=" + strings.Join(initial, ","), "--initial-cluster-state=new",
		"--initial-cluster-token=" + token}, extra...)
}

// lastStart returns what the member logged since its last start: all of it if short, else the first
// lines (where etcd reports a bad flag, before its usage text) and the last ones.
func lastStart(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	text := string(b)
	if i := strings.LastIndex(text, startBanner); i >= 0 {
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

// lastWords is what a member's last process logged before it ended: its last fatal or panic line
// (etcd's own reason for stopping), else its last line, from the part of etcd.log after the last
// start banner.
func lastWords(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	const window = 256 << 10
	off := max(st.Size()-window, 0)
	buf := make([]byte, st.Size()-off)
	n, _ := f.ReadAt(buf, off)
	text := string(buf[:n])
	if i := strings.LastIndex(text, startBanner); i >= 0 {
		text = text[i:]
	}
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	pick := ""
	for i := len(lines) - 1; i >= 1 && pick == ""; i-- {
		l := lines[i]
		if strings.Contains(l, `"level":"fatal"`) || strings.Contains(l, `"level":"panic"`) || strings.HasPrefix(l, "panic:") {
			pick = l
		}
	}
	if pick == "" && len(lines) > 1 {
		pick = lines[len(lines)-1]
	}
	// etcd logs JSON: its level, message and error say it; the stack trace does not fit a line.
	var j struct{ Level, Msg, Error string }
	if json.Unmarshal([]byte(pick), &j) == nil && j.Msg != "" {
		pick = j.Level + ": " + j.Msg
		if j.Error != "" {
			pick += ": " + j.Error
		}
	}
	if len(pick) > 400 {
		pick = pick[:400] + "..."
	}
	return pick
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

// MemberNames are the names of a started cluster's members.
func MemberNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = scenarios.MemberName(i)
	}
	return out
}

// Health says whether the cluster has a leader and every member answers (nil), or what is wrong:
// the quorum guard asks before each injection.
func (c *base) Health(ctx context.Context) error {
	ms := c.all()
	errs := make([]error, len(ms))
	leaders := make([]uint64, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := c.status(ctx, m, time.Second)
			if err != nil {
				errs[i] = fmt.Errorf("%s does not answer (%v)", m.name, ClientProblem(err))
				return
			}
			leaders[i] = st.Leader
		}()
	}
	wg.Wait()
	var bad []string
	leader := false
	for i, err := range errs {
		if err != nil {
			bad = append(bad, err.Error())
		} else if leaders[i] != 0 {
			leader = true
		}
	}
	if !leader {
		bad = append(bad, "no member knows a leader")
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}
