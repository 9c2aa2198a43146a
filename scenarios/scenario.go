package scenarios

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Scenario is one run's plan: which cluster, what load, which faults when, and which thresholds must hold.
type Scenario struct {
	Name        string   `yaml:"name"`
	Description string   `yaml:"description"`
	Seed        int64    `yaml:"seed"`
	Cluster     Cluster  `yaml:"cluster"`
	Workload    Workload `yaml:"workload"`
	Faults      []Fault  `yaml:"faults"`
	// FaultTemplates are the faults as the file wrote them, before repeats were expanded.
	FaultTemplates []Fault    `yaml:"-"`
	Thresholds     Thresholds `yaml:"thresholds"`
	// Abort are stop conditions: when one trips, every fault heals at once and the run stops.
	Abort Aborts `yaml:"abort,omitempty"`
	// MaxSkipped is how many faults the quorum guard may skip in a run that passes (default 0):
	// a run whose faults did not fire proved nothing about them, and its verdict is unknown.
	MaxSkipped int `yaml:"max-skipped,omitempty"`
	// Workloads run beside the KV load of workload, each with its own clients and retry policy.
	Workloads []Block `yaml:"workloads,omitempty"`
	Checks    Checks  `yaml:"checks"`

	// File is where the scenario came from ("builtin:leader-kill" for an embedded one).
	File string `yaml:"-"`
	// Source is the YAML text after --set overrides, kept for the run folder.
	Source []byte `yaml:"-"`
}

// Cluster says which cluster to start.
type Cluster struct {
	Provider string `yaml:"provider"`
	Size     int    `yaml:"size"`
	Network  string `yaml:"network"`
	Subnet   string `yaml:"subnet"` // network: netns addresses
	// Image runs members from an etcd image (provider: container), started with Entrypoint; empty
	// builds a local image from the chaos binary (FROM scratch, running chaos node).
	Image      string   `yaml:"image,omitempty"`
	Entrypoint []string `yaml:"entrypoint,omitempty"`
	EtcdBinary string   `yaml:"etcd-binary"`
	// MemberBinaries starts the named members on other etcd binaries than etcd-binary: a
	// mixed-version cluster from the start (provider local).
	MemberBinaries map[string]string `yaml:"member-binaries,omitempty"`
	Etcd           map[string]string `yaml:"etcd"`
	ReadyTimeout   Duration          `yaml:"ready-timeout"`
	// PeerDelay is a standing condition on every peer link for the whole run, so a cluster on one
	// machine behaves like one across zones; faults add to it and heal back to it.
	PeerDelay PeerDelay `yaml:"peer-delay,omitempty"`
	// DiskDelay is a standing delay on each member's disk for the whole run (through the disk
	// layer), by I/O class: a fast disk made as slow as the one in production.
	DiskDelay DiskDelay `yaml:"disk-delay,omitempty"`
	// ScrapeInterval is how often each member's /metrics is scraped into members.jsonl (RSS, fds,
	// db size, fsync, ...): 10s by default; 0s turns it off.
	ScrapeInterval Duration `yaml:"scrape-interval"`
	// GrowthMinSpan is the shortest span of scrapes over which a member's growth per hour is
	// judged (10m by default): over a few minutes a fit measures the heap warming up, not a leak,
	// and member.*_growth thresholds are unknown.
	GrowthMinSpan Duration `yaml:"growth-min-span"`
	// Endpoints, TLS and Auth reach a cluster the team already runs (provider: remote).
	Endpoints []string `yaml:"endpoints,omitempty"`
	TLS       TLS      `yaml:"tls,omitempty"`
	Auth      Auth     `yaml:"auth,omitempty"`
	// Agents maps member names, as the cluster reports them, to chaos agent on each member's node
	// (provider remote): through them the harness kills, stops and pauses members and cuts or
	// shapes their peer links. AgentTLS is how the harness reaches them; AgentTTL is the dead man's
	// switch: an agent heals a fault AgentTTL after the harness last renewed it.
	Agents   map[string]string `yaml:"agents,omitempty"`
	AgentTLS AgentTLS          `yaml:"agent-tls,omitempty"`
	AgentTTL Duration          `yaml:"agent-ttl,omitempty"`
	// Backup is the harness's own backups: a snapshot saved through the API every so often, kept
	// in the run folder (backups/), which a disaster restores.
	Backup Backup `yaml:"backup,omitempty"`
}

