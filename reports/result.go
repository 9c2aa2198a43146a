package reports

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// ResultVersion is bumped when result.json changes incompatibly.
const ResultVersion = 1

// Verdicts.
const (
	VerdictPass        = "pass"
	VerdictFail        = "fail"
	VerdictInterrupted = "interrupted"
	VerdictError       = "error"
	// VerdictAborted: a stop condition (abort:) tripped; every fault was healed and the load stopped.
	VerdictAborted = "aborted"
	// VerdictUnknown: nothing failed, but the run exercised too little to pass (the quorum guard
	// skipped more faults than the scenario's max-skipped allows). It is not a pass: exit 1, and
	// never a baseline.
	VerdictUnknown = "unknown"
)

// Result is the whole verdict of one run, written as result.json.
type Result struct {
	Version     int    `json:"version"`
	Scenario    string `json:"scenario"`
	Description string `json:"description,omitempty"`
	File        string `json:"file"`
	// Fingerprint identifies the scenario as run: a hash of its text after --set. Runs of one
	// fingerprint are comparable; a history keeps only them.
	Fingerprint string `json:"fingerprint,omitempty"`
	Seed        int64  `json:"seed"`
	Passed      bool   `json:"passed"`
	Verdict     string `json:"verdict"`
	Reason      string `json:"reason,omitempty"`
	// Partial marks a result rebuilt by chaos report from a run whose harness died before it
	// wrote result.json (verdict "partial"): what was on disk, up to where it stopped.
	Partial   bool      `json:"partial,omitempty"`
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at"`
	Cluster   Cluster   `json:"cluster"`
	// RunID names the run; KeyPrefix is where it wrote ("chaos/<run id>/").
	RunID     string `json:"run_id,omitempty"`
	KeyPrefix string `json:"key_prefix,omitempty"`
	// Aborted is set when a stop condition tripped.
	Aborted *Abort `json:"aborted,omitempty"`
	// LoadStartedAt is time zero of the fault schedule (the load's start, warm-up included).
	LoadStartedAt time.Time `json:"load_started_at"`

	Thresholds []ThresholdResult `json:"thresholds"`
	Faults     []FaultRecord     `json:"faults"`
	// FaultStats sums up the faults per action ("all" first when there are several): for a soak's
	// hundreds of occurrences, count, p50, p99 and max of what they cost.
	FaultStats []FaultStat `json:"fault_stats,omitempty"`
	Failovers  []Failover  `json:"failovers"`
	Recoveries []Recovery  `json:"recoveries"`
	// Backups are the snapshots the harness saved through the API (cluster.backup).
	Backups   []Backup                `json:"backups,omitempty"`
	Latency   map[string]LatencyStats `json:"latency"`
	Phases    []Phase                 `json:"phases"`
	Ops       int64                   `json:"ops"`
	FailedOps int64                   `json:"failed_ops"`
	Errors    map[string]int64        `json:"errors"`
	Attempts  map[string]int64        `json:"attempt_errors"`
	// AttemptCodes counts failed attempts by gRPC code or etcd error ("etcd: no leader").
	AttemptCodes map[string]int64      `json:"attempt_codes,omitempty"`
	Retries      map[string]RetryStats `json:"retries"`
	Throughput   Throughput            `json:"throughput"`
	Load         LoadStats             `json:"load"`
	Leader       LeaderStats           `json:"leader"`
	Prober       ProberStats           `json:"prober"`
	// MemberHealth sums up each member's scrapes (members.jsonl): growth per hour of RSS, open fds
	// and db size after the warm-up, and the largest levels seen.
	MemberHealth []MemberHealth `json:"member_health,omitempty"`
	// Checks are the safety checks: each passes, fails, or is unknown (never a pass).
	Checks []Check `json:"checks"`
	// Alarms are the alarms the cluster held at the end of the run (NOSPACE, CORRUPT), by member.
	Alarms []string `json:"alarms,omitempty"`
	// Workloads are the workloads beside the main KV load, with what each measured.
	Workloads []WorkloadResult `json:"workloads,omitempty"`
	// Repeats and Aggregate are set on the top result.json of a chaos run --repeat folder: its runs,
	// and each compared metric over them.
	Repeats   []RepeatRun          `json:"repeats,omitempty"`
	Aggregate map[string]Aggregate `json:"aggregate,omitempty"`
}

