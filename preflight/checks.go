package preflight

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/etcd-chaos/etcd-chaos/cluster"
	"github.com/etcd-chaos/etcd-chaos/internal/prom"
	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

const (
	pass = reports.CheckPass
	warn = reports.CheckWarn
	fail = reports.CheckFail
	skip = reports.CheckSkipped
)

func (p *preflight) topology(ctx context.Context) *findings {
	f := &findings{spent: p.reaching}
	voters, learners := 0, []string{}
	for _, m := range p.members {
		if m.learner {
			learners = append(learners, m.name)
		} else {
			voters++
		}
	}
	names := make([]string, 0, len(p.members))
	for _, m := range p.members {
		names = append(names, m.name)
	}
	switch {
	case voters < 3:
		f.add(fail, "run 3 or 5 voting members: fewer than 3 cannot lose one and keep a quorum",
			"%d voting members (%s): fewer than 3, so no member can fail without losing quorum", voters, strings.Join(names, ", "))
	case voters%2 == 0:
		f.add(fail, fmt.Sprintf("remove a member or add one: %d voters tolerate no more failures than %d and need a larger quorum", voters, voters-1),
			"%d voting members (%s): an even count tolerates %s, as %d members would, with a quorum of %d", voters,
			strings.Join(names, ", "), plural((voters-1)/2, "failure"), voters-1, voters/2+1)
	default:
		f.add(pass, "", "%d voting members (%s): tolerates %s", voters, strings.Join(names, ", "), plural((voters-1)/2, "failure"))
	}
	if len(learners) > 0 {
		f.add(warn, "promote the learner (etcdctl member promote) or remove it: it holds no vote",
			"learners left behind: %s", strings.Join(learners, ", "))
	}
	leaders, clusters := map[uint64][]string{}, map[uint64]bool{}
	for _, m := range p.members {
		if m.url == "" {
			f.add(fail, "bring the member back, or remove it from the cluster if it is gone for good",
				"%s is unreachable: %v", m.name, m.err)
			continue
		}
		leaders[m.status.Leader] = append(leaders[m.status.Leader], m.name)
		clusters[m.status.Header.ClusterId] = true
		if len(m.status.Errors) > 0 {
			f.add(fail, "look at the member's log and alarms", "%s reports errors: %s", m.name, strings.Join(m.status.Errors, "; "))
		}
	}
	delete(leaders, 0)
	switch {
	case len(leaders) == 1:
		for id, by := range leaders {
			f.add(pass, "", "leader %s, seen by %s", p.nameOf(id), strings.Join(by, ", "))
		}
	case len(leaders) == 0:
		f.add(fail, "the cluster has no leader: check the peer network and the members' logs", "no member knows a leader")
	default:
		var parts []string
		for id, by := range leaders {
			parts = append(parts, fmt.Sprintf("%s says %s", strings.Join(by, ", "), p.nameOf(id)))
		}
		sort.Strings(parts)
		f.add(fail, "the members disagree on the leader: check the peer network (a partition?)", "leaders disagree: %s", strings.Join(parts, "; "))
	}
	for _, m := range p.members {
		if m.url != "" && m.status.Leader == 0 {
			f.add(fail, "the member knows no leader: check its peer links", "%s knows no leader", m.name)
		}
	}
	if len(clusters) > 1 {
		f.add(fail, "the endpoints reach different clusters: list the client URLs of one cluster", "%d cluster ids among the members", len(clusters))
	} else {
		f.add(pass, "", "cluster id %x", p.clusterID)
	}
	hosts := map[string][]string{}
	for _, m := range p.members {
		for _, pu := range m.peerURLs {
			if u, err := url.Parse(pu); err == nil && u.Hostname() != "" {
				hosts[u.Hostname()] = appendUnique(hosts[u.Hostname()], m.name)
			}
		}
	}
	var shared []string
	for h, ms := range hosts {
		if len(ms) > 1 {
			shared = append(shared, fmt.Sprintf("%s holds %s", h, strings.Join(ms, ", ")))
		}
	}
	sort.Strings(shared)
	if len(shared) > 0 {
		f.add(warn, "put each member on its own host (and zone): one host's loss takes out several members",
			"members share a host, by their peer URLs: %s", strings.Join(shared, "; "))
	} else if len(hosts) > 0 {
		f.add(pass, "", "%d distinct hosts by the peer URLs", len(hosts))
	}
	return f
}

func (p *preflight) nameOf(id uint64) string {
	for _, m := range p.members {
		if m.id == id {
			return m.name
		}
	}
	return fmt.Sprintf("%x", id)
}

