package loadgen

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// Each safety checker is fed a history that breaks its property: a check that cannot fail is a
// defect. The same checkers pass real histories in the harness's workload tests.

func TestKVSafetyCatchesALostWrite(t *testing.T) {
	s := NewSafetyLog()
	name := func(k int) string { return "k" + string(rune('0'+k)) }
	write := func(key int, id uint64, del, acked bool, rev int64, retried bool) {
		s.Begin(key, id, del)
		s.End(key, id, acked, rev, retried)
	}
	if c := s.Check(func(int) Final { return Final{} }, name); c.Status != reports.CheckUnknown {
		t.Fatalf("a log with no acknowledged write must be unknown, got %+v", c)
	}
	write(0, 0xA, false, true, 5, false) // key 0: A at 5, then B at 7: B must be last
	write(0, 0xB, false, true, 7, false)
	write(1, 0xC, false, true, 6, false) // key 1: C at 6, then a delete of unknown outcome
	write(1, 0xD, true, false, 0, false)
	write(2, 0xE, false, true, 8, true) // key 2: E acknowledged at 8 after a timed-out attempt, F at 9
	write(2, 0xF, false, true, 9, false)
	good := map[int]Final{0: {Present: true, ID: 0xB, ModRevision: 7}, 1: {}, 2: {Present: true, ID: 0xF, ModRevision: 9}}
	check := func(final map[int]Final) reports.Check {
		return s.Check(func(k int) Final {
			if f, ok := final[k]; ok {
				return f
			}
			return good[k]
		}, name)
	}
	if c := check(nil); c.Status != reports.CheckPass {
		t.Fatalf("a correct final state failed: %+v", c)
	}
	if c := check(map[int]Final{1: {Present: true, ID: 0xC, ModRevision: 6}}); c.Status != reports.CheckPass {
		t.Fatalf("the put survived a delete of unknown outcome: %+v", c)
	}
	for what, final := range map[string]map[int]Final{
		"stale value (A, which B overwrote)":           {0: {Present: true, ID: 0xA, ModRevision: 5}},
		"lost key (B acknowledged, key absent)":        {0: {}},
		"foreign value":                                {0: {Present: true, Foreign: true}},
		"another value at B's revision":                {0: {Present: true, ID: 0xA, ModRevision: 7}},
		"B written twice although it was sent once":    {0: {Present: true, ID: 0xB, ModRevision: 12}},
		"F lost behind E's acknowledged revision":      {2: {Present: true, ID: 0xE, ModRevision: 8}},
		"an acknowledged, superseded write came back":  {0: {Present: true, ID: 0xA, ModRevision: 11}},
		"a retried write lands late, F absent, no del": {2: {}},
	} {
		c := check(final)
		if c.Status != reports.CheckFail || c.Violations != 1 {
			t.Errorf("%s: check %s with %d violations, want fail with 1: %+v", what, c.Status, c.Violations, c)
		}
	}
	// E's earlier attempt landing after F (at a higher revision) is the client's retry writing
	// twice, not a loss: reported as a finding.
	if c := check(map[int]Final{2: {Present: true, ID: 0xE, ModRevision: 10}}); c.Status != reports.CheckPass || !strings.Contains(c.Summary, "late duplicate") {
		t.Errorf("a late duplicate of a retried write: %+v", c)
	}
	if id, ok := valueID([]byte(stampValue(0xB, strings.Repeat("v", 64)))); !ok || id != 0xB {
		t.Errorf("stamp round trip: %x %v", id, ok)
	}
}

