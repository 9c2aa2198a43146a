package harness

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// TestLiveMetricsOfEveryBuiltin serves the live metrics of each built-in's recorders (the main KV
// load and one per kv workload block, each with ops recorded) over a real listener, and parses the
// exposition: a scenario with a kv block exposed its puts twice under one series, and Prometheus's
// handler answered HTTP 500 for the whole run. A fault whose window closed keeps the outage it
// measured; "so far" would grow for ever after its tracker was released.
func TestLiveMetricsOfEveryBuiltin(t *testing.T) {
	list, err := scenarios.Builtins()
	if err != nil {
		t.Fatal(err)
	}
	all := []*scenarios.Scenario{{Name: "with-kv-blocks", Workloads: []scenarios.Block{{Kind: "kv", Name: "kv"}, {Kind: "kv", Name: "kv-2"}}}}
	for _, b := range list {
		var sets []string
		if b.Name == "rolling-upgrade" { // its previous etcd release: a stand-in that says its version
			p := filepath.Join(t.TempDir(), "etcd-v3.6.8")
			if err := os.WriteFile(p, []byte("#!/bin/sh\necho 'etcd Version: 3.6.8'\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			sets = []string{"cluster.etcd-binary=" + p, "faults[1].to=" + p}
		}
		sc, err := scenarios.LoadBuiltin(b.Name, sets)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, sc)
	}
	for _, sc := range all {
		t.Run(sc.Name, func(t *testing.T) {
			events, err := reports.OpenEventLog(filepath.Join(t.TempDir(), "events.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			zero := time.Now().Add(-5 * time.Second)
			r := &run{sc: sc, log: slog.New(slog.DiscardHandler), events: events}
			r.rec = loadgen.NewRecorder(zero, nil)
			r.recs, r.recName = []*loadgen.Recorder{r.rec}, []string{""}
			for _, b := range sc.Workloads {
				if b.Kind == "kv" {
					r.recs, r.recName = append(r.recs, loadgen.NewRecorder(zero, nil)), append(r.recName, b.Name)
				}
			}
			for _, rec := range r.recs {
				rec.SetPhase("before", zero.Add(time.Second))
				rec.Record(loadgen.OpPut, zero.Add(2*time.Second), 3*time.Millisecond, 1, 0, loadgen.ClassNone)
			}
			// One fault whose window closed 8s after it began, having measured a 2s write outage.
			fo := &loadgen.Failover{}
			fo.Injected(zero)
			r.faults = []*faultRun{{index: 0, spec: scenarios.Fault{Action: "kill"}, inj: &faults.Injection{}, injAt: zero, failover: fo,
				result: &loadgen.FailoverResult{WriteOutage: 2 * time.Second}}}
			m, err := r.startMetrics("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer m.stop()
			resp, err := http.Get("http://" + m.ln.Addr().String() + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("HTTP %d: %s", resp.StatusCode, body)
			}
			parser := expfmt.NewTextParser(model.UTF8Validation)
			fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
			if err != nil {
				t.Fatalf("the exposition does not parse: %v\n%s", err, body)
			}
			if f := fams["etcd_chaos_ops_total"]; f == nil || len(f.Metric) != 1 || f.Metric[0].GetCounter().GetValue() != 1 {
				t.Errorf("the main load's put count: %v", f)
			}
			if n := len(r.recs) - 1; n > 0 {
				if f := fams["etcd_chaos_workload_ops_total"]; f == nil || len(f.Metric) != n {
					t.Errorf("%d kv blocks, workload_ops_total %v", n, f)
				}
			}
			if f := fams["etcd_chaos_fault_outage_write_seconds"]; f == nil || f.Metric[0].GetGauge().GetValue() != 2 {
				t.Errorf("a closed fault's outage: %v, want the 2s it measured, not one that grows", f)
			}
		})
	}
}
