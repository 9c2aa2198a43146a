package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRecordAllocatesNothing(t *testing.T) {
	r := NewRecorder(time.Now(), nil)
	r.SetPhase("before", time.Now())
	p := NewPacer(time.Now(), 1e9, 0, time.Second)
	timer := time.NewTimer(time.Hour)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		due, _ := p.Next(ctx, timer)
		p.Sent(due)
		r.Record(OpPut, due, 1234*time.Microsecond, 2, 50*time.Millisecond, ClassNone)
		r.Record(OpGet, due, 3*time.Second, 5, time.Second, ClassDeadline)
		r.RecordAttemptError(OpGet, due, ClassUnavailable, nil)
	})
	if allocs != 0 {
		t.Fatalf("recording allocates %v times per call, want 0", allocs)
	}
}

func BenchmarkRecord(b *testing.B) {
	r := NewRecorder(time.Now(), nil)
	r.SetPhase("before", time.Now())
	b.ReportAllocs()
	b.ResetTimer()
	due := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			r.Record(Op(i%int(NumOps)), due, time.Duration(i%5000)*time.Microsecond, 1, 0, ClassNone)
		}
	})
}

func TestRecorderSummary(t *testing.T) {
	zero := time.Now()
	at := func(s float64) time.Time { return zero.Add(time.Duration(s * float64(time.Second))) }
	var log bytes.Buffer
	r := NewRecorder(zero, &log)
	r.Record(OpPut, at(0.5), time.Hour, 1, 0, ClassNone) // due in the warm-up: not in totals
	r.SetPhase("before", at(1))
	r.Flush(at(1))
	for i := 1; i <= 100; i++ {
		r.Record(OpPut, at(1.5), time.Duration(i)*time.Millisecond, 1, 0, ClassNone)
	}
	r.Record(OpPut, at(1.5), 6*time.Second, 3, 150*time.Millisecond, ClassNoLeader)
	r.Record(OpWatch, at(1.5), time.Millisecond, 1, 0, ClassNone) // not a KV op: not in the totals
	r.Flush(at(2))
	r.Flush(at(2.5)) // a partial second: on the timeline, not in throughput
	s := r.Summarize(at(2.5))
	put := s.Latency["put"]
	if put.Count != 100 || put.Failed != 1 || put.Max < 100 || put.Max > 100.1 || put.P50 < 50 || put.P50 > 50.1 {
		t.Errorf("put stats = %+v, want 100 samples 1..100ms and 1 failed left out", put)
	}
	if f := s.Latency["failed"]; f.Count != 1 || f.Max < 6000 || f.Max > 6010 {
		t.Errorf("latency.failed = %+v, want the failed op's 6s", f)
	}
	if s.Ops != 101 || s.Failed != 1 || s.Errors["no_leader"] != 1 || s.Latency["all"].Count != 100 {
		t.Errorf("ops %d failed %d errors %v all %+v: want the KV load's alone", s.Ops, s.Failed, s.Errors, s.Latency["all"])
	}
	if s.Latency["watch"].Count != 1 || s.Retries["watch"].Ops != 1 {
		t.Errorf("watch keeps its own counters: %+v %+v", s.Latency["watch"], s.Retries["watch"])
	}
	// Throughput is acknowledged ops: the failed put did no work.
	if len(s.PerSecond) != 1 || s.PerSecond[0] != 100 {
		t.Errorf("throughput per second = %v, want the one whole second after the warm-up, its failed op left out: [100]", s.PerSecond)
	}
	if s.AchievedRate < 66 || s.AchievedRate > 67 {
		t.Errorf("achieved rate = %v, want 100 succeeded over the 1.5s after the warm-up", s.AchievedRate)
	}
	if rs := s.Retries["put"]; rs.Attempts != 103 || rs.RetriedOps != 1 || rs.MaxAttempts != 3 || rs.RetryTimeMs != 150 {
		t.Errorf("retries = %+v", rs)
	}
	if len(s.Phases) != 2 || s.Phases[0].Name != "warmup" || s.Phases[1].Latency["put"].Count != 100 || s.Phases[1].Latency["all"].Failed != 1 {
		t.Errorf("phases = %+v", s.Phases)
	}
	// The interval log is readable by the HdrHistogram log reader and holds the same samples.
	rd := hdrhistogram.NewHistogramLogReader(strings.NewReader(log.String()))
	var total int64
	for {
		h, err := rd.NextIntervalHistogram()
		if err != nil {
			t.Fatal(err)
		}
		if h == nil {
			break
		}
		total += h.TotalCount()
	}
	if total != 102 { // the warm-up sample is logged too: the log is the raw record
		t.Errorf("interval log holds %d samples, want 102", total)
	}
}

// An op belongs to the phase in which it was due, not the one in which it completed: the ops a
// stall held are in the stall's phase.
func TestRecorderPhaseByDueTime(t *testing.T) {
	zero := time.Now()
	at := func(s float64) time.Time { return zero.Add(time.Duration(s * float64(time.Second))) }
	r := NewRecorder(zero, nil)
	r.SetPhase("before", at(1))
	r.SetPhase("during #0", at(2))
	r.SetPhase("after #0", at(3))
	// Due at 2.5 (during), completed at 3.4 (after) when it is recorded.
	r.Record(OpPut, at(2.5), 900*time.Millisecond, 1, 0, ClassNone)
	r.Record(OpPut, at(0.9), 5*time.Second, 1, 0, ClassNone) // due in the warm-up, recorded late
	s := r.Summarize(at(4))
	if got := s.Phases[2].Latency["put"].Count; got != 1 || s.Phases[3].Latency["put"].Count != 0 {
		t.Errorf("the op due during the fault went to %+v", s.Phases)
	}
	if s.Ops != 1 {
		t.Errorf("an op due in the warm-up counted in the totals: ops %d", s.Ops)
	}
}

