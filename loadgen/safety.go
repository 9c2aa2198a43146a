package loadgen

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/reports"
)

// stampValue puts a write's id at the front of its value ("<16 hex digits>:"), keeping the value's
// size, so the final state tells which write left it.
func stampValue(id uint64, pad string) string {
	var b strings.Builder // one allocation: the value itself
	b.Grow(max(17, len(pad)))
	const hex = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		b.WriteByte(hex[(id>>shift)&0xf])
	}
	b.WriteByte(':')
	if len(pad) > 17 {
		b.WriteString(pad[17:])
	}
	return b.String()
}

// valueID reads the id stampValue wrote.
func valueID(v []byte) (uint64, bool) {
	if len(v) < 17 || v[16] != ':' {
		return 0, false
	}
	id, err := strconv.ParseUint(string(v[:16]), 16, 64)
	return id, err == nil
}

// write is one write to a key: a put (or txn, which puts) or a delete, with its invocation and,
// when acknowledged, its response time and the revision etcd gave it. A write whose outcome is
// unknown (it failed or timed out: it may have been applied) may take effect at any time after its
// invocation. A write acknowledged after failed attempts (retried) is known at its acknowledged
// revision, and any earlier attempt of it may still land later, at a higher revision.
type write struct {
	id       uint64
	del      bool
	inv, ret time.Time // ret: when the write returned (acknowledged or not)
	rev      int64     // acknowledged: the revision of the response
	acked    bool
	retried  bool
}

// keyLog is what one key's final state is held against: the acknowledged write with the highest
// revision (nothing acknowledged may be newer than it, and the final state may not be older), and
// the writes whose attempts may still land (unknown outcome, or retried) or are in flight.
type keyLog struct {
	last    write // the acknowledged write with the highest revision; id 0: none yet
	maybe   []write
	pending []write
	// superseded are the last few acknowledged writes a newer one replaced: nothing can contradict
	// them any more, they only name a write that came back (the report's words, not the check's).
	superseded [maxSuperseded]write
	nSup       int
	// dropped counts the writes of open fate that left maybe after the log's window; droppedDel:
	// one of them was a delete. A final state only they could explain is not judged.
	dropped    int
	droppedDel bool
	// fenced is last as it was when a restore fenced the log (Fence): Rebase holds the restored
	// state against it.
	fenced write
}

// maxSuperseded bounds the replaced writes kept per key: the log's memory is bounded by the keys.
const maxSuperseded = 4

func (k *keyLog) supersede(w write) {
	k.superseded[k.nSup%maxSuperseded] = w
	k.nSup++
}

// forgetTimeline drops the replaced writes kept whose revisions a restore ended (after rev, up to
// the restored cluster's first revision).
func (k *keyLog) forgetTimeline(rev, restoredRev int64) {
	n := min(k.nSup, maxSuperseded)
	kept := make([]write, 0, n)
	for _, w := range k.superseded[:n] {
		if w.rev <= rev || w.rev > restoredRev {
			kept = append(kept, w)
		}
	}
	k.superseded = [maxSuperseded]write{}
	copy(k.superseded[:], kept)
	k.nSup = len(kept)
}

// newestAtOrBefore is the newest acknowledged write at or before rev among the replaced ones kept.
func (k *keyLog) newestAtOrBefore(rev int64) (write, bool) {
	var best write
	for _, w := range k.superseded[:min(k.nSup, maxSuperseded)] {
		if w.acked && w.rev <= rev && w.rev > best.rev {
			best = w
		}
	}
	return best, best.id != 0
}

func (k *keyLog) supersededWrite(id uint64) (write, bool) {
	for _, w := range k.superseded[:min(k.nSup, maxSuperseded)] {
		if w.id == id {
			return w, true
		}
	}
	return write{}, false
}

