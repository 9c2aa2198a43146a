package harness

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/reports"
)

// Provider differences are capabilities: a sweep refuses a cluster whose members the harness does
// not start (it cannot give each cell its settings), and names the provider and what is valid.
func TestSweepRefusesAClusterItCannotStart(t *testing.T) {
	if c := CapabilitiesOf("remote"); c.StartsMembers || !c.Shared {
		t.Errorf("remote: %+v, want a shared cluster the harness does not start", c)
	}
	for _, p := range []string{"local", "container"} {
		if c := CapabilitiesOf(p); !c.StartsMembers || c.Shared {
			t.Errorf("%s: %+v, want members the harness starts, not shared", p, c)
		}
	}
	if c := CapabilitiesOf("nonsense"); c != (Capabilities{}) {
		t.Errorf("an unknown provider can do %+v, want nothing", c)
	}
	path := filepath.Join(t.TempDir(), "staging.yaml")
	if err := os.WriteFile(path, []byte("name: staging\ncluster:\n  provider: remote\n  endpoints: [https://127.0.0.1:2379]\nworkload: {duration: 5s, warmup: 1s}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := PlanSweep(SweepOptions{Scenario: path, Repeat: 1, Vary: []reports.Vary{{Path: "workload.clients", Values: []string{"4", "8"}}}})
	if err == nil || !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "cluster.provider remote") || !strings.Contains(err.Error(), "valid: local or container") {
		t.Fatalf("a sweep of a remote cluster: err %v, want it refused as bad input naming the provider and what is valid", err)
	}
}

// What a network backend can do is asked of it: the proxy gives links any shape, docker network
// disconnect can only cut them (netns's answer depends on the kernel: TestNetnsNeedsNetemForDelay).
func TestBackendsSayWhatTheySupport(t *testing.T) {
	px := faults.NewProxy(1, nopLogger())
	for _, s := range []faults.Shape{{Blackhole: true}, {Delay: time.Millisecond}, {Loss: 10}, {Rate: 1000}} {
		if err := px.Supports(s); err != nil {
			t.Errorf("proxy refused %s: %v", s, err)
		}
	}
	var d dockerNet
	if err := d.Supports(faults.Shape{Blackhole: true}); err != nil {
		t.Errorf("docker refused a cut: %v", err)
	}
	for _, s := range []faults.Shape{{Delay: time.Millisecond}, {Loss: 10}, {Rate: 1000}} {
		if err := d.Supports(s); err == nil || !strings.Contains(err.Error(), "network: netns") {
			t.Errorf("docker: %s: err %v, want it refused, naming what would do it", s, err)
		}
	}
}