// Check statuses.
const (
	CheckPass    = "pass"
	CheckFail    = "fail"
	CheckUnknown = "unknown"
)

// Check is one safety check's verdict, with up to 20 examples of what broke it.
type Check struct {
	Name       string   `json:"name"`
	Workload   string   `json:"workload,omitempty"`
	Status     string   `json:"status"`
	Summary    string   `json:"summary"`
	Violations int      `json:"violations"`
	Examples   []string `json:"examples,omitempty"`
	Note       string   `json:"note,omitempty"` // what the check means, or a known caveat it shows
}

// WorkloadResult is what one workload block measured. A kv block has its own latency, errors and
// retries (so two retry policies can be compared under the same fault).
type WorkloadResult struct {
	Name     string                  `json:"name"`
	Kind     string                  `json:"kind"`
	Stats    map[string]float64      `json:"stats,omitempty"`
	Latency  map[string]LatencyStats `json:"latency,omitempty"`
	Ops      int64                   `json:"ops,omitempty"`
	Failed   int64                   `json:"failed_ops,omitempty"`
	Errors   map[string]int64        `json:"errors,omitempty"`
	Attempts map[string]int64        `json:"attempt_errors,omitempty"`
	Retries  map[string]RetryStats   `json:"retries,omitempty"`
}

// Cluster describes what was run.
type Cluster struct {
	Provider    string            `json:"provider"`
	Size        int               `json:"size"`
	Members     []string          `json:"members"`
	EtcdVersion string            `json:"etcd_version"`
	EtcdBinary  string            `json:"etcd_binary,omitempty"`
	Etcd        map[string]string `json:"etcd,omitempty"`
	Network     string            `json:"network"`
	// ClientPath and PeerPath say what sits between the load and the members, and between members:
	// "direct", "proxy" (the harness's userspace proxy, only where a fault of the scenario needs
	// it), "netns", "docker-proxy" (a published port); latency read beside a proxy includes it.
	ClientPath string `json:"client_path,omitempty"`
	PeerPath   string `json:"peer_path,omitempty"`
	// PeerDelay is the standing one-way delay on every peer link (cluster.peer-delay), "20ms±5ms".
	PeerDelay string `json:"peer_delay,omitempty"`
	// DiskPath is "fuse" when the harness's disk layer sits under every member's data dir (a disk
	// fault or cluster.disk-delay needs it): fsync and write latency include its pass-through;
	// "fuse-passthrough" when the faults act on fsyncs alone and the kernel reads and writes the
	// backing files itself (where it allows it: Linux 6.9, root).
	DiskPath string `json:"disk_path,omitempty"`
	// DiskDelay is the standing disk delay (cluster.disk-delay), "fsync 10ms".
	DiskDelay string `json:"disk_delay,omitempty"`
	// PeerRTT is the peer round trip etcd itself measured during the run.
	PeerRTT *PeerRTT `json:"peer_rtt,omitempty"`
	// Endpoints are the client URLs a remote cluster was reached at; TLS and Auth say how (never a secret).
	Endpoints []string `json:"endpoints,omitempty"`
	TLS       bool     `json:"tls,omitempty"`
	AuthUser  string   `json:"auth_user,omitempty"`
}

// PeerRTT is etcd's own measure of the peer round trip (etcd_network_peer_round_trip_time_seconds:
// each link's smoothed probe round trip, recorded 5s after the peer is added and then every 30s):
// the mean of the records over the members' lifetimes, leaving out the zeros a prober records
// before its first probe succeeds. Samples is how many records that is.
type PeerRTT struct {
	MeanMs  float64 `json:"mean_ms"`
	Samples int     `json:"samples"`
}

// Abort says which stop condition tripped, when, and what it saw.
type Abort struct {
	Condition string  `json:"condition"`
	AtS       float64 `json:"at_s"`     // seconds from load start
	Observed  string  `json:"observed"` // the value over the window, or the alarm
	// HealedWithinMs is from the trip to the last fault healed (nil: none was active).
	HealedWithinMs *float64 `json:"healed_within_ms,omitempty"`
}

// ThresholdResult is one threshold with what was observed.
type ThresholdResult struct {
	Metric    string   `json:"metric"`
	Condition string   `json:"condition"`
	Observed  string   `json:"observed"`
	Value     *float64 `json:"value"` // ms for durations; nil when not seen
	Passed    bool     `json:"passed"`
	// Status is pass, fail or unknown: unknown when nothing exercised the metric (a failover
	// threshold where no fault cost an election). Unknown is never a pass, but it does not fail the
	// run: the summary says what was not exercised.
	Status string `json:"status"`
}