// SafetyLog keeps, per key, what the final state can be held against: the acknowledged write with
// the highest revision, and the writes that may still land. Memory is bounded by the keys and the
// writes whose fate is open (failed, timed out or retried), not by the writes acknowledged.
//
// A write whose fate is open is kept for Window after it returned (DefaultSafetyWindow when 0), then
// dropped and counted: a write that lands later than that (a proposal held in a paused member's
// buffers for longer than any fault lasts) is far outside what etcd does, and keeping every such
// write would grow with the run. A key whose final state only a dropped write could explain is
// reported as not judged, never as lost or as safe.
type SafetyLog struct {
	Window time.Duration

	t0  time.Time
	now func() time.Time
	// Keys are spread over shards, each with its own lock: the load's clients write different keys
	// and need not queue for one lock.
	shards [safetyShards]safetyShard

	// TrackRevisions keeps the revision of every acknowledged write since the oldest backup that
	// may be restored (Forget), so a restore can count the acknowledged writes it lost (Fence).
	TrackRevisions bool
	// restored are what Rebase found wrong: acknowledged writes before a restored snapshot's
	// revision that the restored cluster does not hold.
	restoredBad  int
	restoredEx   []string
	restoredLost int64
	restores     int
}

const safetyShards = 32

type safetyShard struct {
	mu   sync.Mutex
	keys map[int]*keyLog
	// counts
	acked, unknown, retried, dropped int64
	// revs are the acknowledged writes' revisions (TrackRevisions).
	revs []int64
}

func (s *SafetyLog) shard(key int) *safetyShard { return &s.shards[uint(key)%safetyShards] }

// lockAll locks every shard (Check, Open); the returned func unlocks them.
func (s *SafetyLog) lockAll() func() {
	for i := range s.shards {
		s.shards[i].mu.Lock()
	}
	return func() {
		for i := range s.shards {
			s.shards[i].mu.Unlock()
		}
	}
}

// DefaultSafetyWindow is how long a write of open fate is kept by default.
const DefaultSafetyWindow = 10 * time.Minute

// NewSafetyLog makes an empty log.
func NewSafetyLog() *SafetyLog {
	s := &SafetyLog{t0: time.Now(), now: time.Now}
	for i := range s.shards {
		s.shards[i].keys = map[int]*keyLog{}
	}
	return s
}

// keepOpen appends w to the key's open writes and drops those that returned more than the window
// before now (maybe is in the order the writes returned: the dropped ones are a prefix).
func (s *SafetyLog) keepOpen(sh *safetyShard, k *keyLog, w write, now time.Time) {
	window := s.Window
	if window <= 0 {
		window = DefaultSafetyWindow
	}
	n := 0
	for n < len(k.maybe) && now.Sub(k.maybe[n].ret) > window {
		k.droppedDel = k.droppedDel || k.maybe[n].del
		n++
	}
	if n > 0 {
		k.dropped += n
		sh.dropped += int64(n)
		k.maybe = append(k.maybe[:0], k.maybe[n:]...)
	}
	k.maybe = append(k.maybe, w)
}

// Open is how many writes of open fate the log holds (its memory beyond one entry per key).
func (s *SafetyLog) Open() int {
	defer s.lockAll()()
	n := 0
	for i := range s.shards {
		for _, k := range s.shards[i].keys {
			n += len(k.maybe)
		}
	}
	return n
}

// Begin records a write's invocation.
func (s *SafetyLog) Begin(key int, id uint64, del bool) {
	inv := s.now()
	sh := s.shard(key)
	sh.mu.Lock()
	k := sh.keys[key]
	if k == nil {
		k = &keyLog{}
		sh.keys[key] = k
	}
	k.pending = append(k.pending, write{id: id, del: del, inv: inv})
	sh.mu.Unlock()
}

// End records a write's outcome: acknowledged at revision rev, or unknown (acked false); retried
// says earlier attempts of it failed with an unknown fate.
func (s *SafetyLog) End(key int, id uint64, acked bool, rev int64, retried bool) {
	now := s.now()
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	k := sh.keys[key]
	if k == nil {
		return
	}
	i := slices.IndexFunc(k.pending, func(w write) bool { return w.id == id })
	if i < 0 {
		return
	}
	w := k.pending[i]
	k.pending = slices.Delete(k.pending, i, i+1)
	w.acked, w.retried, w.ret = acked, retried, now
	if !acked {
		sh.unknown++
		s.keepOpen(sh, k, w, now)
		return
	}
	sh.acked++
	w.rev = rev
	if s.TrackRevisions {
		sh.revs = append(sh.revs, rev)
	}
	if retried {
		sh.retried++
		s.keepOpen(sh, k, w, now) // an earlier attempt may land later
	}
	if k.last.id == 0 || w.rev > k.last.rev {
		if k.last.id != 0 {
			k.supersede(k.last)
		}
		k.last = w
	} else {
		k.supersede(w)
	}
}

