// Command chaos is etcd-chaos's command line: run a scenario against an etcd cluster and say pass or
// fail (exit 0 pass, 1 a threshold failed, 2 bad input, 3 the harness or cluster could not run).
// Diagnostics go to stderr; stdout carries only the verdict, so scripts can read it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/etcdmain"
	"golang.org/x/term"

	"github.com/etcd-chaos/etcd-chaos/cluster"
	"github.com/etcd-chaos/etcd-chaos/harness"
	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// Exit codes.
const (
	exitPass     = 0
	exitFail     = 1
	exitBadInput = 2
	exitInfra    = 3
	// exitNoBaseline: chaos compare --history found no passing run to compare with (a nightly
	// job's first night, or a history of nights that all failed): nothing was judged.
	exitNoBaseline = 4
)

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func badInput(err error) error { return &exitError{exitBadInput, err} }

func main() {
	// "chaos node" runs one etcd member in this process with etcd's own main, which parses etcd's
	// flags (every etcd flag works) and starts the server through go.etcd.io/etcd/server/v3/embed.
	if len(os.Args) > 1 && os.Args[1] == "node" {
		args := os.Args[2:]
		if len(args) > 0 && args[0] == "--" {
			args = args[1:]
		}
		etcdmain.Main(append([]string{"etcd"}, args...))
		return
	}
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}

func execute(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitPass
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.code != exitFail {
			fmt.Fprintln(stderr, "chaos:", ee.err)
		}
		return ee.code
	}
	// cobra's own errors: unknown command or flag, wrong number of arguments.
	fmt.Fprintln(stderr, "chaos:", err)
	return exitBadInput
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "chaos",
		Short:         "Chaos and load testing for etcd: real clusters, real faults, thresholds",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(runCmd(stdout, stderr), validateCmd(stdout), listCmd(stdout), healCmd(stdout, stderr), reportCmd(stdout, stderr),
		compareCmd(stdout), preflightCmd(stdout, stderr), sweepCmd(stdout, stderr), agentCmd(stdout, stderr), nodeCmd())
	return root
}

func nodeCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "node -- [etcd flags]",
		Short:              "Run one etcd member in this process (used by the local provider)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE:               func(*cobra.Command, []string) error { return nil }, // handled in main
	}
}

func load(arg string, sets []string) (*scenarios.Scenario, error) {
	sc, err := scenarios.Load(arg, sets)
	if err != nil {
		return nil, badInput(err)
	}
	return sc, nil
}

func runCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		out, nodeBin string
		seed         int64
		sets         []string
		keepData     bool
		verbose      bool
		noProgress   bool
		cpuProfile   string
		repeat       int
		dryRun, yes  bool
		metricsAddr  string
		runID        string
	)
	c := &cobra.Command{
		Use:   "run FILE.yaml|NAME",
		Short: "Run a scenario and print the verdict",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sc, err := load(args[0], sets)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("seed") {
				sc.Seed = seed
			}
			if dryRun {
				ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				if err := harness.DryRun(ctx, sc, stdout); err != nil {
					if errors.Is(err, harness.ErrInput) {
						return badInput(err)
					}
					return &exitError{exitInfra, err}
				}
				return nil
			}
			if cluster.CapabilitiesOf(sc.Cluster.Provider).Shared && !yes {
				if err := confirm(sc, os.Stdin, stderr); err != nil {
					return badInput(err)
				}
			}
			if out == "" {
				out = filepath.Join("results", fmt.Sprintf("%s-%s", sc.Name, time.Now().UTC().Format("20060102T150405Z")))
			}
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelInfo
			}
			logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
			var progress io.Writer
			if !noProgress && isTerminal(stderr) {
				progress = stderr
			}
			var nodeCommand []string
			if nodeBin != "" {
				nodeCommand = []string{nodeBin, "node"}
			}
			if cpuProfile != "" {
				pf, err := os.Create(cpuProfile)
				if err != nil {
					return badInput(err)
				}
				defer pf.Close()
				if err := pprof.StartCPUProfile(pf); err != nil {
					return badInput(err)
				}
				defer pprof.StopCPUProfile()
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			one := func(sc *scenarios.Scenario, out string) (*reports.Result, error) {
				fmt.Fprintf(stderr, "chaos: running %s (seed %d) into %s\n", sc.Name, sc.Seed, out)
				res, runErr := harness.Run(ctx, sc, harness.Options{Out: out, NodeCommand: nodeCommand, KeepData: keepData, Progress: progress, Logger: logger,
					RunID: runID, MetricsAddr: metricsAddr})
				if res != nil && res.Verdict != "" {
					var b strings.Builder
					_ = reports.WriteText(&b, res)
					fmt.Fprint(stdout, b.String())
					if err := reports.WriteReports(out); err != nil {
						fmt.Fprintln(stderr, "chaos: writing the reports:", err)
					}
					fmt.Fprintf(stderr, "chaos: results in %s (report: %s)\n", out, filepath.Join(out, "report.html"))
				}
				return res, runErr
			}
			if repeat < 1 {
				return badInput(fmt.Errorf("--repeat %d: valid: 1 or more runs", repeat))
			}
			if repeat == 1 {
				if ee := runExit(one(sc, out)); ee != nil {
					return ee
				}
				return nil
			}
			return runRepeats(ctx, sc, out, repeat, one, stdout, stderr)
		},
	}
	f := c.Flags()
	f.StringVar(&out, "out", "", "run folder (default results/<scenario>-<UTC time>)")
	f.Int64Var(&seed, "seed", 0, "seed for every random choice (default: the scenario's)")
	f.StringArrayVar(&sets, "set", nil, "override a scenario field: --set workload.duration=30s (repeatable)")
	f.BoolVar(&keepData, "keep-data", false, "keep the members' data dirs after a passing run")
	f.BoolVarP(&verbose, "verbose", "v", false, "log what the harness does to stderr")
	f.BoolVar(&noProgress, "no-progress", false, "no live progress line")
	f.StringVar(&nodeBin, "node-binary", "", "chaos binary that runs embedded members (default: this one)")
	_ = f.MarkHidden("node-binary")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write the harness's CPU profile to this file")
	f.BoolVar(&dryRun, "dry-run", false, "validate, reach the cluster read-only, print the plan with every fault's targets as they would be now, and change nothing")
	f.BoolVar(&yes, "yes", false, "run against a remote cluster without asking (needed when stdin is not a terminal)")
	f.StringVar(&metricsAddr, "metrics-addr", "", "serve live Prometheus metrics at http://ADDR/metrics during the run (for example 127.0.0.1:9464)")
	f.StringVar(&runID, "run-id", "", "name of the run; it writes only under the key prefix chaos/<run-id>/ (default: UTC time and random digits)")
	f.IntVar(&repeat, "repeat", 1, "run the scenario N times (seeds seed..seed+N-1) into repeat-1/..repeat-N/ under --out, with their aggregate at the top")
	return c
}

// runExit turns one run's outcome into the command's exit (nil: it passed).
func runExit(res *reports.Result, runErr error) *exitError {
	switch {
	case runErr != nil && errors.Is(runErr, harness.ErrInput):
		return &exitError{exitBadInput, runErr}
	case runErr != nil:
		return &exitError{exitInfra, runErr}
	case res.Verdict == reports.VerdictInterrupted:
		return &exitError{exitInfra, errors.New("interrupted: every fault was healed and the cluster stopped")}
	case !res.Passed:
		return &exitError{exitFail, errors.New(res.Reason)}
	}
	return nil
}

