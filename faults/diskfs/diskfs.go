// Package diskfs is the disk layer: a FUSE filesystem the harness serves over a member's data dir,
// passing every operation through to a backing folder and, on demand, delaying, stalling or
// failing the operations a fault names, reporting a full disk, and (power loss) dropping every
// byte and directory entry that was never synced. It mounts only when a scenario has a disk fault
// or a standing disk condition, and it counts what it did, so every disk fault reports the I/O it
// touched.
//
// Durability follows the model LazyFS gives Jepsen's tests, with ext4's journal for names: a
// file's data is durable up to its last fsync (or fdatasync); a directory entry (create, rename,
// unlink, mkdir, rmdir) is durable once any fsync commits the journal after it, as ext4's
// data=ordered journal commits every earlier name change with any fsync.
package diskfs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Op is a class of I/O a fault acts on.
type Op uint8

// The classes: read (file reads), write (writes, truncation, preallocation, and names: create,
// mkdir, rename, unlink), fsync (fsync and fdatasync of files and directories), and meta
// (lookups, attributes, opens, directory listings), which only a stall and "all" name.
const (
	Read Op = 1 << iota
	Write
	Fsync
	Meta
	All = Read | Write | Fsync | Meta
)

// OpNames are the words a scenario's ops field accepts.
var OpNames = []string{"fsync", "write", "read", "all"}

// ParseOps turns a scenario's ops list into a class set; an empty list is def.
func ParseOps(names []string, def Op) (Op, error) {
	if len(names) == 0 {
		return def, nil
	}
	var o Op
	for _, n := range names {
		switch n {
		case "fsync":
			o |= Fsync
		case "write":
			o |= Write
		case "read":
			o |= Read
		case "all":
			o |= All
		default:
			return 0, fmt.Errorf("%q is not an op; valid: %s", n, strings.Join(OpNames, ", "))
		}
	}
	return o, nil
}

func (o Op) String() string {
	if o&All == All {
		return "all"
	}
	var out []string
	for _, c := range []struct {
		op   Op
		name string
	}{{Fsync, "fsync"}, {Write, "write"}, {Read, "read"}, {Meta, "meta"}} {
		if o&c.op != 0 {
			out = append(out, c.name)
		}
	}
	return strings.Join(out, ",")
}

// Errnos are the errors a disk-error fault can return, by the names a scenario uses.
var Errnos = map[string]syscall.Errno{"EIO": syscall.EIO, "ENOSPC": syscall.ENOSPC, "EROFS": syscall.EROFS}

// Fault is what the layer does to the operations it names until it is healed.
type Fault struct {
	Ops Op
	// Delay (with Jitter, uniform in [-Jitter, +Jitter]) is added before each named op.
	Delay, Jitter time.Duration
	// Percent of the named ops are hit (0 means all of them).
	Percent float64
	// Errno, if set, fails the named ops with it instead of running them.
	Errno syscall.Errno
	// Stall blocks every named op until the heal.
	Stall bool
	// Full: the disk has no space: writes that would allocate fail with ENOSPC and statfs reports
	// no free block.
	Full bool
}

// Counts are what the layer did, since it was mounted or for one fault.
type Counts struct {
	Fsyncs  int64 `json:"fsyncs"`            // fsyncs served (whether or not a fault touched them)
	Delayed int64 `json:"delayed,omitempty"` // ops delayed by a fault
	Failed  int64 `json:"failed,omitempty"`  // ops failed by a fault (disk-error, disk-full)
	Stalled int64 `json:"stalled,omitempty"` // ops that blocked on a stall
	// DelayedFor is the total of the fault's injected delays and stalls, in milliseconds.
	DelayedForMs float64 `json:"delayed_for_ms,omitempty"`
}

func (c Counts) sub(b Counts) Counts {
	return Counts{Fsyncs: c.Fsyncs - b.Fsyncs, Delayed: c.Delayed - b.Delayed, Failed: c.Failed - b.Failed,
		Stalled: c.Stalled - b.Stalled, DelayedForMs: c.DelayedForMs - b.DelayedForMs}
}

