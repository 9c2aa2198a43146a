package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etcd-chaos/etcd-chaos/agent"
	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/internal/proc"
	"github.com/etcd-chaos/etcd-chaos/internal/testbin"
)

// agentHosts are nodes as a team's staging cluster has them: each its own network namespace (its
// own interface, address and routes) running one etcd member and one chaos agent, joined by a
// bridge in a hub namespace. The controller runs in the hub (nsenter), which reaches only the
// client URLs and the agents, as a controller reaches a staging cluster.
type agentHosts struct {
	nw    *faults.Netns
	dir   string
	hub   string // the hub namespace's path
	pki   *testPKI
	token string
	hosts []*agentHost
}

type agentHost struct {
	name, ip, ns                    string
	dataDir, pidFile, stateDir, log string
	mounted                         bool
	url                             string
	etcdArgs, agentArgs             []string
	agent                           *exec.Cmd
	agentDone                       chan struct{}
}

// hostSpec is how one host differs from the others (more etcd flags, its data dir's mode).
type hostSpec struct {
	extra   []string
	dirMode os.FileMode
}

// startAgentHosts starts n hosts, each with etcd (heartbeat 100ms, election 1s) and an agent
// (mutual TLS and a token), and removes everything at the test's end: agents stop (healing what
// they hold), etcd processes end by PID, namespaces and data dirs go.
func startAgentHosts(t *testing.T, n int, specs map[string]hostSpec) *agentHosts {
	t.Helper()
	testbin.NeedRoot(t)
	id := fmt.Sprintf("cx%04d", rand.IntN(10000))
	subnet := fmt.Sprintf("198.19.%d.0/24", 1+rand.IntN(250))
	var names []string
	for i := 1; i <= n; i++ {
		names = append(names, fmt.Sprintf("member-%d", i))
	}
	nw, err := faults.NewNetns(id, subnet, names)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "chaos-agents-")
	if err != nil {
		t.Fatal(err)
	}
	ah := &agentHosts{nw: nw, dir: dir, hub: filepath.Join(faults.NetnsDir, nw.Namespaces()[0]), token: fmt.Sprintf("tok-%x-%x", rand.Uint64(), rand.Uint64())}
	t.Cleanup(func() { ah.close(t) })
	ah.pki = newPKI(t, dir, "agents")
	var ips []string
	var initial []string
	for _, name := range names {
		ips = append(ips, nw.IP(name))
		initial = append(initial, fmt.Sprintf("%s=http://%s:2380", name, nw.IP(name)))
	}
	server := ah.pki.issueFor(t, "agent-server", "chaos-agent", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, ips...)
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(ah.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		h := &agentHost{name: name, ip: nw.IP(name), ns: nw.NsPath(name), url: "https://" + nw.IP(name) + ":7070"}
		base := filepath.Join(dir, name)
		h.dataDir, h.pidFile, h.stateDir, h.log = filepath.Join(base, "data"), filepath.Join(base, "etcd.pid"), filepath.Join(base, "agent-state"), filepath.Join(base, "etcd.log")
		mode := os.FileMode(0o700)
		if s, ok := specs[name]; ok && s.dirMode != 0 {
			mode = s.dirMode
		}
		if err := os.MkdirAll(h.dataDir, 0o700); err != nil {
			t.Fatal(err)
		}
		// Each host's data dir is a filesystem of its own (a tmpfs), as on a node: disk-full fills it alone.
		if err := unix.Mount("tmpfs", h.dataDir, "tmpfs", 0, fmt.Sprintf("size=512m,mode=%o", mode)); err != nil {
			t.Fatal(err)
		}
		h.mounted = true
		h.etcdArgs = []string{"--name", name, "--data-dir", h.dataDir,
			"--listen-client-urls", "http://" + h.ip + ":2379", "--advertise-client-urls", "http://" + h.ip + ":2379",
			"--listen-peer-urls", "http://" + h.ip + ":2380", "--initial-advertise-peer-urls", "http://" + h.ip + ":2380",
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new", "--initial-cluster-token", id,
			"--heartbeat-interval", "100", "--election-timeout", "1000"}
		h.etcdArgs = append(h.etcdArgs, specs[name].extra...)
		ah.hosts = append(ah.hosts, h)
		ah.startEtcd(t, h)
		start := fmt.Sprintf("exec %s node -- %s >>%s 2>&1", chaosBin, strings.Join(h.etcdArgs, " "), h.log)
		h.agentArgs = []string{"agent", "--listen", h.ip + ":7070", "--etcd-pid-file", h.pidFile, "--etcd-start", start,
			"--data-dir", h.dataDir, "--tls-cert", server[0], "--tls-key", server[1], "--client-ca", ah.pki.CA,
			"--token-file", filepath.Join(dir, "token"), "--state-dir", h.stateDir}
		ah.startAgent(t, h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, h := range ah.hosts {
		cl := ah.client(t, h, true, true)
		for {
			if _, err := cl.State(ctx); err == nil {
				break
			} else if ctx.Err() != nil {
				t.Fatalf("%s's agent does not answer: %v\n%s", h.name, err, readFile(h.stateDir+".log"))
			}
			time.Sleep(50 * time.Millisecond)
		}
		cl.Close()
	}
	return ah
}

// startEtcd starts a host's member in its namespace; its PID goes to the pid file, as an init
// system's would.
func (ah *agentHosts) startEtcd(t *testing.T, h *agentHost) {
	t.Helper()
	logf, err := os.OpenFile(h.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("nsenter", append([]string{"--net=" + h.ns, "--", chaosBin, "node", "--"}, h.etcdArgs...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait() }()
	if err := os.WriteFile(h.pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startAgent starts a host's agent in its namespace (its log beside its state dir).
func (ah *agentHosts) startAgent(t *testing.T, h *agentHost) {
	t.Helper()
	logf, err := os.OpenFile(h.stateDir+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("nsenter", append([]string{"--net=" + h.ns, "--", chaosBin}, h.agentArgs...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h.agent, h.agentDone = cmd, make(chan struct{})
	done := h.agentDone
	go func() { _ = cmd.Wait(); close(done) }()
}

// waitAgent waits for a host's agent to answer again (after a restart).
func (ah *agentHosts) waitAgent(t *testing.T, h *agentHost) {
	t.Helper()
	cl := ah.client(t, h, true, true)
	defer cl.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cl.State(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's agent does not answer: %v\n%s", h.name, err, readFile(h.stateDir+".log"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// client reaches a host's agent from the hub, with the controller's certificate and the token
// when asked.
func (ah *agentHosts) client(t *testing.T, h *agentHost, cert, token bool) *agent.Client {
	t.Helper()
	var pair [2]string
	if cert {
		pair = ah.pki.Client
	}
	return ah.clientWith(t, h, pair, token)
}

// clientWith reaches a host's agent with the given certificate (none: empty paths).
func (ah *agentHosts) clientWith(t *testing.T, h *agentHost, certKey [2]string, token bool) *agent.Client {
	t.Helper()
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(ah.pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certKey[0] != "" {
		pair, err := tls.LoadX509KeyPair(certKey[0], certKey[1])
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	tok := ""
	if token {
		tok = ah.token
	}
	cl, err := agent.NewClient(h.url, cfg, tok)
	if err != nil {
		t.Fatal(err)
	}
	cl.SetDial(ah.nw.Dial)
	return cl
}

// etcdPID is the host's etcd PID as its pid file says.
func (h *agentHost) etcdPID() int {
	b, _ := os.ReadFile(h.pidFile)
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// endpoints and agents are the scenario's cluster.endpoints and cluster.agents.
func (ah *agentHosts) endpoints() string {
	var out []string
	for _, h := range ah.hosts {
		out = append(out, "http://"+h.ip+":2379")
	}
	return strings.Join(out, ", ")
}

func (ah *agentHosts) agents() string {
	var out []string
	for _, h := range ah.hosts {
		out = append(out, h.name+": "+h.url)
	}
	return "{" + strings.Join(out, ", ") + "}"
}

// scenario writes a remote scenario through the agents into dir.
func (ah *agentHosts) scenario(t *testing.T, dir, ttl, body string) string {
	t.Helper()
	src := fmt.Sprintf(`name: agents
cluster:
  provider: remote
  endpoints: [%s]
  agents: %s
  agent-tls: {ca: %s, cert: %s, key: %s, token-file: %s}
  agent-ttl: %s
%s`, ah.endpoints(), ah.agents(), ah.pki.CA, ah.pki.Client[0], ah.pki.Client[1], filepath.Join(ah.dir, "token"), ttl, body)
	path := filepath.Join(dir, "scenario.yaml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// chaosInHub runs the binary in the hub namespace, as a controller beside the cluster.
func (ah *agentHosts) chaosInHub(args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + ah.hub, "--", chaosBin}, args...)...)
}

func (ah *agentHosts) close(t *testing.T) {
	for _, h := range ah.hosts {
		if h.agent != nil && h.agent.Process != nil {
			_ = h.agent.Process.Signal(syscall.SIGTERM) // the agent heals what it holds as it stops
			select {
			case <-h.agentDone:
			case <-time.After(10 * time.Second):
				_ = h.agent.Process.Kill()
				<-h.agentDone
			}
		}
	}
	for _, h := range ah.hosts {
		pid := h.etcdPID()
		if pid > 0 && strings.Contains(proc.Cmdline(pid), h.dataDir) {
			_ = syscall.Kill(pid, syscall.SIGCONT)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			for i := 0; i < 500 && proc.Alive(pid); i++ {
				if st, _ := proc.State(pid); st == faults.Exited {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	for _, h := range ah.hosts {
		if h.mounted {
			if err := unix.Unmount(h.dataDir, unix.MNT_DETACH); err != nil {
				t.Errorf("unmounting %s: %v", h.dataDir, err)
			}
		}
	}
	if err := ah.nw.Close(); err != nil {
		t.Errorf("removing the hosts' namespaces: %v", err)
	}
	if t.Failed() {
		for _, h := range ah.hosts {
			t.Logf("%s agent log:\n%s", h.name, tail(readFile(h.stateDir+".log"), 3000))
			t.Logf("%s etcd log:\n%s", h.name, tail(warnLines(readFile(h.log)), 6000))
		}
	}
	_ = os.RemoveAll(ah.dir)
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func warnLines(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.Contains(l, `"level":"info"`) || strings.Contains(l, "signal") || strings.Contains(l, "remov") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
