package main

import (
	"strings"
	"testing"
)

// TestToleranceRefusesNonNumbers: --tolerance nan would make every comparison false, so nothing
// could ever regress: a gate that cannot say no. It is bad input, as inf is.
func TestToleranceRefusesNonNumbers(t *testing.T) {
	for _, s := range []string{"nan", "NaN%", "inf", "+Inf%", "-1", "lots"} {
		if _, err := parseTolerance(s); err == nil || !strings.Contains(err.Error(), "10%") {
			t.Errorf("--tolerance %s: err %v, want a refusal naming what is valid", s, err)
		}
	}
	for s, want := range map[string]float64{"10%": 0.1, "0.25": 0.25, "300%": 3} {
		if got, err := parseTolerance(s); err != nil || got != want {
			t.Errorf("--tolerance %s = %v, %v; want %v", s, got, err, want)
		}
	}
}

// TestPreflightTimeoutsAreAPair: one timeout flag alone would be judged beside etcd's default for
// the other (a correct --heartbeat-interval 300 failed against an assumed 1s election timeout):
// bad input, naming the missing flag. Nothing is reached: the endpoint is a closed port.
func TestPreflightTimeoutsAreAPair(t *testing.T) {
	for _, c := range [][]string{{"--heartbeat-interval", "300"}, {"--election-timeout", "3000"}} {
		code, _, stderr := chaos(t, append([]string{"preflight", "--endpoints", "http://127.0.0.1:9"}, c...)...)
		missing := "--election-timeout"
		if c[0] == "--election-timeout" {
			missing = "--heartbeat-interval"
		}
		if code != 2 || !strings.Contains(stderr, c[0]+" without "+missing+": give both") {
			t.Errorf("preflight %v: exit %d, %s", c, code, stderr)
		}
	}
}