// FaultRecord is one fault as it happened.
type FaultRecord struct {
	Index int `json:"index"`
	// Template is the fault's index in the scenario file; Occurrence counts the occurrences of a
	// repeating fault (or an action list) from 1, and is absent for a plain fault.
	Template   int      `json:"template"`
	Occurrence int      `json:"occurrence,omitempty"`
	Action     string   `json:"action"`
	Target     string   `json:"target"`
	Members    []string `json:"members"`
	WasLeader  bool     `json:"was_leader"`  // the leader when it fired was among the members
	AtS        float64  `json:"at_s"`        // its acting call began, seconds from load start
	HealedAtS  *float64 `json:"healed_at_s"` // the heal's acting call began; nil if never healed by the run
	// CallMs is how long the acting call took (a signal: microseconds; a Docker API call: more): the
	// fault took effect within it.
	CallMs *float64 `json:"call_ms,omitempty"`
	Error  string   `json:"error,omitempty"`
	// Skipped says why the quorum guard did not fire the fault (no leader, a member not answering).
	Skipped string `json:"skipped,omitempty"`
	// What the fault cost, as seen from its injection to WindowEndS (the next fault, its heal plus
	// workload.recovery, or the load's end): whether a leader change was seen (Election), and the
	// longest span in which no prober write sent in it was acknowledged (OutageWriteMs).
	Election       bool     `json:"election"`
	OutageWriteMs  *float64 `json:"outage_write_ms"`
	OutageFromS    *float64 `json:"outage_from_s,omitempty"`
	WindowEndS     *float64 `json:"window_end_s,omitempty"`
	ProbesAcked    int      `json:"probes_acked"`
	SlowestProbeMs *float64 `json:"slowest_probe_ms,omitempty"`
	// Network faults: the backend, the links as from->to, and, where the proxy carries them, the
	// bytes each link delivered between the fault taking effect and its heal.
	Network   string           `json:"network,omitempty"`
	Links     []string         `json:"links,omitempty"`
	LinkBytes map[string]int64 `json:"link_bytes,omitempty"`
	// Disk faults: what the fault did on each member's disk.
	Disk []DiskEffect `json:"disk,omitempty"`
	// Operations (compact, defrag, member-replace, disaster): what the operation measured. The
	// fault's outage, election and recovery fields hold what it cost the load, as for a fault.
	Operation *Operation `json:"operation,omitempty"`
}

// Operation is what an operation measured, each part filled by its action.
type Operation struct {
	// compact: the revision when it began, the revision compacted to, the call's time.
	Revision        int64    `json:"revision,omitempty"`
	CompactRevision int64    `json:"compact_revision,omitempty"`
	CompactMs       *float64 `json:"compact_ms,omitempty"`
	// defrag: each member defragmented.
	Defrag []Defrag `json:"defrag,omitempty"`
	// member-replace, member-add, member-remove
	Membership *Membership `json:"membership,omitempty"`
	// disaster
	Disaster *Disaster `json:"disaster,omitempty"`
	// upgrade, downgrade: each member moved to the new binary, in order, and the span in which the
	// members ran different versions (from the first one started on the new binary to the last
	// one healthy on it); a downgrade's API steps.
	Versions      []VersionStep `json:"versions,omitempty"`
	MixedWindowMs *float64      `json:"mixed_window_ms,omitempty"`
	Downgrade     *Downgrade    `json:"downgrade,omitempty"`
	// ClusterVersion is etcd's cluster version once every member reported it (its
	// etcd_cluster_version; for a downgrade, with the downgrade completed), ClusterVersionMs when,
	// from the operation's start: etcd moves it some seconds after the last member.
	ClusterVersion   string   `json:"cluster_version,omitempty"`
	ClusterVersionMs *float64 `json:"cluster_version_ms,omitempty"`
}

// VersionStep is one member moved to another etcd binary: the versions it reported (Status)
// before and after, when it was stopped (ms from the operation's start), and how long from its
// stop until it answered on the new version having caught up with the leader.
type VersionStep struct {
	Member    string  `json:"member"`
	From      string  `json:"from"`
	To        string  `json:"to"`
	StoppedMs float64 `json:"stopped_ms"`
	HealthyMs float64 `json:"healthy_ms"`
}

