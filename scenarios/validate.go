package scenarios

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

type validator struct {
	*decoder
	sc *Scenario
}

// line finds the line of a field path, or of its nearest parent that is in the file.
func (v *validator) line(path string) int {
	for p := path; p != ""; {
		if l, ok := v.present[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

func (v *validator) bad(path, format string, args ...any) {
	v.add(v.line(path), path, format, args...)
}

func (v *validator) oneOf(path, val string, valid []string) {
	if !contains(valid, val) {
		v.bad(path, "%q is not supported; valid: %s", val, strings.Join(valid, ", "))
	}
}

// harnessFlags are the etcd flags the harness sets itself for every member.
var harnessFlags = []string{"name", "data-dir", "wal-dir", "listen-client-urls", "advertise-client-urls",
	"listen-peer-urls", "initial-advertise-peer-urls", "initial-cluster", "initial-cluster-state",
	"initial-cluster-token", "config-file", "discovery", "log-outputs"}

func (v *validator) validate() {
	sc := v.sc
	c := sc.Cluster
	if why := IdentError(sc.Name); why != "" {
		v.bad("name", "%q %s", sc.Name, why)
	}
	v.oneOf("cluster.provider", c.Provider, Providers)
	v.oneOf("cluster.network", c.Network, Networks)
	v.remote()
	if d := c.PeerDelay; !d.IsZero() {
		switch {
		case d.Latency < 0 || d.Jitter < 0:
			v.bad("cluster.peer-delay", "latency %s, jitter %s: neither may be negative", d.Latency, d.Jitter)
		case d.Jitter > d.Latency:
			v.bad("cluster.peer-delay.jitter", "%s exceeds the latency %s: a link cannot deliver before it was sent", d.Jitter, d.Latency)
		}
		if c.Provider != "local" || c.Network != "proxy" {
			v.bad("cluster.peer-delay", "needs provider local with network proxy (the harness's proxy on every peer link; netem is not used); here provider %s, network %s", c.Provider, c.Network)
		}
	}
	if d := c.DiskDelay; !d.IsZero() {
		for _, k := range []struct {
			name string
			d    Duration
		}{{"fsync", d.Fsync}, {"write", d.Write}, {"read", d.Read}} {
			if k.d < 0 || k.d > Duration(time.Minute) {
				v.bad("cluster.disk-delay."+k.name, "%s: valid: 0s to 1m", k.d)
			}
		}
		if err := c.DiskLayer(); err != nil {
			v.bad("cluster.disk-delay", "%v", err)
		}
	}
	if c.shared() {
		// remote() has said what does not apply
	} else if c.Provider == "container" {
		if c.Network == "proxy" {
			v.bad("cluster.network", "proxy needs members that are local processes; with provider container use netns (faults inside the containers' namespaces; root) or direct")
		}
		if c.EtcdBinary != "" && c.Image != "" {
			v.bad("cluster.etcd-binary", "and cluster.image both choose the members' etcd: set one (etcd-binary: an image is built FROM scratch from that statically linked binary)")
		}
	} else {
		if c.Network == "docker" {
			v.bad("cluster.network", "docker (network disconnect) needs provider container; use proxy or netns")
		}
		if c.Image != "" {
			v.bad("cluster.image", "applies only to provider container")
		}
		if len(c.Entrypoint) > 0 {
			v.bad("cluster.entrypoint", "applies only to provider container")
		}
	}
	if _, n, err := net.ParseCIDR(c.Subnet); err != nil || n.IP.To4() == nil {
		v.bad("cluster.subnet", "%q is not an IPv4 CIDR; valid: a range no real network uses, such as 198.18.0.0/15 (reserved for network tests)", c.Subnet)
	} else if ones, _ := n.Mask.Size(); ones > 29 || 1<<(32-ones) < c.Size+3 {
		v.bad("cluster.subnet", "%s is too small for %d members and the hub", c.Subnet, c.Size)
	}
	if !c.shared() && (c.Size < 1 || c.Size > 9) {
		v.bad("cluster.size", "%d members is not supported; valid: 1 to 9", c.Size)
	}
	if c.ReadyTimeout <= 0 {
		v.bad("cluster.ready-timeout", "must be more than 0")
	}
	if si := c.ScrapeInterval; si != 0 && si < Duration(500*time.Millisecond) {
		v.bad("cluster.scrape-interval", "%s: valid: 0s (off) or 500ms and more", si)
	}
	if b := c.Backup; b != (Backup{}) {
		if b.Every < Duration(time.Second) {
			v.bad("cluster.backup.every", "%s: valid: 1s and more (how often the harness saves a snapshot through the API)", b.Every)
		}
		if b.Keep < 0 || b.Keep > 100 {
			v.bad("cluster.backup.keep", "%d: valid: 1 to 100 snapshots kept in the run folder (default %d)", b.Keep, DefaultBackupKeep)
		}
	}
	for _, t := range sc.Thresholds {
		if contains(MemberMetrics, t.Metric) && c.ScrapeInterval == 0 {
			v.add(t.Line, "thresholds."+t.Metric, "needs the members scraped: cluster.scrape-interval is 0s (off)")
		}
	}
	mbs := make([]string, 0, len(c.MemberBinaries))
	for name := range c.MemberBinaries {
		mbs = append(mbs, name)
	}
	sort.Strings(mbs)
	for _, name := range mbs {
		p, bin := "cluster.member-binaries."+name, c.MemberBinaries[name]
		switch {
		case c.Provider != "local" && c.Provider != "container":
			v.bad("cluster.member-binaries", "applies only to providers local and container (members started from binaries of this machine)")
		case c.Image != "":
			v.bad("cluster.member-binaries", "does not apply with cluster.image (the members run that image's etcd); use cluster.etcd-binary")
		case !contains(memberNames(c.Size), name):
			v.bad(p, "%q is not a member; valid: %s", name, strings.Join(memberNames(c.Size), ", "))
		case bin == BuiltinEtcd:
		default:
			if _, err := BinaryVersion(bin); err != nil {
				v.bad(p, "%v; valid: an etcd binary or builtin (the etcd built into chaos)", err)
			}
		}
		if c.Provider != "local" && c.Provider != "container" || c.Image != "" {
			break
		}
	}
	if c.EtcdBinary != "" {
		if st, err := os.Stat(c.EtcdBinary); err != nil {
			v.bad("cluster.etcd-binary", "cannot use %q: %v%s", c.EtcdBinary, err, binaryHint(c.EtcdBinary, err))
		} else if st.IsDir() || st.Mode()&0o111 == 0 {
			v.bad("cluster.etcd-binary", "%q is not an executable file", c.EtcdBinary)
		}
	}
	keys := make([]string, 0, len(c.Etcd))
	for k := range c.Etcd {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	known, knownFrom := v.etcdFlags()
	for _, k := range keys {
		p := "cluster.etcd." + k
		if strings.HasPrefix(k, "-") {
			v.bad(p, "write etcd flags without leading dashes (heartbeat-interval, not --heartbeat-interval)")
		}
		if contains(harnessFlags, strings.TrimLeft(k, "-")) {
			v.bad(p, "is set by the harness for every member and cannot be overridden; set any other etcd flag")
		} else if name := strings.TrimLeft(k, "-"); known != nil && !known[name] {
			hint := ""
			if n := nearest(name, known); n != "" {
				hint = fmt.Sprintf("; did you mean %s?", n)
			}
			v.bad(p, "%q is not a flag of %s%s", name, knownFrom, hint)
		}
		if k == "heartbeat-interval" || k == "election-timeout" {
			if _, err := EtcdMillis(c.Etcd[k]); err != nil {
				v.bad(p, "%v", err)
			}
		}
	}
	if hb, et := c.Etcd["heartbeat-interval"], c.Etcd["election-timeout"]; hb != "" || et != "" {
		h, herr := EtcdMillis(orDefault(hb, "100"))
		e, eerr := EtcdMillis(orDefault(et, "1000"))
		if herr == nil && eerr == nil && e < 5*h {
			v.bad("cluster.etcd.election-timeout", "%dms must be at least 5 times heartbeat-interval (%dms), as etcd requires", e, h)
		}
	}

	if sc.MaxSkipped < 0 {
		v.bad("max-skipped", "%d: valid: 0 (every fault must fire) or more", sc.MaxSkipped)
	}

	w := sc.Workload
	if w.Duration <= 0 {
		v.bad("workload.duration", "must be more than 0")
	}
	if w.Warmup >= w.Duration && w.Duration > 0 {
		v.bad("workload.warmup", "%s leaves no time for the load after it (duration %s)", w.Warmup, w.Duration)
	}
	if w.Clients < 1 {
		v.bad("workload.clients", "%d: need at least 1 client", w.Clients)
	}
	if w.Connections < 1 || w.Connections > max(w.Clients, 1) {
		v.bad("workload.connections", "%d: valid: 1 to clients (%d)", w.Connections, w.Clients)
	}
	if w.Rate < 0 {
		v.bad("workload.rate", "%v is negative; give ops/s for an open loop, or leave rate out for a closed loop", w.Rate)
	} else if !finite(w.Rate) {
		v.bad("workload.rate", "%v is not a number of ops/s; give ops/s for an open loop, or leave rate out for a closed loop", w.Rate)
	}
	if w.Recovery <= 0 {
		v.bad("workload.recovery", "must be more than 0: how long after the load and after each heal recovery is measured (default 15s)")
	}
	if w.Timeout <= 0 {
		v.bad("workload.timeout", "must be more than 0")
	}
	if w.Prober.Interval < Duration(time.Millisecond) || w.Prober.Interval > Duration(time.Second) {
		v.bad("workload.prober.interval", "%s: valid: 1ms to 1s (the resolution of failover and outage times)", w.Prober.Interval)
	}
	if w.Prober.Timeout <= 0 {
		v.bad("workload.prober.timeout", "must be more than 0 (default: workload.timeout)")
	}
	v.retry("workload.retry", w.Retry)
	v.mix("workload.mix", w.Mix)
	v.workloads()
	v.checks()

	v.expandFaults()
	v.validateFaults()
	v.dedupe()
}

// dedupe drops repeated problems: each occurrence of a repeating fault is validated on its own,
// and a problem of the fault as written would otherwise be named once per occurrence.
func (v *validator) dedupe() {
	seen := map[string]bool{}
	var out Problems
	for _, p := range v.problems {
		k := fmt.Sprintf("%d\x00%s\x00%s", p.Line, p.Field, p.Msg)
		if !seen[k] {
			seen[k] = true
			out = append(out, p)
		}
	}
	v.problems = out
}

func (v *validator) validateFaults() {
	sc := v.sc
	size := sc.Cluster.Size
	names := make([]string, size)
	for i := range names {
		names[i] = MemberName(i)
	}
	remote := sc.Cluster.shared()
	type window struct {
		from, to time.Duration
		f        Fault
	}
	var windows []window
	// Members a member-add adds may be named by the faults after it.
	added := func(at Duration) []string {
		out := names
		for _, g := range sc.Faults {
			if r := g.Rules(); r != nil && r.AddsMember && g.At < at {
				out = append(append([]string(nil), out...), MemberName(len(out)))
			}
		}
		return out
	}
	for _, f := range sc.Faults {
		p := f.Path()
		v.oneOf(p+".action", f.Action, ActionNames())
		end := f.At + f.Duration
		switch {
		case f.At < sc.Workload.Warmup:
			v.bad(p+".at", "%s is inside the warm-up (%s); faults fire after it", f.At, sc.Workload.Warmup)
		case f.At >= sc.Workload.Duration:
			v.bad(p+".at", "%s is after the run ends (workload.duration %s)", f.At, sc.Workload.Duration)
		case end > sc.Workload.Duration:
			v.bad(p+".duration", "the fault would heal at %s, after the load ends at %s", end.D(), sc.Workload.Duration)
		}
		a := f.Rules()
		if a == nil {
			windows = append(windows, window{f.At.D(), end.D(), f})
			continue
		}
		switch {
		case a.Instant && f.Duration != 0:
			v.bad(p+".duration", "%s is instantaneous; leave duration out", f.Action)
		case !a.Instant && f.Duration <= 0:
			v.bad(p+".duration", "%s needs a duration: how long until the fault heals", f.Action)
		}
		if err := a.reachable(v.place(), f); err != nil {
			v.bad(p+".action", "%v", err)
			continue
		}
		v.selection(p, f, a, added(f.At))
		v.shape(p, f, a)
		if !remote && !f.AllowQuorumLoss {
			if lose, why := QuorumLoss(f, size); lose {
				v.bad(p, "%s: the quorum guard refuses it; set allow-quorum-loss: true on the fault to run it anyway", why)
			}
		}
		windows = append(windows, window{f.At.D(), end.D(), f})
	}
	sort.SliceStable(windows, func(a, b int) bool { return windows[a].from < windows[b].from })
	for k := 1; k < len(windows); k++ {
		prev, cur := windows[k-1], windows[k]
		if cur.from < prev.to || cur.from == prev.from {
			field := ".at"
			if cur.f.Every != 0 {
				field = ".start"
			}
			what := ""
			if cur.f.Occurrence > 0 {
				what = fmt.Sprintf(" (occurrence %d, at %s)", cur.f.Occurrence, cur.f.At)
			}
			v.bad(cur.f.Path()+field, "%soverlaps %s (%s to %s); faults run one after another", strings.TrimPrefix(what+" ", " "), prev.f.OccurrenceText(), prev.from, prev.to)
		}
	}
}

// place is where the scenario's faults run, as their actions' rules read it.
func (v *validator) place() Place {
	c := v.sc.Cluster
	if c.HasAgents() {
		// Through chaos agent: processes are signalled and peer links cut or shaped on the nodes.
		return Place{Signals: true, Network: "agent", Disk: c.DiskLayer(), Provider: c.Provider}
	}
	return Place{Signals: !c.shared(), Network: c.Network, Disk: c.DiskLayer(), Provider: c.Provider, Files: c.Provider == "local" || c.Provider == "container"}
}

// selection checks that a fault chooses its members or links in exactly one way its action takes,
// and that the action can act on them where the scenario puts it.
func (v *validator) selection(p string, f Fault, a *ActionRules, names []string) {
	allowed := a.Selections
	var set []string
	for _, k := range f.selected() {
		if !contains(allowed, k) {
			v.bad(p+"."+k, "does not apply to %s; it takes %s", f.Action, strings.Join(allowed, ", "))
			continue
		}
		set = append(set, k)
	}
	switch {
	case len(allowed) == 0:
		// An operation on the whole cluster (compact) chooses nothing; what it is given was named above.
		if err := a.availableAt(v.place(), "", f); err != nil {
			v.bad(p+".action", "%v", err)
		}
		return
	case len(set) == 0 && a.Each:
		// target each by default: every member, one at a time
		if err := a.availableAt(v.place(), "target", f); err != nil {
			v.bad(p+".action", "%v", err)
		}
		return
	case len(set) == 0 && len(allowed) == 1:
		v.bad(p+"."+allowed[0], "is missing; valid: %s", v.validTargets(names))
		return
	case len(set) == 0:
		v.bad(p, "%s needs one of %s", f.Action, strings.Join(allowed, ", "))
		return
	case len(set) > 1:
		v.bad(p+"."+set[1], "give only one of %s (%s is given too)", strings.Join(allowed, ", "), set[0])
		return
	}
	size := len(names)
	if err := a.availableAt(v.place(), set[0], f); err != nil {
		v.bad(p+".action", "%v", err)
	}
	switch set[0] {
	case "target":
		if f.Target.Kind == "each" && !a.Each {
			v.bad(p+".target", "each applies to the operations that go member by member (upgrade, downgrade); use all for every member at once")
			return
		}
		v.target(p+".target", f.Target, names)
	case "client":
		v.target(p+".client", f.Client, names)
	case "isolate":
		for k, t := range f.Isolate {
			tp := p + ".isolate"
			if len(f.Isolate) > 1 {
				tp = fmt.Sprintf("%s[%d]", tp, k)
			}
			v.target(tp, t, names)
			if t.Kind == "all" {
				v.bad(tp, "isolating every member cuts nothing; name fewer (minority, leader, ...)")
			}
		}
		if len(f.Isolate) >= size {
			v.bad(p+".isolate", "names %d targets in a %d-member cluster: nobody would be left on the other side", len(f.Isolate), size)
		}
	case "groups":
		seen := map[string]string{}
		if len(f.Groups) < 2 {
			v.bad(p+".groups", "needs at least 2 groups, such as [[member-1], [member-2, member-3]]")
		}
		for gi, g := range f.Groups {
			gp := fmt.Sprintf("%s.groups[%d]", p, gi)
			if len(g) == 0 {
				v.bad(gp, "is empty")
			}
			for _, m := range g {
				if !contains(names, m) {
					v.bad(gp, "%q is not a member; valid: %s", m, strings.Join(names, ", "))
				} else if prev, ok := seen[m]; ok {
					v.bad(gp, "%s is already in %s; each member belongs to one group", m, prev)
				}
				seen[m] = gp
			}
		}
		for _, m := range names {
			if _, ok := seen[m]; !ok && len(f.Groups) >= 2 {
				v.bad(p+".groups", "%s is in no group; list every member once", m)
			}
		}
	case "one-way":
		if f.OneWay.From.Kind == "" || f.OneWay.To.Kind == "" {
			v.bad(p+".one-way", "needs both from and to, such as {from: leader, to: follower}")
			return
		}
		v.target(p+".one-way.from", f.OneWay.From, names)
		v.target(p+".one-way.to", f.OneWay.To, names)
		if f.OneWay.From == f.OneWay.To && f.OneWay.From.Kind == "member" {
			v.bad(p+".one-way.to", "is the same member as from")
		}
	case "majorities-ring":
		if size < 5 {
			v.bad(p+".majorities-ring", "needs at least 5 members (with %d, every member's majority is the whole cluster)", size)
		}
	}
}

// shape checks the values of the fields the fault's action owns, and that no other action's are given.
func (v *validator) shape(p string, f Fault, a *ActionRules) {
	for _, of := range ownFields {
		if of.given(f) && !a.Takes(of.name) {
			v.bad(p+"."+of.name, "applies only to action %s", ownerOf(of.name))
		}
	}
	if a.Check != nil {
		for _, fp := range a.Check(f) {
			v.bad(p+"."+fp.Field, "%s", fp.Msg)
		}
	}
	if a.Requires != nil {
		for _, fp := range a.Requires(f, v.sc) {
			v.bad(fp.Field, "%s", fp.Msg)
		}
	}
}

func (v *validator) validTargets(names []string) string {
	return strings.Join(TargetKinds(), ", ") + ", a member name (" + strings.Join(names, ", ") + "), {count: N} or {percent: P}"
}

// target checks one target against the cluster's size.
func (v *validator) target(p string, t Target, names []string) {
	size := len(names)
	if v.sc.Cluster.shared() {
		// The members are the cluster's own: names and counts are checked when the run reaches it.
		if t.Kind == "" {
			v.bad(p, "is missing; valid: %s", strings.Join(TargetKinds(), ", ")+", a member name, {count: N} or {percent: P}")
		}
		return
	}
	switch t.Kind {
	case "":
		v.bad(p, "is missing; valid: %s", v.validTargets(names))
	case "member":
		if !contains(names, t.Member) {
			v.bad(p, "%q is not a member of this %d-member cluster; valid: %s", t.Member, size, v.validTargets(names))
		}
	case "count":
		if t.Count < 1 || t.Count > size {
			v.bad(p+".count", "%d: valid: 1 to %d (the cluster size)", t.Count, size)
		}
	case "percent":
		if t.Percent < 1 || t.Percent > 100 {
			v.bad(p+".percent", "%d: valid: 1 to 100", t.Percent)
		}
	case "follower":
		if size < 2 {
			v.bad(p, "a 1-member cluster has no follower")
		}
	case "minority":
		if (size-1)/2 < 1 {
			v.bad(p, "a %d-member cluster has no minority to pick (it needs 3 members or more)", size)
		}
	default:
		want := HolderKind(t.Kind)
		if want == "" {
			break
		}
		found := false
		for _, b := range v.sc.Workloads {
			found = found || b.Kind == want
		}
		if !found {
			v.bad(p, "%s needs a %s workload (workloads: [{kind: %s}]): it is the member the holder's client talks to", t.Kind, want, want)
		}
	}
}

func (v *validator) retry(p string, r Retry) {
	if r.Attempts < 1 {
		v.bad(p+".attempts", "%d: need at least 1 attempt (1 means no retries)", r.Attempts)
	}
	if r.MaxBackoff < r.Backoff {
		v.bad(p+".max-backoff", "%s is less than backoff %s", r.MaxBackoff, r.Backoff)
	}
	if r.Jitter < 0 || r.Jitter > 1 {
		v.bad(p+".jitter", "%v: valid: 0 to 1", r.Jitter)
	}
	for i, c := range r.On {
		v.oneOf(fmt.Sprintf("%s.on[%d]", p, i), c, RetryClasses)
	}
}

func (v *validator) mix(path string, mix []Op) {
	if len(mix) == 0 {
		v.bad(path, "is empty; give at least one op of %s", strings.Join(OpNames, ", "))
	}
	for i, op := range mix {
		p := fmt.Sprintf("%s[%d]", path, i)
		v.oneOf(p+".op", op.Op, OpNames)
		if op.Weight < 1 {
			v.bad(p+".weight", "%d: must be 1 or more", op.Weight)
		}
		if op.Keys < 1 || op.Keys > 10_000_000 {
			v.bad(p+".keys", "%d: valid: 1 to 10000000", op.Keys)
		}
		v.oneOf(p+".distribution", op.Distribution, Distributions)
		if op.ValueSize < 0 || op.ValueSize > 1<<20 {
			v.bad(p+".value-size", "%d bytes: valid: 0 to 1048576", op.ValueSize)
		}
		if op.Op == "get" {
			v.oneOf(p+".consistency", op.Consistency, Consistencies)
		} else if op.Consistency != "" {
			v.bad(p+".consistency", "applies only to get")
		}
	}
}

func (v *validator) checks() {
	l := v.sc.Checks.Linearizability
	p := "checks.linearizability"
	if l.Keys < 1 || l.Keys > 100 {
		v.bad(p+".keys", "%d: valid: 1 to 100 (porcupine checks each key's history on its own)", l.Keys)
	}
	if l.Clients < 1 || l.Clients > 64 {
		v.bad(p+".clients", "%d: valid: 1 to 64", l.Clients)
	}
	if l.Rate <= 0 || !finite(l.Rate) {
		v.bad(p+".rate", "must be more than 0 ops/s")
	}
	if l.MaxOps < 10 || l.MaxOps > 100_000 {
		v.bad(p+".max-ops", "%d: valid: 10 to 100000 (the history porcupine checks)", l.MaxOps)
	}
	if l.Timeout <= 0 {
		v.bad(p+".timeout", "must be more than 0")
	}
	// A history that fills before the faults end proves nothing about them.
	if l.Enabled && l.Rate > 0 && l.MaxOps > 0 {
		var last time.Duration
		for _, f := range v.sc.Faults {
			last = max(last, f.At.D()+f.Duration.D())
		}
		// A margin of a tenth: ops that fail or time out take their time too.
		if covers := time.Duration(float64(l.MaxOps) / l.Rate * float64(time.Second)); last > 0 && covers < last+last/10 {
			v.bad(p+".max-ops", "%d ops at %g ops/s cover the first %s of the load, but the faults last until %s: raise max-ops to at least %d or lower the rate",
				l.MaxOps, l.Rate, covers.Round(time.Millisecond), last, int(math.Ceil(last.Seconds()*l.Rate*1.2)))
		}
	}
}

// etcdFlags are the flags the members' etcd takes and where that list came from: the embedded
// etcd's, or an official binary's --help; nil where it cannot be known (an etcd image, whose
// etcd is not at hand until it runs, or a binary that lists no flags).
func (v *validator) etcdFlags() (map[string]bool, string) {
	c := v.sc.Cluster
	switch {
	case len(c.Etcd) == 0 || c.Image != "":
		return nil, ""
	case c.EtcdBinary != "":
		return binaryEtcdFlags(c.EtcdBinary), "etcd-binary " + c.EtcdBinary + " (its --help)"
	}
	return embeddedEtcdFlags(), "etcd (the embedded server, v3.7)"
}

var envNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// EtcdMillis reads etcd's millisecond flags: a bare number is milliseconds (as etcd takes it), or a
// duration with a unit such as 100ms or 1s.
func EtcdMillis(s string) (int64, error) {
	s = strings.TrimSpace(s)
	var n int64
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && fmt.Sprint(n) == s {
		if n <= 0 {
			return 0, fmt.Errorf("%q must be more than 0", s)
		}
		return n, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Millisecond || d%time.Millisecond != 0 {
		return 0, fmt.Errorf("%q is not a whole number of milliseconds; valid: 100 or 100ms or 1s", s)
	}
	return d.Milliseconds(), nil
}

// Timeouts are the heartbeat interval and election timeout the members run with, in milliseconds:
// the scenario's, or etcd's defaults (100 and 1000). A value that does not parse reads as 0.
func (c Cluster) Timeouts() (heartbeatMs, electionMs int64) {
	heartbeatMs, _ = EtcdMillis(orDefault(c.Etcd["heartbeat-interval"], "100"))
	electionMs, _ = EtcdMillis(orDefault(c.Etcd["election-timeout"], "1000"))
	return heartbeatMs, electionMs
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// remote checks what reaches a cluster the team already runs, and that its fields appear only
// with provider remote. No message holds a secret.
func (v *validator) remote() {
	c := v.sc.Cluster
	if c.Auth.Password != "" {
		v.bad("cluster.auth.password", "never write a password in the scenario; use password-env: VARIABLE or password-file: PATH")
	}
	if !c.shared() {
		for path, set := range map[string]bool{"cluster.endpoints": len(c.Endpoints) > 0, "cluster.tls": c.TLS != (TLS{}),
			"cluster.auth": c.Auth != (Auth{}), "cluster.agents": len(c.Agents) > 0, "cluster.agent-tls": c.AgentTLS != (AgentTLS{}),
			"cluster.agent-ttl": c.AgentTTL != 0} {
			if set {
				v.bad(path, "applies only to provider remote")
			}
		}
		return
	}
	if _, ok := v.present["cluster.size"]; ok {
		v.bad("cluster.size", "is read from the cluster's member list with provider remote; leave it out (--set cluster.size=null removes it from a built-in)")
	}
	for path, set := range map[string]bool{"cluster.etcd": len(c.Etcd) > 0, "cluster.etcd-binary": c.EtcdBinary != "",
		"cluster.image": c.Image != "", "cluster.entrypoint": len(c.Entrypoint) > 0} {
		if set {
			v.bad(path, "does not apply to provider remote: the harness does not start its members (--set %s=null removes it)", path)
		}
	}
	if c.Network != "direct" && c.Network != "proxy" {
		v.bad("cluster.network", "%q does not apply to provider remote; the harness reaches its client links only (direct, or proxy for client: faults)", c.Network)
	}
	if len(c.Endpoints) == 0 {
		v.bad("cluster.endpoints", "is required with provider remote: list every member's client URL, such as [https://10.0.0.1:2379, https://10.0.0.2:2379]")
	}
	seen := map[string]bool{}
	for i, ep := range c.Endpoints {
		p := fmt.Sprintf("cluster.endpoints[%d]", i)
		u, err := url.Parse(ep)
		if err == nil && u.User != nil {
			// Never echoed: the URL holds a secret.
			v.bad(p, "holds credentials (USER:PASSWORD@ in the URL), which would be copied into every output; give cluster.auth.user with password-env or password-file, and the URL without them")
			continue
		}
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Port() == "" || (u.Path != "" && u.Path != "/"):
			v.bad(p, "%q is not a client URL; valid: http://HOST:PORT or https://HOST:PORT", ep)
		case seen[ep]:
			v.bad(p, "%q is listed twice", ep)
		case u.Scheme == "http" && c.TLS != (TLS{}):
			v.bad(p, "%q is plain http but cluster.tls is set; use https://", ep)
		}
		seen[ep] = true
	}
	v.agents()
	dir := filepath.Dir(v.file)
	for _, f := range []struct{ path, val string }{{"cluster.tls.ca", c.TLS.CA}, {"cluster.tls.cert", c.TLS.Cert}, {"cluster.tls.key", c.TLS.Key},
		{"cluster.auth.password-file", c.Auth.PasswordFile}, {"cluster.agent-tls.ca", c.AgentTLS.CA}, {"cluster.agent-tls.cert", c.AgentTLS.Cert},
		{"cluster.agent-tls.key", c.AgentTLS.Key}, {"cluster.agent-tls.token-file", c.AgentTLS.TokenFile}} {
		if f.val == "" {
			continue
		}
		p := f.val
		if !filepath.IsAbs(p) && !strings.HasPrefix(v.file, "builtin:") {
			p = filepath.Join(dir, p)
		}
		if _, err := os.Stat(p); err != nil {
			v.bad(f.path, "cannot read %s (paths are relative to the scenario file): %v", p, errors.Unwrap(err))
		}
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		v.bad("cluster.tls", "cert and key go together; give both or neither")
	}
	a := c.Auth
	switch {
	case a.User == "" && (a.PasswordEnv != "" || a.PasswordFile != ""):
		v.bad("cluster.auth.user", "is missing: whose password is it?")
	case a.User != "" && a.PasswordEnv == "" && a.PasswordFile == "":
		v.bad("cluster.auth", "user %s needs password-env: VARIABLE or password-file: PATH", a.User)
	case a.PasswordEnv != "" && a.PasswordFile != "":
		v.bad("cluster.auth.password-file", "give only one of password-env and password-file")
	case a.PasswordEnv != "" && !envNameRe.MatchString(a.PasswordEnv):
		// Not echoed: what is written there may be the password itself.
		v.bad("cluster.auth.password-env", "is not an environment variable's name (letters, digits and '_', not starting with a digit); write the variable's name, such as ETCD_PASSWORD, never the password")
	}
}

// agents checks cluster.agents and how the harness reaches them: every URL https (http only to
// 127.0.0.1), and each request authenticated by a client certificate or a token.
func (v *validator) agents() {
	c := v.sc.Cluster
	if len(c.Agents) == 0 {
		for path, set := range map[string]bool{"cluster.agent-tls": c.AgentTLS != (AgentTLS{}), "cluster.agent-ttl": c.AgentTTL != 0} {
			if set {
				v.bad(path, "applies only with cluster.agents (member name: agent URL)")
			}
		}
		return
	}
	names := make([]string, 0, len(c.Agents))
	for name := range c.Agents {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		raw := c.Agents[name]
		p := "cluster.agents." + name
		u, err := url.Parse(raw)
		switch {
		case err != nil || u.Host == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") || u.User != nil:
			v.bad(p, "%q is not an agent URL; valid: https://HOST:PORT", raw)
		case u.Scheme == "http" && u.Hostname() != "127.0.0.1":
			v.bad(p, "%q is plaintext; agents are reached over https (http only to an agent on 127.0.0.1 started with --insecure-listen-loopback)", raw)
		case u.Scheme != "https" && u.Scheme != "http":
			v.bad(p, "%q is not an agent URL; valid: https://HOST:PORT", raw)
		}
	}
	t := c.AgentTLS
	if (t.Cert == "") != (t.Key == "") {
		v.bad("cluster.agent-tls", "cert and key go together; give both or neither")
	}
	if t.Cert == "" && t.TokenFile == "" {
		v.bad("cluster.agent-tls", "every request to an agent is authenticated: give cert and key (mutual TLS) or token-file (a bearer token), or both")
	}
	if c.AgentTTL != 0 && (c.AgentTTL.D() < time.Second || c.AgentTTL.D() > 5*time.Minute) {
		v.bad("cluster.agent-ttl", "%s: want 1s to 5m (how long an agent holds a fault after the harness stops renewing it; default %s)", c.AgentTTL, DefaultAgentTTL)
	}
}

// memberNames names the members of a cluster of size the harness starts.
func memberNames(size int) []string {
	out := make([]string, 0, max(size, 0))
	for i := 0; i < size; i++ {
		out = append(out, MemberName(i))
	}
	return out
}
