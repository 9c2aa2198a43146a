package reports

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

// JUnit's XML as Jenkins, GitLab and GitHub read it: testsuites > testsuite > testcase, with a
// failure (the check failed) or an error (it could not be checked).
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	Skipped   *junitProblem `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes junit.xml: one testsuite for the run, one testcase per threshold and per fault
// (a fault that could not be injected or healed is an error), and one for the run itself when it
// could not finish.
func WriteJUnit(w io.Writer, r *Result) error {
	class := "etcd-chaos." + r.Scenario
	s := junitSuite{Name: r.Scenario, Timestamp: r.StartedAt.UTC().Format("2006-01-02T15:04:05"),
		Time: fmt.Sprintf("%.3f", r.EndedAt.Sub(r.StartedAt).Seconds())}
	s.Properties = []junitProperty{{"seed", fmt.Sprint(r.Seed)}, {"etcd_version", r.Cluster.EtcdVersion},
		{"cluster_size", fmt.Sprint(r.Cluster.Size)}, {"network", r.Cluster.Network}, {"verdict", r.Verdict}}
	if r.Cluster.Provider != "" {
		s.Properties = append(s.Properties, junitProperty{"provider", r.Cluster.Provider})
	}
	for _, t := range r.Thresholds {
		c := junitCase{Name: t.Metric + " " + t.Condition, Classname: class + ".thresholds", Time: "0"}
		switch t.State() {
		case ThresholdUnknown:
			c.Skipped = &junitProblem{Message: fmt.Sprintf("%s %s: %s", t.Metric, t.Condition, t.Observed), Type: "unknown"}
			s.Skipped++
		case ThresholdFail:
			c.Failure = &junitProblem{Message: fmt.Sprintf("%s %s: observed %s", t.Metric, t.Condition, t.Observed), Type: "threshold",
				Text: fmt.Sprintf("threshold %s %s failed; observed %s", t.Metric, t.Condition, t.Observed)}
			s.Failures++
		}
		s.Cases = append(s.Cases, c)
	}
	for _, ck := range r.Checks {
		c := junitCase{Name: "check " + ck.Name, Classname: class + ".checks", Time: "0"}
		if ck.Workload != "" {
			c.Name += " (" + ck.Workload + ")"
		}
		detail := ck.Summary
		if len(ck.Examples) > 0 {
			detail += "\n" + strings.Join(ck.Examples, "\n")
		}
		switch ck.Status {
		case CheckFail:
			c.Failure = &junitProblem{Message: ck.Summary, Type: "check", Text: detail}
			s.Failures++
		case CheckUnknown:
			c.Error = &junitProblem{Message: "unknown: " + ck.Summary, Type: "check-unknown", Text: detail}
			s.Errors++
		case CheckSkipped:
			c.Skipped = &junitProblem{Message: ck.Summary}
			s.Skipped++
		}
		s.Cases = append(s.Cases, c)
	}
	for _, f := range r.Faults {
		c := junitCase{Name: fmt.Sprintf("fault #%d %s %s", f.Index, f.Action, f.Target), Classname: class + ".faults", Time: "0"}
		switch {
		case f.Error != "":
			c.Error = &junitProblem{Message: f.Error, Type: "fault", Text: f.Error}
			s.Errors++
		case f.Skipped != "":
			c.Skipped = &junitProblem{Message: "skipped by the quorum guard: " + f.Skipped, Type: "quorum-guard"}
			s.Skipped++
		}
		s.Cases = append(s.Cases, c)
	}
	if r.Verdict == VerdictAborted || r.Verdict == VerdictUnknown {
		s.Cases = append(s.Cases, junitCase{Name: "run", Classname: class, Time: s.Time,
			Failure: &junitProblem{Message: r.Verdict + ": " + r.Reason, Type: r.Verdict, Text: r.Reason}})
		s.Failures++
	}
	if r.Verdict == VerdictError || r.Verdict == VerdictInterrupted || r.Verdict == VerdictPartial {
		s.Cases = append(s.Cases, junitCase{Name: "run", Classname: class, Time: s.Time,
			Error: &junitProblem{Message: r.Verdict + ": " + r.Reason, Type: r.Verdict, Text: r.Reason}})
		s.Errors++
	}
	s.Tests = len(s.Cases)
	return encodeJUnit(w, junitSuites{Name: "etcd-chaos", Tests: s.Tests, Failures: s.Failures, Errors: s.Errors, Time: s.Time, Suites: []junitSuite{s}})
}

func encodeJUnit(w io.Writer, doc junitSuites) error {
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
