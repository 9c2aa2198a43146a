package preflight

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/etcd-chaos/etcd-chaos/agent"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// hostFacts is one node's facts as its agent reported them, with its clock's offset from this
// machine's (give or take within, half the call's round trip).
type hostFacts struct {
	member         string
	url            string
	f              agent.Facts
	offset, within time.Duration
	err            error
}

// gatherHosts asks every agent for its node's facts at once.
func (p *preflight) gatherHosts(ctx context.Context) {
	names := make([]string, 0, len(p.opts.Agents))
	for n := range p.opts.Agents {
		names = append(names, n)
	}
	sort.Strings(names)
	p.hosts = make([]*hostFacts, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := p.opts.Agents[n]
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			h := &hostFacts{member: n, url: cl.URL}
			f, sent, got, err := cl.Facts(fctx)
			h.f, h.err = f, err
			if err == nil {
				h.offset, h.within = agent.ClockOffset(f, sent, got)
				if name := f.Etcd.Flags["name"]; name != "" && name != n {
					h.err = fmt.Errorf("the agent at %s manages etcd --name %s, not %s", cl.URL, name, n)
				}
			}
			p.hosts[i] = h
		}()
	}
	wg.Wait()
}

// noAgents is the evidence of a host check run without agents.
func noAgents(f *findings) *findings {
	f.add(skip, "", "no agents on the nodes (--agents member=URL,... or the scenario's cluster.agents): the nodes' facts cannot be read from the network")
	return f
}

// answered are the hosts whose agents answered; the others are reported as skipped items.
func answered(f *findings, hosts []*hostFacts) []*hostFacts {
	var out []*hostFacts
	for _, h := range hosts {
		if h.err != nil {
			f.add(skip, "", "%s: its agent did not answer: %v", h.member, h.err)
			continue
		}
		out = append(out, h)
	}
	return out
}

const (
	minCPUs     = 2
	minMemBytes = 4 << 30 // the checklist's 2 cores and 4 GB (etcd's hardware guide: small clusters)
	minNoFile   = 65536
)

func (p *preflight) hostCheck(context.Context) *findings { return judgeHost(p.hosts) }

// judgeHost judges swap, CPU, memory and the open-file limit of each node.
func judgeHost(hosts []*hostFacts) *findings {
	f := &findings{}
	if hosts == nil {
		return noAgents(f)
	}
	for _, h := range answered(f, hosts) {
		x := h.f
		if x.SwapBytes > 0 {
			f.add(fail, "turn swap off on the etcd nodes (swapoff -a, and remove it from /etc/fstab): a swapped-out etcd misses heartbeats and elections follow",
				"%s: swap is on (%s: %s)", h.member, mib(x.SwapBytes), strings.Join(x.Swaps, "; "))
		} else {
			f.add(pass, "", "%s: swap off (SwapTotal 0)", h.member)
		}
		if x.CPUs < minCPUs || x.MemBytes < minMemBytes {
			f.add(warn, "give each etcd node at least 2 cores and 4 GB of memory (etcd's hardware guide)",
				"%s: %d CPUs, %s of memory (the checklist: %d cores, %s)", h.member, x.CPUs, mib(x.MemBytes), minCPUs, mib(minMemBytes))
		} else {
			f.add(pass, "", "%s: %d CPUs, %s of memory", h.member, x.CPUs, mib(x.MemBytes))
		}
		switch {
		case x.Etcd.NoFileSoft == 0:
			f.add(skip, "", "%s: etcd's open-file limit could not be read: %s", h.member, x.Etcd.Error)
		case x.Etcd.NoFileSoft < minNoFile:
			f.add(warn, fmt.Sprintf("raise etcd's open-file limit to at least %d (LimitNOFILE= in its unit)", minNoFile),
				"%s: etcd's open-file limit is %d (hard %d)", h.member, x.Etcd.NoFileSoft, x.Etcd.NoFileHard)
		default:
			f.add(pass, "", "%s: etcd's open-file limit %d", h.member, x.Etcd.NoFileSoft)
		}
	}
	return f
}

func (p *preflight) dataDirCheck(context.Context) *findings { return judgeDataDir(p.hosts) }

