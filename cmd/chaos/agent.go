package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcd-chaos/etcd-chaos/agent"
	"github.com/etcd-chaos/etcd-chaos/cluster"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

func agentCmd(stdout, stderr io.Writer) *cobra.Command {
	var cfg agent.Config
	c := &cobra.Command{
		Use:   "agent --listen ADDR (--etcd-pid-file F | --etcd-systemd-unit U | --etcd-container NAME) [flags]",
		Short: "Serve process, peer-network and disk faults on this node for chaos run, healing them itself if the controller goes away",
		Long: `chaos agent runs on each node of a cluster the team runs, beside its etcd member, and injects faults
on that node for chaos run (cluster.agents): kill, stop, pause and restart etcd; cut, rate-limit,
delay or drop its traffic to named peers; fill its data dir's filesystem. Each step is proven on
the node (the process state read back, the route or qdisc listed, the free space measured).

Nothing is left behind: every fault has a TTL the controller renews (a dead man's switch) and a
scheduled end, both enforced by the agent alone; its ledger (--state-dir) is healed when it
starts; and it heals everything when it stops. chaos agent heal-all URL... is the lever that heals
every fault on the named agents now.

It binds only the address given, serves TLS, and authenticates every request: mutual TLS
(--client-ca) or a bearer token (--token-file), or both. Plaintext only with
--insecure-listen-loopback on 127.0.0.1 (behind an SSH tunnel), and still with a token. It acts only
on the etcd it was started for. It needs root (signals to etcd's user, routes and qdiscs).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Log = slog.New(slog.NewTextHandler(stderr, nil))
			srv, err := agent.New(cfg)
			if err != nil {
				if cerr := cfg.Check(); cerr != nil {
					return badInput(cerr)
				}
				return &exitError{exitInfra, err}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if err := srv.Serve(ctx); err != nil {
				return &exitError{exitInfra, err}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.Listen, "listen", "", "the address to bind, IP:PORT (one address, never all interfaces)")
	f.StringVar(&cfg.PIDFile, "etcd-pid-file", "", "etcd's pid file (the agent writes the PID of what --etcd-start starts there)")
	f.StringVar(&cfg.Unit, "etcd-systemd-unit", "", "etcd's systemd unit")
	f.StringVar(&cfg.Container, "etcd-container", "", "etcd's container (through the docker CLI)")
	f.StringVar(&cfg.StartCommand, "etcd-start", "", "shell command that starts etcd again after a kill or a stop (with --etcd-pid-file; it should exec etcd)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "etcd's data dir (for disk-full and the host facts; default: etcd's --data-dir)")
	f.StringVar(&cfg.CertFile, "tls-cert", "", "the agent's TLS certificate")
	f.StringVar(&cfg.KeyFile, "tls-key", "", "the agent's TLS key")
	f.StringVar(&cfg.ClientCA, "client-ca", "", "CA whose client certificates are accepted (mutual TLS)")
	f.StringVar(&cfg.TokenFile, "token-file", "", "file holding the bearer token every request must carry")
	f.BoolVar(&cfg.InsecureLoopback, "insecure-listen-loopback", false, "serve plaintext on 127.0.0.1 (still with --token-file)")
	f.StringVar(&cfg.StateDir, "state-dir", "/var/lib/chaos-agent", "where the agent keeps its ledger of the faults it holds")
	c.AddCommand(agentHealAllCmd(stdout))
	return c
}

// agentHealAllCmd is the stop-everything lever: every fault on the named agents, healed now.
func agentHealAllCmd(stdout io.Writer) *cobra.Command {
	var t scenarios.AgentTLS
	var file string
	c := &cobra.Command{
		Use:   "heal-all [URL...]",
		Short: "Heal every fault the named agents hold now (or the agents of --scenario)",
		RunE: func(cmd *cobra.Command, args []string) error {
			sc := &scenarios.Scenario{Cluster: scenarios.Cluster{AgentTLS: t, Agents: map[string]string{}}}
			if file != "" {
				loaded, err := load(file, nil)
				if err != nil {
					return err
				}
				sc = loaded
				if t != (scenarios.AgentTLS{}) {
					return badInput(errors.New("give the agents' TLS either in --scenario's cluster.agent-tls or as flags, not both"))
				}
			}
			for _, u := range args {
				sc.Cluster.Agents[u] = u
			}
			if len(sc.Cluster.Agents) == 0 {
				return badInput(errors.New("name the agents: chaos agent heal-all https://10.0.0.1:7070 ... (or --scenario FILE with cluster.agents)"))
			}
			agents, err := cluster.AgentsFor(sc, "")
			if err != nil {
				return badInput(err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			res := agents.HealAll(ctx, "")
			sort.Slice(res, func(i, j int) bool { return res[i].URL < res[j].URL })
			var failed []string
			for _, r := range res {
				if r.Err != nil {
					failed = append(failed, r.URL)
					fmt.Fprintf(stdout, "%s: %v\n", r.URL, r.Err)
					continue
				}
				if len(r.Healed) == 0 {
					fmt.Fprintf(stdout, "%s: held nothing\n", r.URL)
				}
				for _, h := range r.Healed {
					fmt.Fprintf(stdout, "%s: %s (owner %s, since %s): healed\n", r.URL, h.What, orNone(h.Lease.Owner), h.Since.Format(time.RFC3339))
				}
			}
			if len(failed) > 0 {
				return &exitError{exitInfra, fmt.Errorf("could not heal through %s", strings.Join(failed, ", "))}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&file, "scenario", "", "a scenario whose cluster.agents and cluster.agent-tls to use")
	f.StringVar(&t.CA, "ca", "", "CA that signs the agents' certificates")
	f.StringVar(&t.Cert, "cert", "", "the controller's client certificate (mutual TLS)")
	f.StringVar(&t.Key, "key", "", "the controller's client key")
	f.StringVar(&t.ServerName, "server-name", "", "the name the agents' certificates carry, when it is not the URL's host")
	f.StringVar(&t.TokenFile, "token-file", "", "file holding the agents' bearer token")
	return c
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
