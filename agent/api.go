// Package agent is chaos agent: a small server on each node of a cluster the team runs, which
// injects process, peer-network and disk faults on that node for the controller (chaos run on a
// remote cluster), proves each step on the node itself, and never leaves the node broken: every
// fault it holds has a TTL the controller renews (a dead man's switch) and a scheduled end, both
// enforced by the agent alone, and an on-disk ledger it heals from when it starts. It also reports
// read-only host facts for chaos preflight (swap, the data dir's filesystem, etcd's flags, the
// clock).
//
// The API is JSON over HTTPS (mutual TLS, or a bearer token over TLS; plaintext only on
// loopback). Client is the controller's side of it.
package agent

import (
	"time"

	"github.com/etcd-chaos/etcd-chaos/faults"
)

// Hold kinds: one of each at most is held at a time (faults run one after another).
const (
	KindProcess = "process" // etcd killed, stopped or paused
	KindNet     = "net"     // blackhole routes or a qdisc on the peer links
	KindDisk    = "disk"    // the data dir's filesystem filled
)

// Process operations.
const (
	OpKill   = "kill"   // SIGKILL (or the container runtime's kill); heal: start
	OpStop   = "stop"   // SIGTERM; heal: start
	OpPause  = "pause"  // SIGSTOP (or the container's pause); heal: resume
	OpResume = "resume" // SIGCONT (unpause): ends a pause
	OpStart  = "start"  // start etcd again: ends a kill or a stop
)

// Lease is how long a fault may hold: TTL from its last renewal, and never past Until.
type Lease struct {
	// Owner names the run that made the fault (its run id): renewals and chaos heal DIR act on
	// the owner's holds.
	Owner string `json:"owner,omitempty"`
	// TTLMs is the dead man's switch: the agent heals the fault TTLMs after the last renewal.
	TTLMs int64 `json:"ttl_ms"`
	// Until is the fault's scheduled end (zero: none); the agent heals it then on its own.
	Until time.Time `json:"until,omitzero"`
}

// Hold is a fault the agent holds on its node, as its ledger records it.
type Hold struct {
	Kind    string    `json:"kind"`
	What    string    `json:"what"` // "paused", "killed", "blackhole to 10.0.0.2", "disk filled to 0 B free"
	Lease   Lease     `json:"lease"`
	Since   time.Time `json:"since"`
	Renewed time.Time `json:"renewed"`
	// Process: the process held (its PID and start time name it even after the PID is reused).
	PID      int    `json:"pid,omitempty"`
	PIDStart string `json:"pid_start,omitempty"`
	Op       string `json:"op,omitempty"`
	// Net: the interface, the peers' addresses and the shape.
	Iface string        `json:"iface,omitempty"`
	Peers []string      `json:"peers,omitempty"`
	Shape *faults.Shape `json:"shape,omitempty"`
	// Disk: the file that fills the data dir's filesystem.
	FillFile string `json:"fill_file,omitempty"`
}

// Deadline is when the agent heals the hold unless renewed first.
func (h *Hold) Deadline() time.Time {
	d := h.Renewed.Add(time.Duration(h.Lease.TTLMs) * time.Millisecond)
	if !h.Lease.Until.IsZero() && h.Lease.Until.Before(d) {
		return h.Lease.Until
	}
	return d
}

// ProcRequest asks the agent to act on its etcd. PID, Unit and Container, when set, say what the
// controller believes it acts on: a request naming another is refused.
type ProcRequest struct {
	Op        string `json:"op"`
	Lease     Lease  `json:"lease"`
	PID       int    `json:"pid,omitempty"`
	Unit      string `json:"unit,omitempty"`
	Container string `json:"container,omitempty"`
}

// ProcStatus is etcd's process as the agent reads it back.
type ProcStatus struct {
	PID     int              `json:"pid"`
	State   faults.ProcState `json:"state"`
	Managed string           `json:"managed"` // "pid file /run/etcd.pid", "systemd unit etcd", "container etcd-1"
	Proof   string           `json:"proof,omitempty"`
}

