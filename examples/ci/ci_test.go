// Package ci holds the nightly job files of docs/nightly-ci.md; its test runs the GitHub workflow's
// steps in order on this machine, with the Actions cache played by a folder that outlives each
// night's workspace, as a throw-away runner sees it.
package ci

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

type workflow struct {
	Jobs map[string]job `yaml:"jobs"`
}

type job struct {
	Env   map[string]string `yaml:"env"`
	Steps []step            `yaml:"steps"`
}

// soakJob is the workflow's job, as GitHub reads it.
func soakJob(t *testing.T) job {
	t.Helper()
	b, err := os.ReadFile("github-actions.yml")
	if err != nil {
		t.Fatal(err)
	}
	var wf workflow
	if err := yaml.Unmarshal(b, &wf); err != nil {
		t.Fatal(err)
	}
	j, ok := wf.Jobs["soak"]
	if !ok {
		t.Fatalf("no job soak in the workflow: %v", wf.Jobs)
	}
	return j
}

type step struct {
	Name string            `yaml:"name"`
	Uses string            `yaml:"uses"`
	Run  string            `yaml:"run"`
	If   string            `yaml:"if"`
	Env  map[string]string `yaml:"env"`
	With map[string]string `yaml:"with"`
}

// A night of steady load, short: what is under test is the job's flow, not etcd (the soak's
// faults and the comparison's judgement have their own tests).
const night = `
name: nightly-ci-test
seed: 7
cluster:
  size: 3
  etcd: {heartbeat-interval: 50ms, election-timeout: 250ms}
workload:
  duration: 3s
  warmup: 1s
  rate: 100
  mix: [{op: put, keys: 50}]
thresholds:
  errors: ["rate < 0.05"]
`

