package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"
	clientsnap "go.etcd.io/etcd/client/v3/snapshot"
	"go.uber.org/zap"

	"github.com/etcd-chaos/etcd-chaos/reports"
)

// preflightJSON is the --json shape, read strictly: a field the command adds or renames fails here.
type preflightJSON struct {
	Passed    bool      `json:"passed"`
	Endpoints []string  `json:"endpoints"`
	StartedAt time.Time `json:"started_at"`
	Ms        int64     `json:"ms"`
	Checks    []struct {
		ID       string `json:"id"`
		Title    string `json:"title"`
		Status   string `json:"status"`
		Evidence string `json:"evidence"`
		Remedy   string `json:"remedy"`
		Ms       int64  `json:"ms"`
	} `json:"checks"`
}

func (p *preflightJSON) check(t *testing.T, id string) (status, evidence, remedy string) {
	t.Helper()
	for _, c := range p.Checks {
		if c.ID == id {
			return c.Status, c.Evidence, c.Remedy
		}
	}
	t.Fatalf("no check %s", id)
	return
}

// preflight runs chaos preflight with --json and --junit, validates both, and returns the exit
// code, the parsed JSON (nil unless it ran) and the output.
func runPreflight(t *testing.T, env []string, args ...string) (int, *preflightJSON, string) {
	t.Helper()
	dir := t.TempDir()
	js, ju := filepath.Join(dir, "preflight.json"), filepath.Join(dir, "junit.xml")
	code, stdout, stderr := chaosEnv(t, env, append([]string{"preflight", "--json", js, "--junit", ju}, args...)...)
	out := stdout + stderr
	t.Logf("chaos preflight %s: exit %d\n%s", strings.Join(args, " "), code, out)
	// The secrets handed over in the environment reach neither the output nor the files.
	for _, kv := range env {
		_, secret, _ := strings.Cut(kv, "=")
		assertNoSecret(t, secret, "", out)
		for _, f := range []string{js, ju} {
			if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte(secret)) {
				t.Errorf("a password appears in %s", filepath.Base(f))
			}
		}
	}
	b, err := os.ReadFile(js)
	if err != nil {
		return code, nil, out
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p preflightJSON
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("--json does not decode strictly: %v\n%s", err, b)
	}
	var ids []string
	fails := 0
	for _, c := range p.Checks {
		ids = append(ids, c.ID)
		if !slices.Contains([]string{"pass", "warn", "fail", "skipped"}, c.Status) {
			t.Errorf("check %s: status %q", c.ID, c.Status)
		}
		if c.Evidence == "" || c.Title == "" {
			t.Errorf("check %s has no evidence or title", c.ID)
		}
		if (c.Status == "fail" || c.Status == "warn") && (c.Remedy == "" || strings.Contains(c.Remedy, "\n") || linkRe.MatchString(c.Remedy)) {
			t.Errorf("check %s (%s): the remedy must be one link-free line, is %q", c.ID, c.Status, c.Remedy)
		}
		if c.Status == "fail" {
			fails++
		}
		if !strings.Contains(stdout, strings.ToUpper(c.Status)) || !strings.Contains(stdout, c.ID) {
			t.Errorf("the output does not print check %s", c.ID)
		}
	}
	if !slices.Equal(ids, reports.PreflightIDs) {
		t.Errorf("check ids %v, want %v", ids, reports.PreflightIDs)
	}
	if p.Passed != (fails == 0) {
		t.Errorf("passed %v with %d failed checks", p.Passed, fails)
	}
	if want := map[bool]int{true: 0, false: 1}[p.Passed]; code != want {
		t.Errorf("exit %d with passed=%v, want %d", code, p.Passed, want)
	}
	// JUnit: the schema CI readers hold it to, a testcase per check, failures counted.
	xmllint, err := exec.LookPath("xmllint")
	if err != nil {
		t.Fatal("xmllint is missing: make deps installs it (Debian's libxml2-utils)")
	}
	if out, err := exec.Command(xmllint, "--noout", "--schema", "../../reports/testdata/junit.xsd", ju).CombinedOutput(); err != nil {
		t.Errorf("junit.xml does not validate: %v\n%s", err, out)
	}
	var doc struct {
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Cases []struct {
				Name string `xml:"name,attr"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	xb, _ := os.ReadFile(ju)
	if err := xml.Unmarshal(xb, &doc); err != nil || len(doc.Suites) != 1 || len(doc.Suites[0].Cases) != len(reports.PreflightIDs) || doc.Failures != fails {
		t.Errorf("junit.xml: %v, %d failures (want %d)\n%s", err, doc.Failures, fails, xb)
	}
	return code, &p, out
}

func wantStatus(t *testing.T, p *preflightJSON, id, status string, evidence ...string) string {
	t.Helper()
	got, ev, _ := p.check(t, id)
	if got != status {
		t.Errorf("check %s: %s, want %s\n%s", id, got, status, ev)
	}
	for _, e := range evidence {
		if !strings.Contains(ev, e) {
			t.Errorf("check %s: the evidence does not say %q:\n%s", id, e, ev)
		}
	}
	return ev
}

// hashAt is the test's own HashKV of the member at url, at rev: the witness of the backup check.
func hashAt(t *testing.T, tc *tlsCluster, user, pass string, rev int64) uint32 {
	t.Helper()
	cli := tc.client(t, user, pass)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.HashKV(ctx, tc.endpoints[0], rev)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Hash
}

var linkRe = regexp.MustCompile(`https?://[\w.-]+\.[a-z]{2,}`)

var hashRe = regexp.MustCompile(`KV hash ([0-9a-f]{8}) at revision (\d+) equal`)

// checkHash finds the hash and revision the backup check printed and recomputes the hash.
func checkHash(t *testing.T, tc *tlsCluster, user, pass, evidence string) {
	t.Helper()
	m := hashRe.FindStringSubmatch(evidence)
	if m == nil {
		t.Errorf("the backup evidence names no hash:\n%s", evidence)
		return
	}
	rev, _ := strconv.ParseInt(m[2], 10, 64)
	if got := fmt.Sprintf("%08x", hashAt(t, tc, user, pass, rev)); got != m[1] {
		t.Errorf("backup: preflight says hash %s at revision %d, the cluster's own HashKV says %s", m[1], rev, got)
	}
}

func TestPreflightSecureCluster(t *testing.T) {
	pass := "s3cret-" + fmt.Sprint(time.Now().UnixNano())
	tc := startTLSCluster(t, pass)
	dir := t.TempDir()
	svc := filepath.Join(dir, "service.yaml")
	if err := os.WriteFile(svc, []byte("name: service\nworkload:\n  duration: 10s\n  timeout: 100ms\n  retry: {attempts: 1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	creds := []string{"--endpoints", strings.Join(tc.endpoints, ","), "--cacert", tc.pki.CA, "--cert", tc.pki.Client[0], "--key", tc.pki.Client[1]}
	env := []string{"ETCD_PASSWORD=" + tc.rootPass, "CHAOS_PASSWORD=" + pass}

	waitPeerRTT(t, tc)

	t.Run("as root", func(t *testing.T) {
		_, p, out := runPreflight(t, env, append(creds, "--user", "root", "--password-env", "ETCD_PASSWORD",
			"--heartbeat-interval", "50", "--election-timeout", "250ms", "--scenario", svc)...)
		if p == nil {
			t.Fatal("no JSON")
		}
		if !strings.Contains(out, "PASS    transport") {
			t.Errorf("the output does not print the transport check's line")
		}
		wantStatus(t, p, "transport", "pass", "plaintext refused", "a TLS client without a certificate was refused",
			"a certificate from another CA was refused", "every peer URL is https", "alpha's server certificate etcd.test expires on",
			"in 89 days", "verifies against the given CA")
		wantStatus(t, p, "auth", "pass", "auth is enabled", `CN "etcd-chaos-client" etcd takes as a user name): its read was refused`, "its write was refused",
			"user root: roles root")
		wantStatus(t, p, "topology", "warn", "3 voting members (alpha, bravo, charlie)", "127.0.0.1 holds alpha, bravo, charlie")
		wantStatus(t, p, "versions", "pass", "alpha "+version.Version, "client library "+version.Version)
		wantStatus(t, p, "monitoring", "pass", "alpha: https://", "/health")
		wantStatus(t, p, "space", "pass", "no active alarms")
		wantStatus(t, p, "client", "warn", "request timeout 100ms, 1 attempt,", "shorter than a plausible failover (550ms)")
		// Pass, or warn when the start-up probes are too few for their p99 to judge; never fail here.
		if st, ev, _ := p.check(t, "timeouts"); st == "fail" || !strings.Contains(ev, "heartbeat 50ms and election timeout 250ms (given)") ||
			!strings.Contains(ev, "client round trip") || (st == "warn" && !strings.Contains(ev, "too few to fail on")) {
			t.Errorf("timeouts: %s\n%s", st, ev)
		}
		checkHash(t, tc, "root", tc.rootPass, wantStatus(t, p, "backup", "pass", "saved a", "restored by etcd's own restore code", "a scratch member started"))
		if st, _, _ := p.check(t, "disk"); st == "skipped" {
			t.Errorf("disk: skipped on members that have written")
		}
		// Nothing of the scratch member is left behind.
		if left, _ := filepath.Glob(filepath.Join(os.TempDir(), "etcd-chaos-preflight-*")); len(left) > 0 {
			t.Errorf("scratch folders left behind: %v", left)
		}
	})

	t.Run("as a user without the root role", func(t *testing.T) {
		_, p, _ := runPreflight(t, env, append(creds, "--user", "chaos", "--password-env", "CHAOS_PASSWORD")...)
		if p == nil {
			t.Fatal("no JSON")
		}
		wantStatus(t, p, "auth", "pass", "user chaos: roles chaos (readwrite chaos/*)")
		wantStatus(t, p, "backup", "skipped", "root role")
		wantStatus(t, p, "client", "skipped", "no --scenario")
		wantStatus(t, p, "timeouts", "warn", "assumed: etcd's defaults")
	})

	t.Run("a client certificate about to expire", func(t *testing.T) {
		tc.pki.validity = 10 * 24 * time.Hour
		soon := tc.pki.issue(t, "soon", "etcd-chaos-soon", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
		_, p, _ := runPreflight(t, env, "--endpoints", strings.Join(tc.endpoints, ","), "--cacert", tc.pki.CA, "--cert", soon[0], "--key", soon[1],
			"--user", "chaos", "--password-env", "CHAOS_PASSWORD")
		if p == nil {
			t.Fatal("no JSON")
		}
		wantStatus(t, p, "transport", "warn", "the given client certificate etcd-chaos-soon expires on", "in 9 days (under 30)")
	})

	t.Run("without a client certificate", func(t *testing.T) {
		code, p, out := runPreflight(t, env, "--endpoints", strings.Join(tc.endpoints, ","), "--cacert", tc.pki.CA)
		if code != exitInfra || p != nil || !strings.Contains(out, "could not be reached") || !strings.Contains(out, "certificate") {
			t.Errorf("a cluster that refuses the tool's TLS: exit %d, want 3 naming the certificate", code)
		}
	})

	t.Run("a CA that did not sign the servers", func(t *testing.T) {
		other := newPKI(t, t.TempDir(), "other")
		code, _, out := runPreflight(t, env, "--endpoints", tc.endpoints[0], "--cacert", other.CA, "--cert", tc.pki.Client[0], "--key", tc.pki.Client[1])
		if code != exitInfra || !strings.Contains(out, "TLS failed") {
			t.Errorf("exit %d, want 3 with the TLS reason", code)
		}
	})
}

// waitPeerRTT waits until etcd has measured a peer round trip (its prober runs every few seconds),
// so the timeouts check judges a measured RTT.
func waitPeerRTT(t *testing.T, tc *tlsCluster) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc.pki.rootCli}, Timeout: 5 * time.Second}
	re := regexp.MustCompile(`(?m)^etcd_network_peer_round_trip_time_seconds_count\{[^}]*\} ([1-9]\d*)$`)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := hc.Get(tc.endpoints[0] + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if re.Match(b) {
				return
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatal("no peer round trip measured within 30s")
}

func TestPreflightPlainClusterWithAFullQuota(t *testing.T) {
	const quota = 8 << 20
	tc := startCluster(t, clusterSpec{plain: true, noAuth: true, extra: []string{fmt.Sprintf("--quota-backend-bytes=%d", quota)}})
	cli := tc.client(t, "", "")
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Fill past 80% of the quota, short of it (at the quota etcd raises NOSPACE).
	value := strings.Repeat("v", 8<<10)
	var dbSize int64
	for i := 0; i < 5000 && float64(dbSize) < 0.82*quota; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("fill/%05d", i), value); err != nil {
			t.Fatalf("filling: %v", err)
		}
		st, err := cli.Status(ctx, tc.endpoints[0])
		if err != nil {
			t.Fatal(err)
		}
		dbSize = st.DbSize
	}
	if float64(dbSize) < 0.8*quota || dbSize >= quota {
		t.Fatalf("filled the db to %d bytes of %d", dbSize, quota)
	}
	eps := strings.Join(tc.endpoints, ",")

	code, p, _ := runPreflight(t, nil, "--endpoints", eps)
	if code != exitFail || p == nil {
		t.Fatalf("exit %d, want 1", code)
	}
	wantStatus(t, p, "transport", "fail", "alpha: a plaintext client got /health", "plaintext")
	if _, _, r := p.check(t, "transport"); !strings.Contains(r, "TLS") {
		t.Errorf("transport remedy %q", r)
	}
	wantStatus(t, p, "auth", "fail", "auth is disabled", "an unauthenticated client read", "an unauthenticated client: its write was accepted")
	ev := wantStatus(t, p, "space", "warn", "at or past 80%", "of its 8.0 MiB quota")
	// The percentage against the test's own reading of the db size (it may have grown a little since).
	m := regexp.MustCompile(`alpha: db ([\d.]+) MiB of its 8.0 MiB quota \((\d+)%\)`).FindStringSubmatch(ev)
	if m == nil {
		t.Fatalf("space evidence names no size for alpha:\n%s", ev)
	}
	pct, _ := strconv.Atoi(m[2])
	st, err := cli.Status(ctx, tc.endpoints[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := int(100 * float64(st.DbSize) / quota); pct < want-3 || pct > want+3 {
		t.Errorf("space: preflight says %d%%, the member's Status says %d%%", pct, want)
	}
	checkHash(t, tc, "", "", wantStatus(t, p, "backup", "pass"))

	// A backup file verified, and the same file corrupted on purpose.
	good := filepath.Join(t.TempDir(), "backup.db")
	if _, err := clientsnap.SaveWithVersion(ctx, zap.NewNop(), clientv3.Config{Endpoints: tc.endpoints[:1], Logger: zap.NewNop()}, good); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 3; i < len(b)/3+64; i++ {
		b[i] ^= 0xff
	}
	bad := filepath.Join(t.TempDir(), "corrupt.db")
	if err := os.WriteFile(bad, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, p, _ = runPreflight(t, nil, "--endpoints", eps, "--snapshot", good)
	checkHash(t, tc, "", "", wantStatus(t, p, "backup", "pass", "the backup "+good))
	_, p, _ = runPreflight(t, nil, "--endpoints", eps, "--snapshot", bad)
	wantStatus(t, p, "backup", "fail", "etcd's restore refused", "sha256")

	// Interrupted or killed while its scratch member runs: Ctrl-C removes the scratch folder at
	// once; after SIGKILL (the member ran in the process, so it died with it) the next preflight does.
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			scratch := t.TempDir()
			cmd := exec.Command(chaosBin, "preflight", "--endpoints", eps, "--scratch-dir", scratch)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(20 * time.Second)
			for {
				// The restore has written the member's data: the scratch member is starting or running.
				if m, _ := filepath.Glob(filepath.Join(scratch, "etcd-chaos-preflight-*", "member", "member")); len(m) > 0 {
					break
				}
				if time.Now().After(deadline) {
					_ = cmd.Process.Kill()
					_ = cmd.Wait()
					t.Fatalf("the backup check never restored into %s:\n%s", scratch, out.String())
				}
				time.Sleep(5 * time.Millisecond)
			}
			_ = cmd.Process.Signal(sig)
			err := cmd.Wait()
			left, _ := filepath.Glob(filepath.Join(scratch, "*"))
			t.Logf("after %s: %v, left %v\n%s", sig, err, left, out.String())
			if sig == syscall.SIGINT {
				if code := cmd.ProcessState.ExitCode(); code != exitInfra || !strings.Contains(out.String(), "interrupted") {
					t.Errorf("interrupted preflight: exit %d, want 3 saying interrupted", code)
				}
				if len(left) > 0 {
					t.Errorf("Ctrl-C left %v", left)
				}
				return
			}
			if len(left) != 1 {
				t.Fatalf("after SIGKILL, want the one scratch folder left for the next run to remove, found %v", left)
			}
			code, _, _ := chaosEnv(t, nil, "preflight", "--endpoints", eps, "--scratch-dir", scratch)
			if left, _ := filepath.Glob(filepath.Join(scratch, "*")); code != exitFail || len(left) > 0 {
				t.Errorf("the next preflight: exit %d, left %v", code, left)
			}
		})
	}
}

func TestPreflightEvenCluster(t *testing.T) {
	tc := startCluster(t, clusterSpec{names: []string{"m1", "m2", "m3", "m4"}, plain: true, noAuth: true})
	code, p, _ := runPreflight(t, nil, "--endpoints", tc.endpoints[0]) // the others come from the member list
	if code != exitFail || p == nil {
		t.Fatalf("exit %d, want 1", code)
	}
	wantStatus(t, p, "topology", "fail", "4 voting members (m1, m2, m3, m4)", "even count")
	if len(p.Endpoints) != 4 {
		t.Errorf("reached %v, want the 4 members through the member list", p.Endpoints)
	}
}

func TestPreflightBadInputAndUnreachable(t *testing.T) {
	cases := []struct {
		args []string
		code int
		say  string
	}{
		{nil, exitBadInput, "--endpoints"},
		{[]string{"--endpoints", "http://127.0.0.1:1", "--user", "root"}, exitBadInput, "--password-env"},
		{[]string{"--endpoints", "http://127.0.0.1:1", "--user", "root", "--password-env", "PREFLIGHT_UNSET_VAR"}, exitBadInput, "PREFLIGHT_UNSET_VAR is not set"},
		{[]string{"--endpoints", "http://127.0.0.1:1", "--heartbeat-interval", "fast"}, exitBadInput, "--heartbeat-interval"},
		{[]string{"--endpoints", "http://127.0.0.1:1", "--cacert", "/nonexistent/ca.pem"}, exitBadInput, "--cacert"},
		{[]string{"--endpoints", "http://127.0.0.1:1", "--snapshot", "/nonexistent/backup.db"}, exitBadInput, "--snapshot"},
		{[]string{"--endpoints", fmt.Sprintf("http://127.0.0.1:%d", freePort(t))}, exitInfra, "could not be reached"},
	}
	for _, c := range cases {
		code, _, stderr := chaosEnv(t, nil, append([]string{"preflight"}, c.args...)...)
		if code != c.code || !strings.Contains(stderr, c.say) {
			t.Errorf("preflight %v: exit %d, want %d saying %q:\n%s", c.args, code, c.code, c.say, stderr)
		}
	}
}
