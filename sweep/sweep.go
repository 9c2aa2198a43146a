package sweep

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/etcd-chaos/etcd-chaos/cluster"
	"github.com/etcd-chaos/etcd-chaos/harness"
	"github.com/etcd-chaos/etcd-chaos/internal/proc"
	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// Options configures a sweep: the scenario, the grid, and how each run is made.
type Options struct {
	Scenario string   // a file or a built-in name, as chaos run takes it
	Sets     []string // --set overrides every cell has
	Vary     []reports.Vary
	Repeat   int
	Seed     *int64 // nil: the scenario's seed
	Out      string
	Run      harness.Options // NodeCommand and Logger are used; Out, RunID and DiscardData are the sweep's
	Progress io.Writer       // one line per run: cells done, the current cell, an ETA
}

// ErrInterrupted is returned by Run when its context was cancelled: the run in flight healed,
// and what finished is on disk.
var ErrInterrupted = errors.New("interrupted")

// ParseVary reads one --vary PATH=V1,V2,...: a --set path and at least one value, each once.
// Values split on commas outside brackets, so a YAML flow list can be one value ([a, b]).
func ParseVary(s string) (reports.Vary, error) {
	path, list, ok := strings.Cut(s, "=")
	path = strings.TrimSpace(path)
	if !ok || path == "" || strings.TrimSpace(list) == "" {
		return reports.Vary{}, fmt.Errorf("--vary %q: valid: PATH=V1,V2,... with any --set path, for example --vary cluster.etcd.heartbeat-interval=25ms,50ms,100ms", s)
	}
	var values []string
	depth, start := 0, 0
	for i, r := range list + "," {
		switch r {
		case '[', '{':
			depth++
		case ']', '}':
			depth--
		case ',':
			if depth == 0 {
				v := strings.TrimSpace((list + ",")[start:i])
				if v == "" {
					return reports.Vary{}, fmt.Errorf("--vary %s: an empty value (in %q); valid: comma-separated values, each once", path, list)
				}
				if slices.Contains(values, v) {
					return reports.Vary{}, fmt.Errorf("--vary %s: %s is given twice; valid: each value once", path, v)
				}
				values = append(values, v)
				start = i + 1
			}
		}
	}
	return reports.Vary{Path: path, Values: values}, nil
}

// Plan is what a sweep will run: the cells in the order they run, each with its scenario.
type Plan struct {
	Sweep     *reports.Sweep
	Scenarios []*scenarios.Scenario // one per cell, in Sweep.Cells' order
}