func appendUnique(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// minorOf parses "3.7.3" into 3 and 7.
func minorOf(v string) (major, minor int, ok bool) {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	a, err1 := strconv.Atoi(parts[0])
	b, err2 := strconv.Atoi(parts[1])
	return a, b, err1 == nil && err2 == nil
}

// apart is how many minor versions separate a and b (100 when the majors differ or a is unreadable).
func apart(a, b string) int {
	am, an, ok1 := minorOf(a)
	bm, bn, ok2 := minorOf(b)
	if !ok1 || !ok2 || am != bm {
		return 100
	}
	if an > bn {
		return an - bn
	}
	return bn - an
}

func (p *preflight) versions(ctx context.Context) *findings {
	f := &findings{}
	var parts []string
	seen := map[string][]string{}
	for _, m := range p.reachedMembers() {
		parts = append(parts, m.name+" "+m.status.Version)
		seen[m.status.Version] = append(seen[m.status.Version], m.name)
	}
	if len(parts) == 0 {
		f.add(skip, "", "no member answered")
		return f
	}
	var vs []string
	for v := range seen {
		vs = append(vs, v)
	}
	sort.Strings(vs)
	server := vs[len(vs)-1]
	switch {
	case len(vs) == 1:
		f.add(pass, "", "servers: %s", strings.Join(parts, ", "))
	case apart(vs[0], server) <= 1:
		f.add(warn, "finish the rolling upgrade: bring every member to one version",
			"servers on more than one version (a rolling upgrade in progress?): %s", strings.Join(parts, ", "))
	default:
		f.add(fail, "upgrade one minor version at a time until every member runs the same version",
			"servers more than one minor version apart: %s", strings.Join(parts, ", "))
	}
	client, whose := p.opts.ClientVersion, "the service's (--client-version)"
	if client == "" {
		client, whose = version.Version, "etcd-chaos's own; --client-version names the service's"
	}
	sMajor, sMinor, _ := minorOf(server)
	switch d := apart(client, server); {
	case d == 0:
		f.add(pass, "", "client library %s (%s) matches the servers' %d.%d", client, whose, sMajor, sMinor)
	case d == 1:
		f.add(warn, "move the client library to the servers' minor version",
			"client library %s (%s) is one minor version from the servers' %s", client, whose, server)
	default:
		f.add(fail, "use a client library of the servers' major and minor version",
			"client library %s (%s) against servers %s: more than one minor version apart", client, whose, server)
	}
	return f
}

// transport checks TLS from the network side: what a client that does not hold the right
// credentials gets from each client URL, and what the certificates say.
func (p *preflight) transport(ctx context.Context) *findings {
	f := &findings{}
	stranger, err := strangerCert()
	if err != nil {
		f.add(skip, "", "could not make a certificate of another CA: %v", err)
	}
	var given *tls.Certificate
	if c := p.opts.Conn; c != nil && c.TLS != nil && len(c.TLS.Certificates) > 0 {
		given = &c.TLS.Certificates[0]
	}
	for _, m := range p.reachedMembers() {
		u, _ := url.Parse(m.url)
		host := u.Host
		// A plaintext client.
		if served, how := p.plaintext(ctx, host); served {
			f.add(fail, "serve clients over TLS only: https:// client URLs with cert-file and key-file",
				"%s: a plaintext client got /health (%s)", m.name, how)
		} else {
			f.add(pass, "", "%s: plaintext refused at %s (%s)", m.name, host, how)
		}
		if u.Scheme != "https" {
			f.add(skip, "", "%s: its client URL %s is not TLS, so client certificates were not tried", m.name, m.url)
			continue
		}
		// A TLS client without a certificate, and one with a certificate of another CA.
		var asked bool
		none := p.tlsGet(ctx, m.url, p.tlsWith(nil, &asked))
		switch {
		case none.err == nil && given != nil:
			f.add(fail, "turn on client-cert-auth (with trusted-ca-file): the service presents certificates nobody checks",
				"%s: a TLS client without a certificate got /health (the server %s)", m.name, askedText(asked))
		case none.err == nil:
			f.add(warn, "turn on client-cert-auth (with trusted-ca-file) so only holders of your CA's certificates get a session",
				"%s: a TLS client without a certificate got /health: client-cert auth is off", m.name)
		default:
			f.add(pass, "", "%s: a TLS client without a certificate was refused (%s)", m.name, none.reason())
		}
		if stranger != nil {
			other := p.tlsGet(ctx, m.url, p.tlsWith(stranger, &asked))
			switch {
			case other.err == nil && asked:
				f.add(fail, "trust only your own CA in trusted-ca-file: the server accepted a certificate of another CA",
					"%s: a client certificate from another CA got /health", m.name)
			case other.err == nil:
				f.add(skip, "", "%s: the server asks for no client certificate, so another CA's was never presented", m.name)
			default:
				f.add(pass, "", "%s: a certificate from another CA was refused (%s)", m.name, other.reason())
			}
		}
		// The server's certificate, as the given TLS settings see it.
		full := p.tlsGet(ctx, m.url, nil)
		if full.state != nil && len(full.state.PeerCertificates) > 0 {
			leaf := full.state.PeerCertificates[0]
			expiry(f, m.name+"'s server certificate "+leaf.Subject.CommonName, leaf.NotAfter)
			switch {
			case p.opts.Conn == nil || p.opts.Conn.TLS == nil || p.opts.Conn.TLS.InsecureSkipVerify:
				f.add(skip, "", "%s: verification is off in the given TLS settings, so its certificate chain was not verified", m.name)
			case p.opts.Conn.TLS.RootCAs == nil:
				f.add(pass, "", "%s: its certificate verifies against the system's roots (no --cacert given)", m.name)
			default:
				f.add(pass, "", "%s: its certificate verifies against the given CA", m.name)
			}
		} else if full.err != nil {
			f.add(skip, "", "%s: could not read its certificate: %s", m.name, full.reason())
		}
		for _, pu := range m.peerURLs {
			if !strings.HasPrefix(pu, "https://") {
				f.add(fail, "serve peers over TLS: https:// peer URLs with peer-cert-file, peer-key-file and peer-client-cert-auth",
					"%s: peer URL %s is plaintext", m.name, pu)
			}
		}
	}
	allPeersTLS := true
	for _, m := range p.members {
		for _, pu := range m.peerURLs {
			allPeersTLS = allPeersTLS && strings.HasPrefix(pu, "https://")
		}
	}
	if allPeersTLS {
		f.add(pass, "", "every peer URL is https")
	}
	if given != nil {
		if leaf, err := leafOf(given); err == nil {
			expiry(f, "the given client certificate "+leaf.Subject.CommonName, leaf.NotAfter)
		}
	} else {
		f.add(skip, "", "no client certificate given (--cert, --key): its expiry was not checked")
	}
	return f
}

func askedText(asked bool) string {
	if asked {
		return "asked for a certificate but did not require one"
	}
	return "did not ask for one"
}

func leafOf(c *tls.Certificate) (*x509.Certificate, error) {
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	if len(c.Certificate) == 0 {
		return nil, fmt.Errorf("no certificate")
	}
	return x509.ParseCertificate(c.Certificate[0])
}

func expiry(f *findings, what string, notAfter time.Time) {
	left := time.Until(notAfter)
	days := int(left.Hours() / 24)
	switch {
	case left <= 0:
		f.add(fail, "renew the certificate now: it has expired", "%s expired on %s", what, notAfter.UTC().Format("2006-01-02"))
	case left < 30*24*time.Hour:
		f.add(warn, "renew the certificate before it expires, and automate its rotation",
			"%s expires on %s, in %d days (under 30)", what, notAfter.UTC().Format("2006-01-02 15:04 UTC"), days)
	default:
		f.add(pass, "", "%s expires on %s, in %d days", what, notAfter.UTC().Format("2006-01-02"), days)
	}
}

// plaintext asks host for /health without TLS. served is true when etcd answered.
func (p *preflight) plaintext(ctx context.Context, host string) (served bool, how string) {
	tr := &http.Transport{DisableKeepAlives: true}
	if p.opts.Conn != nil && p.opts.Conn.Dial != nil {
		d := p.opts.Conn.Dial
		tr.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) { return d(ctx, addr) }
	}
	hc := &http.Client{Transport: tr, Timeout: 3 * time.Second}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/health", nil)
	resp, err := hc.Do(req)
	if err != nil {
		return false, shortErr(err)
	}
	defer resp.Body.Close()
	b := make([]byte, 256)
	n, _ := resp.Body.Read(b)
	body := strings.TrimSpace(string(b[:n]))
	if resp.StatusCode == http.StatusOK && strings.Contains(body, "health") {
		return true, "HTTP 200 " + body
	}
	return false, fmt.Sprintf("HTTP %d %s", resp.StatusCode, firstLine(body))
}

