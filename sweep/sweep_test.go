package sweep

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/cluster"
	"github.com/etcd-chaos/etcd-chaos/harness"
	"github.com/etcd-chaos/etcd-chaos/reports"
)

// Provider differences are capabilities: a sweep refuses a cluster whose members the harness does
// not start (it cannot give each cell its settings), and names the provider and what is valid.
func TestSweepRefusesAClusterItCannotStart(t *testing.T) {
	if c := cluster.CapabilitiesOf("remote"); c.StartsMembers || !c.Shared {
		t.Errorf("remote: %+v, want a shared cluster the harness does not start", c)
	}
	for _, p := range []string{"local", "container"} {
		if c := cluster.CapabilitiesOf(p); !c.StartsMembers || c.Shared {
			t.Errorf("%s: %+v, want members the harness starts, not shared", p, c)
		}
	}
	if c := cluster.CapabilitiesOf("nonsense"); c != (cluster.Capabilities{}) {
		t.Errorf("an unknown provider can do %+v, want nothing", c)
	}
	path := filepath.Join(t.TempDir(), "staging.yaml")
	if err := os.WriteFile(path, []byte("name: staging\ncluster:\n  provider: remote\n  endpoints: [https://127.0.0.1:2379]\nworkload: {duration: 5s, warmup: 1s}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := NewPlan(Options{Scenario: path, Repeat: 1, Vary: []reports.Vary{{Path: "workload.clients", Values: []string{"4", "8"}}}})
	if err == nil || !errors.Is(err, harness.ErrInput) || !strings.Contains(err.Error(), "cluster.provider remote") || !strings.Contains(err.Error(), "valid: local or container") {
		t.Fatalf("a sweep of a remote cluster: err %v, want it refused as bad input naming the provider and what is valid", err)
	}
}
