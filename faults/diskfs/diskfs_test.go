package diskfs_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/faults/diskfs"
	"github.com/etcd-chaos/etcd-chaos/internal/testbin"
)

// mount serves a layer over a fresh backing folder; the test unmounts it, and checks nothing is
// left mounted.
func mount(t *testing.T, track bool, standing map[diskfs.Op]time.Duration) (*diskfs.Disk, string, string) {
	t.Helper()
	testbin.NeedFUSE(t)
	dir := t.TempDir()
	back, mnt := filepath.Join(dir, "back"), filepath.Join(dir, "data")
	d, err := diskfs.Mount(diskfs.Options{Backing: back, Mountpoint: mnt, Stash: filepath.Join(dir, "stash"), TrackUnsynced: track, Standing: standing})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Unmount(); err != nil {
			t.Error(err)
		}
		if m, _ := diskfs.Mounts(dir); len(m) > 0 {
			t.Errorf("still mounted: %v", m)
		}
	})
	return d, back, mnt
}

func write(t *testing.T, path string, data []byte, sync bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func syncDir(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func TestPassThrough(t *testing.T) {
	d, back, mnt := mount(t, false, nil)
	write(t, filepath.Join(mnt, "a"), []byte("hello"), true)
	if err := os.Mkdir(filepath.Join(mnt, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(mnt, "a"), filepath.Join(mnt, "sub", "b")); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(back, "sub", "b"))
	if err != nil || string(got) != "hello" {
		t.Fatalf("backing file: %q, %v", got, err)
	}
	if m, _ := diskfs.Mounts(""); !slices.Contains(m, mnt) {
		t.Fatalf("Mounts does not list %s: %v", mnt, m)
	}
	if c := d.Counts(); c.Fsyncs != 1 || c.Touched() {
		t.Fatalf("counts %+v: want 1 fsync and nothing touched", c)
	}
}

// A power loss keeps every byte of a file written and fsynced, and drops what was never synced:
// writes over synced data, appends, files created and names changed without an fsync after them.
func TestPowerLossDropsOnlyUnsynced(t *testing.T) {
	d, back, mnt := mount(t, true, nil)
	p := func(n string) string { return filepath.Join(mnt, n) }
	synced := bytes.Repeat([]byte("S"), 100_000)
	write(t, p("synced"), synced, true)
	write(t, p("over"), []byte("0123456789"), true)
	write(t, p("gone"), []byte("x"), true)
	write(t, p("old"), []byte("old"), true)
	syncDir(t, mnt)
	if u := d.Unsynced(); u != (diskfs.Dropped{}) {
		t.Fatalf("after every fsync, unsynced %+v", u)
	}

	// Not synced from here on.
	f, err := os.OpenFile(p("over"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("abc"), 2); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("tail"), 10); err != nil {
		t.Fatal(err)
	}
	f.Close()
	write(t, p("new"), []byte("never synced"), false)
	if err := os.Remove(p("gone")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p("old"), p("renamed")); err != nil {
		t.Fatal(err)
	}
	want := diskfs.Dropped{Bytes: 3 + 4 + 12, Files: 2, Entries: 3}
	if u := d.Unsynced(); u != want {
		t.Fatalf("unsynced %+v, want %+v", u, want)
	}
	dr, err := d.PowerLoss()
	if err != nil {
		t.Fatal(err)
	}
	if dr != want {
		t.Fatalf("dropped %+v, want %+v", dr, want)
	}
	for name, content := range map[string]string{"synced": string(synced), "over": "0123456789", "gone": "x", "old": "old"} {
		got, err := os.ReadFile(p(name))
		if err != nil || string(got) != content {
			t.Errorf("%s after the power loss: %d bytes (%v), want %d", name, len(got), err, len(content))
		}
	}
	for _, name := range []string{"new", "renamed"} {
		if _, err := os.Stat(p(name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived the power loss (%v)", name, err)
		}
	}
	if ents, _ := os.ReadDir(back); len(ents) != 4 {
		t.Errorf("backing folder holds %d entries, want 4", len(ents))
	}

	// Synced after the same kind of writes, all of it is kept.
	write(t, p("later"), []byte("kept"), true)
	if dr, err := d.PowerLoss(); err != nil || dr.Bytes != 0 {
		t.Fatalf("second power loss dropped %+v (%v), want nothing", dr, err)
	}
	if got, _ := os.ReadFile(p("later")); string(got) != "kept" {
		t.Fatalf("a file written and fsynced lost bytes: %q", got)
	}
}

func timeFsync(t *testing.T, path string) time.Duration {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return time.Since(t0)
}

func TestDelayOnFsyncOnly(t *testing.T) {
	d, _, mnt := mount(t, false, map[diskfs.Op]time.Duration{diskfs.Fsync: 20 * time.Millisecond})
	if el := timeFsync(t, filepath.Join(mnt, "f")); el < 20*time.Millisecond {
		t.Fatalf("standing 20ms: fsync took %s", el)
	}
	d.Inject(diskfs.Fault{Ops: diskfs.Fsync, Delay: 150 * time.Millisecond})
	t0 := time.Now()
	write(t, filepath.Join(mnt, "w"), []byte("a write is not delayed"), false)
	if el := time.Since(t0); el > 100*time.Millisecond {
		t.Fatalf("a write took %s under an fsync delay", el)
	}
	if el := timeFsync(t, filepath.Join(mnt, "f")); el < 170*time.Millisecond {
		t.Fatalf("fsync took %s, want at least 20ms+150ms", el)
	}
	c := d.Heal()
	if c.Delayed != 1 || c.DelayedForMs < 150 {
		t.Fatalf("the fault's counts %+v: want 1 op delayed 150ms", c)
	}
	if el := timeFsync(t, filepath.Join(mnt, "f")); el > 150*time.Millisecond {
		t.Fatalf("healed: fsync took %s", el)
	}
}

func TestStallHoldsUntilHeal(t *testing.T) {
	d, _, mnt := mount(t, false, nil)
	write(t, filepath.Join(mnt, "f"), []byte("x"), true)
	d.Inject(diskfs.Fault{Ops: diskfs.All, Stall: true})
	done := make(chan time.Time, 1)
	go func() {
		_, _ = os.ReadFile(filepath.Join(mnt, "f"))
		done <- time.Now()
	}()
	select {
	case <-done:
		t.Fatal("a read went through a stall")
	case <-time.After(300 * time.Millisecond):
	}
	healed := time.Now()
	c := d.Heal()
	select {
	case at := <-done:
		if at.Before(healed) {
			t.Fatal("the read returned before the heal")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the read is still blocked 5s after the heal")
	}
	if c.Stalled < 1 {
		t.Fatalf("counts %+v: no op stalled", c)
	}
}

func TestErrorsAndFullDisk(t *testing.T) {
	d, _, mnt := mount(t, false, nil)
	p := filepath.Join(mnt, "f")
	write(t, p, []byte("x"), true)
	d.Inject(diskfs.Fault{Ops: diskfs.Fsync, Errno: syscall.EIO})
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("y")); err != nil {
		t.Fatalf("a write failed under an fsync error: %v", err)
	}
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("fsync: %v, want EIO", err)
	}
	f.Close()
	if c := d.Heal(); c.Failed != 1 {
		t.Fatalf("counts %+v: want 1 failed", c)
	}

	d.Inject(diskfs.Fault{Full: true})
	if err := os.WriteFile(filepath.Join(mnt, "g"), []byte("z"), 0o600); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("creating a file on a full disk: %v, want ENOSPC", err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil || st.Bavail != 0 {
		t.Fatalf("statfs on a full disk: %d blocks free (%v)", st.Bavail, err)
	}
	if got, err := os.ReadFile(p); err != nil || string(got) != "y" {
		t.Fatalf("a read on a full disk: %q, %v", got, err)
	}
	d.Heal()
	if err := os.WriteFile(filepath.Join(mnt, "g"), []byte("z"), 0o600); err != nil {
		t.Fatalf("healed: %v", err)
	}
}

// A layer whose server died (a killed harness) is found and detached by Unmount.
func TestLeftoverMountIsCleared(t *testing.T) {
	testbin.NeedFUSE(t)
	dir := t.TempDir()
	mnt := filepath.Join(dir, "data")
	d, err := diskfs.Mount(diskfs.Options{Backing: filepath.Join(dir, "back"), Mountpoint: mnt})
	if err != nil {
		t.Fatal(err)
	}
	m, err := diskfs.Mounts(dir)
	if err != nil || len(m) != 1 || m[0] != mnt {
		t.Fatalf("Mounts(%s) = %v, %v", dir, m, err)
	}
	if err := diskfs.Unmount(mnt); err != nil {
		t.Fatal(err)
	}
	if m, _ := diskfs.Mounts(dir); len(m) != 0 {
		t.Fatalf("still mounted: %v", m)
	}
	_ = d.Unmount()
}

// With passthrough the kernel reads and writes the backing files itself: a delay on writes no
// longer reaches them, while fsyncs still come through the layer and wait.
func TestPassthroughLeavesFsyncToTheLayer(t *testing.T) {
	testbin.NeedFUSE(t)
	if os.Geteuid() != 0 {
		t.Skip("FUSE passthrough needs root")
	}
	dir := t.TempDir()
	back, mnt := filepath.Join(dir, "back"), filepath.Join(dir, "data")
	d, err := diskfs.Mount(diskfs.Options{Backing: back, Mountpoint: mnt, Passthrough: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Unmount()
	d.Inject(diskfs.Fault{Ops: diskfs.Write | diskfs.Fsync, Delay: 150 * time.Millisecond})
	f, err := os.OpenFile(filepath.Join(mnt, "f"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	t0 := time.Now()
	for i := 0; i < 5; i++ {
		if _, err := f.Write([]byte("passthrough")); err != nil {
			t.Fatal(err)
		}
	}
	writes := time.Since(t0)
	t0 = time.Now()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	fsync := time.Since(t0)
	t.Logf("5 writes %s, fsync %s under a 150ms delay on both", writes, fsync)
	if got, _ := os.ReadFile(filepath.Join(back, "f")); string(got) != strings.Repeat("passthrough", 5) {
		t.Fatalf("backing file holds %q", got)
	}
	if writes > 100*time.Millisecond || fsync < 150*time.Millisecond {
		t.Fatalf("writes took %s (want them past the layer), fsync %s (want it through the layer)", writes, fsync)
	}
}