// Backup says how often the harness saves a snapshot through the API, and how many it keeps.
type Backup struct {
	Every Duration `yaml:"every,omitempty"`
	Keep  int      `yaml:"keep,omitempty"`
}

// DefaultBackupKeep is how many snapshots cluster.backup keeps by default.
const DefaultBackupKeep = 3

// Restores are the backups a disaster can restore.
var Restores = []string{"latest-snapshot", "previous-snapshot"}

// AgentTLS is the controller's side of TLS to the agents (paths relative to the scenario file):
// the CA that signs their certificates, the controller's certificate and key for mutual TLS, and
// a file holding the bearer token, for agents started with --token-file.
type AgentTLS struct {
	CA         string `yaml:"ca,omitempty"`
	Cert       string `yaml:"cert,omitempty"`
	Key        string `yaml:"key,omitempty"`
	ServerName string `yaml:"server-name,omitempty"`
	TokenFile  string `yaml:"token-file,omitempty"`
}

// HasAgents says whether the harness acts on the members through chaos agent on their nodes.
func (c Cluster) HasAgents() bool { return c.shared() && len(c.Agents) > 0 }

// DefaultAgentTTL is cluster.agent-ttl's default.
const DefaultAgentTTL = 5 * time.Second

// shared says whether the cluster is one the team already runs (provider remote): the harness
// starts none of its members, signals none, and knows its size only once it reaches it.
func (c Cluster) shared() bool { return c.Provider == "remote" }

// PeerDelay is a one-way delay with jitter on each peer link (a round trip crosses two).
type PeerDelay struct {
	Latency Duration `yaml:"latency,omitempty"`
	Jitter  Duration `yaml:"jitter,omitempty"`
}

// IsZero reports no standing delay.
func (d PeerDelay) IsZero() bool { return d.Latency == 0 && d.Jitter == 0 }

// DiskDelay delays each fsync (and fdatasync), write or read on a member's data dir.
type DiskDelay struct {
	Fsync Duration `yaml:"fsync,omitempty"`
	Write Duration `yaml:"write,omitempty"`
	Read  Duration `yaml:"read,omitempty"`
}

// IsZero reports no standing disk delay.
func (d DiskDelay) IsZero() bool { return d.Fsync == 0 && d.Write == 0 && d.Read == 0 }

// DiskLayer says whether the harness can serve its disk layer under the members' data dirs: it
// must start them as processes of this machine (provider local).
func (c Cluster) DiskLayer() error {
	switch c.Provider {
	case "local":
		return nil
	case "container":
		return fmt.Errorf("provider container: a member's data dir is inside its container, where the harness's FUSE layer is not mounted (the image would need /dev/fuse and CAP_SYS_ADMIN); use provider local")
	}
	return fmt.Errorf("provider %s: the harness does not reach the members' disks (through chaos agent, cluster.agents, only disk-full); use provider local", c.Provider)
}

// TLS is the client side of TLS to a remote cluster; paths are relative to the scenario file.
type TLS struct {
	CA         string `yaml:"ca,omitempty"`
	Cert       string `yaml:"cert,omitempty"`
	Key        string `yaml:"key,omitempty"`
	ServerName string `yaml:"server-name,omitempty"`
}

// Auth names the etcd user and where its password is: an environment variable or a file, never the
// scenario itself (Password exists only to refuse one written there).
type Auth struct {
	User         string `yaml:"user,omitempty"`
	PasswordEnv  string `yaml:"password-env,omitempty"`
	PasswordFile string `yaml:"password-file,omitempty"`
	Password     string `yaml:"password,omitempty"`
}

