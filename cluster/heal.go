package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/faults/diskfs"
	"github.com/etcd-chaos/etcd-chaos/internal/proc"
	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/reports"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// HealReport says what chaos heal did.
type HealReport struct {
	Unhealed []faults.LedgerEntry // faults the ledger shows applied and not healed
	Resumed  []string             // members that were paused and got SIGCONT
	Stopped  []string             // member processes that were still running and were ended
	Removed  []string             // network namespaces, containers, networks and volumes removed
	// KeyPrefix and KeysDeleted: a remote run's keys, deleted (with its leases revoked).
	KeyPrefix   string
	KeysDeleted int64
	// Agents: what each agent of a remote run healed of the run's faults ("member-1: paused").
	Agents []string
}

// harnessAlive says whether the run's harness still runs (a reused PID runs something else).
func harnessAlive(cf File) bool {
	return proc.Alive(cf.HarnessPID) && cf.HarnessPID != os.Getpid() && strings.Contains(proc.Cmdline(cf.HarnessPID), "chaos")
}

// RunningHarness is the PID of a run folder's harness while it still runs, else 0.
func RunningHarness(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "cluster.json"))
	if err != nil {
		return 0
	}
	var cf File
	if json.Unmarshal(b, &cf) != nil || !harnessAlive(cf) {
		return 0
	}
	return cf.HarnessPID
}

// ErrHarnessAlive is returned by Heal when the run's harness still runs (it heals its own faults).
var ErrHarnessAlive = fmt.Errorf("the harness of this run is still running")