func TestOverlapsCatchTwoHolders(t *testing.T) {
	t0 := time.Now()
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	fine := []Interval{{Name: "l", Holder: "a", From: at(0), To: at(1)}, {Name: "l", Holder: "b", From: at(1), To: at(2)},
		{Name: "m", Holder: "a", From: at(0.5), To: at(1.5)}}
	if ov := Overlaps(fine, t0); len(ov) != 0 {
		t.Fatalf("back-to-back tenures and another lock reported as overlaps: %v", ov)
	}
	bad := append(fine, Interval{Name: "l", Holder: "c", From: at(1.5), To: at(3), SessionLost: false},
		Interval{Name: "l", Holder: "d", From: at(2.5), To: at(4)})
	ov := Overlaps(bad, t0)
	if len(ov) != 2 || !strings.Contains(ov[0], "acquired it at") {
		t.Fatalf("overlaps = %v, want 2 (b with c, c with d)", ov)
	}
	c := exclusionCheck("lock-exclusion", "lock", bad, t0, "")
	if c.Status != reports.CheckFail || c.Violations != 2 {
		t.Errorf("check = %+v", c)
	}
	gaps, overlapped := handovers(append([]Interval(nil), fine[:2]...))
	if len(gaps) != 1 || gaps[0] != 0 || overlapped != 0 {
		t.Errorf("handovers = %v, %d", gaps, overlapped)
	}
}

func TestPorcupineCatchesAStaleRead(t *testing.T) {
	ms := func(n int64) int64 { return n * int64(time.Millisecond) }
	put := func(c int, v string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: RegisterInput{Put: true, Key: "k", Value: v}, Output: RegisterOutput{}, Call: ms(call), Return: ms(ret)}
	}
	get := func(c int, v string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: RegisterInput{Key: "k"}, Output: RegisterOutput{Value: v}, Call: ms(call), Return: ms(ret)}
	}
	ok := []porcupine.Operation{put(0, "1", 0, 10), get(1, "1", 20, 30), put(0, "2", 40, 50), get(1, "2", 60, 70)}
	if c := CheckLinearizable(ok, 5*time.Second, ""); c.Status != reports.CheckPass {
		t.Fatalf("a linearizable history: %+v", c)
	}
	// A read of 1 after 2 was acknowledged and before anything else: stale.
	stale := []porcupine.Operation{put(0, "1", 0, 10), put(0, "2", 20, 30), get(1, "1", 40, 50)}
	vis := filepath.Join(t.TempDir(), "lin.html")
	c := CheckLinearizable(stale, 5*time.Second, vis)
	if c.Status != reports.CheckFail {
		t.Fatalf("a stale read passed: %+v", c)
	}
	if st, err := os.Stat(vis); err != nil || st.Size() == 0 {
		t.Errorf("no visualization written for the failed check: %v", err)
	}
	// A put with unknown outcome may take effect late: a later read of it is fine.
	unknown := []porcupine.Operation{put(0, "1", 0, 10), {ClientId: 2, Input: RegisterInput{Put: true, Key: "k", Value: "9"},
		Output: RegisterOutput{Unknown: true}, Call: ms(15), Return: 1<<63 - 1}, get(1, "1", 20, 30), get(1, "9", 40, 50)}
	if c := CheckLinearizable(unknown, 5*time.Second, ""); c.Status != reports.CheckPass {
		t.Errorf("an unknown put read later: %+v", c)
	}
}

func TestWatchChecksCatchDisorderMissingAndForeign(t *testing.T) {
	load := func(ws ...*watcherState) *watchLoad {
		return &watchLoad{b: scenarios.Block{Name: "w"}, acked: map[string]ackedPut{
			"p/1": {rev: 10}, "p/2": {rev: 11}, "p/3": {rev: 12},
		}, unknown: map[string]bool{"p/4": true}, sent: map[string]time.Time{}, nAcked: 3, ws: ws}
	}
	good := &watcherState{prefix: "p/", last: 13, got: map[int64]string{10: "p/1", 11: "p/2", 12: "p/3", 13: "p/4"}}
	for _, c := range load(good).Finish(nil).Checks {
		if c.Status != reports.CheckPass {
			t.Fatalf("a complete, ordered stream failed %s: %+v", c.Name, c)
		}
	}
	bad := &watcherState{prefix: "p/", last: 14, got: map[int64]string{10: "p/1", 12: "p/3", 14: "p/9"}, nDisorder: 1, disorder: []string{"12 after 13"}}
	got := map[string]reports.Check{}
	for _, c := range load(bad).Finish(nil).Checks {
		got[c.Name] = c
	}
	if c := got["watch-order"]; c.Status != reports.CheckFail {
		t.Errorf("disorder passed: %+v", c)
	}
	// Missing p/2 (revision 11) and the foreign p/9.
	if c := got["watch-complete"]; c.Status != reports.CheckFail || c.Violations != 2 {
		t.Errorf("a missing and a foreign event: %+v", c)
	}
	// A watcher that met a compaction at 12 is not owed the puts at or before it (10 and 11, gone),
	// and says so; it is owed every put after it: missing p/5 at 13 fails it.
	compacted := func(got map[int64]string, last int64) reports.Check {
		l := load(&watcherState{prefix: "p/", last: last, got: got, compacted: 12})
		l.acked["p/5"] = ackedPut{rev: 13}
		l.nAcked++
		for _, c := range l.Finish(nil).Checks {
			if c.Name == "watch-complete" {
				return c
			}
		}
		return reports.Check{}
	}
	if c := compacted(map[int64]string{12: "p/3", 13: "p/5"}, 13); c.Status != reports.CheckPass || !strings.Contains(strings.Join(c.Examples, " "), "ErrCompacted") ||
		!strings.Contains(c.Summary, "2 acknowledged puts at or before a compaction") {
		t.Errorf("a compaction: %+v", c)
	}
	if c := compacted(map[int64]string{12: "p/3", 14: "p/4"}, 14); c.Status != reports.CheckFail || c.Violations != 1 {
		t.Errorf("a put after the compaction missing: %+v", c)
	}
}

