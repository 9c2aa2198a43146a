package loadgen

import (
	"testing"
	"time"
)

// A write committed in the new term while the injection's own call still runs (a graceful stop
// waits for the member to exit, about a second) restores writes then, not when the call returns.
func TestWritesRestoredWhileTheInjectionRuns(t *testing.T) {
	t0 := time.Now()
	f := &Failover{OldLeader: "member-1", OldTerm: 2}
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	f.ack(ms(-5), ms(-4), 2)   // before the fault: not counted
	f.ack(ms(3), ms(5), 2)     // after the signal, still the old leader's term
	f.ack(ms(20), ms(24), 3)   // the new leader's term: restored at 24ms
	f.ack(ms(900), ms(902), 3) // the call returns at 1s
	f.Injected(t0)             // the signal was sent at t0
	f.ack(ms(1010), ms(1012), 3)
	r := f.Result(ms(2000))
	if !r.Election || r.LeaderElected != 24*time.Millisecond || r.WriteRestored != 24*time.Millisecond || r.NewTerm != 3 {
		t.Fatalf("%+v: want elected and restored at 24ms (term 3)", r)
	}
	if r.Acked != 4 || r.WriteOutage != 990*time.Millisecond {
		t.Errorf("acked %d, outage %v: want 4 and the 990ms to the window's end", r.Acked, r.WriteOutage)
	}
}
