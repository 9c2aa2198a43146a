package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcd-chaos/etcd-chaos/reports"
)

// testPKI is a CA and the certificates signed by it, written as PEM files in dir.
type testPKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	serial int64
	// validity is how long the certificates it issues are valid (the CA: a year)
	validity time.Duration
	CA       string // path of the CA certificate
	Server   [2]string
	Client   [2]string
	rootCli  *tls.Config
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// newPKI makes a CA, a server certificate for 127.0.0.1 (client and peer URLs) and a client
// certificate, all with Go's crypto/x509.
func newPKI(t *testing.T, dir, name string) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: dir, ca: ca, caKey: key, serial: 1, CA: filepath.Join(dir, name+"-ca.pem"), validity: 90 * 24 * time.Hour}
	writePEM(t, p.CA, "CERTIFICATE", der)
	p.Server = p.issue(t, name+"-server", "etcd.test", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth})
	p.Client = p.issue(t, name+"-client", "etcd-chaos-client", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	pair, err := tls.LoadX509KeyPair(p.Client[0], p.Client[1])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	p.rootCli = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}
	return p
}

func (p *testPKI) issue(t *testing.T, file, cn string, usage []x509.ExtKeyUsage) [2]string {
	t.Helper()
	return p.issueFor(t, file, cn, usage, "127.0.0.1")
}

// issueFor issues a certificate for the given IP addresses.
func (p *testPKI) issueFor(t *testing.T, file, cn string, usage []x509.ExtKeyUsage, ips ...string) [2]string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(p.validity), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage,
		DNSNames: []string{"localhost", "etcd.test"}}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	out := [2]string{filepath.Join(p.dir, file+".pem"), filepath.Join(p.dir, file+"-key.pem")}
	writePEM(t, out[0], "CERTIFICATE", der)
	writePEM(t, out[1], "EC PRIVATE KEY", kd)
	return out
}

// tlsCluster is a cluster the test starts itself, as a team's staging cluster would run: by
// default 3 members named by the team, TLS with client certificates on client and peer URLs, and
// auth enabled (root, and a chaos user whose role covers chaos/ only).
type tlsCluster struct {
	endpoints []string
	pki       *testPKI
	rootPass  string
	plain     bool
}