// The watch checks run in windows and forget them: up to the revision every watcher has reached,
// puts and events are judged and dropped (a missing event is caught in its window, not at the
// end); an event whose put has not returned yet waits for a later window.
func TestWatchChecksSettleInWindows(t *testing.T) {
	a := &watcherState{prefix: "p/", last: 20, got: map[int64]string{10: "p/1", 11: "p/2", 12: "p/3", 20: "p/5"}}
	b := &watcherState{prefix: "p/", last: 12, got: map[int64]string{10: "p/1", 12: "p/3"}} // b never got p/2
	l := &watchLoad{b: scenarios.Block{Name: "w"}, acked: map[string]ackedPut{"p/1": {rev: 10}, "p/2": {rev: 11}, "p/3": {rev: 12}, "p/5": {rev: 20}},
		unknown: map[string]bool{}, sent: map[string]time.Time{"p/1": {}, "p/2": {}, "p/3": {}, "p/4": {}, "p/5": {}}, nAcked: 4, ws: []*watcherState{a, b}}
	a.got[11], b.got[11] = "p/2", "" // p/2 at 11 reached a only
	delete(b.got, 11)
	a.got[9] = "p/4" // p/4 is still in flight: its event waits
	l.settle(false)
	if len(l.acked) != 1 || l.acked["p/5"].rev != 20 || len(a.got) != 2 || len(b.got) != 0 {
		t.Fatalf("after a window up to 12: acked %v, a got %v, b got %v", l.acked, a.got, b.got)
	}
	if b.missing != 1 || b.firstMissing != 11 || a.missing != 0 || l.tally.events != 5 {
		t.Fatalf("missing a %d, b %d (first %d), events %d", a.missing, b.missing, b.firstMissing, l.tally.events)
	}
	l.unknown["p/4"] = true // its put timed out: it may have landed
	c := l.Finish(nil).Checks[1]
	if c.Status != reports.CheckFail || c.Violations != 1 || !strings.Contains(c.Summary, "4 acknowledged puts") {
		t.Fatalf("watch-complete %+v", c)
	}
}

func TestLeaseExpiryBounds(t *testing.T) {
	t0 := time.Now()
	ttl, et := 2*time.Second, 250*time.Millisecond
	tol := time.Second + et
	// Without a leader change the keys must be gone by the last keep-alive + TTL + tolerance.
	if b := expiryBound(t0, ttl, et, nil, t0.Add(time.Minute)); !b.Equal(t0.Add(ttl + tol)) {
		t.Errorf("bound = %v after t0, want %v", b.Sub(t0), ttl+tol)
	}
	// A leader change after it restarts the clock, plus the election timeout etcd extends by.
	lc := t0.Add(3 * time.Second)
	if b := expiryBound(t0, ttl, et, []time.Time{lc}, t0.Add(time.Minute)); !b.Equal(lc.Add(ttl + et + tol)) {
		t.Errorf("bound after a leader change = %v, want %v", b.Sub(t0), lc.Add(ttl+et+tol).Sub(t0))
	}
	// A leader change before the last keep-alive changes nothing.
	if b := expiryBound(t0, ttl, et, []time.Time{t0.Add(-time.Second)}, t0.Add(time.Minute)); !b.Equal(t0.Add(ttl + tol)) {
		t.Errorf("an earlier leader change moved the bound to %v", b.Sub(t0))
	}
	if !expiredEarly(t0, ttl, t0.Add(time.Second)) || expiredEarly(t0, ttl, t0.Add(ttl)) {
		t.Error("expiredEarly does not hold the TTL")
	}
}

