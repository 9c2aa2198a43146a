package reports

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Preflight check statuses beside CheckPass and CheckFail. A check that could not tell (no
// certificate given to it, no metrics reachable) is skipped: never a pass.
const (
	CheckWarn    = "warn"
	CheckSkipped = "skipped"
)

// PreflightIDs are the checks of chaos preflight, in the order they are reported.
var PreflightIDs = []string{"topology", "versions", "transport", "auth", "timeouts", "disk", "space", "backup", "client", "monitoring",
	"host", "datadir", "flags", "clock"}

// Preflight is what chaos preflight found: one entry per check, each with the evidence it saw and,
// unless it passed, a one-line remedy. Passed is false when any check failed (warnings pass).
type Preflight struct {
	Passed    bool             `json:"passed"`
	Endpoints []string         `json:"endpoints"`
	StartedAt time.Time        `json:"started_at"`
	Ms        int64            `json:"ms"`
	Checks    []PreflightCheck `json:"checks"`
}

// PreflightCheck is one item of the checklist.
type PreflightCheck struct {
	ID       string `json:"id"`
	Title    string `json:"title"`
	Status   string `json:"status"`
	Evidence string `json:"evidence"`
	Remedy   string `json:"remedy"`
	Ms       int64  `json:"ms"`
}

// Check returns the check with id, or nil.
func (p *Preflight) Check(id string) *PreflightCheck {
	for i := range p.Checks {
		if p.Checks[i].ID == id {
			return &p.Checks[i]
		}
	}
	return nil
}

// Count is how many checks ended with status.
func (p *Preflight) Count(status string) int {
	n := 0
	for _, c := range p.Checks {
		if c.Status == status {
			n++
		}
	}
	return n
}

// WritePreflightText prints each check as a status, its title and time, the evidence, and the
// remedy when it did not pass; then the tally.
func WritePreflightText(w io.Writer, p *Preflight) error {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos preflight: %s\n", strings.Join(p.Endpoints, ", "))
	for _, c := range p.Checks {
		fmt.Fprintf(&b, "%-7s %-10s %s (%d ms)\n", strings.ToUpper(c.Status), c.ID, c.Title, c.Ms)
		for _, line := range strings.Split(c.Evidence, "\n") {
			if line != "" {
				fmt.Fprintf(&b, "        %s\n", line)
			}
		}
		if c.Remedy != "" && c.Status != CheckPass {
			fmt.Fprintf(&b, "        remedy: %s\n", c.Remedy)
		}
	}
	verdict := "PASSED"
	if !p.Passed {
		verdict = "FAILED"
	}
	fmt.Fprintf(&b, "preflight %s: %d pass, %d warn, %d fail, %d skipped in %.1fs\n", verdict,
		p.Count(CheckPass), p.Count(CheckWarn), p.Count(CheckFail), p.Count(CheckSkipped), float64(p.Ms)/1000)
	_, err := io.WriteString(w, b.String())
	return err
}

// WritePreflightJUnit writes the checklist as one testsuite, a testcase per check: a failed check
// is a failure, a skipped one skipped, and a warning passes with the warning in system-out.
func WritePreflightJUnit(w io.Writer, p *Preflight) error {
	const class = "etcd-chaos.preflight"
	s := junitSuite{Name: "preflight", Timestamp: p.StartedAt.UTC().Format("2006-01-02T15:04:05"), Time: seconds(p.Ms)}
	s.Properties = []junitProperty{{"endpoints", strings.Join(p.Endpoints, ",")}, {"passed", fmt.Sprint(p.Passed)}}
	for _, c := range p.Checks {
		tc := junitCase{Name: c.ID, Classname: class, Time: seconds(c.Ms)}
		text := c.Title + "\n" + c.Evidence
		if c.Remedy != "" {
			text += "\nremedy: " + c.Remedy
		}
		switch c.Status {
		case CheckFail:
			tc.Failure = &junitProblem{Message: c.Remedy, Type: "preflight", Text: text}
			s.Failures++
		case CheckSkipped:
			tc.Skipped = &junitProblem{Message: firstLine(c.Evidence), Type: "skipped", Text: text}
			s.Skipped++
		case CheckWarn:
			tc.SystemOut = "warn: " + text
		}
		s.Cases = append(s.Cases, tc)
	}
	s.Tests = len(s.Cases)
	return encodeJUnit(w, junitSuites{Name: "etcd-chaos preflight", Tests: s.Tests, Failures: s.Failures, Time: s.Time, Suites: []junitSuite{s}})
}

func seconds(ms int64) string { return fmt.Sprintf("%.3f", float64(ms)/1000) }

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
