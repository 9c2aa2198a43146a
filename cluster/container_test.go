package cluster

import (
	"context"
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