// Touched says whether a fault acted on any op.
func (c Counts) Touched() bool { return c.Delayed+c.Failed+c.Stalled > 0 }

// Options configure a mount.
type Options struct {
	Backing    string // the folder that holds the data
	Mountpoint string // where the member sees it (its data dir)
	// Stash holds, on the same filesystem as Backing, links to files unlinked or replaced since the
	// last journal commit, so a power loss can bring them back (TrackUnsynced only).
	Stash string
	// TrackUnsynced keeps what a power loss needs: the bytes each write replaced and the name
	// changes since the last fsync. Off, writes pass through with nothing kept.
	TrackUnsynced bool
	// Standing delays each op of a class for the whole run (cluster.disk-delay).
	Standing map[Op]time.Duration
	Seed     uint64
	// Passthrough lets the kernel read and write the backing files itself (FUSE passthrough,
	// Linux 6.9 and root), so only fsyncs, names and attributes reach the layer: for a scenario
	// whose faults act on fsync alone, as a slow disk's do. Where the kernel refuses it, every op
	// comes through the layer as without it.
	Passthrough bool
}

// Disk is one mounted disk layer.
type Disk struct {
	opts Options

	mu       sync.Mutex
	server   *fuse.Server
	fault    *Fault
	released chan struct{} // closed when the current stall ends
	rng      *rand.Rand
	atFault  Counts // the counts when the current fault was injected

	armed atomic.Bool // a fault is in force (the gate's fast path reads it without the lock)

	fsyncs, delayed, failed, stalled atomic.Int64
	delayedNs                        atomic.Int64

	un *unsynced // nil unless TrackUnsynced
}

// Mount serves the layer at o.Mountpoint over o.Backing (both created if missing).
func Mount(o Options) (*Disk, error) {
	for _, d := range []string{o.Backing, o.Mountpoint} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("disk layer: %w", err)
		}
	}
	d := &Disk{opts: o, rng: rand.New(rand.NewPCG(o.Seed, 0x6469736b))}
	if o.TrackUnsynced {
		if o.Stash == "" {
			return nil, errors.New("disk layer: tracking unsynced writes needs a stash folder")
		}
		if err := os.MkdirAll(o.Stash, 0o700); err != nil {
			return nil, fmt.Errorf("disk layer: %w", err)
		}
		d.un = newUnsynced(o.Stash)
	}
	if err := d.mount(); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Disk) mount() error {
	var st syscall.Stat_t
	if err := syscall.Stat(d.opts.Backing, &st); err != nil {
		return fmt.Errorf("disk layer: %w", err)
	}
	root := &fs.LoopbackRoot{Path: d.opts.Backing, Dev: uint64(st.Dev)}
	root.NewNode = func(r *fs.LoopbackRoot, _ *fs.Inode, _ string, _ *syscall.Stat_t) fs.InodeEmbedder {
		return &node{LoopbackNode: fs.LoopbackNode{RootData: r}, d: d}
	}
	root.RootNode = root.NewNode(root, nil, "", &st)
	// Attributes and entries are cached for a second (the loopback's default); data is never
	// cached by the kernel past a power loss, because a power loss remounts.
	sec := time.Second
	srv, err := fs.Mount(d.opts.Mountpoint, root.RootNode, &fs.Options{
		AttrTimeout: &sec, EntryTimeout: &sec,
		MountOptions: fuse.MountOptions{FsName: "chaos-disk", Name: "chaosdisk", DisableXAttrs: true,
			DirectMount: os.Geteuid() == 0, MaxBackground: 64},
	})
	if err != nil {
		return fmt.Errorf("mounting the disk layer at %s (FUSE: /dev/fuse and fusermount3): %w", d.opts.Mountpoint, err)
	}
	closeOnExecFuse()
	d.mu.Lock()
	d.server = srv
	d.mu.Unlock()
	return nil
}