// judgeDataDir judges each data dir: its filesystem, its device, its permissions and owner (CIS:
// 0700, owned by etcd's user), its free space.
func judgeDataDir(hosts []*hostFacts) *findings {
	f := &findings{}
	if hosts == nil {
		return noAgents(f)
	}
	for _, h := range answered(f, hosts) {
		d := h.f.DataDir
		if d.Error != "" {
			f.add(skip, "", "%s: data dir %s: %s", h.member, d.Path, d.Error)
			continue
		}
		switch d.FSType {
		case "ext4", "xfs":
			f.add(pass, "", "%s: %s is on %s (%s)", h.member, d.Path, d.FSType, d.Device)
		case "nfs", "nfs4", "cifs", "smb3", "fuse.sshfs", "9p":
			f.add(fail, "put etcd's data dir on a local disk: a network filesystem's fsync latency costs elections",
				"%s: %s is on a network filesystem (%s, %s)", h.member, d.Path, d.FSType, d.Device)
		default:
			f.add(warn, "put etcd's data dir on a local ext4 or xfs filesystem of its own",
				"%s: %s is on %s (%s): not a filesystem etcd is usually run and tested on", h.member, d.Path, d.FSType, d.Device)
		}
		switch {
		case d.Rotational == nil:
			f.add(skip, "", "%s: whether %s's device is rotational is unknown (not a block device here)", h.member, d.Device)
		case *d.Rotational:
			f.add(warn, "use an SSD for etcd's data dir: a rotating disk's fsync takes milliseconds", "%s: %s is a rotational disk", h.member, d.Device)
		default:
			f.add(pass, "", "%s: %s is not rotational", h.member, d.Device)
		}
		switch {
		case d.Mode != "0700":
			f.add(fail, "chmod 700 the data dir (CIS Kubernetes benchmark 1.1.11): it holds every key, secrets included",
				"%s: %s has mode %s, want 0700", h.member, d.Path, d.Mode)
		case h.f.Etcd.PID != 0 && d.UID != h.f.Etcd.UID:
			f.add(fail, "chown the data dir to etcd's user (CIS Kubernetes benchmark 1.1.12)",
				"%s: %s is owned by uid %d, etcd runs as uid %d", h.member, d.Path, d.UID, h.f.Etcd.UID)
		default:
			f.add(pass, "", "%s: %s has mode 0700, owned by etcd's user (uid %d)", h.member, d.Path, d.UID)
		}
		if d.TotalBytes > 0 {
			pct := 100 * float64(d.FreeBytes) / float64(d.TotalBytes)
			if pct < 20 {
				f.add(warn, "free space on the data dir's filesystem: etcd needs room for snapshots, compaction and defrag",
					"%s: %s free of %s (%.0f%%)", h.member, mib(d.FreeBytes), mib(d.TotalBytes), pct)
			} else {
				f.add(pass, "", "%s: %s free of %s (%.0f%%)", h.member, mib(d.FreeBytes), mib(d.TotalBytes), pct)
			}
		}
	}
	return f
}

func (p *preflight) flagsCheck(context.Context) *findings { return judgeFlags(p.hosts) }

