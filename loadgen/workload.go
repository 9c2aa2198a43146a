package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// Env is what a workload beside the KV load gets from the harness.
type Env struct {
	Endpoints []string // client URLs, in member order
	Members   []string // member names, in the same order
	Rec       *Recorder
	Seed      uint64
	Dir       string                       // the run folder (porcupine's visualization goes there)
	Event     func(kind string, kv ...any) // events.jsonl
	Leaders   func() []time.Time           // when the leader changed so far
	Election  time.Duration                // the cluster's election timeout
	Log       func(msg string, kv ...any)  // warnings
	// FaultsEnd is when the last fault fired so far was healed (zero: none yet); Start is the load's.
	FaultsEnd func() time.Time
	Start     time.Time
	// Conn is how the workloads reach the members (nil: plain TCP).
	Conn *Conn
	// Prefix is the run's key prefix ("chaos/<run id>/"): every key a workload writes is under it.
	Prefix string
	// Monitor is told what the workloads' answers reveal (see Monitor.Observe); nil: nothing.
	Monitor *Monitor
}

// Workload is one block of scenario.workloads (or the linearizability register load).
type Workload interface {
	Name() string
	Kind() string
	// Run drives the workload until ctx ends.
	Run(ctx context.Context, start time.Time)
	// Finish runs after the load (the cluster is still up): it returns the workload's checks,
	// its numbers, and its trend metrics (failover.election_handover, lock_hold).
	Finish(ctx context.Context) Outcome
	Close()
}

// Outcome is what a workload reports when it finishes.
type Outcome struct {
	Checks []reports.Check
	Result reports.WorkloadResult
	Trends map[string]reports.Samples
}

// Holder is implemented by workloads whose current holder can be a fault's target (lock-holder,
// election-leader): it names the member the holder's client talks to.
type Holder interface {
	HolderMember() (string, bool)
}

// workloadKind is one workload kind as a unit: its rules as the scenario schema reads them (the
// block fields of its own, their defaults, their checks) and its constructor. Each is defined in
// the workload's own file and listed once in the registry below, whose rules are registered with
// the schema when this package is initialised.
type workloadKind struct {
	scenarios.WorkloadRules
	new func(b scenarios.Block, env Env) (Workload, error)
}

var kinds = []*workloadKind{&leaseKind, &lockKind, &electionKind, &watchKind, &kvKind, &leakKind}

func init() {
	for _, k := range kinds {
		scenarios.RegisterWorkload(k.WorkloadRules)
	}
	opNames = [NumOps]string(scenarios.MetricOps()) // the Op constants follow the registry's order
}

// NewWorkload makes the workload of a scenario block.
func NewWorkload(b scenarios.Block, env Env) (Workload, error) {
	for _, k := range kinds {
		if k.Kind == b.Kind {
			return k.new(b, env)
		}
	}
	return nil, fmt.Errorf("unknown workload kind %q; valid: %v", b.Kind, scenarios.WorkloadKinds())
}

func noop(string, ...any) {}

func (e *Env) fill() {
	if e.Prefix == "" {
		e.Prefix = DefaultPrefix
	}
	if e.Event == nil {
		e.Event = noop
	}
	if e.Log == nil {
		e.Log = noop
	}
	if e.Leaders == nil {
		e.Leaders = func() []time.Time { return nil }
	}
	if e.Election == 0 {
		e.Election = time.Second
	}
	if e.FaultsEnd == nil {
		e.FaultsEnd = func() time.Time { return time.Time{} }
	}
}

// pinnedClients connects n clients, client i to member i mod the cluster size first (so a fault on
// a member hits the clients pinned to it), with the other members as fallbacks only when ordered
// after it: clientv3 balances round robin over all endpoints, so pinning is strict: one endpoint.
func pinnedClients(env Env, n int) ([]*clientv3.Client, []string, error) {
	var cs []*clientv3.Client
	var members []string
	for i := 0; i < n; i++ {
		m := i % len(env.Endpoints)
		c, err := NewClientVia([]string{env.Endpoints[m]}, 1, env.Conn)
		if err != nil {
			for _, c := range cs {
				_ = c.Close()
			}
			return nil, nil, err
		}
		cs = append(cs, c)
		members = append(members, env.Members[m])
	}
	return cs, members, nil
}

// perClient runs f for every client, each in its own goroutine, and waits for them all.
func perClient(cs []*clientv3.Client, f func(c *clientv3.Client, i int)) {
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(c, i)
		}()
	}
	wg.Wait()
}

func closeAll(cs []*clientv3.Client) {
	for _, c := range cs {
		_ = c.Close()
	}
}

func rngFor(seed uint64, name string, i int) *rand.Rand {
	h := uint64(0)
	for _, c := range name {
		h = h*131 + uint64(c)
	}
	return rand.New(rand.NewPCG(seed^h, uint64(i)+7))
}

