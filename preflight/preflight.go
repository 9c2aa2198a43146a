package preflight

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/agent"
	"github.com/etcd-chaos/etcd-chaos/cluster"
	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// Options says which cluster chaos preflight checks and what it knows of the cluster's
// settings and of the service's clients.
type Options struct {
	Endpoints []string
	Conn      *loadgen.Conn // TLS and credentials, as the service's clients would present them
	// Heartbeat and Election are the cluster's timeouts (0: the scenario's, else etcd's defaults,
	// judged and said to be assumed: etcd does not expose them).
	Heartbeat, Election time.Duration
	// Scenario carries the client settings (timeouts, retries) the client check reviews; nil skips it.
	Scenario *scenarios.Scenario
	// ClientVersion is the etcd client library the service uses ("": this tool's own).
	ClientVersion string
	// Snapshot is a backup file to verify instead of a snapshot saved by preflight.
	Snapshot string
	// ScratchDir holds the snapshot and the scratch member's data dir while they exist ("": the
	// system's temporary directory).
	ScratchDir string
	// Agents reach chaos agent on each member's node, by member name (nil: none): the host,
	// datadir, flags and clock checks read the nodes' facts through them, and the timeouts check
	// judges the flags the members run instead of assuming etcd's defaults.
	Agents map[string]*agent.Client
}

// ErrUnreachable wraps the reason no endpoint could be reached (exit code 3).
var ErrUnreachable = errors.New("the cluster could not be reached")

// pfMember is one member as preflight saw it.
type pfMember struct {
	id         uint64
	name       string
	peerURLs   []string
	clientURLs []string
	learner    bool
	url        string // the client URL preflight reached it at ("": none answered)
	cli        *clientv3.Client
	status     *clientv3.StatusResponse
	err        error         // why it could not be reached
	rtt        time.Duration // client-side round trip: the median of a few Status calls

	metrics    map[string]*dto.MetricFamily
	metricsErr error
	metricsMs  int64
	health     string
	healthErr  error
	healthMs   int64
}

type preflight struct {
	opts      Options
	members   []*pfMember
	clusterID uint64
	cli       *clientv3.Client // over every reached member, with the given credentials
	http      *http.Client
	started   time.Time
	reaching  time.Duration // reaching the members (the topology check's evidence)
	fetching  time.Duration // reading /metrics and /health (the monitoring check's)
	hb, et    time.Duration
	timesFrom string       // where hb and et came from
	hosts     []*hostFacts // nil: no agents
}