// Workload is the load driven beside the faults.
type Workload struct {
	Duration    Duration `yaml:"duration"`
	Warmup      Duration `yaml:"warmup"`
	Clients     int      `yaml:"clients"`
	Connections int      `yaml:"connections"`
	Rate        float64  `yaml:"rate"`
	Timeout     Duration `yaml:"timeout"`
	Retry       Retry    `yaml:"retry"`
	Mix         []Op     `yaml:"mix"`
	// Recovery bounds how long after the load ends the harness waits for recovery measurements, and
	// how long after its heal a fault's window lasts (the next fault ends it sooner).
	Recovery Duration `yaml:"recovery"`
	// Prober is the failover prober: a linearizable put every interval, each with its own timeout.
	Prober Prober `yaml:"prober"`
}

// Prober configures the failover prober. Its timeout defaults to the workload's: a write slower than
// a short probe timeout is slow, not lost, and must not read as an outage.
type Prober struct {
	Interval Duration `yaml:"interval"`
	Timeout  Duration `yaml:"timeout"`
}

// Retry is a client retry policy.
type Retry struct {
	Attempts   int      `yaml:"attempts"`
	Backoff    Duration `yaml:"backoff"`
	MaxBackoff Duration `yaml:"max-backoff"`
	Jitter     float64  `yaml:"jitter"`
	// Deadline bounds an op with all its attempts and backoffs (0: attempts x timeout bound it).
	Deadline Duration `yaml:"deadline,omitempty"`
	// On lists the error classes that are retried (default: every class a failover causes).
	On []string `yaml:"on,omitempty"`
}

// Block is one workload beside the main KV load: lease, lock, election, watch, or another KV group
// with its own clients and retry policy (to compare policies under the same fault).
type Block struct {
	Kind    string   `yaml:"kind"`
	Name    string   `yaml:"name,omitempty"`
	Clients int      `yaml:"clients"`
	Rate    float64  `yaml:"rate,omitempty"`
	Timeout Duration `yaml:"timeout"`
	Retry   Retry    `yaml:"retry"`
	// lease: the TTL of each lease and the keys put with it
	TTL  Duration `yaml:"ttl,omitempty"`
	Keys int      `yaml:"keys,omitempty"`
	// lock, election: lock names, how long a holder holds, the session TTL
	Locks      int      `yaml:"locks,omitempty"`
	Hold       Duration `yaml:"hold,omitempty"`
	SessionTTL Duration `yaml:"session-ttl,omitempty"`
	// watch: the prefixes watched (clients are the watchers; rate is the writes to the prefixes)
	Prefixes int `yaml:"prefixes,omitempty"`
	// kv
	Connections int  `yaml:"connections,omitempty"`
	Mix         []Op `yaml:"mix,omitempty"`
	// leak: what it leaks, rate per second (connections, watchers or leases)
	Leaks string `yaml:"leaks,omitempty"`
}

// Checks configures the safety checks.
type Checks struct {
	// KVSafety checks every acknowledged write of the KV load against the final state.
	KVSafety bool `yaml:"kv-safety"`
	// Linearizability runs a small register load on a few keys and checks its history with porcupine.
	Linearizability Linearizability `yaml:"linearizability"`
	// HashKV compares every member's HashKV at one revision at the end of the run (on unless false).
	HashKV *bool `yaml:"hashkv,omitempty"`
}

// Linearizability is the register load whose history porcupine checks.
type Linearizability struct {
	Enabled bool     `yaml:"enabled"`
	Keys    int      `yaml:"keys"`
	Clients int      `yaml:"clients"`
	Rate    float64  `yaml:"rate"`
	MaxOps  int      `yaml:"max-ops"`
	Timeout Duration `yaml:"timeout"` // porcupine's time limit: past it the check is unknown
}

// Op is one entry of the operation mix.
type Op struct {
	Op           string `yaml:"op"`
	Weight       int    `yaml:"weight"`
	Keys         int    `yaml:"keys"`
	Distribution string `yaml:"distribution"`
	ValueSize    int    `yaml:"value-size"`
	Consistency  string `yaml:"consistency"`
}