// Interval is one holder's tenure of a lock or a leadership, as the holder saw it.
type Interval struct {
	Name         string // the lock or election
	Holder       string // the client (and its member)
	From, To     time.Time
	SessionLost  bool // the holder's session ended during the tenure
	FenceRefused bool // its fenced write at the end was refused: etcd kept it from acting on the lost lock
	// Ended says how the tenure ended ("resigned", "resign_failed: CLASS", "session_lost",
	// "released", "load_end"), and ResignMs how long the resign or release took (election, lock).
	Ended    string
	ResignMs float64
}

// tenureLine is one tenure in tenures-<workload>.jsonl, in seconds from the load's start: the
// record a handover or an overlap is explained from after the run.
type tenureLine struct {
	Workload string  `json:"workload"`
	Name     string  `json:"name"`
	Holder   string  `json:"holder"`
	WonS     float64 `json:"won_s"`
	EndedS   float64 `json:"ended_s"`
	Ended    string  `json:"ended"`
	ResignMs float64 `json:"resign_ms,omitempty"`
	// GapMs is the handover before this tenure: from the previous tenure's end to this one's start
	// (negative: they overlapped).
	GapMs *float64 `json:"gap_before_ms,omitempty"`
}

// Overlaps finds tenures of the same name by different holders that overlap in time: two holders at
// once. zero is the load's start, for the report.
func Overlaps(iv []Interval, zero time.Time) []string {
	byName := map[string][]Interval{}
	for _, x := range iv {
		byName[x.Name] = append(byName[x.Name], x)
	}
	var out []string
	for name, xs := range byName {
		sort.Slice(xs, func(i, j int) bool { return xs[i].From.Before(xs[j].From) })
		// A sweep by start time: active holds the earlier tenures still held when the next one
		// starts; one that ended before a start ended before every later start too, and leaves
		// for good. Time is n log n plus the overlaps, not n squared (a day of 50ms holds).
		var active []Interval
		for _, b := range xs {
			kept := active[:0]
			for _, a := range active {
				if b.From.Before(a.To) {
					kept = append(kept, a)
				}
			}
			active = kept
			for _, a := range active {
				if a.Holder != b.Holder {
					note := ""
					if a.SessionLost {
						note = " (the first holder's session had expired: it did not know it lost the lock)"
					}
					if a.FenceRefused {
						note += "; its fenced write at the end was refused"
					}
					out = append(out, fmt.Sprintf("%s: %s held it %.3fs-%.3fs and %s acquired it at %.3fs%s", name, a.Holder,
						a.From.Sub(zero).Seconds(), a.To.Sub(zero).Seconds(), b.Holder, b.From.Sub(zero).Seconds(), note))
				}
			}
			active = append(active, b)
		}
	}
	sort.Strings(out)
	return out
}

// tenures collects intervals from many goroutines.
type tenures struct {
	mu sync.Mutex
	iv []Interval
}

func (t *tenures) add(x Interval) {
	t.mu.Lock()
	t.iv = append(t.iv, x)
	t.mu.Unlock()
}

// writeTenures writes every tenure of a workload, by start, to dir/tenures-<workload>.jsonl.
func writeTenures(dir, workload string, iv []Interval, zero time.Time) error {
	if dir == "" {
		return nil
	}
	sorted := append([]Interval(nil), iv...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].From.Before(sorted[j].From) })
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	lastEnd := map[string]time.Time{}
	for _, x := range sorted {
		l := tenureLine{Workload: workload, Name: x.Name, Holder: x.Holder, WonS: round3(x.From.Sub(zero).Seconds()),
			EndedS: round3(x.To.Sub(zero).Seconds()), Ended: x.Ended, ResignMs: math.Round(x.ResignMs*10) / 10}
		if prev, ok := lastEnd[x.Name]; ok {
			g := math.Round(float64(x.From.Sub(prev))/1e5) / 10
			l.GapMs = &g
		}
		lastEnd[x.Name] = x.To
		if err := enc.Encode(l); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "tenures-"+workload+".jsonl"), b.Bytes(), 0o644)
}

func (t *tenures) all() []Interval {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Interval(nil), t.iv...)
}

// exclusionCheck turns overlaps into a check.
func exclusionCheck(name, workload string, iv []Interval, zero time.Time, note string) reports.Check {
	ov := Overlaps(iv, zero)
	c := reports.Check{Name: name, Workload: workload, Status: reports.CheckPass, Violations: len(ov), Note: note,
		Summary: fmt.Sprintf("%d tenures, %d overlapping", len(iv), len(ov))}
	switch {
	case len(ov) > 0:
		c.Status = reports.CheckFail
		c.Examples = ov[:min(len(ov), 20)]
	case len(iv) < 2:
		c.Status = reports.CheckUnknown
		c.Summary += "; fewer than 2 tenures: exclusion was not exercised"
	}
	return c
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// newSession makes a concurrency session of ttl on c, trying again every 100ms (a member may be
// down) until ctx ends.
func newSession(ctx context.Context, c *clientv3.Client, ttl time.Duration) (*concurrency.Session, bool) {
	for ctx.Err() == nil {
		s, err := concurrency.NewSession(c, concurrency.WithTTL(int(ttl.Seconds())), concurrency.WithContext(ctx))
		if err == nil {
			return s, true
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			break
		}
	}
	return nil, false
}