// Heal heals what a killed harness left in run folder dir: it resumes paused members and ends member
// processes of this run (a process counts only if its command line names this run's data dir, so a
// reused PID is never touched), and records the heal in the ledger. Unless force is set it refuses
// while the run's harness is alive.
func Heal(ctx context.Context, dir string, force bool) (*HealReport, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cluster.json"))
	if err != nil {
		return nil, fmt.Errorf("%s is not a run folder: %w", dir, err)
	}
	var cf File
	if err := json.Unmarshal(b, &cf); err != nil {
		return nil, fmt.Errorf("reading %s/cluster.json: %w", dir, err)
	}
	if harnessAlive(cf) && !force {
		return nil, fmt.Errorf("%w (pid %d); stop it with Ctrl-C, or pass --force", ErrHarnessAlive, cf.HarnessPID)
	}
	rep := &HealReport{}
	entries, err := faults.ReadLedger(filepath.Join(dir, "ledger.jsonl"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	rep.Unhealed = faults.Unhealed(entries)
	if cf.Prefix != "" {
		// Containers: removing them (by the run's label) ends their processes, pauses included.
		removed, err := RemoveLabelled(ctx, cf.Prefix)
		rep.Removed = append(rep.Removed, removed...)
		if err != nil {
			return rep, fmt.Errorf("removing the run's containers: %w", err)
		}
		cf.Members = nil
	}
	for _, m := range cf.Members {
		// A remote cluster's PIDs are its nodes' (through agents), not this machine's: never signalled here.
		if CapabilitiesOf(cf.Provider).Shared || m.DataDir == "" || !proc.Alive(m.PID) || !strings.Contains(proc.Cmdline(m.PID), m.DataDir) {
			continue
		}
		if st, _ := proc.State(m.PID); st == faults.Stopped {
			rep.Resumed = append(rep.Resumed, m.Name)
		}
		_ = syscall.Kill(m.PID, syscall.SIGCONT)
		_ = syscall.Kill(m.PID, syscall.SIGTERM)
		deadline := time.Now().Add(5 * time.Second)
		for proc.Alive(m.PID) && time.Now().Before(deadline) && ctx.Err() == nil {
			if st, _ := proc.State(m.PID); st == faults.Exited {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if st, _ := proc.State(m.PID); st != faults.Exited {
			_ = syscall.Kill(m.PID, syscall.SIGKILL)
		}
		rep.Stopped = append(rep.Stopped, m.Name)
	}
	// Disk layers go after their processes: a killed harness's layer answers nothing, and is
	// detached (as is any other layer under the run folder).
	if abs, err := filepath.Abs(dir); err == nil {
		mounts, _ := diskfs.Mounts(abs)
		for _, m := range cf.Members {
			if m.Mount && !slices.Contains(mounts, m.DataDir) && isMounted(m.DataDir) {
				mounts = append(mounts, m.DataDir)
			}
		}
		for _, mp := range mounts {
			if err := diskfs.Unmount(mp); err != nil {
				return rep, err
			}
			rep.Removed = append(rep.Removed, "disk layer "+mp)
		}
	}
	// Namespaces go after their processes: deleting one removes its links, routes and qdiscs.
	for _, ns := range cf.Namespaces {
		if _, err := os.Stat(filepath.Join(faults.NetnsDir, ns)); err == nil {
			if err := faults.DeleteNamespaces([]string{ns}); err != nil {
				return rep, err
			}
			rep.Removed = append(rep.Removed, ns)
		}
	}
	var agentErr error
	if len(cf.Agents) > 0 {
		// Before the keys: a member a fault left paused or cut off may hold up the delete. An agent
		// that cannot be reached does not keep the keys from being deleted; it is reported after.
		agentErr = healAgents(ctx, dir, cf, rep)
	}
	if CapabilitiesOf(cf.Provider).Shared && cf.KeyPrefix != "" {
		if err := healRemoteKeys(ctx, dir, cf, rep); err != nil {
			return rep, errors.Join(agentErr, err)
		}
	}
	if agentErr != nil {
		return rep, agentErr
	}
	if len(rep.Unhealed) > 0 {
		l, err := faults.OpenLedger(filepath.Join(dir, "ledger.jsonl"))
		if err != nil {
			return rep, err
		}
		defer l.Close()
		for _, e := range rep.Unhealed {
			if err := l.Append(faults.LedgerEntry{Fault: e.Fault, Action: e.Action, Step: faults.StepHealed, Members: e.Members, By: "chaos heal"}); err != nil {
				return rep, err
			}
		}
	}
	return rep, nil
}

// isMounted says whether dir is a disk layer's mount point (a dead one included).
func isMounted(dir string) bool {
	m, err := diskfs.Mounts(dir)
	return err == nil && slices.Contains(m, dir)
}

// healRemoteKeys deletes a remote run's keys (and revokes its leases) unless its events say they
// were deleted: the killed harness could not. The credentials are the scenario's (its password
// variable must be set for chaos heal too), the prefix and endpoints cluster.json's.
func healRemoteKeys(ctx context.Context, dir string, cf File, rep *HealReport) error {
	if b, err := os.ReadFile(filepath.Join(dir, "events.jsonl")); err == nil && strings.Contains(string(b), `"kind":"keys_deleted"`) {
		return nil
	}
	sc, err := runScenario(dir, cf)
	if err != nil {
		return fmt.Errorf("the run's keys under %s: %w", cf.KeyPrefix, err)
	}
	conn, err := RemoteConn(sc)
	if err != nil {
		return fmt.Errorf("the run's keys under %s: %w", cf.KeyPrefix, err)
	}
	n, err := DeletePrefix(ctx, cf.Endpoints, conn, cf.KeyPrefix)
	if err != nil {
		return fmt.Errorf("deleting the run's keys under %s: %w", cf.KeyPrefix, err)
	}
	rep.KeyPrefix, rep.KeysDeleted = cf.KeyPrefix, n
	if ev, err := reports.OpenEventLog(filepath.Join(dir, "events.jsonl")); err == nil {
		ev.Log(time.Now(), "keys_deleted", "prefix", cf.KeyPrefix, "deleted", n, "by", "chaos heal")
		_ = ev.Close()
	}
	return nil
}

// runScenario is a run folder's scenario, read as its run read it (paths relative to its file).
func runScenario(dir string, cf File) (*scenarios.Scenario, error) {
	src, err := os.ReadFile(filepath.Join(dir, "scenario.yaml"))
	if err != nil {
		return nil, fmt.Errorf("reading its scenario for the cluster's credentials: %w", err)
	}
	file := cf.ScenarioFile
	if file == "" {
		file = filepath.Join(dir, "scenario.yaml")
	}
	return scenarios.Parse(file, src, nil)
}

// healAgents asks the agents of a remote run to heal what they hold of the run's faults (their
// dead man's switch has most likely healed them already: the harness stopped renewing).
func healAgents(ctx context.Context, dir string, cf File, rep *HealReport) error {
	sc, err := runScenario(dir, cf)
	if err != nil {
		return fmt.Errorf("the run's agents: %w", err)
	}
	a, err := AgentsFor(sc, cf.RunID)
	if err != nil {
		return fmt.Errorf("the run's agents: %w", err)
	}
	var errs []error
	for _, h := range a.HealAll(ctx, cf.RunID) {
		if h.Err != nil {
			errs = append(errs, fmt.Errorf("member %s's agent: %w", h.Member, h.Err))
			continue
		}
		for _, x := range h.Healed {
			rep.Agents = append(rep.Agents, fmt.Sprintf("%s: %s", h.Member, x.What))
		}
	}
	for _, cl := range a.Clients {
		cl.Close()
	}
	return errors.Join(errs...)
}

// DeletePrefix deletes every key under prefix, and revokes the leases whose attached keys are all
// under it (a lease workload's, a lock's session); other leases are not touched.
func DeletePrefix(ctx context.Context, endpoints []string, conn *loadgen.Conn, prefix string) (int64, error) {
	if prefix == "" || !strings.HasPrefix(prefix, loadgen.DefaultPrefix) {
		return 0, fmt.Errorf("refusing to delete under %q: not a run's key prefix (%s<run id>/)", prefix, loadgen.DefaultPrefix)
	}
	var last error
	for attempt := 0; attempt < 5 && ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
			}
		}
		cli, err := loadgen.MeasureClientVia(endpoints, conn)
		if err != nil {
			last = ClientProblem(err)
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		revokeLeasesUnder(dctx, cli, prefix)
		resp, err := cli.Delete(dctx, prefix, clientv3.WithPrefix())
		cancel()
		_ = cli.Close()
		if err == nil {
			return resp.Deleted, nil
		}
		last = ClientProblem(err)
		if fatalClientError(err) != nil {
			break // a refused credential or permission: another try will not mend it
		}
	}
	return 0, last
}

// revokeLeasesUnder revokes each lease whose attached keys are all under prefix (at most 10,000
// leases are looked at): the run's own, which would otherwise live out their TTL.
func revokeLeasesUnder(ctx context.Context, cli *clientv3.Client, prefix string) {
	leases, err := cli.Leases(ctx)
	if err != nil {
		return
	}
	for i, l := range leases.Leases {
		if i >= 10_000 || ctx.Err() != nil {
			return
		}
		ttl, err := cli.TimeToLive(ctx, l.ID, clientv3.WithAttachedKeys())
		if err != nil || len(ttl.Keys) == 0 {
			continue
		}
		ours := true
		for _, k := range ttl.Keys {
			ours = ours && strings.HasPrefix(string(k), prefix)
		}
		if ours {
			_, _ = cli.Revoke(ctx, l.ID)
		}
	}
}