// closeOnExecFuse marks this process's /dev/fuse descriptors close-on-exec. go-fuse opens the
// device with a bare open(2), so every member started afterwards would inherit the connection:
// a member killed in the middle of a request would then hold, while it exits, the very
// connection its last request waits on, and never finish exiting (nor free its ports).
func closeOnExecFuse() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && l == "/dev/fuse" {
			var fd int
			if _, err := fmt.Sscan(e.Name(), &fd); err == nil {
				syscall.CloseOnExec(fd)
			}
		}
	}
}

// Mountpoint is where the layer is mounted.
func (d *Disk) Mountpoint() string { return d.opts.Mountpoint }

// Backing is the folder that holds the data.
func (d *Disk) Backing() string { return d.opts.Backing }

// Inject applies a fault until Heal (replacing any other).
func (d *Disk) Inject(f Fault) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.releaseLocked()
	if f.Stall {
		d.released = make(chan struct{})
	}
	d.fault = &f
	d.atFault = d.Counts()
	d.armed.Store(true)
}

// Active is the fault in force (nil: none).
func (d *Disk) Active() *Fault {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fault == nil {
		return nil
	}
	f := *d.fault
	return &f
}

// Heal removes the fault, releases every op a stall held, and returns what the fault did.
func (d *Disk) Heal() Counts {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fault == nil {
		return Counts{}
	}
	d.fault = nil
	d.armed.Store(false)
	d.releaseLocked()
	return d.Counts().sub(d.atFault)
}

func (d *Disk) releaseLocked() {
	if d.released != nil {
		close(d.released)
		d.released = nil
	}
}

// Counts are what the layer did since it was first mounted.
func (d *Disk) Counts() Counts {
	return Counts{Fsyncs: d.fsyncs.Load(), Delayed: d.delayed.Load(), Failed: d.failed.Load(), Stalled: d.stalled.Load(),
		DelayedForMs: float64(d.delayedNs.Load()) / 1e6}
}

// gate runs before each op of class op: it waits out the standing delay and the fault's delay or
// stall, and returns the fault's errno for an op it fails (0: go on). write says the op would
// allocate space (a full disk fails it).
func (d *Disk) gate(ctx context.Context, op Op, allocates bool) syscall.Errno {
	if op == Fsync {
		d.fsyncs.Add(1)
	}
	wait := d.opts.Standing[op]
	if !d.armed.Load() {
		if wait > 0 {
			sleep(ctx, wait)
		}
		return 0
	}
	d.mu.Lock()
	f := d.fault
	released := d.released
	hit := f != nil && (f.Ops&op != 0 || (f.Full && allocates)) && (f.Percent <= 0 || f.Percent >= 100 || d.rng.Float64()*100 < f.Percent)
	var extra time.Duration
	if hit && f.Delay > 0 {
		extra = f.Delay
		if f.Jitter > 0 {
			extra += time.Duration((d.rng.Float64()*2 - 1) * float64(f.Jitter))
		}
	}
	d.mu.Unlock()
	if wait > 0 {
		sleep(ctx, wait)
	}
	if !hit {
		return 0
	}
	switch {
	case f.Full && allocates:
		d.failed.Add(1)
		return syscall.ENOSPC
	case f.Full:
		return 0
	case f.Stall && released != nil:
		d.stalled.Add(1)
		t0 := time.Now()
		select {
		case <-released:
		case <-ctx.Done(): // the caller was interrupted (a killed member)
		}
		d.delayedNs.Add(int64(time.Since(t0)))
		return 0
	case f.Errno != 0:
		d.failed.Add(1)
		return f.Errno
	case extra > 0:
		d.delayed.Add(1)
		d.delayedNs.Add(int64(extra))
		sleep(ctx, extra)
	}
	return 0
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// full says whether statfs must report no free space.
func (d *Disk) full() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fault != nil && d.fault.Full
}