// A put whose first attempt timed out but was applied, then applied again by its retry, reaches the
// watchers twice: a duplicate of the client's making, reported, not a violation. The same second
// event for a put acknowledged in one attempt is a violation (etcd applied it twice).
func TestWatchCompleteTellsRetryDuplicates(t *testing.T) {
	mk := func(retried bool) *watchLoad {
		key := "chaos/watch/w/0/00000001"
		l := &watchLoad{b: scenarios.Block{Name: "w"}, acked: map[string]ackedPut{key: {rev: 12, retried: retried}}, unknown: map[string]bool{},
			sent: map[string]time.Time{}, nAcked: 1}
		l.ws = []*watcherState{{prefix: "chaos/watch/w/0/", last: 12, got: map[int64]string{10: key, 12: key}}}
		return l
	}
	o := mk(true).Finish(nil)
	complete := o.Checks[1]
	if complete.Status != reports.CheckPass || !strings.Contains(complete.Summary, "duplicates made by client retries") {
		t.Errorf("a retried put delivered twice: %+v", complete)
	}
	if c := mk(false).Finish(nil).Checks[1]; c.Status != reports.CheckFail || c.Violations != 1 {
		t.Errorf("a single-attempt put delivered at two revisions must fail: %+v", c)
	}
	empty := &watchLoad{b: scenarios.Block{Name: "w"}, acked: map[string]ackedPut{}, unknown: map[string]bool{}, sent: map[string]time.Time{},
		ws: []*watcherState{{prefix: "chaos/watch/w/0/", got: map[int64]string{}}}}
	for _, c := range empty.Finish(nil).Checks {
		if c.Status != reports.CheckUnknown {
			t.Errorf("%s with nothing delivered: %s, want unknown", c.Name, c.Status)
		}
	}
}

// BenchmarkOverlaps: the exclusion check over a lock's tenures grows with their number, not its
// square (a day of 50ms holds is 1.7M tenures): ns per tenure stays flat from 10k to 1M.
func BenchmarkOverlaps(b *testing.B) {
	t0 := time.Now()
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		iv := make([]Interval, n)
		for i := range iv {
			from := t0.Add(time.Duration(i) * 50 * time.Millisecond)
			iv[i] = Interval{Name: "l", Holder: fmt.Sprint("h", i%8), From: from, To: from.Add(49 * time.Millisecond)}
		}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				if ov := Overlaps(iv, t0); len(ov) != 0 {
					b.Fatal(ov)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/tenure")
		})
	}
}