// Downgrade is etcd's downgrade API as a downgrade drove it: the target (major.minor), when it was
// enabled and when every member's storage reported the target, in ms from the operation's start;
// Refused is etcd's answer when it refused (validate or enable), and Cancelled why the harness
// cancelled it part-way.
type Downgrade struct {
	Target    string  `json:"target"`
	EnabledMs float64 `json:"enabled_ms"`
	StorageMs float64 `json:"storage_ms"`
	Refused   string  `json:"refused,omitempty"`
	Cancelled string  `json:"cancelled,omitempty"`
}

// Defrag is one member's defragmentation: the call's time, its db size before and after, and the
// longest a serializable read of that member waited meanwhile (one every 5ms).
type Defrag struct {
	Member          string  `json:"member"`
	Ms              float64 `json:"ms"`
	DBSizeBefore    int64   `json:"db_size_before"`
	DBInUseBefore   int64   `json:"db_in_use_before"`
	DBSizeAfter     int64   `json:"db_size_after"`
	MemberLatencyMs float64 `json:"member_latency_ms"`
	Probes          int     `json:"probes"`
}

// Membership is a change of the cluster's members (member-replace, member-add, member-remove):
// etcd's ids of the member before and after, the cluster's size before and after, and when each
// step was done, in ms from the operation's first acting call.
type Membership struct {
	Member     string  `json:"member"`
	OldID      string  `json:"old_id,omitempty"`
	NewID      string  `json:"new_id,omitempty"`
	Learner    bool    `json:"learner"` // added as a learner (and promoted once caught up)
	SizeBefore int     `json:"size_before"`
	SizeAfter  int     `json:"size_after"`
	RemovedMs  float64 `json:"removed_ms,omitempty"`
	ExitedMs   float64 `json:"exited_ms,omitempty"`
	AddedMs    float64 `json:"added_ms,omitempty"`
	StartedMs  float64 `json:"started_ms,omitempty"`
	PromotedMs float64 `json:"promoted_ms,omitempty"`
	// CaughtUpMs is from the learner's start to the promotion etcd accepted (it refuses one until
	// the learner has caught up); PromoteRefused counts the refusals before.
	CaughtUpMs     float64 `json:"caught_up_ms,omitempty"`
	PromoteRefused int     `json:"promote_refused,omitempty"`
	// ServingMs is when the member added answered the harness on its own client URL (etcd serves
	// clients once the member has published itself through raft); Refused counts removals or
	// additions etcd refused as unhealthy ("unhealthy cluster": too few members active for long)
	// before one it accepted.
	ServingMs float64 `json:"serving_ms,omitempty"`
	Refused   int     `json:"refused,omitempty"`
}

// Disaster is a disaster drill: the members lost, the snapshot restored, and the recovery time
// (RTO: from the loss to the first write the restored cluster acknowledged) and point (RPO: the
// acknowledged writes after the snapshot's revision, lost by design; -1 unknown).
type Disaster struct {
	Lost             []string `json:"lost"`
	Snapshot         string   `json:"snapshot"`
	SnapshotRevision int64    `json:"snapshot_revision"`
	SnapshotAgeMs    float64  `json:"snapshot_age_ms"`
	RevisionBump     int64    `json:"revision_bump"`
	RestoredMs       float64  `json:"restored_ms"`
	RTOMs            float64  `json:"rto_ms"`
	RPOWrites        int64    `json:"rpo_writes"`
	// LostBeforeSnapshot counts acknowledged writes at or before the snapshot's revision that the
	// restored cluster does not hold: each is a violation (kv-safety fails).
	LostBeforeSnapshot int `json:"lost_before_snapshot"`
}

// Backup is one snapshot the harness saved through the API (cluster.backup).
type Backup struct {
	Path     string  `json:"path"`
	Member   string  `json:"member"`
	Revision int64   `json:"revision"`
	Size     int64   `json:"size"`
	AtS      float64 `json:"at_s"`
	Ms       float64 `json:"ms"`
	Removed  bool    `json:"removed,omitempty"` // a newer one replaced it (cluster.backup.keep)
}