// Fault is one scheduled fault. A process fault names a target; a network fault chooses its links
// with exactly one of target (every peer link of the target, both ways), isolate, groups, one-way,
// majorities-ring or client (the links between the load generator and the target).
//
// A repeating fault (every) fires at start, start+every, ... while each occurrence heals by until
// (default: the load's end); an action list picks one action per occurrence from the seed. Parse
// expands it: Faults holds the occurrences, FaultTemplates the faults as written.
type Fault struct {
	At Duration `yaml:"at,omitempty"`
	// Action is this occurrence's action; Actions is what the file says (one action or a list).
	Action   string     `yaml:"-"`
	Actions  ActionList `yaml:"action"`
	Target   Target     `yaml:"target,omitempty"`
	Duration Duration   `yaml:"duration,omitempty"`

	Every Duration `yaml:"every,omitempty"`
	Start Duration `yaml:"start,omitempty"`
	Until Duration `yaml:"until,omitempty"`

	Isolate        Targets    `yaml:"isolate,omitempty"`
	Groups         [][]string `yaml:"groups,omitempty"`
	OneWay         OneWay     `yaml:"one-way,omitempty"`
	MajoritiesRing bool       `yaml:"majorities-ring,omitempty"`
	Client         Target     `yaml:"client,omitempty"`

	Latency     Duration  `yaml:"latency,omitempty"`
	Jitter      Duration  `yaml:"jitter,omitempty"`
	Correlation float64   `yaml:"correlation,omitempty"`
	Rate        Bandwidth `yaml:"rate,omitempty"`
	Percent     float64   `yaml:"percent,omitempty"`
	// Ops are the I/O classes a disk fault acts on (fsync, write, read, all); Errno is the error a
	// disk-error returns (EIO, ENOSPC, EROFS); File is what a corrupt fault flips bytes in.
	Ops   []string `yaml:"ops,omitempty"`
	Errno string   `yaml:"errno,omitempty"`
	File  string   `yaml:"file,omitempty"`
	// Keep is how many revisions a compact keeps (it compacts to the current revision minus keep);
	// Restore is which of the harness's backups a disaster restores (latest-snapshot, the default,
	// or previous-snapshot).
	Keep    int64  `yaml:"keep,omitempty"`
	Restore string `yaml:"restore,omitempty"`
	// To is the etcd binary an upgrade or downgrade moves members to (a path relative to the
	// scenario file, or "builtin": the etcd built into this chaos binary); Gap is how long it waits
	// after each member is healthy on it before the next.
	To  string   `yaml:"to,omitempty"`
	Gap Duration `yaml:"gap,omitempty"`
	// Learner adds a member (member-add) as a learner, promoted once it has caught up.
	Learner bool `yaml:"learner,omitempty"`
	// AllowQuorumLoss lets a fault leave fewer than a quorum of members reachable.
	AllowQuorumLoss bool `yaml:"allow-quorum-loss,omitempty"`
	// Line is the fault's line in the scenario file (0 when unknown).
	Line int `yaml:"-"`
	// Template is the index in the file of the fault this is an occurrence of; Occurrence counts
	// from 1 for a repeating fault or an action list, and is 0 for a plain one.
	Template   int `yaml:"-"`
	Occurrence int `yaml:"-"`
}

// Path is the fault's field path in the scenario file: faults[N] of its template.
func (f Fault) Path() string { return fmt.Sprintf("faults[%d]", f.Template) }

// selections are the fields by which a fault chooses what it hits, in the order messages name
// them; its action (faults.Action.Selections) says which it takes.
var selections = []string{"target", "isolate", "groups", "one-way", "majorities-ring", "client"}

// selected lists the selections the fault gives.
func (f Fault) selected() []string {
	given := map[string]bool{
		"target": f.Target.Kind != "", "isolate": len(f.Isolate) > 0, "groups": len(f.Groups) > 0,
		"one-way": f.OneWay.From.Kind != "" || f.OneWay.To.Kind != "", "majorities-ring": f.MajoritiesRing, "client": f.Client.Kind != "",
	}
	var out []string
	for _, k := range selections {
		if given[k] {
			out = append(out, k)
		}
	}
	return out
}