// Run runs the pre-launch checklist against a live cluster. It changes nothing in the
// cluster: its probes are reads, a transaction whose put can never apply, and a snapshot.
func Run(ctx context.Context, opts Options) (*reports.Preflight, error) {
	if len(opts.Endpoints) == 0 {
		return nil, fmt.Errorf("%w: preflight needs the cluster's client URLs (--endpoints)", cluster.ErrInput)
	}
	for _, ep := range opts.Endpoints {
		if strings.HasPrefix(ep, "https://") && (opts.Conn == nil || opts.Conn.TLS == nil) {
			// https without --cacert: TLS verified against the system's roots.
			c := &loadgen.Conn{}
			if opts.Conn != nil {
				*c = *opts.Conn
			}
			c.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
			opts.Conn = c
			break
		}
	}
	p := &preflight{opts: opts, started: time.Now()}
	tr := &http.Transport{DisableKeepAlives: true}
	if opts.Conn != nil {
		if opts.Conn.TLS != nil {
			tr.TLSClientConfig = opts.Conn.TLS.Clone()
		}
		if d := opts.Conn.Dial; d != nil {
			tr.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) { return d(ctx, addr) }
		}
	}
	p.http = &http.Client{Transport: tr, Timeout: 5 * time.Second}
	defer p.close()
	if err := p.gather(ctx); err != nil {
		return nil, err
	}
	if len(opts.Agents) > 0 {
		p.gatherHosts(ctx)
	}
	p.resolveTimeouts()

	checks := map[string]func(context.Context) *findings{
		"topology": p.topology, "versions": p.versions, "transport": p.transport, "auth": p.auth,
		"timeouts": p.timeouts, "disk": p.disk, "space": p.space, "backup": p.backup,
		"client": p.client, "monitoring": p.monitoring,
		"host": p.hostCheck, "datadir": p.dataDirCheck, "flags": p.flagsCheck, "clock": p.clockCheck,
	}
	titles := map[string]string{
		"topology":   "an odd number (3 or more) of healthy members agreeing on one leader",
		"versions":   "one etcd version across the members, and the client library's against it",
		"transport":  "TLS as the network sees it: plaintext and strangers refused, certificates in date",
		"auth":       "auth enabled, the unauthenticated refused, the user's roles",
		"timeouts":   "heartbeat and election timeout against the measured round trip; leader changes",
		"disk":       "WAL fsync p99 under 10ms and backend commit p99 under 25ms",
		"space":      "db size against the quota, free space in the db, alarms",
		"backup":     "a snapshot saved, restored by etcd's own code into a scratch member, hashes equal",
		"client":     "the service's client timeouts and retries against a plausible failover",
		"monitoring": "/metrics and /health reachable on every member",
		"host":       "each node (through its agent): swap off, 2 cores and 4 GB, etcd's open-file limit",
		"datadir":    "each data dir: a local ext4/xfs filesystem on an SSD, mode 0700 owned by etcd's user, free space",
		"flags":      "etcd's flags on each node: one heartbeat and election timeout, no --unsafe-*, certificate auth on, auto-TLS off",
		"clock":      "the nodes' clocks within 1s of each other",
	}
	// Timeouts runs last: the leader changes it counts span the whole preflight.
	order := slices.Clone(reports.PreflightIDs)
	order = append(slices.DeleteFunc(order, func(id string) bool { return id == "timeouts" }), "timeouts")
	got := map[string]reports.PreflightCheck{}
	for _, id := range order {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		f := checks[id](ctx)
		status, evidence, remedy := f.result()
		got[id] = reports.PreflightCheck{ID: id, Title: titles[id], Status: status, Evidence: evidence, Remedy: remedy,
			Ms: (time.Since(t0) + f.spent).Milliseconds()}
	}
	out := &reports.Preflight{Passed: true, StartedAt: p.started.UTC()}
	for _, m := range p.members {
		if m.url != "" {
			out.Endpoints = append(out.Endpoints, m.url)
		}
	}
	for _, id := range reports.PreflightIDs {
		c := got[id]
		if c.Status == reports.CheckFail {
			out.Passed = false
		}
		out.Checks = append(out.Checks, c)
	}
	out.Ms = time.Since(p.started).Milliseconds()
	return out, nil
}

func (p *preflight) close() {
	for _, m := range p.members {
		if m.cli != nil {
			_ = m.cli.Close()
		}
	}
	if p.cli != nil {
		_ = p.cli.Close()
	}
}

// withScheme gives an endpoint without one the scheme its TLS settings imply.
func (p *preflight) withScheme(ep string) string {
	if strings.Contains(ep, "://") {
		return ep
	}
	if p.opts.Conn != nil && p.opts.Conn.TLS != nil {
		return "https://" + ep
	}
	return "http://" + ep
}

// dial reaches one client URL: a client, its Status, and the client-side round trip.
func (p *preflight) dial(ctx context.Context, ep string) (*clientv3.Client, *clientv3.StatusResponse, time.Duration, error) {
	cli, err := loadgen.MeasureClientVia([]string{ep}, p.opts.Conn)
	if err != nil {
		return nil, nil, 0, cluster.Diagnose(ep, err, p.opts.Conn)
	}
	var st *clientv3.StatusResponse
	var rtts []time.Duration
	for i := 0; i < 5; i++ {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		t0 := time.Now()
		s, err := cli.Status(sctx, ep)
		rtts = append(rtts, time.Since(t0))
		cancel()
		if err != nil {
			_ = cli.Close()
			return nil, nil, 0, cluster.Diagnose(ep, err, p.opts.Conn)
		}
		st = s
	}
	slices.Sort(rtts)
	return cli, st, rtts[len(rtts)/2], nil
}