// clusterSpec says how startCluster sets a test cluster up.
type clusterSpec struct {
	names     []string // default alpha, bravo, charlie
	plain     bool     // http:// client and peer URLs, no certificates
	noAuth    bool     // leave auth off
	chaosPass string   // the chaos user's password (with auth)
	extra     []string // more etcd flags for every member
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startTLSCluster(t *testing.T, chaosPass string) *tlsCluster {
	return startCluster(t, clusterSpec{chaosPass: chaosPass})
}

func startCluster(t *testing.T, spec clusterSpec) *tlsCluster {
	t.Helper()
	dir := t.TempDir()
	pki := newPKI(t, dir, "staging")
	names := spec.names
	if len(names) == 0 {
		names = []string{"alpha", "bravo", "charlie"}
	}
	scheme := "https"
	if spec.plain {
		scheme = "http"
	}
	var initial []string
	client, peer := map[string]string{}, map[string]string{}
	for _, n := range names {
		client[n] = fmt.Sprintf("%s://127.0.0.1:%d", scheme, freePort(t))
		peer[n] = fmt.Sprintf("%s://127.0.0.1:%d", scheme, freePort(t))
		initial = append(initial, n+"="+peer[n])
	}
	tc := &tlsCluster{pki: pki, rootPass: "r00t-" + fmt.Sprint(time.Now().UnixNano()), plain: spec.plain}
	for _, n := range names {
		data := filepath.Join(dir, n)
		logf, err := os.Create(filepath.Join(dir, n+".log"))
		if err != nil {
			t.Fatal(err)
		}
		args := []string{"node", "--", "--name=" + n, "--data-dir=" + data,
			"--listen-client-urls=" + client[n], "--advertise-client-urls=" + client[n],
			"--listen-peer-urls=" + peer[n], "--initial-advertise-peer-urls=" + peer[n],
			"--initial-cluster=" + strings.Join(initial, ","), "--initial-cluster-state=new", "--initial-cluster-token=staging",
			"--heartbeat-interval=50", "--election-timeout=250"}
		if !spec.plain {
			args = append(args, "--cert-file="+pki.Server[0], "--key-file="+pki.Server[1], "--trusted-ca-file="+pki.CA, "--client-cert-auth",
				"--peer-cert-file="+pki.Server[0], "--peer-key-file="+pki.Server[1], "--peer-trusted-ca-file="+pki.CA, "--peer-client-cert-auth")
		}
		cmd := exec.Command(chaosBin, append(args, spec.extra...)...)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			logf.Close()
			_ = os.RemoveAll(data)
		})
		tc.endpoints = append(tc.endpoints, client[n])
	}
	cli := tc.client(t, "", "")
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if _, err := cli.Put(ctx, "app/config", "v1"); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("the test cluster did not come up: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if spec.noAuth {
		return tc
	}
	// Auth as a team sets it up: root, and a chaos user whose role covers the harness's prefix only.
	steps := []func() error{
		func() error { _, err := cli.Put(ctx, "app/feature", "on"); return err },
		func() error { _, err := cli.UserAdd(ctx, "root", tc.rootPass); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.RoleAdd(ctx, "chaos"); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, "chaos", "chaos/", clientv3.GetPrefixRangeEnd("chaos/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := cli.UserAdd(ctx, "chaos", spec.chaosPass); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "chaos", "chaos"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	}
	for i, s := range steps {
		if err := s(); err != nil {
			t.Fatalf("setting up auth, step %d: %v", i, err)
		}
	}
	return tc
}

// client is a client of the test's own (as root once auth is on).
func (tc *tlsCluster) client(t *testing.T, user, pass string) *clientv3.Client {
	t.Helper()
	cfg := clientv3.Config{Endpoints: tc.endpoints, TLS: tc.pki.rootCli, Username: user, Password: pass,
		DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if tc.plain {
		cfg.TLS = nil
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// snapshot is every key outside chaos/ with its value and mod revision, and the cluster's revision.
func (tc *tlsCluster) snapshot(t *testing.T) (map[string]string, int64) {
	t.Helper()
	cli := tc.client(t, "root", tc.rootPass)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = fmt.Sprintf("%s@%d", kv.Value, kv.ModRevision)
	}
	return out, resp.Header.Revision
}

func remoteScenario(tc *tlsCluster, dir, extra string) string {
	rel := func(p string) string {
		r, err := filepath.Rel(dir, p)
		if err != nil {
			return p
		}
		return r
	}
	return fmt.Sprintf(`name: staging
cluster:
  provider: remote
  endpoints: [%s]
  tls: {ca: %s, cert: %s, key: %s}
  auth: {user: chaos, password-env: ETCD_PASSWORD}
workload:
  duration: 8s
  warmup: 1s
  rate: 200
  timeout: 2s
  mix: [{op: put, weight: 70, keys: 200}, {op: get, weight: 30}]
%s`, strings.Join(tc.endpoints, ", "), rel(tc.pki.CA), rel(tc.pki.Client[0]), rel(tc.pki.Client[1]), extra)
}

// chaosEnv runs the binary with extra environment variables.
func chaosEnv(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(chaosBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, stdout.String(), stderr.String()
}

// assertNoSecret greps every file of the run folder, and the output, for the password.
func assertNoSecret(t *testing.T, secret, dir string, outputs ...string) {
	t.Helper()
	for _, o := range outputs {
		if strings.Contains(o, secret) {
			t.Errorf("the password appears in the command's output")
		}
	}
	if dir == "" {
		return
	}
	n := 0
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil {
			n++
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("the password appears in %s", p)
			}
		}
		return nil
	})
	if n < 5 {
		t.Errorf("only %d files in the run folder %s: the grep checked little", n, dir)
	}
}

func TestRemoteClusterWithTLSAndAuth(t *testing.T) {
	pass := "s3cret-" + fmt.Sprint(time.Now().UnixNano())
	tc := startTLSCluster(t, pass)
	dir := t.TempDir()
	env := []string{"ETCD_PASSWORD=" + pass}

	t.Run("dry run changes nothing", func(t *testing.T) {
		sc := filepath.Join(dir, "dry.yaml")
		if err := os.WriteFile(sc, []byte(remoteScenario(tc, dir, `faults:
  - {at: 3s, action: delay, client: follower, latency: 50ms, duration: 2s}
`)), 0o644); err != nil {
			t.Fatal(err)
		}
		before, rev := tc.snapshot(t)
		code, stdout, stderr := chaosEnv(t, env, "run", sc, "--dry-run")
		if code != 0 {
			t.Fatalf("dry run: exit %d\n%s\n%s", code, stdout, stderr)
		}
		t.Logf("dry run:\n%s", stdout)
		for _, want := range []string{"alpha", "bravo", "charlie", "leader:", "tls, user chaos", "delay -> client follower"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("the plan does not say %q", want)
			}
		}
		after, rev2 := tc.snapshot(t)
		if rev2 != rev || len(after) != len(before) {
			t.Errorf("the dry run changed the cluster: revision %d -> %d, %d -> %d keys", rev, rev2, len(before), len(after))
		}
		assertNoSecret(t, pass, "", stdout, stderr)
	})

	t.Run("a run passes, writes only under its prefix and removes it", func(t *testing.T) {
		sc := filepath.Join(dir, "run.yaml")
		if err := os.WriteFile(sc, []byte(remoteScenario(tc, dir, `faults:
  - {at: 3s, action: delay, client: follower, latency: 50ms, duration: 2s}
thresholds:
  errors: ["rate < 0.02"]
  latency.put: ["p(99) < 2s"]
  availability: ["rate > 0.95"]
`)), 0o644); err != nil {
			t.Fatal(err)
		}
		before, rev := tc.snapshot(t)
		out := filepath.Join(t.TempDir(), "run")
		code, stdout, stderr := chaosEnv(t, env, "run", sc, "--yes", "--out", out, "--no-progress", "--run-id", "remote-test")
		t.Logf("stdout:\n%s", stdout)
		if stderr != "" {
			t.Logf("stderr:\n%s", stderr)
		}
		if b, err := os.ReadFile(filepath.Join(out, "events.jsonl")); err != nil || !bytes.Contains(b, []byte(`"kind":"keys_deleted"`)) {
			t.Errorf("events.jsonl has no keys_deleted event (%v):\n%s", err, b)
		}
		if code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", code, stderr)
		}
		if !strings.Contains(stdout, "remote cluster at") || !strings.Contains(stdout, "3-member remote cluster") {
			t.Errorf("the summary does not say remote")
		}
		res := readResult(t, out)
		if res.Cluster.Provider != "remote" || strings.Join(res.Cluster.Members, ",") != "alpha,bravo,charlie" || res.KeyPrefix != "chaos/remote-test/" {
			t.Errorf("cluster %+v, prefix %q", res.Cluster, res.KeyPrefix)
		}
		if res.Cluster.ClientPath != "proxy" || len(res.Faults) != 1 || res.Faults[0].Error != "" || res.Faults[0].Skipped != "" {
			t.Errorf("the client fault did not run through the proxy: path %q, faults %+v", res.Cluster.ClientPath, res.Faults)
		}
		for _, f := range []string{"report.html", "junit.xml", "summary.md"} {
			b, err := os.ReadFile(filepath.Join(out, f))
			if err != nil || !bytes.Contains(b, []byte("remote")) {
				t.Errorf("%s does not say remote (%v)", f, err)
			}
		}
		after, rev2 := tc.snapshot(t)
		for k, v := range before {
			if after[k] != v {
				t.Errorf("key %s outside the prefix changed: %s -> %s", k, v, after[k])
			}
		}
		for k := range after {
			if _, ok := before[k]; !ok {
				t.Errorf("key %s was left behind", k)
			}
		}
		// etcd's own revision is the witness of the acknowledged writes: each put moved it once.
		var puts int64
		if l, ok := res.Latency["put"]; ok {
			puts = l.Count
		}
		if puts < 500 || rev2-rev < puts {
			t.Errorf("%d acknowledged puts, but the cluster's revision moved by %d", puts, rev2-rev)
		}
		assertNoSecret(t, pass, out, stdout, stderr)
	})

	t.Run("a prefix that holds keys is refused", func(t *testing.T) {
		cli := tc.client(t, "root", tc.rootPass)
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := cli.Put(ctx, "chaos/taken/x", "someone's"); err != nil {
			t.Fatal(err)
		}
		sc := filepath.Join(dir, "run.yaml")
		code, stdout, stderr := chaosEnv(t, env, "run", sc, "--yes", "--out", filepath.Join(t.TempDir(), "run"), "--run-id", "taken")
		if code != 3 || !strings.Contains(stderr, "chaos/taken/ already holds 1 keys") {
			t.Errorf("exit %d, stderr:\n%s", code, stderr)
		}
		if r, err := cli.Get(ctx, "chaos/taken/x"); err != nil || len(r.Kvs) != 1 {
			t.Errorf("the other run's key is gone: %v", err)
		}
		assertNoSecret(t, pass, "", stdout, stderr)
	})

	// A harness killed mid-run leaves its keys (and leases) on the team's cluster: cluster.json
	// names the prefix from the start, and chaos heal deletes it. A Ctrl-C mid-fault heals the
	// fault before the keys go.
	t.Run("chaos heal deletes a killed run's keys; Ctrl-C heals before deleting", func(t *testing.T) {
		sc := filepath.Join(dir, "killed.yaml")
		if err := os.WriteFile(sc, []byte(strings.Replace(remoteScenario(tc, dir, `workloads: [{kind: lease, rate: 20, ttl: 60s, keys: 1}]
faults:
  - {at: 2s, action: delay, client: follower, latency: 20ms, duration: 20s}
`), "duration: 8s", "duration: 30s", 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		cli := tc.client(t, "root", tc.rootPass)
		defer cli.Close()
		count := func(prefix string) (keys int64, leases int) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			r, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				t.Fatal(err)
			}
			ls, err := cli.Leases(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range ls.Leases {
				ttl, err := cli.TimeToLive(ctx, l.ID, clientv3.WithAttachedKeys())
				if err == nil && len(ttl.Keys) > 0 && strings.HasPrefix(string(ttl.Keys[0]), prefix) {
					leases++
				}
			}
			return r.Count, leases
		}
		run := func(id string, sig syscall.Signal) string {
			out := filepath.Join(t.TempDir(), id)
			cmd := exec.Command(chaosBin, "run", sc, "--yes", "--out", out, "--no-progress", "--run-id", id)
			cmd.Env = append(os.Environ(), env...)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
			waitEvent(t, out, "fault_injected", 60*time.Second)
			time.Sleep(time.Second)
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			return out
		}

		out := run("killed", syscall.SIGKILL)
		if cf := readCluster(t, out); cf.KeyPrefix != "chaos/killed/" || cf.RunID != "killed" {
			t.Errorf("cluster.json: run id %q, key prefix %q", cf.RunID, cf.KeyPrefix)
		}
		keys, leases := count("chaos/killed/")
		if keys == 0 || leases == 0 {
			t.Fatalf("the killed run left %d keys and %d leases: nothing for heal to do (the test proves nothing)", keys, leases)
		}
		code, stdout, stderr := chaosEnv(t, env, "heal", out)
		t.Logf("heal: %s%s", stdout, stderr)
		if code != 0 || !strings.Contains(stdout, "the run's keys under chaos/killed/ were left on the remote cluster") {
			t.Errorf("heal: exit %d\n%s\n%s", code, stdout, stderr)
		}
		if k, l := count("chaos/killed/"); k != 0 || l != 0 {
			t.Errorf("after chaos heal: %d keys, %d leases left under chaos/killed/ (were %d, %d)", k, l, keys, leases)
		}
		if code, stdout, _ := chaosEnv(t, env, "heal", out); code != 0 || strings.Contains(stdout, "keys under") {
			t.Errorf("a second heal: exit %d, %s", code, stdout)
		}
		assertNoSecret(t, pass, out, stdout, stderr)

		out = run("interrupted", syscall.SIGINT)
		b, _ := os.ReadFile(filepath.Join(out, "events.jsonl"))
		healed, deleted := bytes.Index(b, []byte(`"kind":"fault_healed"`)), bytes.Index(b, []byte(`"kind":"keys_deleted"`))
		if healed < 0 || deleted < 0 || deleted < healed {
			t.Errorf("after Ctrl-C mid-fault: fault_healed at %d, keys_deleted at %d in events.jsonl; want the heal first", healed, deleted)
		}
		if k, l := count("chaos/interrupted/"); k != 0 || l != 0 {
			t.Errorf("after Ctrl-C: %d keys, %d leases left", k, l)
		}
	})

	t.Run("a quorum-breaking fault is refused, and accepted with the allow", func(t *testing.T) {
		sc := filepath.Join(dir, "quorum.yaml")
		write := func(allow string) {
			if err := os.WriteFile(sc, []byte(remoteScenario(tc, dir, `faults:
  - {at: 3s, action: partition, client: majority, duration: 1s`+allow+`}
`)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write("")
		code, _, stderr := chaosEnv(t, env, "run", sc, "--yes", "--dry-run")
		if code != 2 || !strings.Contains(stderr, "quorum guard refuses it") {
			t.Errorf("exit %d, stderr:\n%s", code, stderr)
		}
		write(", allow-quorum-loss: true")
		if code, stdout, stderr := chaosEnv(t, env, "run", sc, "--dry-run"); code != 0 || !strings.Contains(stdout, "allow-quorum-loss") {
			t.Errorf("with the allow: exit %d\n%s\n%s", code, stdout, stderr)
		}
	})

	t.Run("not on a terminal, a remote run needs --yes", func(t *testing.T) {
		code, _, stderr := chaosEnv(t, env, "run", filepath.Join(dir, "run.yaml"), "--out", filepath.Join(t.TempDir(), "run"))
		if code != 2 || !strings.Contains(stderr, "--yes") {
			t.Errorf("exit %d, stderr:\n%s", code, stderr)
		}
	})

	t.Run("wrong CA, missing client cert, wrong password exit 3 without the secret", func(t *testing.T) {
		other := newPKI(t, t.TempDir(), "other")
		base := remoteScenario(tc, dir, "")
		cases := []struct {
			name, from, to string
			env            []string
			want           string
		}{
			{"wrong CA", "ca: " + mustRel(dir, tc.pki.CA), fmt.Sprintf("ca: %q", other.CA), env, "TLS failed: x509: certificate signed by unknown authority"},
			{"missing client cert", fmt.Sprintf(", cert: %s, key: %s", mustRel(dir, tc.pki.Client[0]), mustRel(dir, tc.pki.Client[1])), "", env, "TLS failed: tls: certificate required"},
			{"wrong password", "", "", []string{"ETCD_PASSWORD=Wr0ng-" + pass[:6] + "-guess"}, "authentication failed"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				text := base
				if c.from != "" {
					if !strings.Contains(text, c.from) {
						t.Fatalf("the scenario has no %q", c.from)
					}
					text = strings.Replace(text, c.from, c.to, 1)
				}
				sc := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".yaml")
				if err := os.WriteFile(sc, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(t.TempDir(), "run")
				start := time.Now()
				code, stdout, stderr := chaosEnv(t, c.env, "run", sc, "--yes", "--out", out)
				if code != 3 || !strings.Contains(strings.ToLower(stderr), strings.ToLower(c.want)) {
					t.Errorf("exit %d (want 3), stderr does not say %q:\n%s", code, c.want, stderr)
				}
				if d := time.Since(start); d > 20*time.Second {
					t.Errorf("took %s to say so", d)
				}
				t.Logf("%s: %s", c.name, strings.TrimSpace(stderr))
				for _, e := range c.env {
					assertNoSecret(t, strings.TrimPrefix(e, "ETCD_PASSWORD="), "", stdout, stderr)
					_ = filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
						if err == nil && !d.IsDir() {
							if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(strings.TrimPrefix(e, "ETCD_PASSWORD="))) {
								t.Errorf("the password appears in %s", p)
							}
						}
						return nil
					})
				}
			})
		}
	})
}

func mustRel(dir, p string) string {
	r, err := filepath.Rel(dir, p)
	if err != nil {
		return p
	}
	return r
}

func readResult(t *testing.T, dir string) *reports.Result {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r reports.Result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}
