package faults

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// corrupt flips bytes in a file of a stopped member, between a SIGKILL and its start: its newest
// WAL segment (in the part written), its newest snapshot, or its bolt db. Whether etcd notices (a
// failed start, its corruption check) is the finding; the harness notices either way: the start's
// outcome is reported, and the end-of-run hashkv check compares the members. It is instantaneous,
// and a member that does not start again stays down (it is reported, not retried).
type corrupt struct{ file string }

// corruptBytes is how many bytes are flipped (each XOR 0xff), from the middle of the region.
const corruptBytes = 8

var corruptAction = Action{Kind: corrupt{},
	KindOf: func(f scenarios.Fault) Kind { return corrupt{file: corruptFile(f)} },
	ActionRules: scenarios.ActionRules{Name: "corrupt", Instant: true, Selections: onMembers, Cuts: always,
		Fields: []string{"file"},
		Check: func(f scenarios.Fault) []scenarios.FieldProblem {
			switch f.File {
			case "", "wal", "snap", "db":
				return nil
			}
			return []scenarios.FieldProblem{{Field: "file", Msg: fmt.Sprintf("%q: valid: wal, snap, db (default wal)", f.File)}}
		},
		Available: func(p scenarios.Place, _ string, f scenarios.Fault) error {
			if p.Disk != nil {
				return fmt.Errorf("corrupt needs the members' data dirs on this machine: %v", p.Disk)
			}
			return nil
		}},
	Does: func(f scenarios.Fault, _ string) string {
		return fmt.Sprintf("SIGKILL, flip %d bytes in the middle of its %s, start again (a failed start is reported, not retried)", corruptBytes, corruptFile(f))
	}}

func corruptFile(f scenarios.Fault) string {
	if f.File == "" {
		return "wal"
	}
	return f.File
}

func (c corrupt) Name() string { return "corrupt" }

func (c corrupt) Inject(ctx context.Context, m Member) error {
	dm, ok := m.(DiskMember)
	if !ok {
		return fmt.Errorf("member %s: its data dir is not on this machine", m.Name())
	}
	if err := m.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	if err := waitExit(ctx, m, 5*time.Second); err != nil {
		return err
	}
	rep := diskReport(ctx, m)
	what, err := flip(dm.DataDir(), c.file)
	if err != nil {
		return fmt.Errorf("corrupting %s's %s: %w (the member is left stopped)", m.Name(), c.file, err)
	}
	rep.Corrupted = what
	if err := m.Start(ctx); err != nil {
		return err
	}
	// A member that refuses its data exits within a moment of starting.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if st, _ := m.State(); st == Exited {
			// The OS may say so before the process is reaped: its exit status comes with the reaping.
			wctx, cancel := context.WithTimeout(ctx, time.Second)
			_ = m.WaitExit(wctx)
			cancel()
			rep.Start = dm.ExitReport()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	rep.Start = "running"
	return nil
}

// The start's outcome is the finding: neither a member that stays down nor one that runs fails
// the injection.
func (corrupt) VerifyInjected(context.Context, Member) error { return nil }
func (corrupt) Heal(context.Context, Member) error           { return nil }
func (corrupt) VerifyHealed(context.Context, Member) error   { return nil }

// flip XORs corruptBytes bytes in the middle of the written part of the chosen file.
func flip(dataDir, which string) (string, error) {
	var path string
	switch which {
	case "wal":
		p, err := newest(filepath.Join(dataDir, "member", "wal"), ".wal")
		if err != nil {
			return "", err
		}
		path = p
	case "snap":
		p, err := newest(filepath.Join(dataDir, "member", "snap"), ".snap")
		if err != nil {
			return "", fmt.Errorf("%w (etcd writes one every --snapshot-count applied entries: lower cluster.etcd.snapshot-count)", err)
		}
		path = p
	default:
		path = filepath.Join(dataDir, "member", "snap", "db")
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	used, err := writtenPart(f)
	if err != nil {
		return "", err
	}
	if used < 2*corruptBytes {
		return "", fmt.Errorf("%s holds %d bytes: nothing to corrupt", path, used)
	}
	off := used / 2
	buf := make([]byte, corruptBytes)
	if _, err := f.ReadAt(buf, off); err != nil {
		return "", err
	}
	for i := range buf {
		buf[i] ^= 0xff
	}
	if _, err := f.WriteAt(buf, off); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: %d bytes at offset %d of %d written", filepath.Base(path), corruptBytes, off, used), nil
}

// newest is the last file with suffix in dir, by name (etcd names them in order).
func newest(dir, suffix string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var names []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), suffix) {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("no %s file in %s", suffix, dir)
	}
	sort.Strings(names)
	return filepath.Join(dir, names[len(names)-1]), nil
}

// writtenPart is the offset after the last non-zero byte (a WAL segment is preallocated with zeros).
func writtenPart(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	const chunk = 1 << 16
	buf := make([]byte, chunk)
	for end := st.Size(); end > 0; {
		start := max(end-chunk, 0)
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		for i := n - 1; i >= 0; i-- {
			if buf[i] != 0 {
				return start + int64(i) + 1, nil
			}
		}
		end = start
	}
	return 0, nil
}