// Final is a key's state at the end: absent, or present with the write id its value carries and
// the revision of its last modification.
type Final struct {
	Present     bool
	ID          uint64
	ModRevision int64
	Foreign     bool // the value is not one this load wrote
}

// Check holds the final state of every key against the log, by revision:
//   - nothing acknowledged is lost: a present key's ModRevision is at least the highest revision an
//     acknowledged write to it got, and an absent key's last acknowledged write is a delete, or a
//     delete whose fate is open may have come after it;
//   - a key at exactly that revision holds that write's value;
//   - a key past it holds a write whose fate was open (failed, timed out, cut by the load's end) or
//     a late attempt of a retried write: the client's retry, not etcd, wrote it again (reported).
//
// keyName names a key index for the report.
func (s *SafetyLog) Check(final func(key int) Final, keyName func(int) string) reports.Check {
	defer s.lockAll()()
	all := map[int]*keyLog{}
	var acked, unknown, retried, dropped int64
	for i := range s.shards {
		sh := &s.shards[i]
		maps.Copy(all, sh.keys)
		acked, unknown, retried, dropped = acked+sh.acked, unknown+sh.unknown, retried+sh.retried, dropped+sh.dropped
	}
	c := reports.Check{Name: "kv-safety", Status: reports.CheckPass,
		Note: "every acknowledged write is in the final state or was overwritten by a later write (by revision); writes that failed or timed out may or may not have been applied"}
	keys := make([]int, 0, len(all))
	for key := range all {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	late, undecided := 0, 0
	var lateEx []string
	for _, key := range keys {
		k := all[key]
		f := final(key)
		problem, verdict := s.judge(k, f, keyName(key))
		switch verdict {
		case judgedLate:
			late++
			if len(lateEx) < 10 {
				lateEx = append(lateEx, problem)
			}
			problem = ""
		case judgedUndecided:
			undecided++
		}
		if problem != "" {
			c.Violations++
			if len(c.Examples) < 20 {
				c.Examples = append(c.Examples, keyName(key)+" "+problem)
			}
		}
	}
	if s.restores > 0 {
		c.Violations += s.restoredBad
		c.Examples = append(c.Examples, s.restoredEx...)
	}
	c.Summary = fmt.Sprintf("%d keys checked: %d acknowledged writes (%d after retries), %d with unknown outcome; %d lost or stale", len(keys), acked, retried, unknown, c.Violations)
	if s.restores > 0 {
		c.Summary += fmt.Sprintf("; %d restores from backups: %d acknowledged writes before a snapshot's revision missing after its restore, %d after it lost by design (recovery.rpo_writes)",
			s.restores, s.restoredBad, s.restoredLost)
	}
	if undecided > 0 {
		c.Summary += fmt.Sprintf("; %d keys not judged: only a write of open fate dropped after the %s window (%d dropped in all) could explain their final state",
			undecided, s.window(), dropped)
	}
	if late > 0 {
		c.Summary += fmt.Sprintf("; %d keys ended with a late duplicate of a retried write (client retries, not an etcd fault)", late)
		c.Examples = append(c.Examples, lateEx...)
	}
	switch {
	case c.Violations > 0:
		c.Status = reports.CheckFail
	case acked == 0:
		c.Status = reports.CheckUnknown
		c.Summary += "; no write was acknowledged: nothing could be lost, so nothing was checked"
	}
	return c
}

func (s *SafetyLog) window() time.Duration {
	if s.Window > 0 {
		return s.Window
	}
	return DefaultSafetyWindow
}

func orNone(w write, s *SafetyLog) string {
	if w.id == 0 {
		return "no acknowledged write"
	}
	return s.describe(w)
}

func (s *SafetyLog) describe(w write) string {
	kind := "put"
	if w.del {
		kind = "delete"
	}
	if !w.acked {
		return fmt.Sprintf("%s %016x (unknown outcome, invoked %.3fs)", kind, w.id, w.inv.Sub(s.t0).Seconds())
	}
	return fmt.Sprintf("%s %016x (revision %d, invoked %.3fs, acknowledged %.3fs)", kind, w.id, w.rev, w.inv.Sub(s.t0).Seconds(), w.ret.Sub(s.t0).Seconds())
}

// ReadFinal reads every key under prefix (linearizably, in pages) into a lookup for Check.
func ReadFinal(ctx context.Context, c *clientv3.Client, prefix string, keyIndex func(string) (int, bool)) (func(int) Final, error) {
	return ReadFinalAt(ctx, c, prefix, 0, keyIndex)
}

// ReadFinalAt reads every key under prefix as it was at revision rev (0: now), for Check or Rebase.
func ReadFinalAt(ctx context.Context, c *clientv3.Client, prefix string, rev int64, keyIndex func(string) (int, bool)) (func(int) Final, error) {
	out := map[int]Final{}
	from := prefix
	end := clientv3.GetPrefixRangeEnd(prefix)
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := c.Get(rctx, from, clientv3.WithRange(end), clientv3.WithLimit(1000), clientv3.WithRev(rev))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("reading the final state of %s: %w", prefix, err)
		}
		for _, kv := range resp.Kvs {
			ki, ok := keyIndex(string(kv.Key))
			if !ok {
				continue
			}
			id, ok := valueID(kv.Value)
			out[ki] = Final{Present: true, ID: id, ModRevision: kv.ModRevision, Foreign: !ok}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	return func(k int) Final { return out[k] }, nil
}

// KeyIndex maps a key of the load back to its index, for ReadFinal.
func (k *KV) KeyIndex(key string) (int, bool) {
	s, ok := strings.CutPrefix(key, k.cfg.KeyPrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0 && n < math.MaxInt32
}

// KeyName returns the key of an index.
func (k *KV) KeyName(i int) string { return k.keys[i] }

// Prefix is where the load writes.
func (k *KV) Prefix() string { return k.cfg.KeyPrefix }

// What judge found of a key that is not a problem.
const (
	judgedOK = iota
	judgedLate
	judgedUndecided
)

// judge holds one key's state f against its log as last: the problem ("" none) and whether the
// state is a late duplicate of a retried write (the problem is then its description) or cannot
// be judged.
func (s *SafetyLog) judge(k *keyLog, f Final, name string) (string, int) {
	open := append(append([]write(nil), k.maybe...), k.pending...)
	switch {
	case f.Foreign:
		return "holds a value this load never wrote", judgedOK
	case f.Present && k.last.id != 0 && f.ModRevision < k.last.rev:
		return fmt.Sprintf("is at revision %d, older than acknowledged %s: that write is lost", f.ModRevision, s.describe(k.last)), judgedOK
	case f.Present && k.last.id != 0 && f.ModRevision == k.last.rev:
		if f.ID != k.last.id || k.last.del {
			return fmt.Sprintf("holds write %016x at revision %d, where etcd acknowledged %s", f.ID, f.ModRevision, s.describe(k.last)), judgedOK
		}
	case f.Present:
		// Past the newest acknowledged revision: only a write whose fate was open can be there.
		i := slices.IndexFunc(open, func(w write) bool { return w.id == f.ID && !w.del })
		switch {
		case i < 0 && k.dropped > 0 && f.ID != k.last.id:
			return "", judgedUndecided // a write of open fate older than the window may be the one that landed
		case i < 0:
			what := "a write that was acknowledged earlier and overwritten"
			if w, ok := k.supersededWrite(f.ID); ok {
				what = s.describe(w)
			} else if f.ID == k.last.id {
				what = "the newest acknowledged write, applied a second time although it was sent once"
			}
			return fmt.Sprintf("holds write %016x at revision %d, after acknowledged %s; it is %s", f.ID, f.ModRevision, orNone(k.last, s), what), judgedOK
		case open[i].acked:
			return fmt.Sprintf("%s: a late attempt of retried write %016x (acknowledged at revision %d, %.3fs) landed again at revision %d, after %s",
				name, f.ID, open[i].rev, open[i].ret.Sub(s.t0).Seconds(), f.ModRevision, orNone(k.last, s)), judgedLate
		}
	default:
		deleteCould := slices.ContainsFunc(open, func(w write) bool { return w.del })
		if k.last.id != 0 && !k.last.del && !deleteCould && k.droppedDel {
			return "", judgedUndecided
		} else if k.last.id != 0 && !k.last.del && !deleteCould {
			return fmt.Sprintf("is absent, but acknowledged %s was the newest write and no delete could follow it", s.describe(k.last)), judgedOK
		}
	}
	return "", judgedOK
}

// Forget drops the revisions of acknowledged writes at or before rev (TrackRevisions): no backup
// that may still be restored is older than rev.
func (s *SafetyLog) Forget(rev int64) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		sh.revs = slices.DeleteFunc(sh.revs, func(r int64) bool { return r <= rev })
		sh.mu.Unlock()
	}
}

