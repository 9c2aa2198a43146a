package harness

import (
	"strings"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/cluster"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// TestUnsetPasswordEnvIsNotEchoed: a password-env that does not read as a variable's name may be the
// password itself; the error that it is unset must not print it. A conventional name is printed.
func TestUnsetPasswordEnvIsNotEchoed(t *testing.T) {
	conn := func(env string) error {
		sc := &scenarios.Scenario{File: "x.yaml", Cluster: scenarios.Cluster{Provider: "remote", Endpoints: []string{"http://127.0.0.1:2379"},
			Auth: scenarios.Auth{User: "root", PasswordEnv: env}}}
		_, err := cluster.RemoteConn(sc)
		return err
	}
	if err := conn("Hunter2isMine"); err == nil || strings.Contains(err.Error(), "Hunter2isMine") {
		t.Errorf("error %v echoes what may be the password", err)
	}
	if err := conn("CHAOS_TEST_UNSET_PASSWORD"); err == nil || !strings.Contains(err.Error(), "CHAOS_TEST_UNSET_PASSWORD is not set") {
		t.Errorf("error %v does not name the unset variable", err)
	}
}