// judgeFlags judges etcd's flags as each node runs them: the same heartbeat and election timeout
// everywhere, no --unsafe-* flag, client and peer certificate auth on, auto-TLS off. (How the
// timeouts stand against the measured round trip is the timeouts check's: with agents it judges
// these flags.)
func judgeFlags(hosts []*hostFacts) *findings {
	f := &findings{}
	if hosts == nil {
		return noAgents(f)
	}
	hs := answered(f, hosts)
	byPair := map[string][]string{}
	for _, h := range hs {
		if h.f.Etcd.Error != "" && len(h.f.Etcd.Flags) == 0 {
			f.add(skip, "", "%s: etcd's flags could not be read: %s", h.member, h.f.Etcd.Error)
			continue
		}
		fl := h.f.Etcd.Flags
		hb, et := orDefault(fl["heartbeat-interval"], "100"), orDefault(fl["election-timeout"], "1000")
		pair := fmt.Sprintf("heartbeat %sms, election timeout %sms", hb, et)
		byPair[pair] = append(byPair[pair], h.member)
		var unsafe []string
		for k, v := range fl {
			if strings.HasPrefix(k, "unsafe-") && v != "false" {
				unsafe = append(unsafe, "--"+k+"="+v)
			}
		}
		sort.Strings(unsafe)
		if len(unsafe) > 0 {
			f.add(fail, "remove the --unsafe-* flags: they trade durability or safety away", "%s: %s", h.member, strings.Join(unsafe, " "))
		}
		for _, k := range []string{"client-cert-auth", "peer-client-cert-auth"} {
			if on, _ := strconv.ParseBool(fl[k]); !on {
				f.add(fail, "turn on --client-cert-auth and --peer-client-cert-auth (with trusted CAs): without them any client or would-be peer that reaches the port is let in",
					"%s: --%s is off", h.member, k)
			}
		}
		for _, k := range []string{"auto-tls", "peer-auto-tls"} {
			if on, _ := strconv.ParseBool(fl[k]); on {
				f.add(fail, "turn off --auto-tls and --peer-auto-tls: self-signed certificates verify nobody", "%s: --%s is on", h.member, k)
			}
		}
	}
	pairs := make([]string, 0, len(byPair))
	for p := range byPair {
		pairs = append(pairs, p)
	}
	sort.Strings(pairs)
	switch {
	case len(pairs) == 1:
		f.add(pass, "", "every member runs %s", pairs[0])
	case len(pairs) > 1:
		var parts []string
		for _, p := range pairs {
			parts = append(parts, fmt.Sprintf("%s: %s", strings.Join(byPair[p], ", "), p))
		}
		f.add(fail, "run every member with the same --heartbeat-interval and --election-timeout",
			"the members' timeouts differ: %s", strings.Join(parts, "; "))
	}
	return f
}

// maxClockOffset is how far apart the nodes' clocks may be: etcd's own prober warns over 1s.
const maxClockOffset = time.Second

func (p *preflight) clockCheck(context.Context) *findings { return judgeClock(p.hosts) }

// judgeClock judges the nodes' clocks against each other (each against this machine's, bracketed
// by the call's round trip): leases and certificates assume they agree.
func judgeClock(hosts []*hostFacts) *findings {
	f := &findings{}
	if hosts == nil {
		return noAgents(f)
	}
	hs := answered(f, hosts)
	if len(hs) == 0 {
		return f
	}
	lo, hi := hs[0], hs[0]
	var parts []string
	for _, h := range hs {
		if h.offset < lo.offset {
			lo = h
		}
		if h.offset > hi.offset {
			hi = h
		}
		parts = append(parts, fmt.Sprintf("%s %+.1fms (±%.1fms)", h.member, ms(h.offset), ms(h.within)))
	}
	spread := hi.offset - lo.offset
	text := fmt.Sprintf("clock offsets from this machine: %s; spread between nodes %.1fms", strings.Join(parts, ", "), ms(spread))
	if spread-lo.within-hi.within > maxClockOffset {
		f.add(fail, "run NTP (chrony) on every node: leases and certificate checks assume the clocks agree", "%s: over %s (%s ahead of %s)",
			text, maxClockOffset, hi.member, lo.member)
	} else {
		f.add(pass, "", "%s: under %s", text, maxClockOffset)
	}
	return f
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// timeoutsFromFlags are the timeouts the reached nodes run (ok false: no agent gave them). When
// they differ (the flags check fails that), the worst pair: the longest heartbeat and the
// shortest election timeout.
func timeoutsFromFlags(hosts []*hostFacts) (hb, et time.Duration, differ, ok bool) {
	seen := map[[2]string]bool{}
	for _, h := range hosts {
		if h.err != nil || h.f.Etcd.PID == 0 {
			continue
		}
		fl := h.f.Etcd.Flags
		pair := [2]string{orDefault(fl["heartbeat-interval"], "100"), orDefault(fl["election-timeout"], "1000")}
		hms, err1 := scenarios.EtcdMillis(pair[0])
		ems, err2 := scenarios.EtcdMillis(pair[1])
		if err1 != nil || err2 != nil {
			continue
		}
		seen[pair] = true
		h, e := time.Duration(hms)*time.Millisecond, time.Duration(ems)*time.Millisecond
		if !ok || h > hb {
			hb = h
		}
		if !ok || e < et {
			et = e
		}
		ok = true
	}
	return hb, et, len(seen) > 1, ok
}