// Peer is one peer of the member beside the agent: its name and the host of its peer URL.
type Peer struct {
	Name string `json:"name"`
	Host string `json:"host"`
}

// NetRequest cuts or shapes the traffic from this node to peers (Op "apply"), or heals it ("heal").
type NetRequest struct {
	Op    string       `json:"op"`
	Peers []Peer       `json:"peers,omitempty"`
	Shape faults.Shape `json:"shape"`
	Lease Lease        `json:"lease"`
}

// NetResult is what the kernel lists back after the step.
type NetResult struct {
	Iface string   `json:"iface,omitempty"`
	Peers []string `json:"peers,omitempty"` // the addresses acted on
	Proof string   `json:"proof"`
}

// DiskRequest fills the data dir's filesystem until FreeBytes are left (Op "fill"), or removes the
// fill ("heal"). Path, when set, must be the data dir the agent was started for.
type DiskRequest struct {
	Op        string `json:"op"`
	FreeBytes int64  `json:"free_bytes"`
	Path      string `json:"path,omitempty"`
	Lease     Lease  `json:"lease"`
}

// DiskResult is the filesystem's free space as measured after the step; a heal also says
// whether etcd exited while the disk was full (and so was started again).
type DiskResult struct {
	FreeBytes int64  `json:"free_bytes"`
	File      string `json:"file,omitempty"`
	Proof     string `json:"proof"`
	Restarted bool   `json:"restarted,omitempty"`
}

// RenewRequest renews every hold of Owner (all holds when Owner is empty) for TTLMs more.
type RenewRequest struct {
	Owner string `json:"owner,omitempty"`
	TTLMs int64  `json:"ttl_ms"`
}

// HealRequest heals every hold of Owner (all when empty): the stop-everything lever.
type HealRequest struct {
	Owner string `json:"owner,omitempty"`
}

// HealResult lists what was healed and what could not be.
type HealResult struct {
	Healed []Hold    `json:"healed"`
	Errors []string  `json:"errors,omitempty"`
	Holds  []Hold    `json:"holds"` // what the agent still holds afterwards (should be none)
	At     time.Time `json:"at"`
}

// Facts are read-only facts of the node, for chaos preflight.
type Facts struct {
	Hostname string `json:"hostname"`
	// Time is the agent's clock when it answered (the controller brackets it to judge the offset).
	Time      time.Time `json:"time"`
	CPUs      int       `json:"cpus"`
	MemBytes  int64     `json:"mem_bytes"`
	SwapBytes int64     `json:"swap_bytes"` // total swap enabled (/proc/meminfo SwapTotal)
	Swaps     []string  `json:"swaps,omitempty"`
	Netem     string    `json:"netem"` // "yes", or why not
	Etcd      EtcdFacts `json:"etcd"`
	DataDir   DirFacts  `json:"data_dir"`
}

// EtcdFacts are etcd's process: its flags (from its command line and ETCD_* environment, only the
// flags preflight judges: no secret), its user and its open-file limit.
type EtcdFacts struct {
	Managed    string            `json:"managed"`
	PID        int               `json:"pid"`
	State      faults.ProcState  `json:"state"`
	Flags      map[string]string `json:"flags"`
	UID        int               `json:"uid"`
	NoFileSoft int64             `json:"nofile_soft"`
	NoFileHard int64             `json:"nofile_hard"`
	Error      string            `json:"error,omitempty"`
}

// DirFacts are the data dir's: its filesystem, device, permissions and space.
type DirFacts struct {
	Path       string `json:"path"`
	FSType     string `json:"fs_type"`
	Device     string `json:"device"`
	Rotational *bool  `json:"rotational,omitempty"` // nil: not a block device (overlay, tmpfs, network)
	Mode       string `json:"mode"`                 // "0700"
	UID        int    `json:"uid"`
	FreeBytes  int64  `json:"free_bytes"`
	TotalBytes int64  `json:"total_bytes"`
	Error      string `json:"error,omitempty"`
}

// ErrorBody is every refusal's and failure's body.
type ErrorBody struct {
	Error string `json:"error"`
}