func TestGitHubWorkflowRunsThreeNights(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	job := soakJob(t)
	// The cache holds what the script reads and writes: the same folder.
	for _, s := range job.Steps {
		if strings.HasPrefix(s.Uses, "actions/cache/") && s.With["path"] != job.Env["HISTORY"] {
			t.Fatalf("%s caches %q, the script keeps the history in HISTORY=%q", s.Uses, s.With["path"], job.Env["HISTORY"])
		}
	}
	cache := t.TempDir() // the Actions cache: it outlives the runners
	scenario := filepath.Join(t.TempDir(), "night.yaml")
	if err := os.WriteFile(scenario, []byte(night), 0o644); err != nil {
		t.Fatal(err)
	}
	failing := filepath.Join(t.TempDir(), "failing.yaml")
	if err := os.WriteFile(failing, []byte(night+"  throughput: [\"avg > 100000\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	nights := func() []string {
		es, _ := os.ReadDir(cache)
		var out []string
		for _, e := range es {
			out = append(out, e.Name())
		}
		return out
	}

	// Night 1: no history: the run passes and becomes the first baseline.
	out := runNight(t, root, job.Env, job.Steps, cache, map[string]string{"SCENARIO": scenario, "DURATION": "3s"}, true)
	if !strings.Contains(out, "this night is the first baseline") || len(nights()) != 1 {
		t.Fatalf("night 1: history %v\n%s", nights(), out)
	}
	time.Sleep(time.Second) // nights are named by the second
	// Night 2: compared with night 1, kept beside it. A tolerance no noise reaches: one 3s run a side
	// is noisy (a p99 of 300 ops is their third slowest), and the comparison's own gate has its
	// tests in cmd/chaos.
	out = runNight(t, root, job.Env, job.Steps, cache, map[string]string{"SCENARIO": scenario, "DURATION": "3s", "TOLERANCE": "100000%"}, true)
	if !strings.Contains(out, "history: 1 passing runs of nightly-ci-test") || len(nights()) != 2 {
		t.Fatalf("night 2: history %v\n%s", nights(), out)
	}
	time.Sleep(time.Second)
	// Night 3 fails its threshold: the job fails, the history is not saved, the run folder is
	// uploaded all the same.
	out = runNight(t, root, job.Env, job.Steps, cache, map[string]string{"SCENARIO": failing, "DURATION": "3s"}, false)
	if !strings.Contains(out, "the run did not pass (exit 1): not kept") || len(nights()) != 2 {
		t.Fatalf("night 3: history %v\n%s", nights(), out)
	}
}

// runNight plays the job on a fresh runner: every step in order, a failed step skipping the steps
// after it that do not say if: always(); the cache steps copy the history from and to cache.
func runNight(t *testing.T, root string, jobEnv map[string]string, steps []step, cache string, over map[string]string, pass bool) string {
	t.Helper()
	work := t.TempDir() // this runner's workspace for what the job writes
	env := map[string]string{}
	for k, v := range jobEnv {
		env[k] = v
	}
	for k, v := range over {
		env[k] = v
	}
	env["HISTORY"] = filepath.Join(work, jobEnv["HISTORY"])
	env["OUT"] = filepath.Join(work, jobEnv["OUT"])
	var log strings.Builder
	failed := false
	for _, s := range steps {
		if failed && !strings.Contains(s.If, "always()") {
			fmt.Fprintf(&log, "-- skipped: %s\n", s.Name)
			continue
		}
		switch {
		case strings.HasPrefix(s.Uses, "actions/checkout"), strings.HasPrefix(s.Uses, "actions/setup-go"):
			// the repository and its Go are this machine's
		case strings.HasPrefix(s.Uses, "actions/cache/restore"):
			copyDir(t, cache, env["HISTORY"])
		case strings.HasPrefix(s.Uses, "actions/cache/save"):
			_ = os.RemoveAll(cache)
			copyDir(t, env["HISTORY"], cache)
		case strings.HasPrefix(s.Uses, "actions/upload-artifact"):
			p := s.With["path"]
			if p != jobEnv["OUT"] {
				t.Fatalf("the artifact is %q, tonight's run folder OUT=%q", p, jobEnv["OUT"])
			}
			if _, err := os.Stat(filepath.Join(env["OUT"], "result.json")); err != nil {
				t.Fatalf("nothing to upload: %v\n%s", err, log.String())
			}
		case s.Run != "":
			cmd := exec.Command("bash", "-e", "-c", s.Run)
			cmd.Dir = root
			cmd.Env = os.Environ()
			for k, v := range env {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			for k, v := range s.Env {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			o, err := cmd.CombinedOutput()
			fmt.Fprintf(&log, "-- %s: %s\n%s", s.Name, s.Run, o)
			if err != nil {
				fmt.Fprintf(&log, "-- %s failed: %v\n", s.Name, err)
				failed = true
			}
		default:
			t.Fatalf("a step this test does not know how to play: %+v", s)
		}
	}
	if failed == pass {
		t.Fatalf("the night ended failed=%v, want pass=%v:\n%s", failed, pass, log.String())
	}
	return log.String()
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(from); err != nil {
		return // nothing cached yet
	}
	if out, err := exec.Command("cp", "-a", from+"/.", to).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
}

// The Jenkinsfile runs the workflow's commands, in the same order, with the same settings.
func TestJenkinsfileMatchesTheWorkflow(t *testing.T) {
	job := soakJob(t)
	var want []string
	for _, s := range job.Steps {
		if s.Run == "" {
			continue
		}
		cmd := s.Run
		for k, v := range s.Env {
			cmd = k + "=" + v + " " + cmd
		}
		want = append(want, strings.TrimSpace(cmd))
	}
	jf, err := os.ReadFile("Jenkinsfile")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range regexp.MustCompile(`(?m)^\s*sh '([^']*)'`).FindAllStringSubmatch(string(jf), -1) {
		got = append(got, m[1])
	}
	if !slices.Equal(got, want) {
		t.Errorf("the Jenkinsfile runs %q, the workflow %q", got, want)
	}
	for k := range job.Env {
		if !regexp.MustCompile(`(?m)^\s*` + k + ` = `).Match(jf) {
			t.Errorf("the Jenkinsfile does not set %s", k)
		}
	}
}
