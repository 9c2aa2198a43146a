package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcd-chaos/etcd-chaos/harness"
	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/sweep"
)

// sweepCmd is chaos sweep: the scenario over a grid of settings, each cell repeated, and the
// heartbeat and election pair to use. Exit 0: complete, with a recommendation; 1: complete, and no
// cell qualified; 2: bad input; 3: the harness could not run, or it was interrupted (rerun to resume).
func sweepCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		out, nodeBin string
		seed         int64
		sets, varies []string
		repeat       int
		dryRun       bool
		verbose      bool
	)
	c := &cobra.Command{
		Use:   "sweep FILE.yaml|NAME --vary PATH=V1,V2,... [--vary ...] --repeat N --out DIR",
		Short: "Run a scenario over a grid of settings and recommend the heartbeat and election timeouts",
		Long: `Runs the scenario once per repeat for every combination of the --vary values (their product),
skipping the combinations etcd refuses (an election timeout under 5 heartbeats). Each run's
results are written the moment it ends; rerunning the same command into the same --out resumes.
Writes sweep.json, sweep.csv and sweep.html (a heatmap of failover p90 over heartbeat × election
for each injected RTT) and recommends the pair with the lowest failover p90 among the cells with
no spurious election in any repeat.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := sweep.Options{Scenario: args[0], Sets: sets, Repeat: repeat}
			for _, v := range varies {
				vr, err := sweep.ParseVary(v)
				if err != nil {
					return badInput(err)
				}
				o.Vary = append(o.Vary, vr)
			}
			if cmd.Flags().Changed("seed") {
				o.Seed = &seed
			}
			plan, err := sweep.NewPlan(o)
			if err != nil {
				return badInput(err)
			}
			if dryRun {
				sweep.WritePlan(stdout, plan)
				return nil
			}
			if out == "" {
				out = filepath.Join("sweeps", fmt.Sprintf("%s-%s", plan.Sweep.Scenario, time.Now().UTC().Format("20060102T150405Z")))
			}
			o.Out = out
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelInfo
			}
			o.Run.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
			if nodeBin != "" {
				o.Run.NodeCommand = []string{nodeBin, "node"}
			}
			o.Progress = stderr
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			fmt.Fprintf(stderr, "chaos: sweep %s: %d cells × %d repeats into %s (%d combinations skipped)\n",
				plan.Sweep.Scenario, len(plan.Sweep.Cells), repeat, out, len(plan.Sweep.Skipped))
			sw, err := sweep.Run(ctx, o, plan)
			if sw != nil && len(sw.Cells) > 0 && !errors.Is(err, harness.ErrInput) {
				var b strings.Builder
				_ = reports.WriteSweepText(&b, sw)
				fmt.Fprint(stdout, b.String())
				fmt.Fprintf(stderr, "chaos: sweep in %s (%s)\n", out, filepath.Join(out, "sweep.html"))
			}
			switch {
			case errors.Is(err, harness.ErrInput):
				return badInput(err)
			case errors.Is(err, sweep.ErrInterrupted):
				return &exitError{exitInfra, fmt.Errorf("interrupted: the run in flight healed; rerun the same command to resume")}
			case err != nil:
				return &exitError{exitInfra, err}
			case sw.Recommendation == nil:
				return &exitError{exitFail, errors.New(sw.NoRecommendation)}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringArrayVar(&varies, "vary", nil, "sweep a scenario field over values: --vary cluster.etcd.heartbeat-interval=25ms,50ms,100ms (any --set path; repeatable: the grid is the product)")
	f.StringArrayVar(&sets, "set", nil, "override a scenario field in every cell: --set workload.duration=30s (repeatable)")
	f.IntVar(&repeat, "repeat", 3, "runs per cell (seeds seed..seed+N-1, the same in every cell)")
	f.StringVar(&out, "out", "", "sweep folder (default sweeps/<scenario>-<UTC time>); rerun into it to resume")
	f.Int64Var(&seed, "seed", 0, "the sweep's seed: the cells' order and every run's seed (default: the scenario's)")
	f.BoolVar(&dryRun, "dry-run", false, "print the plan (cells in order, their seeds, and what is skipped) and run nothing")
	f.BoolVarP(&verbose, "verbose", "v", false, "log what the harness does to stderr")
	f.StringVar(&nodeBin, "node-binary", "", "chaos binary that runs embedded members (default: this one)")
	_ = f.MarkHidden("node-binary")
	return c
}