// DiskEffect is what a disk fault did to one member: the ops of its data dir the fault delayed,
// failed or stalled (and the fsyncs served meanwhile), what a power loss dropped, whether the
// member's process exited (how, and its last log line) and was started again at the heal, and
// for corrupt, what was flipped and how the start went.
type DiskEffect struct {
	Member       string  `json:"member"`
	Fsyncs       int64   `json:"fsyncs"`
	Delayed      int64   `json:"delayed,omitempty"`
	Failed       int64   `json:"failed,omitempty"`
	Stalled      int64   `json:"stalled,omitempty"`
	DelayedForMs float64 `json:"delayed_for_ms,omitempty"`
	// DroppedBytes, DroppedFiles and DroppedEntries: a power loss's unsynced writes and names.
	DroppedBytes   *int64 `json:"dropped_bytes,omitempty"`
	DroppedFiles   int    `json:"dropped_files,omitempty"`
	DroppedEntries int    `json:"dropped_entries,omitempty"`
	Exited         string `json:"exited,omitempty"`
	Restarted      bool   `json:"restarted,omitempty"`
	Corrupted      string `json:"corrupted,omitempty"`
	Start          string `json:"start,omitempty"`
}

// Failover is measured for a fault after which a leader change was seen (an election in a newer
// term): a fault that cost no election has none, and adds no failover sample.
type Failover struct {
	Fault           int      `json:"fault"`
	Action          string   `json:"action"`
	Target          string   `json:"target"`
	Member          string   `json:"member"`
	OldTerm         uint64   `json:"old_term"`
	NewLeader       string   `json:"new_leader,omitempty"`
	NewTerm         uint64   `json:"new_term,omitempty"`
	LeaderElectedMs *float64 `json:"leader_elected_ms"` // nil: not seen
	LeaderElectedBy string   `json:"leader_elected_by,omitempty"`
	WriteRestoredMs *float64 `json:"write_restored_ms"`
	Note            string   `json:"note,omitempty"`
}

// Recovery is measured for each member a fault hit, after the heal.
type Recovery struct {
	Fault          int      `json:"fault"`
	Member         string   `json:"member"`
	CaughtUpMs     *float64 `json:"caught_up_ms"`
	ReadRestoredMs *float64 `json:"read_restored_ms"`
}

// LatencyStats summarises one histogram of successful ops, in milliseconds; Failed counts the ops
// left out of it because they failed (their latencies are in latency.failed).
type LatencyStats struct {
	Count  int64   `json:"count"`
	Failed int64   `json:"failed,omitempty"`
	Min    float64 `json:"min_ms"`
	Mean   float64 `json:"mean_ms"`
	P50    float64 `json:"p50_ms"`
	P90    float64 `json:"p90_ms"`
	P99    float64 `json:"p99_ms"`
	P999   float64 `json:"p999_ms"`
	Max    float64 `json:"max_ms"`
}

// Phase is a stretch of the run: warm-up, before, during and after each fault.
type Phase struct {
	Name    string                  `json:"name"`
	StartS  float64                 `json:"start_s"`
	EndS    float64                 `json:"end_s"`
	Latency map[string]LatencyStats `json:"latency"`
}

// RetryStats is the retry behaviour of one op type.
type RetryStats struct {
	Ops         int64   `json:"ops"`
	Attempts    int64   `json:"attempts"`
	PerOp       float64 `json:"attempts_per_op"`
	MaxAttempts int64   `json:"max_attempts"`
	RetriedOps  int64   `json:"retried_ops"`
	// PerSuccess is retry amplification: attempts per op that succeeded.
	PerSuccess  float64 `json:"attempts_per_success"`
	RetryTimeMs float64 `json:"retry_time_ms"`
}

// LoadStats is how the KV load kept to its schedule. TargetRate is 0 for a closed loop. An op is
// late when it was sent more than LateAfterMs (the op timeout) after its due time; dropped when it
// was due before the load ended but never sent; MaxBacklog is the most ops due and not yet sent at
// once. AchievedRate counts the ops due after the warm-up that succeeded, per second after it.
type LoadStats struct {
	TargetRate   float64 `json:"target_rate"`
	AchievedRate float64 `json:"achieved_rate"`
	Late         int64   `json:"late"`
	Dropped      int64   `json:"dropped"`
	MaxBacklog   int64   `json:"max_backlog"`
	Due          int64   `json:"due,omitempty"`
	Sent         int64   `json:"sent"`
	LateAfterMs  float64 `json:"late_after_ms,omitempty"`
	// Cut are the ops in flight when the load ended or a stop condition stopped it: sent, neither
	// acknowledged nor failed (in no latency or error figure).
	Cut int64 `json:"cut"`
}

