package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/internal/testbin"
)

var chaosBin string

func TestMain(m *testing.M) { testbin.Main(m, &chaosBin) }

func TestNodeImageIsCached(t *testing.T) {
	dc := testbin.NeedDocker(t)
	ctx := context.Background()
	start := time.Now()
	tag, cached, err := buildBinaryImage(ctx, dc, chaosBin, nodeImage)
	if err != nil {
		t.Fatal(err)
	}
	first := time.Since(start)
	start = time.Now()
	tag2, cached2, err := buildBinaryImage(ctx, dc, chaosBin, nodeImage)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image %s: first call %v (cached before: %v), second %v (cached: %v)", tag, first.Round(time.Millisecond), cached, time.Since(start).Round(time.Millisecond), cached2)
	if tag2 != tag || !cached2 {
		t.Errorf("second build: %s cached=%v, want %s from the cache", tag2, cached2, tag)
	}
	// A dynamically linked binary cannot run FROM scratch: the error says how to build it.
	if _, _, err := buildBinaryImage(ctx, dc, "/bin/sh", etcdImage); err == nil {
		t.Error("a dynamically linked /bin/sh was accepted")
	}
}

// Each member's container starts the binary it was given: member-binaries over etcd-binary, builtin
// the chaos binary's etcd (its node image's entrypoint), an official binary its own (/etcd).
func TestContainerBinariesPerMember(t *testing.T) {
	c, err := NewContainers(LocalOptions{Dir: t.TempDir(), Size: 3, EtcdBinary: "/opt/etcd-v3.6.8", NodeCommand: []string{chaosBin, "node"},
		MemberBinaries: map[string]string{"member-2": "builtin", "member-3": "/opt/etcd-v3.7.3"}}, ContainerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		bin   string
		entry string
	}{"member-1": {"/opt/etcd-v3.6.8", "/etcd"}, "member-2": {"builtin", "/chaos node --"}, "member-3": {"/opt/etcd-v3.7.3", "/etcd"}}
	for _, m := range c.all() {
		r := c.runner(m)
		w := want[m.name]
		if r.bin != w.bin || strings.Join(r.req.Entrypoint, " ") != w.entry || !strings.HasPrefix(strings.Join(m.argv, " "), w.entry+" --name="+m.name) {
			t.Errorf("%s: binary %q, entrypoint %v, argv %v; want %s started by %s", m.name, r.bin, r.req.Entrypoint, m.argv[:4], w.bin, w.entry)
		}
	}
	if got := c.binaryOf("member-4"); got != "/opt/etcd-v3.6.8" {
		t.Errorf("a member added starts on %q, want etcd-binary", got)
	}
}
