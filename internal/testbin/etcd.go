package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PreviousEtcd is the official etcd release of the minor version before the one chaos embeds: the
// version a rolling upgrade starts from.
const PreviousEtcd = "v3.6.8"

// EtcdRelease builds the official etcd server at version from the Go module proxy, in a throw-away
// module (a published server module's replace directives forbid go install pkg@version, but a
// module that requires it may build it), and keeps it in the system's temporary folder for the
// next test that asks (about a minute the first time).
//
// make test builds it into the repository's bin/ (make etcd-previous) in the background while it
// vets: that one is used, waited for while its build runs.
func EtcdRelease(t *testing.T, version string) string {
	t.Helper()
	if root, err := repoRoot(); err == nil {
		made := filepath.Join(root, "bin", "etcd-"+version)
		building := filepath.Join(root, "bin", ".etcd-previous.building")
		start := time.Now()
		for time.Since(start) < 5*time.Minute {
			b, err := os.ReadFile(building)
			if err != nil {
				break
			}
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || syscall.Kill(pid, 0) != nil {
				break // a build that was killed: none is under way
			}
			time.Sleep(time.Second)
		}
		if _, err := os.Stat(made); err == nil {
			t.Logf("etcd %s from make etcd-previous (waited %v for its build)", version, time.Since(start).Round(time.Second))
			return made
		}
	}
	dir := filepath.Join(os.TempDir(), "etcd-chaos-etcd-"+version)
	bin := filepath.Join(dir, "etcd")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	start := time.Now()
	mod, err := os.MkdirTemp("", "etcd-build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(mod)
	run := func(name string, args ...string) {
		cmd := exec.Command(name, args...)
		cmd.Dir = mod
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building etcd %s: %s %v: %v\n%s", version, name, args, err, out)
		}
	}
	run("go", "mod", "init", "etcd-build")
	if err := os.WriteFile(filepath.Join(mod, "tools.go"), []byte("//go:build tools\n\npackage tools\n\nimport _ \"go.etcd.io/etcd/server/v3\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run("go", "get", "go.etcd.io/etcd/server/v3@"+version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, fmt.Sprintf("etcd.%d", os.Getpid()))
	run("go", "build", "-o", tmp, "go.etcd.io/etcd/server/v3")
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	t.Logf("built etcd %s from the module proxy in %v", version, time.Since(start).Round(time.Millisecond))
	return bin
}