// Fence is called once the cluster that acknowledged the writes so far can acknowledge no more
// (a disaster: a majority lost), before a restore from the snapshot at rev: it remembers each
// key's newest acknowledged write for Rebase, and returns how many acknowledged writes came after
// rev (TrackRevisions; -1 without): the restore loses them by design.
func (s *SafetyLog) Fence(rev int64) int64 {
	defer s.lockAll()()
	lost := int64(0)
	for i := range s.shards {
		sh := &s.shards[i]
		for _, r := range sh.revs {
			if r > rev {
				lost++
			}
		}
		sh.revs = sh.revs[:0]
		for _, k := range sh.keys {
			k.fenced = k.last
		}
	}
	s.restores++
	s.restoredLost += lost
	if !s.TrackRevisions {
		return -1
	}
	return lost
}

// Rebase holds the restored state (read at the restored revision: the snapshot's rev, bumped)
// against each key's newest acknowledged write when the log was fenced: one at or before rev must
// be there (a violation, counted by Check, if not); one after rev was lost by design, and the key
// is from now on held against the restored state, until the load writes it again.
//
// restoredRev is the restored cluster's first revision (rev, bumped): the writes acknowledged after
// rev and up to it were on the timeline the restore ended, and are forgotten here, so a later
// restore never mistakes one for a write it must hold.
func (s *SafetyLog) Rebase(restored func(key int) Final, rev, restoredRev int64, keyName func(int) string) (bad int) {
	defer s.lockAll()()
	for i := range s.shards {
		for key, k := range s.shards[i].keys {
			if s.rebaseKey(key, k, restored(key), rev, keyName) {
				bad++
			}
			k.forgetTimeline(rev, restoredRev)
		}
	}
	return bad
}