// runRepeats runs the scenario n times, seeds seed..seed+n-1, one folder each, and writes their
// aggregate (result.json with each run and each compared metric over them, summary.txt) at the top.
func runRepeats(ctx context.Context, sc *scenarios.Scenario, out string, n int,
	one func(*scenarios.Scenario, string) (*reports.Result, error), stdout, stderr io.Writer) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return &exitError{exitInfra, err}
	}
	top := &reports.Result{Version: reports.ResultVersion, Scenario: sc.Name, Description: sc.Description, File: sc.File, Fingerprint: sc.Fingerprint(), Seed: sc.Seed,
		StartedAt: time.Now().UTC(), Verdict: reports.VerdictPass, Passed: true}
	var runs []*reports.Result
	var exit *exitError
	for i := 1; i <= n && ctx.Err() == nil; i++ {
		s := *sc
		s.Seed = sc.Seed + int64(i-1)
		dir := fmt.Sprintf("repeat-%d", i)
		res, runErr := one(&s, filepath.Join(out, dir))
		if res == nil {
			res = &reports.Result{Scenario: sc.Name, Seed: s.Seed, Verdict: reports.VerdictError, Reason: fmt.Sprint(runErr)}
		} else {
			runs = append(runs, res)
			if top.Cluster.Provider == "" {
				top.Cluster = res.Cluster
			}
		}
		top.Repeats = append(top.Repeats, reports.RepeatRun{Dir: dir, Seed: s.Seed, Verdict: res.Verdict, Passed: res.Passed, Reason: res.Reason})
		if ee := runExit(res, runErr); ee != nil {
			if exit == nil || ee.code > exit.code {
				exit = ee
			}
			top.Passed = false
			if ee.code == exitInfra {
				top.Verdict = reports.VerdictError
			} else if top.Verdict == reports.VerdictPass {
				top.Verdict = reports.VerdictFail
			}
		}
	}
	if ctx.Err() != nil {
		top.Passed, top.Verdict = false, reports.VerdictInterrupted
		exit = &exitError{exitInfra, errors.New("interrupted: every fault was healed and the cluster stopped")}
	}
	var failed []string
	for _, rr := range top.Repeats {
		if !rr.Passed {
			failed = append(failed, fmt.Sprintf("%s %s", rr.Dir, rr.Verdict))
		}
	}
	if len(failed) > 0 {
		top.Reason = fmt.Sprintf("%d of %d runs did not pass: %s", len(failed), len(top.Repeats), strings.Join(failed, ", "))
	}
	top.Aggregate = reports.AggregateOf(runs)
	top.EndedAt = time.Now().UTC()
	if err := reports.WriteRepeat(out, top); err != nil {
		return &exitError{exitInfra, err}
	}
	var b strings.Builder
	_ = reports.WriteRepeatSummary(&b, top)
	fmt.Fprint(stdout, "\n"+b.String())
	fmt.Fprintf(stderr, "chaos: %d runs in %s\n", len(top.Repeats), out)
	if exit != nil {
		return exit
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) // /dev/null is a character device too: ask the tty driver
}

func validateCmd(stdout io.Writer) *cobra.Command {
	var sets []string
	c := &cobra.Command{
		Use:   "validate FILE.yaml|NAME",
		Short: "Check a scenario without running it; print it with defaults filled in",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sc, err := load(args[0], sets)
			if err != nil {
				return err
			}
			b, err := sc.Marshal()
			if err != nil {
				return &exitError{exitInfra, err}
			}
			fmt.Fprintf(stdout, "# %s: valid\n%s", sc.File, b)
			return nil
		},
	}
	c.Flags().StringArrayVar(&sets, "set", nil, "override a scenario field (repeatable)")
	return c
}

func listCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the built-in scenarios",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := scenarios.Builtins()
			if err != nil {
				return &exitError{exitInfra, err}
			}
			tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
			for _, b := range list {
				fmt.Fprintf(tw, "%s\t%s\n", b.Name, b.Description)
			}
			return tw.Flush()
		},
	}
}

