package harness

import (
	"context"
	"log/slog"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/internal/proc"
	"github.com/etcd-chaos/etcd-chaos/reports"
)

// sleeper is a real process standing in for a member: pause sends it real signals.
type sleeper struct{ cmd *exec.Cmd }

func (s sleeper) Name() string                    { return "sleeper" }
func (s sleeper) PID() int                        { return s.cmd.Process.Pid }
func (s sleeper) Signal(sig syscall.Signal) error { return syscall.Kill(s.PID(), sig) }
func (s sleeper) WaitExit(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}
func (s sleeper) Start(context.Context) error      { return nil }
func (s sleeper) State() (faults.ProcState, error) { return proc.State(s.PID()) }

// TestAFaultAppliedAfterAnAbortIsHealedAtOnce: a stop condition heals what is applied when it trips;
// a fault whose injection was still under way is applied after it. Once the run is aborted, the
// fault's own step heals it at once (by "abort"), not at teardown; without an abort it stays.
func TestAFaultAppliedAfterAnAbortIsHealedAtOnce(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	dir := t.TempDir()
	ledger, err := faults.OpenLedger(filepath.Join(dir, "ledger.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer ledger.Close()
	events, err := reports.OpenEventLog(filepath.Join(dir, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	kind, err := faults.Lookup("pause")
	if err != nil {
		t.Fatal(err)
	}
	inj := faults.NewInjection(0, kind, "leader", []faults.Member{sleeper{cmd}}, ledger)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := inj.Inject(ctx); err != nil {
		t.Fatal(err)
	}
	r := &run{log: slog.New(slog.DiscardHandler), events: events, loadStart: time.Now(),
		faults: []*faultRun{{index: 0, inj: inj}}}
	runCtx, stop := context.WithCancel(ctx)
	stop() // the run's context ends with the abort, as it does when a stop condition trips

	r.healIfAborted(runCtx)
	if st, _ := proc.State(cmd.Process.Pid); st != faults.Stopped || inj.State() != faults.Applied {
		t.Fatalf("without an abort the fault was touched: process %s, injection %v", st, inj.State())
	}
	r.aborted = &reports.Abort{Condition: "errors: rate > 0.5 over 2s"}
	r.healIfAborted(runCtx)
	if st, _ := proc.State(cmd.Process.Pid); st == faults.Stopped || inj.State() != faults.Healed {
		t.Fatalf("after the abort: process %s, injection %v; want it resumed and healed", st, inj.State())
	}
	entries, err := faults.ReadLedger(filepath.Join(dir, "ledger.jsonl"))
	if err != nil || len(entries) == 0 || entries[len(entries)-1].By != "abort" || entries[len(entries)-1].Step != faults.StepHealed {
		t.Fatalf("ledger %+v (%v): want the last step healed by abort", entries, err)
	}
}