// ownFields are the fault's fields that belong to one action each (its unit in faults says which:
// delay takes latency, jitter and correlation), with whether the fault gives each and how an
// occurrence of another action drops it.
var ownFields = []struct {
	name  string
	given func(Fault) bool
	clear func(*Fault)
}{
	{"latency", func(f Fault) bool { return f.Latency > 0 }, func(f *Fault) { f.Latency = 0 }},
	{"jitter", func(f Fault) bool { return f.Jitter > 0 }, func(f *Fault) { f.Jitter = 0 }},
	{"correlation", func(f Fault) bool { return f.Correlation != 0 }, func(f *Fault) { f.Correlation = 0 }},
	{"rate", func(f Fault) bool { return f.Rate > 0 }, func(f *Fault) { f.Rate = 0 }},
	{"percent", func(f Fault) bool { return f.Percent != 0 }, func(f *Fault) { f.Percent = 0 }},
	{"ops", func(f Fault) bool { return len(f.Ops) > 0 }, func(f *Fault) { f.Ops = nil }},
	{"errno", func(f Fault) bool { return f.Errno != "" }, func(f *Fault) { f.Errno = "" }},
	{"file", func(f Fault) bool { return f.File != "" }, func(f *Fault) { f.File = "" }},
	{"keep", func(f Fault) bool { return f.Keep != 0 }, func(f *Fault) { f.Keep = 0 }},
	{"restore", func(f Fault) bool { return f.Restore != "" }, func(f *Fault) { f.Restore = "" }},
	{"to", func(f Fault) bool { return f.To != "" }, func(f *Fault) { f.To = "" }},
	{"gap", func(f Fault) bool { return f.Gap != 0 }, func(f *Fault) { f.Gap = 0 }},
	{"learner", func(f Fault) bool { return f.Learner }, func(f *Fault) { f.Learner = false }},
}

// Rules are the rules of the fault's action (nil for a name no action is registered by).
func (f Fault) Rules() *ActionRules { return ActionOf(f.Action) }

// OneWay is a one-way partition or shaping: only the bytes from From to To.
type OneWay struct {
	From Target `yaml:"from"`
	To   Target `yaml:"to"`
}

// Names of the values the schema accepts; error messages list them.
var (
	Providers = []string{"local", "container", "remote"}
	// RetryClasses are the error classes a retry policy can name.
	RetryClasses = []string{"deadline", "unavailable", "no_leader", "leader_changed", "server_timeout", "other"}
	Networks     = []string{"proxy", "netns", "docker", "direct"}
	// OpNames are the KV load's ops.
	OpNames       = []string{"put", "get", "delete", "txn"}
	Distributions = []string{"uniform", "zipf", "sequential"}
	Consistencies = []string{"linearizable", "serializable"}
	// memberTargets are the words a target can be that name members by their place in the cluster;
	// TargetKinds adds the workloads' holders.
	memberTargets = []string{"leader", "follower", "random", "minority", "majority", "all", "each"}
)

// MemberName is the name of the i-th member (0-based) of a cluster the harness starts.
func MemberName(i int) string { return "member-" + strconv.Itoa(i+1) }

// Duration is a time.Duration written as "100ms", "1.5s", "2m".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes the duration as text.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

func (d *Duration) decodeNode(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("must be a duration such as 500ms, 1.5s or 2m")
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ParseDuration parses a non-negative Go duration; it demands a unit so "5" is not silently 5ns.
func ParseDuration(s string) (time.Duration, error) {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; valid: a number with a unit such as 500ms, 1.5s or 2m", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("%q is negative; a duration must be 0 or more", s)
	}
	return v, nil
}

// Target selects members when a fault fires: a kind (leader, follower, random, minority, majority, all,
// or each: all, one at a time, for the operations that go member by member),
// a member name, {count: N} or {percent: P}.
type Target struct {
	Kind    string // one of TargetKinds(), "member", "count" or "percent"
	Member  string
	Count   int
	Percent int
}

func (t Target) String() string {
	switch t.Kind {
	case "member":
		return t.Member
	case "count":
		return fmt.Sprintf("count:%d", t.Count)
	case "percent":
		return fmt.Sprintf("percent:%d", t.Percent)
	}
	return t.Kind
}

