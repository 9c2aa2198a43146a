package testbin

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
)

// NeedRoot skips a test that needs root, unless REQUIRE_ROOT=1 (CI), where a skip would hide a
// missing test: then it fails.
func NeedRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("REQUIRE_ROOT") == "1" {
			t.Fatal("REQUIRE_ROOT=1 but not running as root")
		}
		t.Skip("network namespaces need root")
	}
}

// NeedDocker returns a client of the Docker engine, or skips the test when none answers, unless
// REQUIRE_DOCKER=1 (CI): then it fails.
func NeedDocker(t testing.TB) *testcontainers.DockerClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dc, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err == nil {
		if _, err = dc.Ping(ctx, client.PingOptions{}); err == nil {
			t.Cleanup(func() { _ = dc.Close() })
			return dc
		}
	}
	if os.Getenv("REQUIRE_DOCKER") == "1" {
		t.Fatalf("REQUIRE_DOCKER=1 but no Docker engine answers: %v", err)
	}
	t.Skipf("no Docker engine: %v", err)
	return nil
}

// NeedFUSE skips a test that mounts the disk layer where FUSE is missing (/dev/fuse, and root or
// fusermount3), unless REQUIRE_ROOT=1 (CI, whose machines have it): then it fails.
func NeedFUSE(t testing.TB) {
	t.Helper()
	why := ""
	if _, err := os.Stat("/dev/fuse"); err != nil {
		why = "no /dev/fuse"
	} else if _, err := exec.LookPath("fusermount3"); err != nil && os.Geteuid() != 0 {
		why = "not root and no fusermount3"
	}
	if why == "" {
		return
	}
	if os.Getenv("REQUIRE_ROOT") == "1" {
		t.Fatalf("REQUIRE_ROOT=1 but the disk layer cannot mount: %s", why)
	}
	t.Skipf("the disk layer needs FUSE: %s", why)
}