// gather reaches every endpoint, learns the members from the member list, reaches the members no
// endpoint named at their advertised client URLs, and reads each member's /metrics and /health.
func (p *preflight) gather(ctx context.Context) error {
	byID := map[uint64]*pfMember{}
	var reached []*pfMember
	var problems []string
	// Every endpoint at once: one that does not answer costs its timeout once, not once per endpoint.
	type dialed struct {
		ep  string
		cli *clientv3.Client
		st  *clientv3.StatusResponse
		rtt time.Duration
		err error
	}
	out := make([]dialed, len(p.opts.Endpoints))
	var wg sync.WaitGroup
	for i, raw := range p.opts.Endpoints {
		ep := p.withScheme(raw)
		if _, err := url.Parse(ep); err != nil {
			return fmt.Errorf("%w: --endpoints %s: %v", cluster.ErrInput, raw, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := dialed{ep: ep}
			d.cli, d.st, d.rtt, d.err = p.dial(ctx, ep)
			out[i] = d
		}()
	}
	wg.Wait()
	for _, d := range out {
		if d.err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", d.ep, d.err))
			continue
		}
		id := d.st.Header.MemberId
		if m, dup := byID[id]; dup {
			_ = d.cli.Close()
			problems = append(problems, fmt.Sprintf("%s reaches the same member as %s", d.ep, m.url))
			continue
		}
		m := &pfMember{id: id, url: d.ep, cli: d.cli, status: d.st, rtt: d.rtt}
		byID[id] = m
		reached = append(reached, m)
		if p.clusterID == 0 {
			p.clusterID = d.st.Header.ClusterId
		}
	}
	if len(reached) == 0 {
		return fmt.Errorf("%w: %s", ErrUnreachable, strings.Join(problems, "; "))
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	list, err := reached[0].cli.MemberList(lctx)
	cancel()
	if err != nil {
		return fmt.Errorf("%w: listing the members at %s: %v", ErrUnreachable, reached[0].url, cluster.ClientProblem(err))
	}
	for _, lm := range list.Members {
		m := byID[lm.ID]
		if m == nil {
			m = &pfMember{id: lm.ID}
			byID[lm.ID] = m
			for _, cu := range lm.ClientURLs {
				cli, st, rtt, err := p.dial(ctx, cu)
				if err != nil {
					m.err = err
					continue
				}
				if st.Header.MemberId != lm.ID {
					_ = cli.Close()
					m.err = fmt.Errorf("%s answers as member %x", cu, st.Header.MemberId)
					continue
				}
				m.url, m.cli, m.status, m.rtt, m.err = cu, cli, st, rtt, nil
				break
			}
			if m.url == "" && m.err == nil {
				m.err = errors.New("it advertises no client URL")
			}
		}
		m.name, m.peerURLs, m.clientURLs, m.learner = lm.Name, lm.PeerURLs, lm.ClientURLs, lm.IsLearner
		if m.name == "" {
			m.name = fmt.Sprintf("%x", lm.ID)
		}
		p.members = append(p.members, m)
	}
	for _, m := range reached {
		if !slices.Contains(p.members, m) {
			return fmt.Errorf("%w: %s answers as member %x, which the member list does not hold", ErrUnreachable, m.url, m.id)
		}
	}
	sort.Slice(p.members, func(i, j int) bool { return p.members[i].name < p.members[j].name })
	p.reaching = time.Since(p.started)
	fetchStart := time.Now()
	defer func() { p.fetching = time.Since(fetchStart) }()
	var urls []string
	for _, m := range p.members {
		if m.url == "" {
			continue
		}
		urls = append(urls, m.url)
		t0 := time.Now()
		m.metrics, m.metricsErr = p.scrape(ctx, m.url)
		m.metricsMs = time.Since(t0).Milliseconds()
		t0 = time.Now()
		m.health, m.healthErr = p.get(ctx, m.url+"/health")
		m.healthMs = time.Since(t0).Milliseconds()
	}
	cli, err := loadgen.MeasureClientVia(urls, p.opts.Conn)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnreachable, cluster.ClientProblem(err))
	}
	p.cli = cli
	return nil
}

// get fetches a URL of a member over the given TLS and returns its body.
func (p *preflight) get(ctx context.Context, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(firstLine(string(b))))
	}
	return string(b), nil
}

