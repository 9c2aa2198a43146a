package agent

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/etcd-chaos/etcd-chaos/faults"
)

// flagsOfInterest are the etcd flags the facts carry: the ones preflight judges. Nothing else of
// the command line or the environment leaves the node (no secret can).
var flagsOfInterest = []string{"name", "data-dir", "heartbeat-interval", "election-timeout", "quota-backend-bytes",
	"auto-compaction-mode", "auto-compaction-retention", "snapshot-count", "client-cert-auth", "peer-client-cert-auth",
	"auto-tls", "peer-auto-tls", "cert-file", "trusted-ca-file", "peer-cert-file", "peer-trusted-ca-file",
	"listen-peer-urls", "initial-advertise-peer-urls", "advertise-client-urls", "max-request-bytes", "config-file"}

func flagOfInterest(name string) bool {
	if strings.HasPrefix(name, "unsafe-") || strings.HasPrefix(name, "experimental-") {
		return true
	}
	for _, f := range flagsOfInterest {
		if f == name {
			return true
		}
	}
	return false
}

// ParseFlags reads etcd's flags from its command line (--flag=value, --flag value, -flag, a bare
// --bool) and its ETCD_* environment (which the command line overrides), keeping only the flags
// preflight judges.
func ParseFlags(argv, environ []string) map[string]string {
	out := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, "ETCD_") {
			continue
		}
		name := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k, "ETCD_")), "_", "-")
		if flagOfInterest(name) {
			out[name] = v
		}
	}
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		if !strings.HasPrefix(a, "-") || a == "--" || a == "-" {
			continue
		}
		name := strings.TrimLeft(a, "-")
		val, hasVal := "", false
		if n, v, ok := strings.Cut(name, "="); ok {
			name, val, hasVal = n, v, true
		} else if i+1 < len(argv) && !strings.HasPrefix(argv[i+1], "-") {
			val, hasVal = argv[i+1], true
			i++
		}
		if !hasVal {
			val = "true"
		}
		if flagOfInterest(name) {
			out[name] = val
		}
	}
	return out
}

func readNul(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// meminfo reads a /proc/meminfo field in bytes.
func meminfo(field string) int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && k == field {
			fs := strings.Fields(v)
			n, _ := strconv.ParseInt(fs[0], 10, 64)
			if len(fs) > 1 && fs[1] == "kB" {
				n *= 1024
			}
			return n
		}
	}
	return 0
}

func swaps() []string {
	b, err := os.ReadFile("/proc/swaps")
	if err != nil {
		return nil
	}
	var out []string
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if i > 0 && strings.TrimSpace(line) != "" {
			out = append(out, strings.Join(strings.Fields(line), " "))
		}
	}
	return out
}

// limits reads a process's open-file limit from /proc/PID/limits.
func limits(pid int) (soft, hard int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(strings.TrimPrefix(line, "Max open files"))
			if len(f) >= 2 {
				soft, _ = strconv.ParseInt(f[0], 10, 64)
				hard, _ = strconv.ParseInt(f[1], 10, 64)
				return soft, hard, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("no open-file limit in /proc/%d/limits", pid)
}

// mountOf finds the mount that holds path in /proc/self/mountinfo: its filesystem type, source and
// device number.
func mountOf(path string) (fstype, source, dev string, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", "", "", err
	}
	defer f.Close()
	best := -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fs {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(fs) < 5 || sep < 0 || sep+2 >= len(fs) {
			continue
		}
		mp := fs[4]
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > best {
			best, fstype, source, dev = len(mp), fs[sep+1], fs[sep+2], fs[2]
		}
	}
	if best < 0 {
		return "", "", "", fmt.Errorf("no mount holds %s", path)
	}
	return fstype, source, dev, nil
}

// rotational reads the block device's queue/rotational (nil: the filesystem is not on a block
// device this host has, such as overlay, tmpfs or a network filesystem).
func rotational(dev string) *bool {
	base := filepath.Join("/sys/dev/block", dev)
	for _, p := range []string{filepath.Join(base, "queue/rotational"), filepath.Join(base, "../queue/rotational")} {
		if b, err := os.ReadFile(p); err == nil {
			r := strings.TrimSpace(string(b)) == "1"
			return &r
		}
	}
	return nil
}

func dirFacts(path string) DirFacts {
	d := DirFacts{Path: path}
	if path == "" {
		d.Error = "the data dir is not known: start the agent with --data-dir, or etcd with --data-dir"
		return d
	}
	fi, err := os.Stat(path)
	if err != nil {
		d.Error = err.Error()
		return d
	}
	d.Mode = fmt.Sprintf("%04o", fi.Mode().Perm())
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		d.UID = int(st.Uid)
	}
	d.FreeBytes, d.TotalBytes, _ = freeBytes(path)
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	fstype, source, dev, err := mountOf(path)
	if err != nil {
		d.Error = err.Error()
		return d
	}
	d.FSType, d.Device, d.Rotational = fstype, source, rotational(dev)
	return d
}

// facts gathers the node's facts now.
func (s *Server) facts(ctx context.Context) Facts {
	f := Facts{CPUs: runtime.NumCPU(), MemBytes: meminfo("MemTotal"), SwapBytes: meminfo("SwapTotal"), Swaps: swaps()}
	f.Hostname, _ = os.Hostname()
	if err := faults.NetemHere(); err != nil {
		f.Netem = err.Error()
	} else {
		f.Netem = "yes"
	}
	e := EtcdFacts{Managed: s.target.describe(), Flags: map[string]string{}}
	pid, st, err := s.target.current(ctx)
	e.PID, e.State = pid, st
	switch {
	case err != nil:
		e.Error = err.Error()
	case pid == 0 || st == faults.Exited:
		e.Error = "etcd is not running"
	default:
		e.Flags = ParseFlags(readNul(fmt.Sprintf("/proc/%d/cmdline", pid)), readNul(fmt.Sprintf("/proc/%d/environ", pid)))
		if fi, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				e.UID = int(st.Uid)
			}
		}
		if e.NoFileSoft, e.NoFileHard, err = limits(pid); err != nil {
			e.Error = err.Error()
		}
	}
	f.Etcd = e
	dir := s.cfg.DataDir
	if dir == "" {
		dir = e.Flags["data-dir"]
		if dir != "" && !filepath.IsAbs(dir) && pid != 0 {
			if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil {
				dir = filepath.Join(cwd, dir)
			}
		}
	}
	f.DataDir = dirFacts(dir)
	f.Time = time.Now()
	return f
}

func (s *Server) handleFacts(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.facts(r.Context()))
}
