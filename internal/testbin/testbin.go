// Package testbin builds the chaos binary once for tests that need real member processes (the local
// provider re-executes it as "chaos node") or that run the command line end to end.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// repoRoot is the folder of the module's go.mod.
func repoRoot() (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	return filepath.Dir(strings.TrimSpace(string(gomod))), nil
}

// Build compiles ./cmd/chaos into a new temporary folder and returns the binary's path and a
// function that removes the folder.
func Build() (string, func(), error) {
	root, err := repoRoot()
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "chaos-bin-")
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, "chaos")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/chaos")
	// Statically linked, as make build makes it: the container image runs it FROM scratch.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("building chaos: %v\n%s", err, out)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// Main is a TestMain for packages that need the binary: it builds it, stores its path in *bin, runs
// the tests, removes the binary and exits with the tests' code.
func Main(m *testing.M, bin *string) {
	path, cleanup, err := Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*bin = path
	code := m.Run()
	cleanup()
	os.Exit(code)
}
