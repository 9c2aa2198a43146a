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