var slugRe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// NewPlan loads the scenario for every combination of the varied values. A combination the
// scenario's validation refuses (an election timeout under 5 heartbeats) is skipped with the reason;
// a value no combination accepts, or a path the scenario has no place for, is bad input (harness.ErrInput).
// The cells run in an order shuffled by the seed, so drift of the machine over a long sweep does not
// line up with the grid, and repeat j of every cell has the seed seed+j-1 (the same fault targets in
// every cell). The same options give the same plan.
func NewPlan(o Options) (*Plan, error) {
	if o.Repeat < 1 {
		return nil, fmt.Errorf("%w: --repeat %d: valid: 1 or more runs per cell", harness.ErrInput, o.Repeat)
	}
	if len(o.Vary) == 0 {
		return nil, fmt.Errorf("%w: nothing to sweep: give at least one --vary PATH=V1,V2,...", harness.ErrInput)
	}
	for i, v := range o.Vary {
		for _, w := range o.Vary[:i] {
			if w.Path == v.Path {
				return nil, fmt.Errorf("%w: --vary %s is given twice; valid: each path once, with all its values", harness.ErrInput, v.Path)
			}
		}
		for _, s := range o.Sets {
			if p, _, _ := strings.Cut(s, "="); strings.TrimSpace(p) == v.Path {
				return nil, fmt.Errorf("%w: %s is both --set and --vary; valid: one of them", harness.ErrInput, v.Path)
			}
		}
	}
	base, err := scenarios.Load(o.Scenario, o.Sets)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", harness.ErrInput, err)
	}
	if !cluster.CapabilitiesOf(base.Cluster.Provider).StartsMembers {
		return nil, fmt.Errorf("%w: %s: cluster.provider %s: a sweep starts a cluster per run with each cell's settings, which a cluster the team already runs cannot take; valid: local or container", harness.ErrInput, base.File, base.Cluster.Provider)
	}
	seed := base.Seed
	if o.Seed != nil {
		seed = *o.Seed
	}
	sw := &reports.Sweep{Version: reports.SweepVersion, Scenario: base.Name, File: base.File, Seed: seed, Repeat: o.Repeat,
		Sets: o.Sets, Vary: o.Vary, Cells: []reports.SweepCell{}}
	h := sha256.New()
	fmt.Fprintf(h, "v%d\x00%s\x00%d\x00%d\x00", reports.SweepVersion, base.Source, seed, o.Repeat)
	for _, s := range o.Sets {
		fmt.Fprintf(h, "set %s\x00", s)
	}
	for _, v := range o.Vary {
		fmt.Fprintf(h, "vary %s=%s\x00", v.Path, strings.Join(v.Values, "\x01"))
	}
	sw.Fingerprint = hex.EncodeToString(h.Sum(nil))[:16]

	// The product, the last --vary changing fastest.
	combos := []map[string]string{{}}
	for _, v := range o.Vary {
		var next []map[string]string
		for _, c := range combos {
			for _, val := range v.Values {
				n := map[string]string{v.Path: val}
				for k, w := range c {
					n[k] = w
				}
				next = append(next, n)
			}
		}
		combos = next
	}
	plan := &Plan{Sweep: sw}
	accepted := map[string]bool{} // path=value some combination accepted
	var firstErr = map[string]string{}
	for _, combo := range combos {
		sets := slices.Clone(o.Sets)
		for _, v := range o.Vary {
			sets = append(sets, v.Path+"="+combo[v.Path])
		}
		sc, err := scenarios.Load(o.Scenario, sets)
		if err != nil {
			reason := strings.ReplaceAll(err.Error(), "\n", "; ")
			short := reason
			var ps scenarios.Problems
			if errors.As(err, &ps) {
				var parts []string
				for _, p := range ps {
					parts = append(parts, strings.TrimPrefix(p.Field+": "+p.Msg, ": "))
				}
				short = strings.Join(parts, "; ")
			}
			sw.Skipped = append(sw.Skipped, reports.SweepSkip{Values: combo, Reason: short})
			for _, v := range o.Vary {
				if _, ok := firstErr[v.Path+"="+combo[v.Path]]; !ok {
					firstErr[v.Path+"="+combo[v.Path]] = reason
				}
			}
			continue
		}
		for _, v := range o.Vary {
			accepted[v.Path+"="+combo[v.Path]] = true
		}
		hb, et := sc.Cluster.Timeouts()
		sw.Cells = append(sw.Cells, reports.SweepCell{Values: combo, Status: reports.CellPending, HeartbeatMs: float64(hb), ElectionMs: float64(et),
			InjectedRTTMs: 2 * float64(time.Duration(sc.Cluster.PeerDelay.Latency)) / float64(time.Millisecond), Runs: []reports.SweepRun{}})
		plan.Scenarios = append(plan.Scenarios, sc)
	}
	var bad []string
	for _, v := range o.Vary {
		for _, val := range v.Values {
			if !accepted[v.Path+"="+val] {
				bad = append(bad, fmt.Sprintf("--vary %s: %s fits no cell: %s", v.Path, val, firstErr[v.Path+"="+val]))
			}
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("%w: %s", harness.ErrInput, strings.Join(bad, "\n"))
	}
	// Names in grid order (stable however the cells are shuffled), then the seeded run order.
	width := max(len(strconv.Itoa(len(combos))), 2)
	gridIndex := map[*scenarios.Scenario]int{}
	for i, c := range combos {
		for j := range sw.Cells {
			if reports.SameValues(sw.Cells[j].Values, c) {
				var parts []string
				for _, v := range o.Vary {
					parts = append(parts, reports.ShortPath(v.Path)+"-"+c[v.Path])
				}
				sw.Cells[j].ID = fmt.Sprintf("%0*d_%s", width, i+1, strings.Trim(slugRe.ReplaceAllString(strings.Join(parts, "_"), "-"), "-"))
				gridIndex[plan.Scenarios[j]] = i
			}
		}
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5eed5eed))
	order := rng.Perm(len(sw.Cells))
	cells := make([]reports.SweepCell, len(order))
	scs := make([]*scenarios.Scenario, len(order))
	for i, j := range order {
		cells[i], scs[i] = sw.Cells[j], plan.Scenarios[j]
	}
	sw.Cells, plan.Scenarios = cells, scs
	for i := range sw.Cells {
		for j := 1; j <= o.Repeat; j++ {
			sw.Cells[i].Seeds = append(sw.Cells[i].Seeds, seed+int64(j-1))
		}
	}
	return plan, nil
}