// The log forgets writes of open fate after its window, so that a day-long soak with timeouts on
// every fault holds a bounded log; a final state only a forgotten write could explain is not judged
// (neither lost nor safe), and everything else is still held.
func TestKVSafetyWindowBoundsOpenWrites(t *testing.T) {
	s := NewSafetyLog()
	s.Window = time.Minute
	clock := time.Unix(1_000_000, 0)
	s.now = func() time.Time { return clock }
	name := func(k int) string { return fmt.Sprintf("k%d", k) }
	id := uint64(0)
	write := func(key int, del, acked bool, rev int64) uint64 {
		id++
		s.Begin(key, id, del)
		s.End(key, id, acked, rev, false)
		return id
	}
	// An hour of one timed-out put and one acknowledged put per key every second, on 4 keys.
	var rev int64
	var old, recent [4]uint64
	var oldDel uint64
	for sec := 0; sec < 3600; sec++ {
		for key := 0; key < 4; key++ {
			del := key == 3 && sec == 0
			u := write(key, del, false, 0)
			if sec == 0 {
				old[key] = u
				if del {
					oldDel = u
				}
			}
			recent[key] = u
			rev++
			write(key, false, true, rev)
		}
		clock = clock.Add(time.Second)
	}
	if n := s.Open(); n > 4*61 {
		t.Fatalf("%d writes of open fate kept after an hour; the window of 1m holds at most %d", n, 4*61)
	}
	if oldDel == 0 {
		t.Fatal("no delete written")
	}
	final := map[int]Final{}
	for key := 0; key < 4; key++ {
		k := s.shard(key).keys[key]
		final[key] = Final{Present: true, ID: k.last.id, ModRevision: k.last.rev}
	}
	check := func(over map[int]Final) reports.Check {
		return s.Check(func(k int) Final {
			if f, ok := over[k]; ok {
				return f
			}
			return final[k]
		}, name)
	}
	if c := check(nil); c.Status != reports.CheckPass || strings.Contains(c.Summary, "not judged") {
		t.Fatalf("the final state of the last acknowledged writes: %+v", c)
	}
	// A recent timed-out put landing last is allowed, as before the window.
	if c := check(map[int]Final{0: {Present: true, ID: recent[0], ModRevision: rev + 1}}); c.Status != reports.CheckPass {
		t.Fatalf("a recent write of open fate landing late: %+v", c)
	}
	// A write from the first second landing last: only a forgotten write could explain it.
	c := check(map[int]Final{1: {Present: true, ID: old[1], ModRevision: rev + 1}})
	if c.Status != reports.CheckPass || !strings.Contains(c.Summary, "1 keys not judged") {
		t.Fatalf("a write older than the window landing last must be reported as not judged: %+v", c)
	}
	// The key that had an old delete of open fate is absent: not judged, not lost.
	if c := check(map[int]Final{3: {}}); c.Violations != 0 || !strings.Contains(c.Summary, "1 keys not judged") {
		t.Fatalf("an absent key only an old delete explains: %+v", c)
	}
	// An absent key without any delete is still a lost write, window or not.
	if c := check(map[int]Final{2: {}}); c.Status != reports.CheckFail || c.Violations != 1 {
		t.Fatalf("a lost acknowledged write must still fail: %+v", c)
	}
	// An older revision than the acknowledged one is still a loss.
	if c := check(map[int]Final{0: {Present: true, ID: recent[0], ModRevision: 1}}); c.Status != reports.CheckFail {
		t.Fatalf("a stale revision must still fail: %+v", c)
	}
}

// BenchmarkSafetyLogOpenWrites: the log's memory with a write of open fate every op on 1,000 keys,
// for 10x more simulated time each size; the window keeps the open writes (and allocated bytes per
// op) flat in run length. Reports the open writes held at the end.
func BenchmarkSafetyLogOpenWrites(b *testing.B) {
	for _, minutes := range []int{10, 100} {
		b.Run(fmt.Sprintf("%dmin", minutes), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				s := NewSafetyLog()
				s.Window = time.Minute
				clock := time.Unix(0, 0)
				s.now = func() time.Time { return clock }
				ops := minutes * 60 * 100 // 100 timed-out writes a second
				for n := 0; n < ops; n++ {
					s.Begin(n%1000, uint64(n+1), false)
					s.End(n%1000, uint64(n+1), false, 0, false)
					if n%100 == 99 {
						clock = clock.Add(time.Second)
					}
				}
				b.ReportMetric(float64(s.Open()), "open-writes")
			}
		})
	}
}

