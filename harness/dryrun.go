package harness

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"

	"github.com/etcd-chaos/etcd-chaos/cluster"
	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// DryRun validates what the run would do and prints the plan, changing nothing: a remote cluster
// is reached read-only (member list, status, leader, versions, alarms) and every fault's targets are
// resolved as they would be now; a cluster the harness would start is described as it would be.
// Errors wrap ErrInput (a fault the quorum guard refuses) or ErrInfra (the cluster cannot be reached).
func DryRun(ctx context.Context, sc *scenarios.Scenario, w io.Writer) error {
	fmt.Fprintf(w, "dry run of %s (seed %d): nothing is started, written or injected\n", sc.Name, sc.Seed)
	wl := sc.Workload
	rate := "closed loop"
	if wl.Rate > 0 {
		rate = fmt.Sprintf("%.0f ops/s open loop", wl.Rate)
	}
	r := &run{sc: sc, log: slog.New(slog.DiscardHandler), prefix: "chaos/<run id>/"}
	size := sc.Cluster.Size
	// A cluster already running is reached read-only and described as it is now.
	if cl, ok, err := cluster.Reach(ctx, sc, w); err != nil {
		return err
	} else if ok {
		defer cl.Close(context.WithoutCancel(ctx), 0)
		r.cl = cl
		size = len(cl.Names())
	} else {
		fmt.Fprintf(w, "\n%s cluster of %d members (%s), started by the run; network %s\n", sc.Cluster.Provider, size,
			strings.Join(cluster.MemberNames(size), ", "), sc.Cluster.Network)
		if o := diskOptions(sc); o != nil {
			what := "passing every operation through between faults"
			if d := describeCluster(sc, nil).DiskDelay; d != "" {
				what = "delaying each " + d
			}
			if o.Unsynced {
				what += "; it keeps what was never synced, for the power loss"
			}
			if o.Passthrough {
				what += "; only fsyncs go through it, reads and writes pass it by (FUSE passthrough, where the kernel allows it)"
			}
			fmt.Fprintf(w, "disk layer (FUSE, served by the harness) under each member's data dir, %s\n", what)
		}
	}
	if err := quorumGuard(sc, size); err != nil {
		return fmt.Errorf("%w: %v", ErrInput, err)
	}
	if b := sc.Cluster.Backup; b.Every > 0 {
		keep := b.Keep
		if keep <= 0 {
			keep = scenarios.DefaultBackupKeep
		}
		fmt.Fprintf(w, "\nbackups: a snapshot through the API (from a follower) at the load's start and every %s, the newest %d kept in the run folder's backups/\n", b.Every, keep)
	}
	fmt.Fprintf(w, "\nload: %s, %d clients, warm-up %s, for %s\n", rate, wl.Clients, wl.Warmup, wl.Duration)
	for _, b := range sc.Workloads {
		fmt.Fprintf(w, "  workload %s (%s)\n", b.Name, b.Kind)
	}
	fmt.Fprintln(w, "\nfaults (at is from the load's start; each fires only if the cluster has a leader and every member answers)")
	if len(sc.Faults) == 0 {
		fmt.Fprintln(w, "  none")
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for i, f := range sc.Faults {
		heal := "instantaneous"
		if a := f.Rules(); a != nil && a.Operation {
			heal = "runs to its end"
		}
		if f.Duration > 0 {
			heal = "heals at " + (f.At + f.Duration).String()
		}
		who := "resolved when it fires"
		if r.cl != nil {
			if p, err := r.plan(ctx, i, f); err != nil {
				who = "cannot be resolved now: " + err.Error()
			} else {
				who = strings.Join(p.members, ",")
				if len(p.links) > 0 {
					var ls []string
					for _, l := range p.links {
						ls = append(ls, l.String())
					}
					who += " (links " + strings.Join(ls, " ") + ")"
				}
			}
		}
		allow := ""
		if f.AllowQuorumLoss {
			allow = "  [allow-quorum-loss]"
		}
		fmt.Fprintf(tw, "  #%d\tat %s\t%s\t%s -> %s\t%s\t%s%s\n", i, f.At, heal, f.Action, selection(f), who, stepText(f), allow)
	}
	tw.Flush()
	if len(sc.Abort) > 0 {
		fmt.Fprintln(w, "\nstop conditions (heal every fault and stop the load when one trips)")
		for _, a := range sc.Abort {
			fmt.Fprintf(w, "  %s\n", a.Expr)
		}
	}
	if len(sc.Thresholds) > 0 {
		fmt.Fprintln(w, "\nthresholds")
		for _, t := range sc.Thresholds {
			fmt.Fprintf(w, "  %s: %s\n", t.Metric, t.Expr)
		}
	}
	return nil
}

// selection says how a fault picks its members or links, as written.
func selection(f scenarios.Fault) string {
	switch {
	case f.Client.Kind != "":
		return "client " + f.Client.String()
	case len(f.Isolate) > 0:
		return "isolate " + f.Isolate.String()
	case len(f.Groups) > 0:
		return fmt.Sprint("groups ", f.Groups)
	case f.OneWay.From.Kind != "":
		return fmt.Sprintf("one-way %s to %s", f.OneWay.From, f.OneWay.To)
	case f.MajoritiesRing:
		return "majorities-ring"
	}
	return f.Target.String()
}

// stepText says what injecting and healing a fault does, in its action's words.
func stepText(f scenarios.Fault) string {
	a := faults.LookupAction(f.Action)
	if a == nil || a.Does == nil {
		return ""
	}
	links := "the peer links"
	if f.Client.Kind != "" {
		links = "the links from the load"
	}
	return a.Does(f, links)
}