// Throughput is completed ops per second of load (warm-up excluded).
type Throughput struct {
	Avg       float64   `json:"avg"`
	Min       float64   `json:"min"`
	Max       float64   `json:"max"`
	PerSecond []float64 `json:"per_second"`
	// Timeline has one entry per second of the load, warm-up included.
	Timeline []Second `json:"timeline,omitempty"`
}

// Second is one second of the load: completed ops per second and failed ops.
type Second struct {
	T      float64 `json:"t"`   // start, seconds from the load's start
	Ops    float64 `json:"ops"` // acknowledged ops per second (Failed are not in it)
	Failed int64   `json:"failed"`
	Warmup bool    `json:"warmup,omitempty"`
}

// LeaderStats counts leader changes seen by the watcher during the load.
type LeaderStats struct {
	Changes int      `json:"changes"`
	Initial string   `json:"initial"`
	Final   string   `json:"final"`
	Terms   []uint64 `json:"terms"`
	// SeenByEtcd is, per member that ran through the whole load, how many leader changes etcd
	// itself counted meanwhile (etcd_server_leader_changes_seen_total): a witness for Changes.
	SeenByEtcd map[string]int `json:"seen_by_etcd,omitempty"`
	// Spurious counts the leader changes seen outside every fault's window (from the fault's
	// injection to the next fault, its heal plus workload.recovery, or the load's end): no fault
	// explains them, so they are the cost of timeouts set too tight. SpuriousAtS are their times,
	// seconds from the load's start.
	Spurious    int       `json:"spurious"`
	SpuriousAtS []float64 `json:"spurious_at_s,omitempty"`
	// Unheld is set when the cluster never became ready because, by etcd's own logs, elections did
	// not hold: leaders were elected and deposed, or no election completed.
	Unheld *Unheld `json:"unheld,omitempty"`
}

// Unheld is what etcd's logs said of a cluster whose elections did not hold before it was ready.
type Unheld struct {
	Candidacies int      `json:"candidacies"` // "became candidate" lines over the members
	Leaders     int      `json:"leaders"`     // "became leader" lines: elections that completed
	PerMember   []string `json:"per_member"`
}

// ProberStats is the failover prober's record: the probes sent during the load and acknowledged,
// and availability, the share of the load's time for which the probe sent was acknowledged (probes
// are 10ms apart while a fault is measured or a change suspected, 100ms apart otherwise; each weighs
// the time since the one before it). ProbedS is the time the probes stood for (the load's length
// after the warm-up).
type ProberStats struct {
	Sent         int64   `json:"sent"`
	Acked        int64   `json:"acked"`
	Availability float64 `json:"availability"`
	ProbedS      float64 `json:"probed_s,omitempty"`
}

// State is the threshold's status; a result written before status existed has only Passed.
func (t ThresholdResult) State() string {
	switch {
	case t.Status != "":
		return t.Status
	case t.Passed:
		return "pass"
	}
	return "fail"
}

// Ms turns a duration into a pointer to milliseconds (nil for a negative duration: "not seen").
func Ms(d time.Duration) *float64 {
	if d < 0 {
		return nil
	}
	v := float64(d) / float64(time.Millisecond)
	return &v
}

// StatsOf summarises a distribution in milliseconds.
func StatsOf(d Dist) LatencyStats {
	if d == nil || d.Count() == 0 {
		return LatencyStats{}
	}
	ms := func(ns float64) float64 {
		if math.IsInf(ns, 0) {
			return -1
		}
		return math.Round(ns/1e3) / 1e3
	}
	return LatencyStats{Count: d.Count(), Min: ms(d.Min()), Mean: ms(d.Mean()), P50: ms(d.Quantile(50)),
		P90: ms(d.Quantile(90)), P99: ms(d.Quantile(99)), P999: ms(d.Quantile(99.9)), Max: ms(d.Max())}
}

// WriteJSON writes result.json atomically (a temporary file renamed into place).
func (r *Result) WriteJSON(dir string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding result.json: %w", err)
	}
	tmp := filepath.Join(dir, "result.json.tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing result.json: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, "result.json"))
}

// ReadResult reads a run folder's result.json.
func ReadResult(dir string) (*Result, error) {
	b, err := os.ReadFile(filepath.Join(dir, "result.json"))
	if err != nil {
		return nil, fmt.Errorf("reading result: %w", err)
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decoding %s/result.json: %w", dir, err)
	}
	return &r, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