func healCmd(stdout, stderr io.Writer) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "heal DIR",
		Short: "Heal what a killed harness left: resume paused members, end member processes, close the ledger",
		Long: `Heals a run folder a killed harness left: resumes paused members, ends member processes, removes
containers and namespaces, and closes the ledger. DIR may also be a sweep folder (chaos sweep
--out): then every run folder in it is healed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dirs := []string{args[0]}
			if _, err := os.Stat(filepath.Join(args[0], "cluster.json")); err != nil {
				if _, serr := os.Stat(filepath.Join(args[0], "sweep.json")); serr == nil {
					dirs, _ = filepath.Glob(filepath.Join(args[0], "cells", "*", "repeat-*", "cluster.json"))
					for i := range dirs {
						dirs[i] = filepath.Dir(dirs[i])
					}
				}
			}
			healed := 0
			for _, dir := range dirs {
				rep, err := cluster.Heal(cmd.Context(), dir, force)
				if err != nil {
					if errors.Is(err, cluster.ErrHarnessAlive) {
						return badInput(err)
					}
					return &exitError{exitInfra, err}
				}
				prefix := ""
				if len(dirs) > 1 || dir != args[0] {
					prefix = dir + ": "
				}
				for _, e := range rep.Unhealed {
					fmt.Fprintf(stdout, "%sfault #%d %s on %s was left %s: healed\n", prefix, e.Fault, e.Action, strings.Join(e.Members, ","), e.Step)
				}
				for _, m := range rep.Resumed {
					fmt.Fprintf(stdout, "%smember %s was paused: resumed\n", prefix, m)
				}
				if rep.KeyPrefix != "" {
					fmt.Fprintf(stdout, "%sthe run's keys under %s were left on the remote cluster: %d deleted, its leases revoked\n", prefix, rep.KeyPrefix, rep.KeysDeleted)
				}
				for _, what := range rep.Agents {
					fmt.Fprintf(stdout, "%sagent of %s held it: healed\n", prefix, what)
				}
				for _, m := range rep.Stopped {
					fmt.Fprintf(stdout, "%smember %s was still running: stopped\n", prefix, m)
				}
				for _, what := range rep.Removed {
					if !strings.Contains(what, " ") {
						what = "network namespace " + what
					}
					fmt.Fprintf(stdout, "%s%s was left: removed\n", prefix, what)
				}
				healed += len(rep.Unhealed) + len(rep.Stopped) + len(rep.Removed) + len(rep.Agents)
				if rep.KeyPrefix != "" {
					healed++
				}
			}
			if healed == 0 {
				fmt.Fprintln(stdout, "nothing to heal")
			}
			return nil
		},
	}
	c.Flags().BoolVar(&force, "force", false, "heal even though the run's harness still runs")
	return c
}

func reportCmd(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "report DIR",
		Short: "Rebuild summary.txt, summary.md, junit.xml and report.html from a run folder's raw files (a killed run's too, marked partial)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := reports.ReadResult(args[0]); errors.Is(err, fs.ErrNotExist) {
				// The harness died before result.json: rebuild what its appended files hold.
				// While the run still goes, the reports show it so far and result.json is left to it.
				live := cluster.RunningHarness(args[0])
				res, perr := reports.PartialResult(args[0], live)
				if perr != nil {
					return badInput(fmt.Errorf("%s is not a run folder: %w", args[0], perr))
				}
				fmt.Fprintf(stderr, "%s: %s\n", args[0], res.Reason)
				if live == 0 {
					if werr := res.WriteJSON(args[0]); werr != nil {
						return &exitError{exitInfra, werr}
					}
				} else if werr := reports.WriteReportsOf(args[0], res); werr != nil {
					return &exitError{exitInfra, werr}
				} else {
					for _, f := range []string{"summary.txt", "summary.md", "junit.xml", "report.html"} {
						fmt.Fprintln(stdout, filepath.Join(args[0], f))
					}
					return nil
				}
			} else if err != nil {
				return badInput(fmt.Errorf("%s is not a run folder: %w", args[0], err))
			}
			if err := reports.WriteReports(args[0]); err != nil {
				return &exitError{exitInfra, err}
			}
			for _, f := range []string{"summary.txt", "summary.md", "junit.xml", "report.html"} {
				fmt.Fprintln(stdout, filepath.Join(args[0], f))
			}
			return nil
		},
	}
}

// parseTolerance reads 10% or 0.1.
func parseTolerance(s string) (float64, error) {
	v := strings.TrimSpace(s)
	pct := strings.HasSuffix(v, "%")
	x, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
	if err != nil || x < 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return 0, fmt.Errorf("--tolerance %q: valid: a percentage such as 10%% or a fraction such as 0.1", s)
	}
	if pct {
		x /= 100
	} else if x > 1 {
		return 0, fmt.Errorf("--tolerance %q is more than 1 (100%%); did you mean %s%%?", s, v)
	}
	return x, nil
}

func compareCmd(stdout io.Writer) *cobra.Command {
	var tolerance string
	var history []string
	var last int
	c := &cobra.Command{
		Use:   "compare BASE NEW | compare --history DIR [--history DIR ...] NEW",
		Short: "Compare runs with baseline runs; exit 1 on a regression beyond the noise and the tolerance",
		Long: "Compares failover, outage and recovery times, p99 latency per op, throughput, error rate and availability.\n" +
			"BASE and NEW are run folders (or their result.json) or chaos run --repeat folders (every run in them).\n" +
			"With 2 or more runs a side, a metric regresses when a rank test says the new runs are worse (p <= 0.05;\n" +
			"every new run worse with fewer than 3) and the median is worse by more than the tolerance, the noise floor\n" +
			"(1ms, 1 op/s, 0.1%) and the baseline's own spread. With one run a side, metrics that one election's\n" +
			"randomized timeout moves must also be worse by more than the election timeout. A metric that disappeared\n" +
			"is a regression. Runs of different scenarios are refused (exit 2).\n\n" +
			"--history compares NEW with the last --last runs that passed under each DIR (a run folder, a --repeat\n" +
			"folder or a folder of run folders), of NEW's scenario: the nightly job's baseline. With 3 or more of them\n" +
			"against one new run, a metric regresses when the new run is worse than every baseline run by more than the\n" +
			"tolerance. An empty history folder holds no runs yet; no passing run to compare with is exit 4.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(history) > 0 {
				if len(args) != 1 {
					return fmt.Errorf("with --history, give one NEW run (got %d arguments)", len(args))
				}
				return nil
			}
			return cobra.ExactArgs(2)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			tol, err := parseTolerance(tolerance)
			if err != nil {
				return badInput(err)
			}
			if last < 1 {
				return badInput(fmt.Errorf("--last %d: valid: 1 or more runs", last))
			}
			var rs [2][]*reports.Result
			if len(history) > 0 {
				if rs[1], err = reports.ReadRuns(args[0]); err != nil {
					return badInput(fmt.Errorf("%s: %w", args[0], err))
				}
				var left string
				if rs[0], left, err = reports.ReadHistory(history, rs[1][0].Scenario, rs[1][0].Fingerprint, last); err != nil {
					return badInput(err)
				}
				if left != "" {
					left = " (left out: " + left + ")"
				}
				if len(rs[0]) == 0 {
					return &exitError{exitNoBaseline, fmt.Errorf("no passing run of %s in %s to compare with%s: nothing judged (exit 4; a nightly job's first night keeps its run as the first baseline)", rs[1][0].Scenario, strings.Join(history, ", "), left)}
				}
				fp := ""
				if f := rs[1][0].Fingerprint; f != "" {
					fp = " (fingerprint " + f + ")"
				}
				fmt.Fprintf(stdout, "history: %d passing runs of %s%s%s\n", len(rs[0]), rs[1][0].Scenario, fp, left)
			} else {
				for i, a := range args {
					if rs[i], err = reports.ReadRuns(a); err != nil {
						return badInput(fmt.Errorf("%s: %w", a, err))
					}
				}
			}
			ds, err := reports.Compare(rs[0], rs[1], tol)
			if err != nil {
				return badInput(err)
			}
			if err := reports.WriteCompare(stdout, rs[0], rs[1], ds, tol); err != nil {
				return &exitError{exitInfra, err}
			}
			if reports.Regressed(ds) {
				return &exitError{exitFail, errors.New("regressed beyond the noise and the tolerance")}
			}
			return nil
		},
	}
	c.Flags().StringVar(&tolerance, "tolerance", "10%", "how much worse a metric may be before it counts as a regression")
	c.Flags().StringArrayVar(&history, "history", nil, "compare with the passing runs under this folder (repeatable): a nightly job's past runs")
	c.Flags().IntVar(&last, "last", 10, "with --history, the newest passing runs to compare with")
	return c
}

// confirm asks on a terminal before a run touches a remote cluster; elsewhere it needs --yes.
func confirm(sc *scenarios.Scenario, in *os.File, stderr io.Writer) error {
	if !term.IsTerminal(int(in.Fd())) {
		return errors.New("a run against a remote cluster needs --yes when stdin is not a terminal (try --dry-run first to see the plan)")
	}
	fmt.Fprintf(stderr, "chaos: %s will drive load against the remote cluster at %s and inject %d faults. Continue? [y/N] ",
		sc.Name, strings.Join(sc.Cluster.Endpoints, ", "), len(sc.Faults))
	var answer string
	_, _ = fmt.Fscanln(in, &answer)
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
		return errors.New("not confirmed; nothing was done")
	}
	return nil
}