// WritePlan prints what a sweep would run, in order, and what it skips.
func WritePlan(w io.Writer, p *Plan) {
	s := p.Sweep
	fmt.Fprintf(w, "sweep %s (fingerprint %s): %d cells × %d repeats = %d runs, seed %d; repeat j of every cell has seed %d+j-1\n",
		s.Scenario, s.Fingerprint, len(s.Cells), s.Repeat, len(s.Cells)*s.Repeat, s.Seed, s.Seed)
	for i, c := range s.Cells {
		fmt.Fprintf(w, "  %2d. %s  (heartbeat %gms, election %gms, injected RTT %gms) seeds %v\n", i+1, c.ID, c.HeartbeatMs, c.ElectionMs, c.InjectedRTTMs, c.Seeds)
	}
	for _, sk := range s.Skipped {
		var parts []string
		for _, v := range s.Vary {
			parts = append(parts, reports.ShortPath(v.Path)+" "+sk.Values[v.Path])
		}
		fmt.Fprintf(w, "  skipped %s: %s\n", strings.Join(parts, ", "), sk.Reason)
	}
}

// reusable says whether a finished run folder counts: it ended (not interrupted or killed), and it
// either ran or failed to become ready because elections did not hold (what the cell measures).
func reusable(dir string) (*reports.Result, bool) {
	res, err := reports.ReadResult(dir)
	// A partial result (chaos report rebuilt it after the harness died) is no finished run.
	if err != nil || res.EndedAt.IsZero() || res.Verdict == "" || res.Verdict == reports.VerdictInterrupted || res.Partial || res.Verdict == reports.VerdictPartial {
		return nil, false
	}
	if res.Verdict == reports.VerdictError && res.Leader.Unheld == nil && res.LoadStartedAt.IsZero() {
		return nil, false
	}
	return res, true
}

// lockSweep claims the sweep folder for this process (sweep.lock holds its PID): two sweeps in one
// folder would run each other's cells.
func lockSweep(dir string) (func(), error) {
	path := filepath.Join(dir, "sweep.lock")
	if b, err := os.ReadFile(path); err == nil {
		if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid != os.Getpid() && proc.Alive(pid) && strings.Contains(proc.Cmdline(pid), "chaos") {
			return nil, fmt.Errorf("%w: %s is being swept by pid %d; wait for it or stop it (Ctrl-C), then rerun to resume", harness.ErrInput, dir, pid)
		}
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("%w: %v", harness.ErrInfra, err)
	}
	return func() { _ = os.Remove(path) }, nil
}

