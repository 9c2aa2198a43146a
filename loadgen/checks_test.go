package loadgen

import (
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
	// key 0: put A acked, then put B acked (invoked after A's ack): B must be last.
	s.Begin(0, 0xA, false)
	s.End(0, 0xA, true, false)
	time.Sleep(time.Millisecond)
	s.Begin(0, 0xB, false)
	s.End(0, 0xB, true, false)
	// key 1: put C acked, then a delete with unknown outcome: C or nothing.
	s.Begin(1, 0xC, false)
	s.End(1, 0xC, true, false)
	time.Sleep(time.Millisecond)
	s.Begin(1, 0xD, true)
	s.End(1, 0xD, false, false)
	good := map[int]Final{0: {Present: true, ID: 0xB}, 1: {}}
	if c := s.Check(func(k int) Final { return good[k] }, name); c.Status != reports.CheckPass {
		t.Fatalf("a correct final state failed: %+v", c)
	}
	for what, final := range map[string]map[int]Final{
		"stale value (A, which B overwrote)": {0: {Present: true, ID: 0xA}, 1: {}},
		"lost key (B acked, key absent)":     {0: {}, 1: {}},
		"foreign value":                      {0: {Present: true, Foreign: true}, 1: {}},
	} {
		c := s.Check(func(k int) Final { return final[k] }, name)
		if c.Status != reports.CheckFail || c.Violations != 1 {
			t.Errorf("%s: check %s with %d violations, want fail with 1: %+v", what, c.Status, c.Violations, c)
		}
	}
	// key 2: put E acknowledged after a timed-out attempt, then put F acknowledged: E's late attempt
	// may land after F. Not a violation (the attempt's fate was unknown), but reported.
	s.Begin(2, 0xE, false)
	s.End(2, 0xE, true, true)
	time.Sleep(time.Millisecond)
	s.Begin(2, 0xF, false)
	s.End(2, 0xF, true, false)
	late := map[int]Final{0: {Present: true, ID: 0xB}, 1: {}, 2: {Present: true, ID: 0xE}}
	if c := s.Check(func(k int) Final { return late[k] }, name); c.Status != reports.CheckPass || !strings.Contains(c.Summary, "late duplicate") {
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
	w := &watchLoad{b: scenarios.Block{Name: "w"}, acked: map[string]ackedPut{
		"p/1": {rev: 10}, "p/2": {rev: 11}, "p/3": {rev: 12},
	}, unknown: map[string]bool{"p/4": true}}
	good := &watcherState{prefix: "p/", last: 13, got: map[int64]string{10: "p/1", 11: "p/2", 12: "p/3", 13: "p/4"}}
	w.ws = []*watcherState{good}
	for _, c := range w.Finish(nil).Checks {
		if c.Status != reports.CheckPass {
			t.Fatalf("a complete, ordered stream failed %s: %+v", c.Name, c)
		}
	}
	bad := &watcherState{prefix: "p/", last: 14, got: map[int64]string{10: "p/1", 12: "p/3", 14: "p/9"}, nDisorder: 1, disorder: []string{"12 after 13"}}
	w.ws = []*watcherState{bad}
	got := map[string]reports.Check{}
	for _, c := range w.Finish(nil).Checks {
		got[c.Name] = c
	}
	if c := got["watch-order"]; c.Status != reports.CheckFail {
		t.Errorf("disorder passed: %+v", c)
	}
	// Missing p/2 (revision 11) and the foreign p/9.
	if c := got["watch-complete"]; c.Status != reports.CheckFail || c.Violations != 2 {
		t.Errorf("a missing and a foreign event: %+v", c)
	}
	// A compaction makes completeness unknown, and says so.
	w.ws = []*watcherState{{prefix: "p/", last: 12, got: map[int64]string{12: "p/3"}, compacted: 12}}
	for _, c := range w.Finish(nil).Checks {
		if c.Name == "watch-complete" && (c.Status != reports.CheckUnknown || !strings.Contains(strings.Join(c.Examples, " "), "ErrCompacted")) {
			t.Errorf("a compaction: %+v", c)
		}
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
