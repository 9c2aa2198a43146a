package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcd-chaos/etcd-chaos/cluster"
	"github.com/etcd-chaos/etcd-chaos/harness"
	"github.com/etcd-chaos/etcd-chaos/preflight"
	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// preflightCmd is the pre-launch checklist as a command: exit 0 every check passed (warnings
// allowed), 1 a check failed, 2 bad input, 3 the cluster could not be reached.
func preflightCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		endpoints                       []string
		cacert, cert, key, serverName   string
		user, passwordEnv, passwordFile string
		scenarioArg, jsonOut, junitOut  string
		heartbeat, election             string
		clientVersion, snapshot         string
		scratchDir                      string
		agents                          []string
		agentTLS                        scenarios.AgentTLS
	)
	c := &cobra.Command{
		Use:   "preflight --endpoints URLS",
		Short: "Run the pre-launch checklist against a live cluster: evidence and a verdict per check",
		Long: `Run the pre-launch checklist against a live cluster: topology, versions, transport security (from
the network side), auth, timeouts against the measured round trip, disk latency, space and alarms,
backup and restore (into a scratch member on this machine), client settings and monitoring. Each
check says pass, warn, fail or skipped (it could not tell), with the evidence it saw and a remedy.
Exit 0: no check failed (warnings allowed); 1: a check failed; 2: bad input; 3: unreachable.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var sc *scenarios.Scenario
			cl := scenarios.Cluster{}
			if scenarioArg != "" {
				s, err := load(scenarioArg, nil)
				if err != nil {
					return err
				}
				sc = s
				if cluster.CapabilitiesOf(s.Cluster.Provider).Shared {
					cl = s.Cluster // reached as the scenario would reach it, unless flags say otherwise
				}
			}
			abs := func(p string) string {
				if p == "" {
					return ""
				}
				a, err := filepath.Abs(p)
				if err != nil {
					return p
				}
				return a
			}
			fl := cmd.Flags()
			if fl.Changed("endpoints") {
				cl.Endpoints = nil
				for _, e := range endpoints {
					for _, part := range strings.Split(e, ",") {
						if part = strings.TrimSpace(part); part != "" {
							cl.Endpoints = append(cl.Endpoints, part)
						}
					}
				}
			}
			if len(cl.Endpoints) == 0 {
				return badInput(errors.New("--endpoints: name the cluster's client URLs (https://10.0.0.1:2379,https://10.0.0.2:2379,...), or --scenario a remote scenario"))
			}
			if fl.Changed("cacert") || fl.Changed("cert") || fl.Changed("key") || fl.Changed("server-name") {
				cl.TLS = scenarios.TLS{CA: abs(cacert), Cert: abs(cert), Key: abs(key), ServerName: serverName}
			}
			if fl.Changed("user") {
				cl.Auth = scenarios.Auth{User: user, PasswordEnv: passwordEnv, PasswordFile: abs(passwordFile)}
				if passwordEnv == "" && passwordFile == "" {
					return badInput(errors.New("--user: give its password with --password-env VAR or --password-file FILE (never on the command line)"))
				}
			} else if passwordEnv != "" || passwordFile != "" {
				return badInput(errors.New("--password-env/--password-file: name the user too (--user)"))
			}
			connSc := &scenarios.Scenario{Cluster: cl}
			if sc != nil {
				connSc.File = sc.File
			}
			conn, err := cluster.RemoteConn(connSc)
			if err != nil {
				if fl.Changed("cacert") || fl.Changed("cert") || fl.Changed("key") || fl.Changed("user") {
					err = flagNames(err)
				}
				return badInput(err)
			}
			// The two timeouts are judged as a pair: one given and the other etcd's default would
			// judge a pair the cluster does not run (and fail a correct --heartbeat-interval 300).
			if (heartbeat == "") != (election == "") {
				given, missing := "--heartbeat-interval", "--election-timeout"
				if heartbeat == "" {
					given, missing = missing, given
				}
				return badInput(fmt.Errorf("%s without %s: give both, as the cluster's members run them (etcd does not expose its own); preflight judges them as a pair", given, missing))
			}
			opts := preflight.Options{Endpoints: cl.Endpoints, Conn: conn, Scenario: sc, ClientVersion: clientVersion,
				Snapshot: snapshot, ScratchDir: scratchDir}
			if fl.Changed("agents") {
				cl.Agents = map[string]string{}
				for _, a := range agents {
					for _, part := range strings.Split(a, ",") {
						name, u, ok := strings.Cut(strings.TrimSpace(part), "=")
						if !ok || name == "" || u == "" {
							return badInput(fmt.Errorf("--agents %q: want MEMBER=URL,... (member-1=https://10.0.0.1:7070)", part))
						}
						cl.Agents[name] = u
					}
				}
			}
			if fl.Changed("agent-ca") || fl.Changed("agent-cert") || fl.Changed("agent-key") || fl.Changed("agent-token-file") {
				cl.AgentTLS = scenarios.AgentTLS{CA: abs(agentTLS.CA), Cert: abs(agentTLS.Cert), Key: abs(agentTLS.Key), TokenFile: abs(agentTLS.TokenFile)}
			}
			if len(cl.Agents) > 0 {
				if cl.AgentTLS.Cert == "" && cl.AgentTLS.TokenFile == "" {
					return badInput(errors.New("--agents: the agents authenticate every request: give --agent-cert/--agent-key or --agent-token-file (and --agent-ca)"))
				}
				asc := &scenarios.Scenario{Cluster: cl}
				if sc != nil && !fl.Changed("agent-ca") && !fl.Changed("agent-cert") && !fl.Changed("agent-key") && !fl.Changed("agent-token-file") {
					asc.File = sc.File
				}
				a, err := cluster.AgentsFor(asc, "")
				if err != nil {
					return badInput(err)
				}
				opts.Agents = a.Clients
			}
			for _, d := range []struct {
				flag, v string
				to      *time.Duration
			}{{"heartbeat-interval", heartbeat, &opts.Heartbeat}, {"election-timeout", election, &opts.Election}} {
				if d.v == "" {
					continue
				}
				ms, err := scenarios.EtcdMillis(d.v)
				if err != nil {
					return badInput(fmt.Errorf("--%s: %v", d.flag, err))
				}
				*d.to = time.Duration(ms) * time.Millisecond
			}
			if opts.Heartbeat > 0 && opts.Election > 0 && opts.Election < 5*opts.Heartbeat {
				// etcd refuses such a pair; preflight still reports it, as the timeouts check's failure.
				fmt.Fprintf(stderr, "chaos: --election-timeout %s is under 5x --heartbeat-interval %s: etcd would refuse it\n", opts.Election, opts.Heartbeat)
			}
			if snapshot != "" {
				if _, err := os.Stat(snapshot); err != nil {
					return badInput(fmt.Errorf("--snapshot: %v", err))
				}
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := preflight.Run(ctx, opts)
			switch {
			case err != nil && ctx.Err() != nil:
				return &exitError{exitInfra, errors.New("interrupted: the scratch member and its files were removed; the cluster was not changed")}
			case err != nil && errors.Is(err, harness.ErrInput):
				return badInput(err)
			case err != nil:
				return &exitError{exitInfra, err}
			}
			_ = reports.WritePreflightText(stdout, res)
			if jsonOut != "" {
				b, err := json.MarshalIndent(res, "", "  ")
				if err == nil {
					err = writeFile(jsonOut, append(b, '\n'))
				}
				if err != nil {
					return &exitError{exitInfra, fmt.Errorf("--json: %w", err)}
				}
			}
			if junitOut != "" {
				var b bytes.Buffer
				err := reports.WritePreflightJUnit(&b, res)
				if err == nil {
					err = writeFile(junitOut, b.Bytes())
				}
				if err != nil {
					return &exitError{exitInfra, fmt.Errorf("--junit: %w", err)}
				}
			}
			if !res.Passed {
				var failed []string
				for _, c := range res.Checks {
					if c.Status == reports.CheckFail {
						failed = append(failed, c.ID)
					}
				}
				return &exitError{exitFail, fmt.Errorf("failed: %s", strings.Join(failed, ", "))}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringSliceVar(&endpoints, "endpoints", nil, "the cluster's client URLs, comma-separated (default: a remote --scenario's)")
	f.StringVar(&cacert, "cacert", "", "CA certificate that verifies the members' certificates (PEM)")
	f.StringVar(&cert, "cert", "", "client certificate (PEM), as the service presents it")
	f.StringVar(&key, "key", "", "the client certificate's key (PEM)")
	f.StringVar(&serverName, "server-name", "", "the name the members' certificates are checked against (default: the endpoint's host)")
	f.StringVar(&user, "user", "", "etcd user (a root user also lets the backup check take a snapshot)")
	f.StringVar(&passwordEnv, "password-env", "", "environment variable that holds the user's password")
	f.StringVar(&passwordFile, "password-file", "", "file that holds the user's password")
	f.StringVar(&scenarioArg, "scenario", "", "scenario whose client settings (timeouts, retries) and cluster.etcd timeouts are checked; a remote one also names the cluster")
	f.StringVar(&jsonOut, "json", "", "write the checks as JSON to this file")
	f.StringVar(&junitOut, "junit", "", "write the checks as JUnit XML to this file")
	f.StringVar(&heartbeat, "heartbeat-interval", "", "the cluster's heartbeat interval (100 or 100ms; default: the scenario's, else etcd's default, said to be assumed)")
	f.StringVar(&election, "election-timeout", "", "the cluster's election timeout (1000 or 1s; default: the scenario's, else etcd's default, said to be assumed)")
	f.StringVar(&clientVersion, "client-version", "", "the etcd client library version the service uses (default: this tool's)")
	f.StringVar(&snapshot, "snapshot", "", "verify this backup file (restore it, start a scratch member, compare hashes) instead of a fresh snapshot")
	f.StringSliceVar(&agents, "agents", nil, "chaos agent on each node, MEMBER=URL,... (default: the scenario's cluster.agents): adds the host, datadir, flags and clock checks")
	f.StringVar(&agentTLS.CA, "agent-ca", "", "CA that signs the agents' certificates")
	f.StringVar(&agentTLS.Cert, "agent-cert", "", "the controller's client certificate for the agents (mutual TLS)")
	f.StringVar(&agentTLS.Key, "agent-key", "", "its key")
	f.StringVar(&agentTLS.TokenFile, "agent-token-file", "", "file holding the agents' bearer token")
	f.StringVar(&scratchDir, "scratch-dir", "", "where the snapshot and the scratch member's data go while they exist (default: the system's temp dir)")
	return c
}

// flagNames words a scenario-field error of the connection as the flag that set it.
func flagNames(err error) error {
	r := strings.NewReplacer("cluster.tls.ca", "--cacert", "cluster.tls.cert/key", "--cert/--key", "cluster.tls", "--cert/--key",
		"cluster.auth.password-env", "--password-env", "cluster.auth.password-file", "--password-file")
	return errors.New(r.Replace(err.Error()))
}

func writeFile(path string, b []byte) error {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	return os.WriteFile(path, b, 0o644)
}