// MarshalYAML writes the target in the form it is read.
func (t Target) MarshalYAML() (any, error) {
	switch t.Kind {
	case "count":
		return map[string]int{"count": t.Count}, nil
	case "percent":
		return map[string]int{"percent": t.Percent}, nil
	}
	return t.String(), nil
}

func (t *Target) decodeNode(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		v := strings.TrimSpace(n.Value)
		if v == "" {
			return fmt.Errorf("is empty; valid: %s, a member name, {count: N} or {percent: P}", strings.Join(TargetKinds(), ", "))
		}
		for _, k := range TargetKinds() {
			if v == k {
				*t = Target{Kind: k}
				return nil
			}
		}
		*t = Target{Kind: "member", Member: v}
		return nil
	case yaml.MappingNode:
		if len(n.Content) != 2 {
			return fmt.Errorf("must have exactly one key; valid: {count: N} or {percent: P}")
		}
		k, v := n.Content[0].Value, n.Content[1].Value
		num, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%s: %q is not a whole number", k, v)
		}
		switch k {
		case "count":
			*t = Target{Kind: "count", Count: num}
		case "percent":
			*t = Target{Kind: "percent", Percent: num}
		default:
			return fmt.Errorf("unknown key %q; valid: {count: N} or {percent: P}", k)
		}
		return nil
	}
	return fmt.Errorf("must be %s, a member name, {count: N} or {percent: P}", strings.Join(TargetKinds(), ", "))
}

// Targets is one target or a list of them (isolate: [leader, follower]); a list picks distinct members.
type Targets []Target

func (ts *Targets) decodeNode(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		var t Target
		if err := t.decodeNode(n); err != nil {
			return err
		}
		*ts = Targets{t}
		return nil
	}
	var errs fieldErrs
	for i, c := range n.Content {
		var t Target
		if err := t.decodeNode(c); err != nil {
			errs = append(errs, fieldErr{line: c.Line, field: fmt.Sprintf("[%d]", i), msg: err.Error()})
			continue
		}
		*ts = append(*ts, t)
	}
	if len(errs) > 0 {
		return errs
	}
	if len(*ts) == 0 {
		return fmt.Errorf("is an empty list; name at least one target")
	}
	return nil
}

func (ts Targets) String() string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = t.String()
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// MarshalYAML writes one target as itself and several as a list.
func (ts Targets) MarshalYAML() (any, error) {
	if len(ts) == 1 {
		return ts[0].MarshalYAML()
	}
	return []Target(ts), nil
}

// Bandwidth is a rate in bytes per second, written as 1mbit, 500kbit, 2MB/s or 64KiB/s.
type Bandwidth int64

var bandwidthUnits = []struct {
	suffix string
	bytes  float64
}{
	{"gbit", 1e9 / 8}, {"mbit", 1e6 / 8}, {"kbit", 1e3 / 8}, {"bit", 1.0 / 8},
	{"GiB/s", 1 << 30}, {"MiB/s", 1 << 20}, {"KiB/s", 1 << 10},
	{"GB/s", 1e9}, {"MB/s", 1e6}, {"KB/s", 1e3}, {"kB/s", 1e3}, {"B/s", 1},
}

// ParseBandwidth reads a rate with its unit.
func ParseBandwidth(s string) (Bandwidth, error) {
	v := strings.TrimSpace(s)
	for _, u := range bandwidthUnits {
		if num, ok := strings.CutSuffix(v, u.suffix); ok {
			x, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || x <= 0 {
				break
			}
			b := Bandwidth(x * u.bytes)
			if b < 1 {
				break
			}
			return b, nil
		}
	}
	return 0, fmt.Errorf("%q is not a rate; valid: a positive number with a unit such as 1mbit, 500kbit, 2MB/s or 64KiB/s", s)
}

func (b *Bandwidth) decodeNode(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("must be a rate such as 1mbit or 2MB/s")
	}
	v, err := ParseBandwidth(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

func (b Bandwidth) String() string { return fmt.Sprintf("%dB/s", int64(b)) }

// MarshalYAML writes the rate in bytes per second.
func (b Bandwidth) MarshalYAML() (any, error) { return b.String(), nil }
