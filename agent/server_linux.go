package agent

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/internal/proc"
)

// Config is how chaos agent was started.
type Config struct {
	Listen string
	// One of PIDFile, Unit, Container names the etcd the agent acts on; StartCommand starts it
	// again (pid file only: systemd and the container runtime start their own).
	PIDFile, Unit, Container string
	StartCommand             string
	DataDir                  string
	// TLS: the server's certificate, and the CA that signs the controllers' client certificates
	// (mutual TLS). TokenFile holds a bearer token every request must carry (over TLS, or over
	// plaintext only with InsecureLoopback on 127.0.0.1).
	CertFile, KeyFile, ClientCA, TokenFile string
	InsecureLoopback                       bool
	// StateDir holds the ledger of what the agent holds (healed at start) and etcd-start.log.
	StateDir string
	Log      *slog.Logger
}

// Check names what is wrong with the configuration (the flag, and what would be valid).
func (c Config) Check() error {
	var errs []string
	named := 0
	for _, s := range []string{c.PIDFile, c.Unit, c.Container} {
		if s != "" {
			named++
		}
	}
	if named != 1 {
		errs = append(errs, "name the etcd the agent acts on with exactly one of --etcd-pid-file, --etcd-systemd-unit, --etcd-container")
	}
	if c.StartCommand != "" && c.PIDFile == "" {
		errs = append(errs, "--etcd-start goes with --etcd-pid-file (systemd and the container runtime start etcd themselves)")
	}
	host, _, err := net.SplitHostPort(c.Listen)
	switch {
	case c.Listen == "":
		errs = append(errs, "--listen ADDR is required (such as 10.0.0.1:7070): the agent binds only the address given")
	case err != nil:
		errs = append(errs, fmt.Sprintf("--listen %q: want HOST:PORT", c.Listen))
	case host == "" || net.ParseIP(host) == nil || net.ParseIP(host).IsUnspecified():
		errs = append(errs, fmt.Sprintf("--listen %q: give one IP address to bind (not a name, not all interfaces)", c.Listen))
	}
	if c.InsecureLoopback {
		if host != "127.0.0.1" {
			errs = append(errs, "--insecure-listen-loopback serves plaintext on 127.0.0.1 only; --listen must be 127.0.0.1:PORT")
		}
		if c.TokenFile == "" {
			errs = append(errs, "--insecure-listen-loopback still authenticates every request: give --token-file")
		}
		if c.CertFile != "" || c.ClientCA != "" {
			errs = append(errs, "--insecure-listen-loopback is plaintext: leave out --tls-cert, --tls-key and --client-ca")
		}
	} else {
		if c.CertFile == "" || c.KeyFile == "" {
			errs = append(errs, "--tls-cert and --tls-key are required (plaintext is refused except --insecure-listen-loopback on 127.0.0.1)")
		}
		if c.ClientCA == "" && c.TokenFile == "" {
			errs = append(errs, "every request must be authenticated: give --client-ca (mutual TLS) or --token-file (a bearer token over TLS), or both")
		}
	}
	if c.StateDir == "" {
		errs = append(errs, "--state-dir is required: the agent keeps its ledger there and heals what it records when it starts")
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

// Server is a running agent.
type Server struct {
	cfg    Config
	log    *slog.Logger
	target etcdTarget
	token  []byte
	ledger string

	mu    sync.Mutex // guards holds and every step that changes them
	holds map[string]*Hold

	srv  *http.Server
	ln   net.Listener
	stop chan struct{}
	done chan struct{}
}

// New checks the configuration, heals what the ledger of a previous run holds, and binds.
func New(cfg Config) (*Server, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("--state-dir: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Log, ledger: filepath.Join(cfg.StateDir, "holds.json"), holds: map[string]*Hold{},
		stop: make(chan struct{}), done: make(chan struct{})}
	switch {
	case cfg.PIDFile != "":
		s.target = &pidTarget{file: cfg.PIDFile, startCmd: cfg.StartCommand, logPath: filepath.Join(cfg.StateDir, "etcd-start.log")}
	case cfg.Unit != "":
		s.target = &unitTarget{unit: cfg.Unit}
	default:
		s.target = &containerTarget{name: cfg.Container}
	}
	if cfg.TokenFile != "" {
		b, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		s.token = []byte(strings.TrimSpace(string(b)))
		if len(s.token) < 16 {
			return nil, errors.New("--token-file: the token is shorter than 16 characters; use a long random one")
		}
	}
	if err := s.healLedger(); err != nil {
		return nil, err
	}
	var tlsCfg *tls.Config
	if !cfg.InsecureLoopback {
		pair, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
		if cfg.ClientCA != "" {
			pem, err := os.ReadFile(cfg.ClientCA)
			if err != nil {
				return nil, fmt.Errorf("--client-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--client-ca: %s holds no PEM certificate", cfg.ClientCA)
			}
			tlsCfg.ClientCAs, tlsCfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("--listen %s: %w", cfg.Listen, err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	s.ln = ln
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/process", s.handleState)
	mux.HandleFunc("POST /v1/process", s.handleProc)
	mux.HandleFunc("POST /v1/net", s.handleNet)
	mux.HandleFunc("POST /v1/disk", s.handleDisk)
	mux.HandleFunc("POST /v1/renew", s.handleRenew)
	mux.HandleFunc("POST /v1/heal", s.handleHeal)
	mux.HandleFunc("GET /v1/holds", s.handleHolds)
	mux.HandleFunc("GET /v1/facts", s.handleFacts)
	s.srv = &http.Server{Handler: s.auth(mux), ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	return s, nil
}

// Addr is the address the agent listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until ctx ends, then heals every hold and returns: an agent that stops leaves
// nothing behind.
func (s *Server) Serve(ctx context.Context) error {
	go s.watch()
	s.log.Info("chaos agent listening", "addr", s.Addr(), "etcd", s.target.describe(), "tls", !s.cfg.InsecureLoopback,
		"mutual_tls", s.cfg.ClientCA != "", "token", s.token != nil)
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(sctx)
	close(s.stop)
	<-s.done
	res := s.healAll("", "agent-exit")
	if len(res.Errors) > 0 {
		return errors.Join(err, fmt.Errorf("healing at exit: %s", strings.Join(res.Errors, "; ")))
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// auth refuses every request without the bearer token, when one is configured (mutual TLS has
// refused a client without a valid certificate in the handshake already).
func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.token != nil {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), s.token) != 1 {
				s.log.Warn("request refused: no valid bearer token", "from", r.RemoteAddr, "path", r.URL.Path)
				writeErr(w, http.StatusUnauthorized, errors.New("no valid bearer token"))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(ErrorBody{Error: err.Error()})
}

func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	return nil
}

// errRefused marks a request the agent will not carry out (4xx), as against one that failed.
type errRefused struct{ error }

func status(err error) int {
	var r errRefused
	if errors.As(err, &r) {
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

func checkLease(l Lease) error {
	if l.TTLMs <= 0 {
		return errRefused{errors.New("lease.ttl_ms must be positive: every fault has a TTL the controller renews")}
	}
	return nil
}

// record adds a hold and syncs the ledger before the step acts: an agent killed at any instant
// knows at start what it may have left.
func (s *Server) record(h *Hold) error {
	now := time.Now()
	h.Since, h.Renewed = now, now
	s.holds[h.Kind] = h
	return s.saveLedger()
}

func (s *Server) release(kind string) error {
	delete(s.holds, kind)
	return s.saveLedger()
}

func (s *Server) saveLedger() error {
	list := s.holdList()
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileSync(s.ledger, b, 0o600); err != nil {
		return fmt.Errorf("writing the agent's ledger: %w", err)
	}
	return nil
}

func (s *Server) holdList() []Hold {
	out := []Hold{}
	for _, h := range s.holds {
		out = append(out, *h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out
}

// healLedger heals what a previous run of the agent recorded and did not heal.
func (s *Server) healLedger() error {
	b, err := os.ReadFile(s.ledger)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the agent's ledger: %w", err)
	}
	var list []Hold
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("%s: %w (move it aside once the node is checked by hand)", s.ledger, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range list {
		h := list[i]
		s.holds[h.Kind] = &h
	}
	var errs []string
	for _, h := range list {
		if err := s.healHold(context.Background(), &h); err != nil {
			errs = append(errs, fmt.Sprintf("%s (%s): %v", h.Kind, h.What, err))
			continue
		}
		s.log.Warn("healed at start what the agent's ledger held", "kind", h.Kind, "what", h.What, "owner", h.Lease.Owner, "since", h.Since)
		delete(s.holds, h.Kind)
	}
	if err := s.saveLedger(); err != nil {
		return err
	}
	if len(errs) > 0 {
		return fmt.Errorf("healing what the ledger held: %s", strings.Join(errs, "; "))
	}
	return nil
}

// watch is the dead man's switch: a hold whose TTL lapsed without renewal, or whose scheduled end
// passed, is healed by the agent itself.
func (s *Server) watch() {
	defer close(s.done)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		now := time.Now()
		for _, kind := range []string{KindProcess, KindNet, KindDisk} {
			h := s.holds[kind]
			if h == nil || now.Before(h.Deadline()) {
				continue
			}
			why := "ttl"
			if !h.Lease.Until.IsZero() && !now.Before(h.Lease.Until) {
				why = "scheduled end"
			}
			err := s.healHold(context.Background(), h)
			if err != nil {
				s.log.Error("heal failed; retrying", "kind", kind, "what", h.What, "by", why, "error", err)
				h.Renewed = now.Add(-time.Duration(h.Lease.TTLMs)*time.Millisecond + time.Second) // retry in 1s
				continue
			}
			s.log.Warn("healed by the agent", "kind", kind, "what", h.What, "by", why, "owner", h.Lease.Owner,
				"renewed_ago", now.Sub(h.Renewed).Round(time.Millisecond), "late_ms", now.Sub(h.Deadline()).Milliseconds())
			_ = s.release(kind)
		}
		s.mu.Unlock()
	}
}

// healHold undoes one hold and proves it healed.
func (s *Server) healHold(ctx context.Context, h *Hold) error {
	switch h.Kind {
	case KindProcess:
		return s.healProcess(ctx, h)
	case KindNet:
		return healNet(h)
	case KindDisk:
		_, err := s.healDisk(ctx, h)
		return err
	}
	return fmt.Errorf("unknown hold kind %q", h.Kind)
}

func (s *Server) healProcess(ctx context.Context, h *Hold) error {
	switch h.Op {
	case OpPause:
		pid, st, err := s.target.current(ctx)
		if err != nil {
			return err
		}
		if _, ok := s.target.(*pidTarget); ok && (pid != h.PID || proc.StartTime(pid) != h.PIDStart) {
			return nil // the paused process is gone: nothing of ours is left
		}
		if st == faults.Stopped {
			if err := s.target.resume(ctx); err != nil {
				return err
			}
		}
		_, _, err = waitFor(ctx, s.target, time.Second, func(_ int, st faults.ProcState) bool { return st != faults.Stopped })
		return err
	case OpKill, OpStop:
		if _, st, err := s.target.current(ctx); err == nil && st == faults.Running {
			return nil
		}
		if err := s.target.start(ctx); err != nil {
			return err
		}
		_, _, err := waitFor(ctx, s.target, 5*time.Second, func(pid int, st faults.ProcState) bool { return pid != 0 && st == faults.Running })
		return err
	}
	return fmt.Errorf("unknown process op %q", h.Op)
}

// healAll heals every hold of owner (all when empty).
func (s *Server) healAll(owner, by string) HealResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	res := HealResult{Healed: []Hold{}}
	for _, kind := range []string{KindProcess, KindNet, KindDisk} {
		h := s.holds[kind]
		if h == nil || (owner != "" && h.Lease.Owner != owner) {
			continue
		}
		if err := s.healHold(context.Background(), h); err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("%s (%s): %v", kind, h.What, err))
			continue
		}
		s.log.Warn("healed", "kind", kind, "what", h.What, "by", by, "owner", h.Lease.Owner)
		res.Healed = append(res.Healed, *h)
		if err := s.release(kind); err != nil {
			res.Errors = append(res.Errors, err.Error())
		}
	}
	res.Holds, res.At = s.holdList(), time.Now()
	return res
}

func (s *Server) handleHeal(w http.ResponseWriter, r *http.Request) {
	var req HealRequest
	if err := readJSON(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	res := s.healAll(req.Owner, "heal request")
	if len(res.Errors) > 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_ = json.NewEncoder(w).Encode(res)
		return
	}
	writeJSON(w, res)
}

func (s *Server) handleHolds(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	writeJSON(w, s.holdList())
}

func (s *Server) handleRenew(w http.ResponseWriter, r *http.Request) {
	var req RenewRequest
	if err := readJSON(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	if req.TTLMs <= 0 {
		writeErr(w, http.StatusBadRequest, errors.New("ttl_ms must be positive"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	n := 0
	for _, h := range s.holds {
		if req.Owner == "" || h.Lease.Owner == req.Owner {
			h.Renewed, h.Lease.TTLMs = now, req.TTLMs
			n++
		}
	}
	writeJSON(w, map[string]int{"renewed": n})
}

func (s *Server) handleState(w http.ResponseWriter, r *http.Request) {
	pid, st, err := s.target.current(r.Context())
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, ProcStatus{PID: pid, State: st, Managed: s.target.describe()})
}

func (s *Server) handleProc(w http.ResponseWriter, r *http.Request) {
	var req ProcRequest
	if err := readJSON(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	st, err := s.proc(r.Context(), req)
	if err != nil {
		s.log.Warn("process step failed", "op", req.Op, "error", err)
		writeErr(w, status(err), err)
		return
	}
	s.log.Info("process step", "op", req.Op, "pid", st.PID, "state", st.State, "owner", req.Lease.Owner)
	writeJSON(w, st)
}

// proc carries out one process step and proves it from the process's state.
func (s *Server) proc(ctx context.Context, req ProcRequest) (ProcStatus, error) {
	if err := s.target.names(req.PID, req.Unit, req.Container); err != nil {
		return ProcStatus{}, errRefused{err}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := func(pid int, st faults.ProcState, proof string) ProcStatus {
		return ProcStatus{PID: pid, State: st, Managed: s.target.describe(), Proof: proof}
	}
	switch req.Op {
	case OpKill, OpStop, OpPause:
		if err := checkLease(req.Lease); err != nil {
			return ProcStatus{}, err
		}
		if h := s.holds[KindProcess]; h != nil {
			return ProcStatus{}, errRefused{fmt.Errorf("etcd is already %s (since %s): heal that first", h.What, h.Since.Format(time.RFC3339Nano))}
		}
		pid, st, err := s.target.current(ctx)
		if err != nil {
			return ProcStatus{}, err
		}
		if pid == 0 || st != faults.Running {
			return ProcStatus{}, errRefused{fmt.Errorf("etcd (%s) is %s, not running", s.target.describe(), st)}
		}
		what := map[string]string{OpKill: "killed", OpStop: "stopped", OpPause: "paused"}[req.Op]
		if err := s.record(&Hold{Kind: KindProcess, Op: req.Op, What: what, Lease: req.Lease, PID: pid, PIDStart: proc.StartTime(pid)}); err != nil {
			return ProcStatus{}, err
		}
		var act error
		switch req.Op {
		case OpKill:
			act = s.target.kill(ctx, syscall.SIGKILL)
		case OpStop:
			act = s.target.kill(ctx, syscall.SIGTERM)
		case OpPause:
			act = s.target.pause(ctx)
		}
		if act != nil {
			_ = s.release(KindProcess)
			return ProcStatus{}, act
		}
		if req.Op == OpStop {
			return out(pid, st, "SIGTERM sent"), nil // etcd's graceful stop takes its time: the controller waits
		}
		if req.Op == OpKill {
			p, st, err := waitFor(ctx, s.target, 5*time.Second, func(_ int, st faults.ProcState) bool { return st == faults.Exited })
			if err != nil {
				return ProcStatus{}, err
			}
			return out(p, st, fmt.Sprintf("pid %d exited", pid)), nil
		}
		p, st, err := waitFor(ctx, s.target, time.Second, func(_ int, st faults.ProcState) bool { return st == faults.Stopped })
		if err != nil {
			return ProcStatus{}, err
		}
		return out(p, st, fmt.Sprintf("pid %d is stopped (state T)", pid)), nil
	case OpResume, OpStart:
		h := s.holds[KindProcess]
		if h != nil && (req.Op == OpResume) != (h.Op == OpPause) {
			return ProcStatus{}, errRefused{fmt.Errorf("etcd is %s: %s does not end that", h.What, req.Op)}
		}
		if h == nil {
			// Healed already (the dead man's switch, the scheduled end, a heal-all): say how it is.
			pid, st, err := s.target.current(ctx)
			if err != nil {
				return ProcStatus{}, err
			}
			if st != faults.Running {
				return ProcStatus{}, errRefused{fmt.Errorf("etcd (%s) is %s and the agent holds no fault on it", s.target.describe(), st)}
			}
			return out(pid, st, "already running"), nil
		}
		if err := s.healProcess(ctx, h); err != nil {
			return ProcStatus{}, err
		}
		if err := s.release(KindProcess); err != nil {
			return ProcStatus{}, err
		}
		pid, st, err := s.target.current(ctx)
		if err != nil {
			return ProcStatus{}, err
		}
		return out(pid, st, fmt.Sprintf("pid %d is %s", pid, st)), nil
	}
	return ProcStatus{}, errRefused{fmt.Errorf("unknown op %q; valid: kill, stop, pause, resume, start", req.Op)}
}

func (s *Server) handleNet(w http.ResponseWriter, r *http.Request) {
	var req NetRequest
	if err := readJSON(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	res, err := s.net(req)
	if err != nil {
		s.log.Warn("network step failed", "op", req.Op, "error", err)
		writeErr(w, status(err), err)
		return
	}
	s.log.Info("network step", "op", req.Op, "iface", res.Iface, "peers", res.Peers, "shape", req.Shape.String(), "owner", req.Lease.Owner)
	writeJSON(w, res)
}

// net cuts or shapes this node's traffic to peers, or heals it, and lists the kernel's state back.
func (s *Server) net(req NetRequest) (NetResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch req.Op {
	case "apply":
		if err := checkLease(req.Lease); err != nil {
			return NetResult{}, err
		}
		if req.Shape.IsZero() {
			return NetResult{}, errRefused{errors.New("shape changes nothing")}
		}
		if h := s.holds[KindNet]; h != nil {
			return NetResult{}, errRefused{fmt.Errorf("the peer links already hold %s (since %s): heal that first", h.What, h.Since.Format(time.RFC3339Nano))}
		}
		if len(req.Peers) == 0 {
			return NetResult{}, errRefused{errors.New("no peers named")}
		}
		var ips []net.IP
		var addrs []string
		for _, p := range req.Peers {
			ip, err := resolve(p.Host)
			if err != nil {
				return NetResult{}, errRefused{fmt.Errorf("peer %s: %w", p.Name, err)}
			}
			ips, addrs = append(ips, ip), append(addrs, ip.String())
		}
		iface, err := faults.EgressLink(ips[0])
		if err != nil {
			return NetResult{}, err
		}
		for _, ip := range ips[1:] {
			if other, err := faults.EgressLink(ip); err != nil || other != iface {
				return NetResult{}, errRefused{fmt.Errorf("the peers are reached through different interfaces (%s, %s): one fault shapes one interface", iface, other)}
			}
		}
		hl, err := faults.NewHostLinks(iface)
		if err != nil {
			return NetResult{}, err
		}
		defer hl.Close()
		if !req.Shape.Blackhole {
			if kind, err := hl.Shaped(); err != nil || kind != "" {
				return NetResult{}, errRefused{fmt.Errorf("%s already has a root htb qdisc (1:) the agent did not put there; it will not replace it", iface)}
			}
		}
		shape := req.Shape
		what := fmt.Sprintf("%s to %s", shape, strings.Join(addrs, ", "))
		if err := s.record(&Hold{Kind: KindNet, What: what, Lease: req.Lease, Iface: iface, Peers: addrs, Shape: &shape}); err != nil {
			return NetResult{}, err
		}
		if err := hl.Apply(ips, shape); err != nil {
			_ = healNet(s.holds[KindNet])
			_ = s.release(KindNet)
			return NetResult{}, err
		}
		if err := hl.Verify(ips, shape); err != nil {
			return NetResult{}, err
		}
		return NetResult{Iface: iface, Peers: addrs, Proof: proofOf(shape, iface, addrs)}, nil
	case "heal":
		h := s.holds[KindNet]
		if h == nil {
			return NetResult{Proof: "nothing held on the peer links"}, nil
		}
		if err := healNet(h); err != nil {
			return NetResult{}, err
		}
		if err := s.release(KindNet); err != nil {
			return NetResult{}, err
		}
		return NetResult{Iface: h.Iface, Peers: h.Peers, Proof: "no blackhole route or qdisc of the agent's is left on " + h.Iface}, nil
	}
	return NetResult{}, errRefused{fmt.Errorf("unknown op %q; valid: apply, heal", req.Op)}
}

func proofOf(s faults.Shape, iface string, addrs []string) string {
	if s.Blackhole {
		return fmt.Sprintf("blackhole routes to %s listed", strings.Join(addrs, ", "))
	}
	return fmt.Sprintf("root htb qdisc on %s with %d u32 filters listed", iface, len(addrs))
}

func resolve(host string) (net.IP, error) {
	if ip := net.ParseIP(host); ip != nil {
		if ip.To4() == nil {
			return nil, fmt.Errorf("%s is not IPv4 (the agent's routes and filters are IPv4)", host)
		}
		return ip.To4(), nil
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return nil, err
	}
	for _, ip := range ips {
		if ip.To4() != nil {
			return ip.To4(), nil
		}
	}
	return nil, fmt.Errorf("%s has no IPv4 address", host)
}

// healNet removes the hold's routes and qdisc and proves it.
func healNet(h *Hold) error {
	hl, err := faults.NewHostLinks(h.Iface)
	if err != nil {
		return err
	}
	defer hl.Close()
	var ips []net.IP
	for _, a := range h.Peers {
		ips = append(ips, net.ParseIP(a))
	}
	shaped := h.Shape != nil && !h.Shape.Blackhole
	if err := hl.Heal(ips, shaped); err != nil {
		return err
	}
	return hl.VerifyHealed(ips, shaped)
}

func (s *Server) handleDisk(w http.ResponseWriter, r *http.Request) {
	var req DiskRequest
	if err := readJSON(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	res, err := s.disk(req)
	if err != nil {
		s.log.Warn("disk step failed", "op", req.Op, "error", err)
		writeErr(w, status(err), err)
		return
	}
	s.log.Info("disk step", "op", req.Op, "free_bytes", res.FreeBytes, "owner", req.Lease.Owner)
	writeJSON(w, res)
}

// fillName is the file the agent fills the data dir's filesystem with (in the data dir, so on its
// filesystem; etcd ignores a file it does not know there, with a warning).
const fillName = ".chaos-agent-fill"

func freeBytes(path string) (free, total int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * st.Bsize, int64(st.Blocks) * st.Bsize, nil
}

// disk fills the data dir's filesystem to req.FreeBytes free, or removes the fill.
func (s *Server) disk(req DiskRequest) (DiskResult, error) {
	if s.cfg.DataDir == "" {
		return DiskResult{}, errRefused{errors.New("the agent was started without --data-dir: it touches no disk")}
	}
	if req.Path != "" && filepath.Clean(req.Path) != filepath.Clean(s.cfg.DataDir) {
		return DiskResult{}, errRefused{fmt.Errorf("this agent's data dir is %s, not %s", s.cfg.DataDir, req.Path)}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch req.Op {
	case "fill":
		if err := checkLease(req.Lease); err != nil {
			return DiskResult{}, err
		}
		if h := s.holds[KindDisk]; h != nil {
			return DiskResult{}, errRefused{fmt.Errorf("the disk already holds %s: heal that first", h.What)}
		}
		if req.FreeBytes < 0 {
			return DiskResult{}, errRefused{errors.New("free_bytes must be 0 or more")}
		}
		file := filepath.Join(s.cfg.DataDir, fillName)
		pid, st, _ := s.target.current(context.Background())
		h := &Hold{Kind: KindDisk, What: fmt.Sprintf("disk filled to %d bytes free", req.FreeBytes), Lease: req.Lease, FillFile: file}
		if st == faults.Running {
			h.PID = pid // etcd ran when the disk filled: the heal starts it again if it exits meanwhile
		}
		if err := s.record(h); err != nil {
			return DiskResult{}, err
		}
		free, err := fill(file, req.FreeBytes)
		if err != nil {
			_, _ = s.healDisk(context.Background(), h)
			_ = s.release(KindDisk)
			return DiskResult{}, err
		}
		return DiskResult{FreeBytes: free, File: file, Proof: fmt.Sprintf("statfs: %d bytes free", free)}, nil
	case "heal":
		h := s.holds[KindDisk]
		if h == nil {
			free, _, _ := freeBytes(s.cfg.DataDir)
			return DiskResult{FreeBytes: free, Proof: "nothing held on the disk"}, nil
		}
		restarted, err := s.healDisk(context.Background(), h)
		if err != nil {
			return DiskResult{}, err
		}
		if err := s.release(KindDisk); err != nil {
			return DiskResult{}, err
		}
		free, _, _ := freeBytes(s.cfg.DataDir)
		proof := fmt.Sprintf("%s removed; statfs: %d bytes free", h.FillFile, free)
		if restarted {
			proof += "; etcd had exited on the full disk: started again"
		}
		return DiskResult{FreeBytes: free, Proof: proof, Restarted: restarted}, nil
	}
	return DiskResult{}, errRefused{fmt.Errorf("unknown op %q; valid: fill, heal", req.Op)}
}

// fill allocates file until the filesystem has want bytes free (or less: a filesystem allocates in
// blocks), and returns what statfs says is free then.
func fill(file string, want int64) (int64, error) {
	free, _, err := freeBytes(filepath.Dir(file))
	if err != nil {
		return 0, err
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if n := free - want; n > 0 {
		if err := unix.Fallocate(int(f.Fd()), 0, 0, n); err != nil {
			// A filesystem without fallocate: write zeros, a megabyte at a time.
			buf := make([]byte, 1<<20)
			for left := n; left > 0; {
				k := min(left, int64(len(buf)))
				if _, werr := f.Write(buf[:k]); werr != nil {
					if errors.Is(werr, syscall.ENOSPC) {
						break
					}
					return 0, fmt.Errorf("filling %s: %w", file, werr)
				}
				left -= k
			}
		}
	}
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.ENOSPC) {
		return 0, err
	}
	free, _, err = freeBytes(filepath.Dir(file))
	if err != nil {
		return 0, err
	}
	if free > want+1<<20 {
		return free, fmt.Errorf("the filesystem still has %d bytes free after the fill (want %d)", free, want)
	}
	return free, nil
}

// healDisk removes the fill and proves it gone; etcd, if it ran when the disk filled and has
// exited since (etcd stops on a write that finds no space), is started again.
func (s *Server) healDisk(ctx context.Context, h *Hold) (restarted bool, err error) {
	if err := os.Remove(h.FillFile); err != nil && !os.IsNotExist(err) {
		return false, err
	}
	if _, err := os.Stat(h.FillFile); !os.IsNotExist(err) {
		return false, fmt.Errorf("%s is still there", h.FillFile)
	}
	if h.PID == 0 {
		return false, nil
	}
	if _, st, err := s.target.current(ctx); err != nil || st != faults.Exited {
		return false, err
	}
	if err := s.target.start(ctx); err != nil {
		return false, fmt.Errorf("etcd exited on the full disk; starting it again: %w", err)
	}
	_, _, err = waitFor(ctx, s.target, 5*time.Second, func(pid int, st faults.ProcState) bool { return pid != 0 && st == faults.Running })
	return err == nil, err
}
