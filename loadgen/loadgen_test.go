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
	allocs := testing.AllocsPerRun(1000, func() {
		r.Record(OpPut, 1234*time.Microsecond, 2, 50*time.Millisecond, ClassNone)
		r.Record(OpGet, 3*time.Second, 5, time.Second, ClassDeadline)
		r.RecordAttemptError(ClassUnavailable, nil)
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
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			r.Record(Op(i%int(NumOps)), time.Duration(i%5000)*time.Microsecond, 1, 0, ClassNone)
		}
	})
}

func TestRecorderSummary(t *testing.T) {
	zero := time.Now()
	var log bytes.Buffer
	r := NewRecorder(zero, &log)
	r.Record(OpPut, time.Hour, 1, 0, ClassNone) // warm-up: not in totals
	r.SetPhase("before", zero.Add(time.Second))
	for i := 1; i <= 100; i++ {
		r.Record(OpPut, time.Duration(i)*time.Millisecond, 1, 0, ClassNone)
	}
	r.Record(OpPut, 0, 3, 150*time.Millisecond, ClassNoLeader)
	r.Flush(zero.Add(2 * time.Second))
	s := r.Summarize(zero.Add(2 * time.Second))
	put := s.Latency["put"]
	if put.Count != 100 || put.Max < 100 || put.Max > 100.1 || put.P50 < 50 || put.P50 > 50.1 {
		t.Errorf("put stats = %+v, want 100 samples 1..100ms", put)
	}
	if s.Ops != 101 || s.Failed != 1 || s.Errors["no_leader"] != 1 {
		t.Errorf("ops %d failed %d errors %v", s.Ops, s.Failed, s.Errors)
	}
	if rs := s.Retries["put"]; rs.Attempts != 103 || rs.RetriedOps != 1 || rs.MaxAttempts != 3 || rs.RetryTimeMs != 150 {
		t.Errorf("retries = %+v", rs)
	}
	if len(s.Phases) != 2 || s.Phases[0].Name != "warmup" || s.Phases[1].Latency["put"].Count != 100 {
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
	if total != 101 { // the warm-up sample is logged too: the log is the raw record
		t.Errorf("interval log holds %d samples, want 101", total)
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