// Run runs the plan into o.Out, or resumes it there: a run folder whose result.json shows it
// ended is read, not rerun; one a killed sweep left is healed (its members ended) and run again.
// sweep.json, sweep.csv and sweep.html are rewritten after every run, and each cell's cell.json
// when it changes. It returns the sweep as far as it got; err wraps harness.ErrInput (another sweep's
// folder), harness.ErrInfra, or ErrInterrupted.
func Run(ctx context.Context, o Options, plan *Plan) (*reports.Sweep, error) {
	sw := plan.Sweep
	if err := os.MkdirAll(filepath.Join(o.Out, "cells"), 0o755); err != nil {
		return sw, fmt.Errorf("%w: %v", harness.ErrInfra, err)
	}
	unlock, err := lockSweep(o.Out)
	if err != nil {
		return sw, err
	}
	defer unlock()
	sw.StartedAt = time.Now().UTC()
	if old, err := reports.ReadSweep(o.Out); err == nil {
		if old.Fingerprint != sw.Fingerprint {
			return sw, fmt.Errorf("%w: %s holds another sweep (fingerprint %s, this one %s: a different scenario, --set, --vary, --repeat or --seed); use another --out, or the command that made it to resume",
				harness.ErrInput, o.Out, old.Fingerprint, sw.Fingerprint)
		}
		sw.StartedAt = old.StartedAt
	} else if !errors.Is(err, fs.ErrNotExist) {
		return sw, fmt.Errorf("%w: %v (move the folder away to start over)", harness.ErrInput, err)
	}
	save := func() error {
		sw.UpdatedAt = time.Now().UTC()
		sw.Complete = true
		for _, c := range sw.Cells {
			sw.Complete = sw.Complete && cellFinished(&c, sw.Repeat)
		}
		sw.Recommend()
		if err := reports.WriteSweep(o.Out, sw); err != nil {
			return fmt.Errorf("%w: %v", harness.ErrInfra, err)
		}
		return nil
	}
	// What finished before (this sweep's earlier attempts) is read first, so the ETA counts only the rest.
	var spent float64
	var ran int
	todo := 0
	for i := range sw.Cells {
		c := &sw.Cells[i]
		for j := 1; j <= sw.Repeat && !cellFinished(c, sw.Repeat); j++ {
			dir := filepath.Join(o.Out, "cells", c.ID, fmt.Sprintf("repeat-%d", j))
			if res, ok := reusable(dir); ok && res.Seed == c.Seeds[j-1] {
				c.Runs = append(c.Runs, sweepRun(res, o.Out, dir, j))
				c.Fold(sw.Repeat)
				continue
			}
			break
		}
		if !cellFinished(c, sw.Repeat) {
			todo += sw.Repeat - len(c.Runs)
		}
		c.Fold(sw.Repeat)
	}
	if err := save(); err != nil {
		return sw, err
	}
	started := time.Now()
	for i := range sw.Cells {
		c := &sw.Cells[i]
		for j := len(c.Runs) + 1; j <= sw.Repeat && !cellFinished(c, sw.Repeat); j++ {
			if ctx.Err() != nil {
				return sw, errors.Join(ErrInterrupted, save())
			}
			dir := filepath.Join(o.Out, "cells", c.ID, fmt.Sprintf("repeat-%d", j))
			if err := clearRun(ctx, dir); err != nil {
				return sw, errors.Join(err, save())
			}
			if o.Progress != nil {
				done := 0
				for _, d := range sw.Cells {
					if cellFinished(&d, sw.Repeat) {
						done++
					}
				}
				eta := "unknown until a run ends"
				if ran > 0 {
					eta = (time.Duration(spent/float64(ran)*float64(todo)) * time.Second).Round(time.Second).String()
				}
				fmt.Fprintf(o.Progress, "sweep: cells %d/%d done; cell %d/%d %s, repeat %d/%d (seed %d); ETA %s\n",
					done, len(sw.Cells), i+1, len(sw.Cells), c.ID, j, sw.Repeat, c.Seeds[j-1], eta)
			}
			sc := *plan.Scenarios[i]
			sc.Seed = c.Seeds[j-1]
			ropts := o.Run
			ropts.Out, ropts.RunID, ropts.DiscardData = dir, "", true
			t0 := time.Now()
			res, runErr := harness.Run(ctx, &sc, ropts)
			if ctx.Err() != nil || (res != nil && res.Verdict == reports.VerdictInterrupted) {
				return sw, errors.Join(ErrInterrupted, save())
			}
			if res == nil {
				if errors.Is(runErr, harness.ErrInput) {
					return sw, errors.Join(runErr, save())
				}
				res = &reports.Result{Seed: sc.Seed, Verdict: reports.VerdictError, Reason: fmt.Sprint(runErr)}
			}
			c.Runs = append(c.Runs, sweepRun(res, o.Out, dir, j))
			c.Fold(sw.Repeat)
			spent, ran, todo = spent+time.Since(t0).Seconds(), ran+1, todo-1
			if c.Status == reports.CellNotViable {
				todo -= sw.Repeat - len(c.Runs) // a cell that cannot elect a leader is not run again
			}
			if err := writeJSON(filepath.Join(o.Out, "cells", c.ID, "cell.json"), c); err != nil {
				return sw, err
			}
			if err := save(); err != nil {
				return sw, err
			}
		}
	}
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "sweep: %d cells done, %d runs in %s\n", len(sw.Cells), ran, time.Since(started).Round(time.Second))
	}
	return sw, save()
}

// cellFinished: every repeat ran, or one showed the cell cannot elect a leader that holds (running
// the rest would cost a ready-timeout each and could not make it qualify).
func cellFinished(c *reports.SweepCell, repeat int) bool {
	return len(c.Runs) >= repeat || c.Status == reports.CellNotViable
}

func sweepRun(res *reports.Result, out, dir string, j int) reports.SweepRun {
	sr := reports.SweepRunOf(res, dir)
	sr.Repeat = j
	if rel, err := filepath.Rel(out, dir); err == nil {
		sr.Dir = rel
	}
	return sr
}

// clearRun removes what an earlier, killed attempt left in a run folder: its member processes are
// ended (chaos heal's way: only processes whose command line names the run's data dirs) and the
// folder goes, so the run starts clean.
func clearRun(ctx context.Context, dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "cluster.json")); err == nil {
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
		_, err := cluster.Heal(hctx, dir, false)
		cancel()
		if err != nil {
			return fmt.Errorf("%w: healing %s, left by an earlier attempt: %v", harness.ErrInfra, dir, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("%w: %v", harness.ErrInfra, err)
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("%w: %v", harness.ErrInfra, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("%w: %v", harness.ErrInfra, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("%w: %v", harness.ErrInfra, err)
	}
	return nil
}
