package preflight

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/agent"
	"github.com/etcd-chaos/etcd-chaos/reports"
)

// goodHost is a node as the checklist wants it.
func goodHost(name string) *hostFacts {
	no := false
	return &hostFacts{member: name, f: agent.Facts{CPUs: 4, MemBytes: 8 << 30, Netem: "yes",
		Etcd: agent.EtcdFacts{PID: 100, UID: 998, NoFileSoft: 65536, NoFileHard: 65536,
			Flags: map[string]string{"name": name, "heartbeat-interval": "100", "election-timeout": "1000", "client-cert-auth": "true", "peer-client-cert-auth": "true"}},
		DataDir: agent.DirFacts{Path: "/var/lib/etcd", FSType: "ext4", Device: "/dev/nvme0n1p2", Rotational: &no, Mode: "0700", UID: 998,
			FreeBytes: 80 << 30, TotalBytes: 100 << 30}}}
}

func statusOf(f *findings) string { s, _, _ := f.result(); return s }

func evidence(f *findings) string { _, e, _ := f.result(); return e }

// Every host check passes the nodes as the checklist wants them, and says no to each departure.
func TestHostChecksSayNo(t *testing.T) {
	good := func() []*hostFacts { return []*hostFacts{goodHost("a"), goodHost("b"), goodHost("c")} }
	for id, judge := range map[string]func([]*hostFacts) *findings{"host": judgeHost, "datadir": judgeDataDir, "flags": judgeFlags, "clock": judgeClock} {
		if s := statusOf(judge(good())); s != reports.CheckPass {
			t.Errorf("%s on good hosts: %s\n%s", id, s, evidence(judge(good())))
		}
		if s := statusOf(judge(nil)); s != reports.CheckSkipped {
			t.Errorf("%s without agents: %s, want skipped (it exercised nothing)", id, s)
		}
		hs := good()
		for _, h := range hs {
			h.err = errors.New("connection refused")
		}
		if s := statusOf(judge(hs)); s != reports.CheckSkipped {
			t.Errorf("%s with no agent answering: %s, want skipped", id, s)
		}
	}
	yes := true
	cases := []struct {
		name, want, says string
		judge            func([]*hostFacts) *findings
		spoil            func(h *hostFacts)
	}{
		{"swap on", reports.CheckFail, "swap is on", judgeHost, func(h *hostFacts) { h.f.SwapBytes = 2 << 30; h.f.Swaps = []string{"/swapfile file 2097148 0 -2"} }},
		{"one core", reports.CheckWarn, "1 CPUs", judgeHost, func(h *hostFacts) { h.f.CPUs = 1 }},
		{"2 GB", reports.CheckWarn, "2.00 GiB of memory", judgeHost, func(h *hostFacts) { h.f.MemBytes = 2 << 30 }},
		{"1024 files", reports.CheckWarn, "open-file limit is 1024", judgeHost, func(h *hostFacts) { h.f.Etcd.NoFileSoft = 1024 }},
		{"nfs", reports.CheckFail, "network filesystem (nfs4", judgeDataDir, func(h *hostFacts) { h.f.DataDir.FSType = "nfs4" }},
		{"overlay", reports.CheckWarn, "is on overlay", judgeDataDir, func(h *hostFacts) { h.f.DataDir.FSType = "overlay" }},
		{"rotational", reports.CheckWarn, "rotational disk", judgeDataDir, func(h *hostFacts) { h.f.DataDir.Rotational = &yes }},
		{"0755", reports.CheckFail, "has mode 0755, want 0700", judgeDataDir, func(h *hostFacts) { h.f.DataDir.Mode = "0755" }},
		{"owned by root", reports.CheckFail, "owned by uid 0, etcd runs as uid 998", judgeDataDir, func(h *hostFacts) { h.f.DataDir.UID = 0 }},
		{"full", reports.CheckWarn, "(5%)", judgeDataDir, func(h *hostFacts) { h.f.DataDir.FreeBytes = 5 << 30 }},
		{"heartbeat", reports.CheckFail, "the members' timeouts differ", judgeFlags, func(h *hostFacts) { h.f.Etcd.Flags["heartbeat-interval"] = "150" }},
		{"unsafe", reports.CheckFail, "--unsafe-no-fsync=true", judgeFlags, func(h *hostFacts) { h.f.Etcd.Flags["unsafe-no-fsync"] = "true" }},
		{"no client cert auth", reports.CheckFail, "--client-cert-auth is off", judgeFlags, func(h *hostFacts) { delete(h.f.Etcd.Flags, "client-cert-auth") }},
		{"auto tls", reports.CheckFail, "--peer-auto-tls is on", judgeFlags, func(h *hostFacts) { h.f.Etcd.Flags["peer-auto-tls"] = "true" }},
		{"clock 2s ahead", reports.CheckFail, "over 1s (b ahead of", judgeClock, func(h *hostFacts) { h.offset = 2 * time.Second; h.within = time.Millisecond }},
	}
	for _, c := range cases {
		hs := good()
		c.spoil(hs[1])
		f := c.judge(hs)
		if s, e := statusOf(f), evidence(f); s != c.want || !strings.Contains(e, c.says) {
			t.Errorf("%s: %s, want %s saying %q\n%s", c.name, s, c.want, c.says, e)
		}
	}
	// A clock offset within the call's own uncertainty is not judged a skew.
	hs := good()
	hs[1].offset, hs[1].within = 1100*time.Millisecond, 300*time.Millisecond
	if s := statusOf(judgeClock(hs)); s != reports.CheckPass {
		t.Errorf("an offset of 1.1s ± 0.3s: %s, want pass (it may be under 1s)", s)
	}
}

// The timeouts check judges the flags the members run; differing flags are judged by the worst
// pair.
func TestTimeoutsFromFlags(t *testing.T) {
	hs := []*hostFacts{goodHost("a"), goodHost("b"), goodHost("c")}
	hs[1].f.Etcd.Flags["heartbeat-interval"] = "150"
	hs[2].f.Etcd.Flags["election-timeout"] = "800"
	hb, et, differ, ok := timeoutsFromFlags(hs)
	if !ok || !differ || hb != 150*time.Millisecond || et != 800*time.Millisecond {
		t.Errorf("got %s %s differ=%v ok=%v, want 150ms 800ms differ ok", hb, et, differ, ok)
	}
	if _, _, _, ok := timeoutsFromFlags(nil); ok {
		t.Error("no agents gave timeouts")
	}
}

// ParseFlags reads etcd's flags from its command line and environment, and nothing else.
func TestParseFlags(t *testing.T) {
	got := agent.ParseFlags([]string{"/usr/bin/etcd", "--name", "m1", "--heartbeat-interval=250", "-election-timeout", "2500",
		"--client-cert-auth", "--initial-cluster-token", "secret-ish", "--unsafe-no-fsync"},
		[]string{"ETCD_SNAPSHOT_COUNT=5000", "ETCD_HEARTBEAT_INTERVAL=100", "ETCD_ROOT_PASSWORD=hunter2", "PATH=/bin"})
	want := map[string]string{"name": "m1", "heartbeat-interval": "250", "election-timeout": "2500", "client-cert-auth": "true",
		"unsafe-no-fsync": "true", "snapshot-count": "5000"}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
}