// The pacer's late, backlog and dropped counts against a schedule that is known: 100 ops/s for 1s,
// sent by one worker that stalls 300ms once.
func TestPacerCountsWhatABacklogHides(t *testing.T) {
	start := time.Now()
	p := NewPacer(start, 100, 0, 100*time.Millisecond)
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(time.Second))
	defer cancel()
	timer := time.NewTimer(time.Hour)
	stalled := false
	for {
		due, ok := p.Next(ctx, timer)
		if !ok {
			break
		}
		p.Sent(due)
		if !stalled && time.Since(start) > 200*time.Millisecond {
			stalled = true
			time.Sleep(300 * time.Millisecond)
		}
	}
	st := p.Stats(start.Add(time.Second))
	// After the stall the worker sends the 30 tickets that fell due at once: those more than 100ms
	// late are the ones due in the first 200ms of the stall (about 20).
	if st.Late < 15 || st.Late > 25 {
		t.Errorf("late = %d, want about 20", st.Late)
	}
	if st.MaxBacklog < 25 || st.MaxBacklog > 32 {
		t.Errorf("max backlog = %d, want about 30", st.MaxBacklog)
	}
	if st.Due != 101 || st.Dropped != st.Due-st.Sent || st.Dropped > 2 {
		t.Errorf("due %d sent %d dropped %d: want 101 due, all but the last sent", st.Due, st.Sent, st.Dropped)
	}
	// A worker that stops sending halfway: the rest are dropped, not forgotten.
	p2 := NewPacer(start, 100, 0, 100*time.Millisecond)
	for i := 0; i < 50; i++ {
		p2.Sent(start)
	}
	if st := p2.Stats(start.Add(time.Second)); st.Dropped != 51 {
		t.Errorf("dropped = %d, want 51 (101 due, 50 sent)", st.Dropped)
	}
	// Read a moment after the load's deadline (the run's last fault step ran late), only the
	// tickets due by the deadline are owed: none due after it counts as dropped.
	p2.Until(start.Add(time.Second))
	if st := p2.Stats(start.Add(1500 * time.Millisecond)); st.Due != 101 || st.Dropped != 51 {
		t.Errorf("read 500ms after the deadline: due %d dropped %d, want 101 and 51", st.Due, st.Dropped)
	}
}

func TestRetryPolicyWait(t *testing.T) {
	p := RetryPolicy{Attempts: 6, Backoff: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond}
	rng := rand.New(rand.NewPCG(1, 2))
	want := []time.Duration{50, 100, 200, 300, 300}
	for i, w := range want {
		if got := p.Wait(i+1, rng); got != w*time.Millisecond {
			t.Errorf("wait after attempt %d = %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	p.Jitter = 0.2
	for i := 0; i < 1000; i++ {
		if got := p.Wait(1, rng); got < 40*time.Millisecond || got > 60*time.Millisecond {
			t.Fatalf("jittered wait %v outside 50ms ± 20%%", got)
		}
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		err  error
		want ErrClass
	}{
		{nil, ClassNone},
		{context.DeadlineExceeded, ClassDeadline},
		{fmt.Errorf("wrapped: %w", context.Canceled), ClassCanceled},
		{status.Error(codes.Unavailable, "connection refused"), ClassUnavailable},
		{rpctypes.ErrGRPCNoLeader, ClassNoLeader},
		{rpctypes.ErrGRPCLeaderChanged, ClassLeaderChanged},
		{rpctypes.ErrGRPCTimeout, ClassServerTimeout},
		{status.Error(codes.DeadlineExceeded, "context deadline exceeded"), ClassDeadline},
		{errors.New("boom"), ClassOther},
	}
	for _, c := range cases {
		if got := Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}

// TestOpsCutByTheLoadsEndAreCounted: an op in flight when the run's context ends is neither an
// acknowledgement nor a failure; it was left out of every figure without a trace, and is now
// counted as cut (one due in the warm-up is not).
func TestOpsCutByTheLoadsEndAreCounted(t *testing.T) {
	zero := time.Now().Add(-2 * time.Second)
	r := NewRecorder(zero, nil)
	r.SetPhase("before", zero.Add(time.Second))
	p := RetryPolicy{Attempts: 3, Backoff: time.Millisecond, MaxBackoff: time.Millisecond}
	rng := rand.New(rand.NewPCG(1, 2))
	timer := time.NewTimer(time.Hour)
	for _, due := range []time.Time{zero.Add(1500 * time.Millisecond), zero.Add(500 * time.Millisecond)} {
		ctx, cancel := context.WithCancel(context.Background())
		_, ended := p.Do(ctx, r, OpPut, due, time.Second, rng, timer, func(actx context.Context) error {
			cancel() // the load ends while the attempt is in flight
			<-actx.Done()
			return actx.Err()
		})
		if !ended {
			t.Fatal("an op the run's end cut was not reported as ended")
		}
	}
	s := r.Summarize(time.Now())
	if s.Cut != 1 || s.Ops != 0 || s.Failed != 0 {
		t.Errorf("cut %d, ops %d, failed %d: want the one op due after the warm-up cut, and in no other figure", s.Cut, s.Ops, s.Failed)
	}
}
