package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"

	"github.com/etcd-chaos/etcd-chaos/agent"
	"github.com/etcd-chaos/etcd-chaos/cluster"
	"github.com/etcd-chaos/etcd-chaos/internal/testbin"
)

// TestAgentManagesAContainer: an agent started with --etcd-container acts on that container
// through the Docker Engine API, each step read back by docker inspect, and its dead man's switch
// unpauses it; a request naming another container is refused.
func TestAgentManagesAContainer(t *testing.T) {
	dc := testbin.NeedDocker(t)
	ctx := context.Background()
	tag, err := cluster.NodeImage(ctx, dc, chaosBin)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("etcd-chaos-agent-test-%04d", rand.IntN(10000))
	ctr, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{Started: true, ContainerRequest: testcontainers.ContainerRequest{
		Image: tag, Name: name, Labels: map[string]string{cluster.Label: name},
		Cmd: []string{"--name", "solo", "--data-dir", "/data", "--listen-client-urls", "http://0.0.0.0:2379", "--advertise-client-urls", "http://127.0.0.1:2379"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ctr.Terminate(context.Background()) })
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("container-test-token-0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := agent.New(agent.Config{Container: name, Listen: "127.0.0.1:0", InsecureLoopback: true, TokenFile: token,
		StateDir: filepath.Join(dir, "state"), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("the agent's exit: %v", err)
		}
	}()
	cl, err := agent.NewClient("http://"+srv.Addr(), nil, "container-test-token-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// What the engine says, asked directly: paused, running, or neither.
	engine := func() string {
		res, err := dc.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
		if err != nil || res.Container.State == nil {
			t.Fatalf("inspect: %v", err)
		}
		switch st := res.Container.State; {
		case st.Paused:
			return "paused"
		case st.Running:
			return "running"
		}
		return "exited"
	}
	lease := agent.Lease{Owner: "t", TTLMs: 60_000}
	for _, step := range []struct {
		op, want string
	}{{agent.OpPause, "paused"}, {agent.OpResume, "running"}, {agent.OpKill, "exited"}, {agent.OpStart, "running"}} {
		if _, err := cl.Process(ctx, agent.ProcRequest{Op: step.op, Lease: lease}); err != nil {
			t.Fatalf("%s: %v", step.op, err)
		}
		if got := engine(); got != step.want {
			t.Errorf("after %s the engine says %s, want %s", step.op, got, step.want)
		}
	}
	if _, err := cl.Process(ctx, agent.ProcRequest{Op: agent.OpPause, Container: "another", Lease: lease}); !agent.IsRefused(err) || engine() != "running" {
		t.Errorf("a pause of another container: %v (engine: %s), want refused", err, engine())
	}
	// Not renewed: the agent unpauses it on its own.
	if _, err := cl.Process(ctx, agent.ProcRequest{Op: agent.OpPause, Lease: agent.Lease{TTLMs: 300}}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	for engine() == "paused" && time.Since(t0) < 5*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("the container's pause (TTL 300ms, never renewed) was healed after %s", time.Since(t0).Round(time.Millisecond))
	if engine() != "running" || time.Since(t0) > 2*time.Second {
		t.Errorf("the unrenewed pause: engine %s after %s", engine(), time.Since(t0))
	}
}
