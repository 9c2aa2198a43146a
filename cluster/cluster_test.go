package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/faults"
)

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