// rebaseKey holds one key's restored state f against the log fenced before the restore from the
// snapshot at rev, and says whether a write the snapshot must hold is missing.
func (s *SafetyLog) rebaseKey(key int, k *keyLog, f Final, rev int64, keyName func(int) string) (missing bool) {
	fw := k.fenced
	if fw.id == 0 {
		return false
	}
	// What the snapshot must hold of the key: the newest write acknowledged at or before its
	// revision (one superseded since is still in the key's ring, unless written very often).
	held, known := fw, fw.rev <= rev
	if !known {
		held, known = k.newestAtOrBefore(rev)
	}
	if known {
		last := k.last
		k.last = held
		problem, verdict := s.judge(k, f, keyName(key))
		k.last = last
		if problem != "" && verdict == judgedOK {
			missing = true
			s.restoredBad++
			if len(s.restoredEx) < 10 {
				s.restoredEx = append(s.restoredEx, fmt.Sprintf("%s %s (restored from the snapshot at revision %d, which holds every write acknowledged at or before it)", keyName(key), problem, rev))
			}
		}
		if fw.rev <= rev {
			return missing
		}
	}
	if k.last.rev <= fw.rev { // not written since the restore: the restored state is its latest
		if !f.Present {
			k.last = write{id: fw.id, del: true, acked: true, rev: rev}
		} else {
			k.last = write{id: f.ID, acked: true, rev: f.ModRevision}
		}
		k.maybe = k.maybe[:0]
	}
	return missing
}