// TestKVSafetyAcrossARestore: a restore from a snapshot at revision 10 loses what was acknowledged
// after it (counted, by design), and must keep everything at or before it: a write at or before
// the snapshot's revision that the restored state lacks is a violation, before and after the load
// wrote again.
func TestKVSafetyAcrossARestore(t *testing.T) {
	name := func(k int) string { return "k" + string(rune('0'+k)) }
	setup := func() *SafetyLog {
		s := NewSafetyLog()
		s.TrackRevisions = true
		for _, w := range []struct {
			key int
			id  uint64
			rev int64
		}{{0, 0xA, 4}, {1, 0xB, 6}, {2, 0xC, 9}, {2, 0xD, 12}, {3, 0xE, 14}, {1, 0xF, 15}} {
			s.Begin(w.key, w.id, false)
			s.End(w.key, w.id, true, w.rev, false)
		}
		s.Forget(3) // a backup at revision 3 replaced: nothing before it can be restored
		return s
	}
	// The snapshot holds revision 10: A, B, C. D, E and F (12, 14, 15) are lost by design.
	restored := map[int]Final{0: {Present: true, ID: 0xA, ModRevision: 4}, 1: {Present: true, ID: 0xB, ModRevision: 6}, 2: {Present: true, ID: 0xC, ModRevision: 9}}
	at := func(m map[int]Final) func(int) Final { return func(k int) Final { return m[k] } }

	s := setup()
	if lost := s.Fence(10); lost != 3 {
		t.Fatalf("Fence(10) = %d lost, want 3 (D, E, F)", lost)
	}
	if bad := s.Rebase(at(restored), 10, 1_000_000_010, name); bad != 0 {
		t.Fatalf("a faithful restore: %d violations", bad)
	}
	// After the restore the load writes key 0 again, at the bumped revisions.
	s.Begin(0, 0x10, false)
	s.End(0, 0x10, true, 1_000_000_011, false)
	final := map[int]Final{0: {Present: true, ID: 0x10, ModRevision: 1_000_000_011}, 1: restored[1], 2: restored[2]}
	if c := s.Check(at(final), name); c.Status != reports.CheckPass || !strings.Contains(c.Summary, "3 after it lost by design") {
		t.Fatalf("after a faithful restore: %+v", c)
	}
	// Key 3 (E at 14, lost by design) is held against the restored state: absent. Present with a
	// value it never had after the restore is a violation.
	final[3] = Final{Present: true, ID: 0xE, ModRevision: 14}
	if c := s.Check(at(final), name); c.Status != reports.CheckFail {
		t.Errorf("a write lost by the restore came back: %+v", c)
	}

	// The gate: the restored state lacks B (acknowledged at 6, before the snapshot's 10).
	s = setup()
	s.Fence(10)
	broken := map[int]Final{0: restored[0], 2: restored[2]}
	if bad := s.Rebase(at(broken), 10, 1_000_000_010, name); bad != 1 {
		t.Fatalf("a restore without B: %d violations, want 1", bad)
	}
	// Even after the load wrote B's key again, the check fails and says why.
	s.Begin(1, 0x11, false)
	s.End(1, 0x11, true, 1_000_000_012, false)
	c := s.Check(at(map[int]Final{0: restored[0], 1: {Present: true, ID: 0x11, ModRevision: 1_000_000_012}, 2: restored[2]}), name)
	if c.Status != reports.CheckFail || c.Violations != 1 || !strings.Contains(strings.Join(c.Examples, "\n"), "restored from the snapshot at revision 10") {
		t.Errorf("a write before the snapshot lost by its restore: %+v", c)
	}
	// A second restore: writes of the timeline the first one ended (key 2's D at 12 and D2 at 13,
	// lost; D kept in the key's ring when D2 replaced it) are forgotten, so a snapshot of the new
	// timeline whose revision is numerically past them is not held to them. After the first
	// restore key 2 is C at 9; the new timeline writes it once, F2 at 1e9+30, after the second
	// snapshot (1e9+25), which therefore still holds C.
	s = setup()
	s.Begin(2, 0xD2, false)
	s.End(2, 0xD2, true, 13, false)
	s.Fence(10)
	if bad := s.Rebase(at(restored), 10, 1_000_000_010, name); bad != 0 {
		t.Fatalf("first restore: %d violations", bad)
	}
	s.Begin(2, 0xF2, false)
	s.End(2, 0xF2, true, 1_000_000_030, false)
	if lost := s.Fence(1_000_000_025); lost != 1 {
		t.Errorf("second Fence: %d lost, want 1 (F2)", lost)
	}
	if bad := s.Rebase(at(restored), 1_000_000_025, 2_000_000_025, name); bad != 0 {
		t.Errorf("a faithful second restore: %d violations: %v", bad, s.restoredEx)
	}
	// Without TrackRevisions the loss is unknown, never 0.
	s = NewSafetyLog()
	if lost := s.Fence(10); lost != -1 {
		t.Errorf("an untracked log counted %d lost writes", lost)
	}
}