// scrape reads a member's /metrics in Prometheus's text format.
func (p *preflight) scrape(ctx context.Context, clientURL string) (map[string]*dto.MetricFamily, error) {
	body, err := p.get(ctx, clientURL+"/metrics")
	if err != nil {
		return nil, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(strings.NewReader(body))
}

// resolveTimeouts takes heartbeat and election timeout from the flags, else the scenario, else
// etcd's defaults (said so: the cluster's own are not visible through its API).
func (p *preflight) resolveTimeouts() {
	p.hb, p.et = p.opts.Heartbeat, p.opts.Election
	hbFrom, etFrom := "given", "given"
	if hb, et, differ, ok := timeoutsFromFlags(p.hosts); ok && p.hb == 0 && p.et == 0 {
		p.hb, p.et = hb, et
		hbFrom = "from the members' flags (read by their agents)"
		if differ {
			hbFrom = "from the members' flags (read by their agents; they differ: the longest heartbeat and the shortest election timeout)"
		}
		etFrom = hbFrom
	}
	if sc := p.opts.Scenario; sc != nil {
		if p.hb == 0 {
			if ms, err := scenarios.EtcdMillis(sc.Cluster.Etcd["heartbeat-interval"]); err == nil && ms > 0 {
				p.hb, hbFrom = time.Duration(ms)*time.Millisecond, "from the scenario"
			}
		}
		if p.et == 0 {
			if ms, err := scenarios.EtcdMillis(sc.Cluster.Etcd["election-timeout"]); err == nil && ms > 0 {
				p.et, etFrom = time.Duration(ms)*time.Millisecond, "from the scenario"
			}
		}
	}
	const assumed = "assumed: etcd's defaults"
	if p.hb == 0 {
		p.hb, hbFrom = 100*time.Millisecond, assumed
	}
	if p.et == 0 {
		p.et, etFrom = time.Second, assumed
	}
	// Each value says where it came from: one given and the other etcd's default is not "given".
	p.timesFrom = hbFrom
	if etFrom != hbFrom {
		p.timesFrom = fmt.Sprintf("heartbeat %s, election timeout %s", hbFrom, etFrom)
	}
}

// reachedMembers are the members preflight could talk to.
func (p *preflight) reachedMembers() []*pfMember {
	var out []*pfMember
	for _, m := range p.members {
		if m.url != "" {
			out = append(out, m)
		}
	}
	return out
}

// findings collects a check's items; the check's status is the worst of them (skipped items do
// not count unless every item was skipped).
type findings struct {
	items []finding
	spent time.Duration // time the check's evidence took before the check ran (reaching, fetching)
}

type finding struct{ status, text, remedy string }

func (f *findings) add(status, remedy, format string, args ...any) {
	f.items = append(f.items, finding{status: status, text: fmt.Sprintf(format, args...), remedy: remedy})
}

var statusRank = map[string]int{reports.CheckSkipped: 0, reports.CheckPass: 1, reports.CheckWarn: 2, reports.CheckFail: 3}

func (f *findings) result() (status, evidence, remedy string) {
	status = reports.CheckSkipped
	var lines, remedies []string
	for _, it := range f.items {
		if statusRank[it.status] > statusRank[status] {
			status = it.status
		}
		prefix := ""
		if it.status != reports.CheckPass {
			prefix = it.status + ": "
		}
		lines = append(lines, prefix+it.text)
	}
	for _, it := range f.items {
		if it.status == status && it.remedy != "" && !slices.Contains(remedies, it.remedy) {
			remedies = append(remedies, it.remedy)
		}
	}
	return status, strings.Join(lines, "\n"), strings.Join(remedies, "; ")
}

// tlsWith is the TLS settings of the given connection with another client certificate (nil: none),
// verifying the server as the given settings do; asked records whether the server asked for one.
func (p *preflight) tlsWith(cert *tls.Certificate, asked *bool) *tls.Config {
	var cfg *tls.Config
	if p.opts.Conn != nil && p.opts.Conn.TLS != nil {
		cfg = p.opts.Conn.TLS.Clone()
	} else {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if cfg.RootCAs == nil {
		cfg.InsecureSkipVerify = true // nothing to verify against: the transport check says so
	}
	cfg.Certificates = nil
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if asked != nil {
			*asked = true
		}
		if cert == nil {
			return &tls.Certificate{}, nil
		}
		return cert, nil
	}
	return cfg
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