type tlsResult struct {
	err   error
	state *tls.ConnectionState
}

func (r tlsResult) reason() string {
	if r.err == nil {
		return "served"
	}
	return cluster.TLSReason(shortErr(r.err))
}

// tlsGet asks clientURL for /health over TLS with cfg (nil: the given settings).
func (p *preflight) tlsGet(ctx context.Context, clientURL string, cfg *tls.Config) tlsResult {
	tr := p.http.Transport.(*http.Transport).Clone()
	if cfg != nil {
		tr.TLSClientConfig = cfg
	}
	hc := &http.Client{Transport: tr, Timeout: 3 * time.Second}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, clientURL+"/health", nil)
	resp, err := hc.Do(req)
	if err != nil {
		return tlsResult{err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return tlsResult{err: fmt.Errorf("HTTP %d", resp.StatusCode), state: resp.TLS}
	}
	return tlsResult{state: resp.TLS}
}

// shortErr drops the Go request boilerplate from a transport error.
func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.HasPrefix(s, "Get \"") {
		if j := strings.Index(s, "\": "); j >= 0 {
			s = s[j+3:]
		}
	}
	return s
}

// strangerCert is a client certificate signed by a CA made a moment ago, which no cluster trusts.
func strangerCert() (*tls.Certificate, error) {
	ca, err := newMiniCA("etcd-chaos preflight stranger CA")
	if err != nil {
		return nil, err
	}
	der, key, err := ca.issue("etcd-chaos preflight stranger", nil)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// guestKey is a key under the harness's own prefix that preflight never writes.
const guestKey = loadgen.DefaultPrefix + "preflight/guest-probe"

func (p *preflight) auth(ctx context.Context) *findings {
	f := &findings{}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	enabled := false
	if st, err := p.cli.AuthStatus(actx); err != nil {
		f.add(skip, "", "auth status: %v", cluster.ClientProblem(err))
	} else if !st.Enabled {
		f.add(fail, "enable auth: add a root user, a role per service with the keys it needs, then etcdctl auth enable",
			"auth is disabled: anyone who reaches a client port can read and write every key")
	} else {
		enabled = true
		f.add(pass, "", "auth is enabled")
	}
	// A client without credentials (the same TLS: transport is checked apart).
	var guest *loadgen.Conn
	if c := p.opts.Conn; c != nil {
		guest = &loadgen.Conn{Dial: c.Dial, TLS: c.TLS}
	}
	var urls []string
	for _, m := range p.reachedMembers() {
		urls = append(urls, m.url)
	}
	cli, err := loadgen.MeasureClientVia(urls, guest)
	if err != nil {
		f.add(skip, "", "a client without credentials could not connect: %v", cluster.ClientProblem(err))
	} else {
		defer cli.Close()
		// With client-cert auth, etcd takes a certificate's common name as the user of a request
		// that carries no token: the "guest" here is whoever holds the given certificate.
		who := "an unauthenticated client"
		if c := p.opts.Conn; c != nil && c.TLS != nil && len(c.TLS.Certificates) > 0 {
			if leaf, err := leafOf(&c.TLS.Certificates[0]); err == nil {
				who = fmt.Sprintf("a client without user or password (only its certificate, whose CN %q etcd takes as a user name)", leaf.Subject.CommonName)
			}
		}
		if _, err := cli.Get(actx, guestKey); err == nil {
			f.add(fail, "enable auth, so an unauthenticated client is refused", "%s read %s", who, guestKey)
		} else if authRefusal(err) {
			f.add(pass, "", "%s: its read was refused (%s)", who, refusal(err))
		} else {
			f.add(skip, "", "%s: its read failed without a refusal (%s): it could not tell", who, refusal(err))
		}
		// A transaction whose compare is never true: its put is permission-checked but never applied.
		never := clientv3.Compare(clientv3.CreateRevision(guestKey), "<", 0)
		if _, err := cli.Txn(actx).If(never).Then(clientv3.OpPut(guestKey, "guest")).Commit(); err == nil {
			f.add(fail, "enable auth, so an unauthenticated client is refused",
				"%s: its write was accepted (a transaction whose put never applies: nothing was written)", who)
		} else if authRefusal(err) {
			f.add(pass, "", "%s: its write was refused (%s)", who, refusal(err))
		} else {
			f.add(skip, "", "%s: its write failed without a refusal (%s): it could not tell", who, refusal(err))
		}
	}
	user := ""
	if p.opts.Conn != nil {
		user = p.opts.Conn.Username
	}
	switch {
	case user == "":
		f.add(skip, "", "no user given (--user): no roles to list")
	case !enabled:
		f.add(skip, "", "user %s given, but auth is off: its roles grant nothing", user)
	default:
		resp, err := p.cli.UserGet(actx, user)
		if err != nil {
			f.add(skip, "", "user %s: its roles could not be read: %v", user, cluster.ClientProblem(err))
			break
		}
		var roles []string
		for _, r := range resp.Roles {
			roles = append(roles, p.roleText(actx, r))
		}
		if len(roles) == 0 {
			f.add(warn, "grant the user a role with the keys the service needs", "user %s has no role", user)
		} else {
			f.add(pass, "", "user %s: roles %s", user, strings.Join(roles, "; "))
		}
	}
	return f
}

// refusal is etcd's own words for why it refused a request.
// authRefusal says whether err is etcd refusing a request for who sent it (no user, a bad token,
// no permission), not a request that timed out or found no leader: only a refusal proves auth.
func authRefusal(err error) bool {
	if s, ok := status.FromError(err); ok && (s.Code() == codes.PermissionDenied || s.Code() == codes.Unauthenticated) {
		return true
	}
	for _, e := range []error{rpctypes.ErrPermissionDenied, rpctypes.ErrUserEmpty, rpctypes.ErrInvalidAuthToken, rpctypes.ErrAuthFailed,
		rpctypes.ErrUserNotFound} {
		if errors.Is(err, e) || rpctypes.ErrorDesc(err) == e.Error() {
			return true
		}
	}
	return false
}

func refusal(err error) string {
	if s, ok := status.FromError(err); ok && s.Message() != "" {
		return s.Message()
	}
	return rpctypes.ErrorDesc(err)
}

// roleText is a role and its permissions: "chaos (readwrite chaos/*)".
func (p *preflight) roleText(ctx context.Context, role string) string {
	if role == "root" {
		return "root (every key, and the cluster's administration)"
	}
	resp, err := p.cli.RoleGet(ctx, role)
	if err != nil {
		return role + " (permissions unreadable: " + cluster.ClientProblem(err).Error() + ")"
	}
	var perms []string
	for _, pm := range resp.Perm {
		key, end := string(pm.Key), string(pm.RangeEnd)
		kind := strings.ToLower(authpb.Permission_Type_name[int32(pm.PermType)])
		switch {
		case end == "":
			perms = append(perms, kind+" "+key)
		case end == clientv3.GetPrefixRangeEnd(key):
			perms = append(perms, kind+" "+key+"*")
		case end == "\x00":
			perms = append(perms, kind+" from "+key+" on")
		default:
			perms = append(perms, fmt.Sprintf("%s [%s, %s)", kind, key, end))
		}
	}
	if len(perms) == 0 {
		return role + " (no permissions)"
	}
	return role + " (" + strings.Join(perms, ", ") + ")"
}

// histogram is one series of a histogram metric whose labels match.
func histograms(fams map[string]*dto.MetricFamily, name string) []*dto.Metric {
	fam := fams[name]
	if fam == nil {
		return nil
	}
	return fam.Metric
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func gauge(fams map[string]*dto.MetricFamily, name string) (float64, bool) {
	fam := fams[name]
	if fam == nil || len(fam.Metric) == 0 {
		return 0, false
	}
	m := fam.Metric[0]
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue(), true
	case m.Counter != nil:
		return m.Counter.GetValue(), true
	case m.Untyped != nil:
		return m.Untyped.GetValue(), true
	}
	return 0, false
}

func msText(v float64) string { return fmt.Sprintf("%.2fms", v*1000) }

func (p *preflight) timeouts(ctx context.Context) *findings {
	f := &findings{}
	hb, et := p.hb, p.et
	var worstP99, worstMean float64
	var samples uint64
	var links []string
	var clientRTT time.Duration
	for _, m := range p.reachedMembers() {
		clientRTT = max(clientRTT, m.rtt)
		for _, s := range histograms(m.metrics, "etcd_network_peer_round_trip_time_seconds") {
			h := s.Histogram
			if h == nil || h.GetSampleCount() == 0 {
				continue
			}
			q := prom.Quantile(h, 0.99)
			mean := h.GetSampleSum() / float64(h.GetSampleCount())
			samples += h.GetSampleCount()
			links = append(links, fmt.Sprintf("%s->%s p99 %s", m.name, p.nameOf(parseID(label(s, "To"))), msText(q)))
			worstP99, worstMean = max(worstP99, q), max(worstMean, mean)
		}
	}
	sort.Strings(links)
	rtt := time.Duration(worstP99 * float64(time.Second))
	what := "peer round trip p99"
	if samples == 0 {
		rtt, what = clientRTT, "client round trip (no peer round-trip samples in the members' metrics)"
		f.add(warn, "rerun preflight once the members have run a minute: etcd measures its peer round trips every few seconds",
			"no etcd_network_peer_round_trip_time_seconds samples yet: judged by the client round trip %s", clientRTT.Round(time.Microsecond))
	} else {
		f.add(pass, "", "peer round trip (etcd_network_peer_round_trip_time_seconds, %d samples): worst p99 %s, worst mean %s; %s",
			samples, msText(worstP99), msText(worstMean), strings.Join(links, ", "))
		f.add(pass, "", "client round trip (median of 5 Status calls): worst %s", clientRTT.Round(time.Microsecond))
	}
	if p.timesFrom == "assumed: etcd's defaults" {
		f.add(warn, "pass the cluster's --heartbeat-interval and --election-timeout (or a scenario with cluster.etcd) so they are checked, not assumed",
			"heartbeat %s and election timeout %s %s (etcd does not expose its own)", hb, et, p.timesFrom)
	} else {
		f.add(pass, "", "heartbeat %s and election timeout %s (%s)", hb, et, p.timesFrom)
	}
	switch {
	case et < 5*hb:
		f.add(fail, "set election-timeout to at least 5 times heartbeat-interval", "election timeout %s is under 5x the heartbeat %s: etcd refuses it", et, hb)
	case rtt > 0 && et < 10*rtt && samples > 0 && samples < uint64(minRTTSamples*max(len(links), 1)):
		// A few probes at start-up (TLS handshakes, a loaded machine) are a poor p99.
		f.add(warn, "rerun preflight once the members have run a few minutes, so the round trip p99 rests on more than start-up probes",
			"election timeout %s is under 10x the %s %s, but over only %d samples (%d links): too few to fail on", et, what,
			rtt.Round(time.Microsecond), samples, len(links))
	case rtt > 0 && et < 10*rtt:
		f.add(fail, fmt.Sprintf("raise election-timeout to at least %s (10x the measured round trip)", (10*rtt).Round(time.Millisecond)),
			"election timeout %s is under 10x the %s %s: followers will call elections on a slow round trip", et, what, rtt.Round(time.Microsecond))
	default:
		ratio := math.Inf(1)
		if rtt > 0 {
			ratio = float64(et) / float64(rtt)
		}
		f.add(pass, "", "election timeout %s is %.0fx the %s and %.0fx the heartbeat (etcd's guide: at least 10x the round trip, 5x the heartbeat)",
			et, ratio, what, float64(et)/float64(hb))
	}
	if mean := time.Duration(worstMean * float64(time.Second)); samples > 0 && hb < mean {
		f.add(warn, fmt.Sprintf("raise heartbeat-interval to about the round trip (%s)", mean.Round(time.Millisecond)),
			"heartbeat %s is shorter than the mean peer round trip %s: heartbeats queue behind each other", hb, mean.Round(time.Microsecond))
	}
	// Leader changes: since each member started, and during this preflight.
	for _, m := range p.reachedMembers() {
		before, ok := gauge(m.metrics, "etcd_server_leader_changes_seen_total")
		if !ok {
			f.add(skip, "", "%s: no etcd_server_leader_changes_seen_total in its metrics", m.name)
			continue
		}
		now, err := p.scrape(ctx, m.url)
		after, ok2 := gauge(now, "etcd_server_leader_changes_seen_total")
		up := ""
		var hours float64
		if st, ok := gauge(m.metrics, "process_start_time_seconds"); ok && st > 0 {
			d := time.Since(time.Unix(int64(st), 0))
			hours = d.Hours()
			up = " in the " + d.Round(time.Second).String() + " since it started"
		}
		during := time.Since(p.started).Round(100 * time.Millisecond)
		switch {
		case err != nil || !ok2:
			f.add(skip, "", "%s: its metrics could not be read again: %v", m.name, err)
		case after > before:
			f.add(warn, "look for the cause of the elections: the peer network, disk stalls, or timeouts set too tight",
				"%s saw %s during preflight's %s (%.0f%s)", m.name, changes(after-before), during, after, up)
		case before > 1 && hours > 0 && (before-1)/hours > 1:
			f.add(warn, "look for the cause of the elections: the peer network, disk stalls, or timeouts set too tight",
				"%s saw %s%s: more than one an hour", m.name, changes(before), up)
		default:
			f.add(pass, "", "%s saw %s%s, none during preflight's %s", m.name, changes(before), up, during)
		}
	}
	return f
}

func changes(n float64) string { return plural(int(n), "leader change") }

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// minRTTSamples is the fewest round-trip samples per link whose p99 may fail the timeouts check
// (etcd probes each peer every few seconds: a member up a minute or two has them).
const minRTTSamples = 15

func parseID(hex string) uint64 {
	v, _ := strconv.ParseUint(hex, 16, 64)
	return v
}

// minDiskSamples is the fewest fsyncs or commits whose p99 may fail the disk check.
const minDiskSamples = 100

func (p *preflight) disk(ctx context.Context) *findings {
	f := &findings{}
	type probe struct {
		metric, what, unit string
		limit              float64
		remedy             string
	}
	probes := []probe{
		{"etcd_disk_wal_fsync_duration_seconds", "WAL fsync", "fsync", 0.010, "put the WAL on a dedicated low-latency disk (SSD/NVMe, --wal-dir), away from other I/O"},
		{"etcd_disk_backend_commit_duration_seconds", "backend commit", "commit", 0.025, "put the data dir on a low-latency SSD, away from other I/O; check for I/O throttling"},
	}
	for _, m := range p.members {
		if m.url == "" || m.metricsErr != nil {
			f.add(skip, "", "%s: its metrics were not reachable", m.name)
			continue
		}
		for _, pr := range probes {
			series := histograms(m.metrics, pr.metric)
			if len(series) == 0 || series[0].Histogram == nil || series[0].Histogram.GetSampleCount() == 0 {
				f.add(skip, "", "%s: no %s samples yet (%s)", m.name, pr.what, pr.metric)
				continue
			}
			h := series[0].Histogram
			q := prom.Quantile(h, 0.99)
			n := h.GetSampleCount()
			text := fmt.Sprintf("%s: %s p99 %s over %d %ss since it started (from etcd's buckets, as histogram_quantile; limit %s)", m.name, pr.what, msText(q), n, pr.unit, msText(pr.limit))
			switch {
			case q > pr.limit && n < minDiskSamples:
				// Over a few samples the p99 is the slowest of them, most likely from start-up.
				f.add(warn, "rerun preflight once the members have served writes for a while: too few samples to judge the disk",
					"%s; only %d samples, too few for a p99 to fail on", text, n)
			case q > pr.limit:
				f.add(fail, pr.remedy, "%s", text)
			default:
				f.add(pass, "", "%s", text)
			}
		}
	}
	return f
}

func mib(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", b>>10)
}

func (p *preflight) space(ctx context.Context) *findings {
	f := &findings{}
	for _, m := range p.members {
		if m.url == "" {
			f.add(skip, "", "%s: unreachable", m.name)
			continue
		}
		st := m.status
		quota, ok := gauge(m.metrics, "etcd_server_quota_backend_bytes")
		if !ok || quota <= 0 {
			f.add(skip, "", "%s: db %s; its quota is unknown (no etcd_server_quota_backend_bytes)", m.name, mib(st.DbSize))
		} else {
			pct := 100 * float64(st.DbSize) / quota
			text := fmt.Sprintf("%s: db %s of its %s quota (%.0f%%)", m.name, mib(st.DbSize), mib(int64(quota)), pct)
			switch {
			case pct >= 80:
				f.add(warn, "compact and defragment, or raise quota-backend-bytes (etcd suggests at most 8 GiB): at the quota etcd refuses writes",
					"%s, at or past 80%%", text)
			default:
				f.add(pass, "", "%s", text)
			}
		}
		if inUse := st.DbSizeInUse; inUse > 0 && st.DbSize > 0 {
			free := st.DbSize - inUse
			text := fmt.Sprintf("%s: %s in use, %s free inside the db file", m.name, mib(inUse), mib(free))
			if free >= 64<<20 && float64(free) >= 0.5*float64(st.DbSize) {
				f.add(warn, "defragment the member (etcdctl defrag, one member at a time) to return the free space", "%s: defrag advised", text)
			} else {
				f.add(pass, "", "%s", text)
			}
		}
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := p.cli.AlarmList(actx)
	switch {
	case err != nil:
		var errs []string
		for _, m := range p.reachedMembers() {
			errs = append(errs, m.status.Errors...)
		}
		if len(errs) > 0 {
			f.add(fail, "resolve the alarm's cause (free space: compact, defrag; corruption: replace the member), then etcdctl alarm disarm",
				"the members report: %s", strings.Join(errs, "; "))
		} else {
			f.add(skip, "", "the alarm list could not be read (%v); the members' status reports no errors", cluster.ClientProblem(err))
		}
	case len(resp.Alarms) > 0:
		var as []string
		for _, a := range resp.Alarms {
			as = append(as, fmt.Sprintf("%s on %s", a.Alarm, p.nameOf(a.MemberID)))
		}
		f.add(fail, "resolve the alarm's cause (free space: compact, defrag; corruption: replace the member), then etcdctl alarm disarm",
			"active alarms: %s", strings.Join(as, ", "))
	default:
		f.add(pass, "", "no active alarms (NOSPACE, CORRUPT)")
	}
	return f
}

// client reviews the scenario's client settings against the failover the election timeout implies:
// a new leader is elected within [ET, 2ET) of the old one's loss, and writes resume after it.
func (p *preflight) client(ctx context.Context) *findings {
	f := &findings{}
	sc := p.opts.Scenario
	if sc == nil {
		f.add(skip, "", "no --scenario: the service's client settings were not given")
		return f
	}
	failover := 2*p.et + p.hb
	f.add(pass, "", "a plausible failover: up to 2x the election timeout %s plus a heartbeat = %s (timeouts %s)", p.et, failover, p.timesFrom)
	type block struct {
		name    string
		timeout time.Duration
		retry   scenarios.Retry
	}
	blocks := []block{{"workload", time.Duration(sc.Workload.Timeout), sc.Workload.Retry}}
	for i, b := range sc.Workloads {
		blocks = append(blocks, block{fmt.Sprintf("workloads[%d] (%s)", i, b.Name), time.Duration(b.Timeout), b.Retry})
	}
	for _, b := range blocks {
		budget := retryBudget(b.timeout, b.retry)
		text := fmt.Sprintf("%s: request timeout %s, %s, backoff %s to %s, budget %s", b.name, b.timeout,
			plural(max(b.retry.Attempts, 1), "attempt"), time.Duration(b.retry.Backoff), time.Duration(b.retry.MaxBackoff), budget)
		switch {
		case b.timeout < failover && (b.retry.Attempts <= 1 || budget < failover):
			f.add(warn, fmt.Sprintf("give requests at least %s with their retries (a longer timeout, more attempts, or a deadline)", failover),
				"%s: shorter than a plausible failover (%s), so a request that meets one fails", text, failover)
		case b.timeout < failover:
			f.add(pass, "", "%s: one attempt is shorter than a failover (%s), the retries cover it", text, failover)
		default:
			f.add(pass, "", "%s: covers a failover (%s)", text, failover)
		}
		if b.retry.Attempts > 1 && b.retry.Jitter == 0 {
			f.add(warn, "add jitter to the retry backoff so clients do not retry in lockstep after a failover",
				"%s: retries without jitter", b.name)
		}
	}
	return f
}

// retryBudget is how long an op may take with all its attempts and backoffs.
func retryBudget(timeout time.Duration, r scenarios.Retry) time.Duration {
	if r.Deadline > 0 {
		return time.Duration(r.Deadline)
	}
	n := max(r.Attempts, 1)
	total := time.Duration(n) * timeout
	b := time.Duration(r.Backoff)
	for i := 1; i < n; i++ {
		total += b
		b *= 2
		if mb := time.Duration(r.MaxBackoff); mb > 0 && b > mb {
			b = mb
		}
	}
	return total
}

func (p *preflight) monitoring(ctx context.Context) *findings {
	f := &findings{spent: p.fetching}
	for _, m := range p.members {
		if m.url == "" {
			f.add(fail, "bring the member back", "%s: unreachable, so neither /metrics nor /health", m.name)
			continue
		}
		if m.metricsErr != nil {
			f.add(fail, "serve /metrics to the monitoring system (on the client URLs, or listen-metrics-urls)",
				"%s: %s/metrics: %v", m.name, m.url, m.metricsErr)
		} else {
			f.add(pass, "", "%s: %s/metrics answered %d metric families in %d ms", m.name, m.url, len(m.metrics), m.metricsMs)
		}
		switch {
		case m.healthErr != nil:
			f.add(fail, "look at the member's log: /health must answer for load balancers and probes",
				"%s: %s/health: %v", m.name, m.url, m.healthErr)
		case !strings.Contains(strings.ReplaceAll(m.health, " ", ""), `"health":"true"`):
			f.add(fail, "look at the member's log and alarms: it reports itself unhealthy", "%s: /health says %s", m.name, strings.TrimSpace(m.health))
		default:
			f.add(pass, "", "%s: /health %s in %d ms", m.name, strings.TrimSpace(m.health), m.healthMs)
		}
	}
	return f
}
