package preflight

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"crypto/tls"

	"github.com/etcd-chaos/etcd-chaos/cluster"
	"github.com/etcd-chaos/etcd-chaos/internal/proc"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestScratchMemberTakesOnlyItsClient: the scratch member that holds a copy of the cluster's data
// answers no plain http request, no TLS client without a certificate, and no certificate of
// another CA; the harness's own client works, and with certificate-only auth (a root user without
// a password) its certificate's CN is root: HashKV, which needs root, answers.
func TestScratchMemberTakesOnlyItsClient(t *testing.T) {
	dir := t.TempDir()
	st, err := newScratchTLS(dir, "root")
	if err != nil {
		t.Fatal(err)
	}
	ports, err := cluster.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	clientURL, peerURL := fmt.Sprintf("https://127.0.0.1:%d", ports[0]), fmt.Sprintf("https://127.0.0.1:%d", ports[1])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := startScratch(ctx, "preflight-restore", filepath.Join(dir, "member"), clientURL, peerURL, filepath.Join(dir, "member.log"), st)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()

	plain := &http.Client{Timeout: 3 * time.Second}
	if resp, err := plain.Post(strings.Replace(clientURL, "https", "http", 1)+"/v3/kv/range", "application/json", strings.NewReader(`{"key":"AA=="}`)); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain http read the scratch member: HTTP %d", resp.StatusCode)
		}
	}
	noCert := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: st.Client.RootCAs}}}
	if resp, err := noCert.Post(clientURL+"/v3/kv/range", "application/json", strings.NewReader(`{"key":"AA=="}`)); err == nil {
		resp.Body.Close()
		t.Errorf("a TLS client without a certificate was answered: HTTP %d", resp.StatusCode)
	}
	other, err := newScratchTLS(t.TempDir(), "root")
	if err != nil {
		t.Fatal(err)
	}
	foreign := other.Client.Clone()
	foreign.RootCAs = st.Client.RootCAs // trusts the server, presents a certificate of another CA
	bad := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: foreign}}
	if resp, err := bad.Post(clientURL+"/v3/kv/range", "application/json", strings.NewReader(`{"key":"AA=="}`)); err == nil {
		resp.Body.Close()
		t.Errorf("a certificate of another CA was answered: HTTP %d", resp.StatusCode)
	}

	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{clientURL}, TLS: st.Client, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("the harness's own client: %v", err)
	}
	// Certificate-only auth, as a cluster whose clients authenticate by certificate has it.
	if _, err := cli.UserAddWithOptions(ctx, "root", "", &clientv3.UserAddOptions{NoPassword: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.HashKV(ctx, clientURL, 0); err != nil {
		t.Errorf("HashKV with certificate-only auth: %v", err)
	}
}

// TestStaleScratchAfterPIDReuse: a killed preflight's folder is removed by the next one when its
// pid is gone, and when the pid now runs another process (its start time differs); a live
// preflight's folder is kept.
func TestStaleScratchAfterPIDReuse(t *testing.T) {
	root := t.TempDir()
	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Process.Kill(); _ = other.Wait() }()
	pid := other.Process.Pid
	live := filepath.Join(root, fmt.Sprintf("%s%d-%s-1", scratchPrefix, pid, proc.StartTime(pid)))
	reused := filepath.Join(root, fmt.Sprintf("%s%d-%s-2", scratchPrefix, pid, "12345"))
	gone := filepath.Join(root, fmt.Sprintf("%s%d-%s-3", scratchPrefix, 1<<22+7, "1"))
	for _, d := range []string{live, reused, gone} {
		if err := os.MkdirAll(filepath.Join(d, "member"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if proc.StartTime(pid) == "" {
		t.Fatal("no start time for a live process")
	}
	removeStaleScratch(root)
	for d, want := range map[string]bool{live: true, reused: false, gone: false} {
		if _, err := os.Stat(d); (err == nil) != want {
			t.Errorf("%s: present %v, want %v", filepath.Base(d), err == nil, want)
		}
	}
}

// TestAuthRefusalIsARefusal: only etcd refusing who sent a request proves auth; an unauthenticated
// read that timed out or found no leader proves nothing (preflight counted it as refused).
func TestAuthRefusalIsARefusal(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{rpctypes.ErrPermissionDenied, true},
		{rpctypes.ErrUserEmpty, true},
		{rpctypes.ErrGRPCUserEmpty, true},
		{rpctypes.ErrGRPCPermissionDenied, true},
		{status.Error(codes.Unauthenticated, "no credentials"), true},
		{context.DeadlineExceeded, false},
		{status.Error(codes.DeadlineExceeded, "context deadline exceeded"), false},
		{rpctypes.ErrGRPCNoLeader, false},
		{rpctypes.ErrTimeout, false},
	} {
		if got := authRefusal(c.err); got != c.want {
			t.Errorf("%v: refusal %v, want %v", c.err, got, c.want)
		}
	}
}