// Unmount releases any stall and unmounts the layer (lazily if something holds it open). The
// backing folder keeps the data.
func (d *Disk) Unmount() error {
	d.mu.Lock()
	d.releaseLocked()
	d.fault = nil
	d.armed.Store(false)
	srv := d.server
	d.server = nil
	d.mu.Unlock()
	if srv == nil {
		return nil
	}
	if err := srv.Unmount(); err != nil {
		if lerr := Unmount(d.opts.Mountpoint); lerr != nil {
			return fmt.Errorf("unmounting the disk layer at %s: %v; lazily: %w", d.opts.Mountpoint, err, lerr)
		}
	}
	// The server's loop ends once the kernel lets the mount go: at once, unless something still
	// holds a file open in it (then the lazy unmount frees it when that closes).
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("the disk layer at %s is detached but still in use after 10s", d.opts.Mountpoint)
	}
}

// Mounted says whether the layer is being served.
func (d *Disk) Mounted() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.server != nil
}

// Dropped is what a power loss discarded.
type Dropped struct {
	Bytes   int64 `json:"bytes"`   // bytes written since their file's last fsync
	Files   int   `json:"files"`   // files whose unsynced writes were undone
	Entries int   `json:"entries"` // directory entries (creates, renames, unlinks) undone
}

// PowerLoss is what the disk keeps when the power goes: with nothing using the mount (the
// member's process is dead), it unmounts, drops every unsynced byte and directory entry, and
// mounts again, so no page the kernel cached survives either.
func (d *Disk) PowerLoss() (Dropped, error) {
	if d.un == nil {
		return Dropped{}, errors.New("power loss needs the disk layer mounted with unsynced tracking")
	}
	if err := d.Unmount(); err != nil {
		return Dropped{}, err
	}
	dr, err := d.un.revert()
	if merr := d.mount(); merr != nil {
		return dr, errors.Join(err, merr)
	}
	return dr, err
}

// Unsynced is what a power loss now would drop (for tests and the dry run's numbers).
func (d *Disk) Unsynced() Dropped {
	if d.un == nil {
		return Dropped{}
	}
	return d.un.pending()
}

// Unmount detaches whatever is mounted at dir (a layer a killed harness left): it aborts the
// layer's FUSE connection first, so that a process waiting on a request nobody will answer gets
// an error and can exit, then the kernel drops the mount at once and frees it when its last
// user goes.
func Unmount(dir string) error {
	abort(dir)
	if err := syscall.Unmount(dir, syscall.MNT_DETACH); err == nil {
		return nil
	} else if errors.Is(err, syscall.EINVAL) {
		return nil // not a mount point (any more)
	}
	for _, bin := range []string{"fusermount3", "fusermount"} {
		if p, err := lookPath(bin); err == nil {
			out, err := runCmd(p, "-u", "-z", dir)
			if err == nil {
				return nil
			}
			return fmt.Errorf("%s -u -z %s: %v: %s", bin, dir, err, out)
		}
	}
	return fmt.Errorf("unmounting %s: not root and no fusermount3", dir)
}

// abort aborts the FUSE connection of the layer mounted at dir, through the fusectl filesystem
// (mounted at /sys/fs/fuse/connections if it is not yet); a connection is named by the minor
// number of its mount's device.
func abort(dir string) {
	var st syscall.Stat_t
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	dev := ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && unescapeMount(f[4]) == dir && strings.Contains(line, " - fuse.chaosdisk ") {
			dev = f[2]
		}
	}
	_, minor, ok := strings.Cut(dev, ":")
	if !ok {
		return
	}
	const ctl = "/sys/fs/fuse/connections"
	if syscall.Stat(ctl+"/"+minor, &st) != nil {
		_ = syscall.Mount("fusectl", ctl, "fusectl", 0, "")
	}
	_ = os.WriteFile(ctl+"/"+minor+"/abort", []byte("1"), 0o200)
}

// Mounts lists the disk layers mounted under dir (every one, if dir is ""), from /proc/self/mountinfo.
func Mounts(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - fuse.chaosdisk chaos-disk rw,...
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, pf := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(pf) < 2 || pf[1] != "chaos-disk" {
			continue
		}
		mp := unescapeMount(f[4])
		if dir == "" || mp == dir || strings.HasPrefix(mp, strings.TrimSuffix(dir, "/")+"/") {
			out = append(out, mp)
		}
	}
	return out, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
