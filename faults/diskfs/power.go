package diskfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// unsynced is what a power loss would drop: for each file written since its last fsync, the size
// it had then and the bytes each write replaced (an undo log, applied backwards); and the name
// changes since the last journal commit, with links in the stash to files unlinked or replaced.
type unsynced struct {
	stash string

	mu      sync.Mutex
	files   map[fileKey]*fileLog
	journal []nameOp
	seq     int
}

type fileKey struct{ dev, ino uint64 }

type fileLog struct {
	fd      int   // a descriptor of the file's own, so it is reverted whatever its name is by then
	synced  int64 // its size at its last fsync (or when first written under the layer)
	written int64 // bytes written since
	undo    []undoRec
}

// undoRec puts back what a write replaced: data, or zeros bytes of zeros (preallocated space).
type undoRec struct {
	off   int64
	data  []byte
	zeros int64
}

type nameOp struct {
	kind     string // created, unlinked, rmdir, renamed
	path, to string
	stash    string // a link to what unlinked or renamed over removed
}

func newUnsynced(stash string) *unsynced {
	return &unsynced{stash: stash, files: map[fileKey]*fileLog{}}
}

// log finds (or starts) the log of fd's file.
func (u *unsynced) log(fd int) (*fileLog, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, err
	}
	k := fileKey{uint64(st.Dev), st.Ino}
	if l, ok := u.files[k]; ok {
		return l, nil
	}
	// A descriptor of its own, readable even if the file was opened write-only.
	dup, err := syscall.Open(fmt.Sprintf("/proc/self/fd/%d", fd), syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("reopening a file to keep what writes replace: %w", err)
	}
	l := &fileLog{fd: dup, synced: st.Size}
	u.files[k] = l
	return l, nil
}

// keep saves the bytes of [off, end) that lie below the file's synced size.
func (l *fileLog) keep(off, end int64) error {
	if end > l.synced {
		end = l.synced
	}
	const chunk = 1 << 20
	for off < end {
		n := min(end-off, chunk)
		buf := make([]byte, n)
		got, err := syscall.Pread(l.fd, buf, off)
		if err != nil {
			return fmt.Errorf("keeping the bytes a write replaces: %w", err)
		}
		buf = buf[:got]
		if got == 0 {
			return nil
		}
		if allZero(buf) {
			l.undo = append(l.undo, undoRec{off: off, zeros: int64(got)})
		} else {
			l.undo = append(l.undo, undoRec{off: off, data: buf})
		}
		off += int64(got)
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// writing is called before n bytes are written at off through fd (n 0: a size change at off).
func (u *unsynced) writing(fd int, off, n int64) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	l, err := u.log(fd)
	if err != nil {
		return err
	}
	l.written += n
	return l.keep(off, off+n)
}

// resizingPath is called before the file at path is truncated to size.
func (u *unsynced) resizingPath(path string, size int64) error {
	fd, err := syscall.Open(path, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EISDIR) {
			return nil
		}
		return err
	}
	defer syscall.Close(fd)
	u.mu.Lock()
	defer u.mu.Unlock()
	l, err := u.log(fd)
	if err != nil {
		return err
	}
	return l.keep(size, l.synced)
}

// synced marks fd's file durable as it is now, and commits the journal.
func (u *unsynced) synced(fd int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) == nil {
		k := fileKey{uint64(st.Dev), st.Ino}
		if l, ok := u.files[k]; ok {
			syscall.Close(l.fd)
			delete(u.files, k)
		}
	}
	u.commitLocked()
}

func (u *unsynced) commitLocked() {
	for _, op := range u.journal {
		if op.stash != "" {
			_ = os.Remove(op.stash)
		}
	}
	u.journal = nil
}

func (u *unsynced) created(path string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.journal = append(u.journal, nameOp{kind: "created", path: path})
}

func (u *unsynced) removedDir(path string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.journal = append(u.journal, nameOp{kind: "rmdir", path: path})
}

// stashLocked links the file at path into the stash (it is about to lose that name).
func (u *unsynced) stashLocked(path string) (string, error) {
	fi, err := os.Lstat(path)
	if err != nil || fi.IsDir() {
		return "", nil // nothing to keep: gone, or a directory (an empty one: rmdir undoes it)
	}
	u.seq++
	s := filepath.Join(u.stash, fmt.Sprintf("%d", u.seq))
	if err := os.Link(path, s); err != nil {
		return "", fmt.Errorf("stashing %s before it loses its name: %w", path, err)
	}
	return s, nil
}

func (u *unsynced) unlinking(path string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	s, err := u.stashLocked(path)
	if err != nil || s == "" {
		return err
	}
	u.journal = append(u.journal, nameOp{kind: "unlinked", path: path, stash: s})
	return nil
}

func (u *unsynced) renaming(from, to string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	s, err := u.stashLocked(to)
	if err != nil {
		return err
	}
	u.journal = append(u.journal, nameOp{kind: "renamed", path: from, to: to, stash: s})
	return nil
}

// pending is what a power loss now would drop.
func (u *unsynced) pending() Dropped {
	u.mu.Lock()
	defer u.mu.Unlock()
	var d Dropped
	for _, l := range u.files {
		d.Bytes += l.written
		d.Files++
	}
	d.Entries = len(u.journal)
	return d
}

// revert drops every unsynced write and name change: the files' undo logs backwards, each file
// cut to its synced size, then the journal backwards.
func (u *unsynced) revert() (Dropped, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var d Dropped
	var errs []error
	for k, l := range u.files {
		d.Bytes += l.written
		d.Files++
		for i := len(l.undo) - 1; i >= 0; i-- {
			r := l.undo[i]
			data := r.data
			if r.zeros > 0 {
				data = make([]byte, r.zeros)
			}
			if _, err := syscall.Pwrite(l.fd, data, r.off); err != nil {
				errs = append(errs, fmt.Errorf("undoing a write at %d: %w", r.off, err))
			}
		}
		if err := syscall.Ftruncate(l.fd, l.synced); err != nil {
			errs = append(errs, fmt.Errorf("cutting a file to its synced size %d: %w", l.synced, err))
		}
		_ = syscall.Fsync(l.fd)
		syscall.Close(l.fd)
		delete(u.files, k)
	}
	d.Entries = len(u.journal)
	for i := len(u.journal) - 1; i >= 0; i-- {
		op := u.journal[i]
		var err error
		switch op.kind {
		case "created":
			err = os.Remove(op.path)
		case "rmdir":
			err = os.Mkdir(op.path, 0o700)
		case "unlinked":
			err = os.Link(op.stash, op.path)
		case "renamed":
			err = os.Rename(op.to, op.path)
			if err == nil && op.stash != "" {
				err = os.Link(op.stash, op.to)
			}
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrExist) {
			errs = append(errs, fmt.Errorf("undoing %s %s: %w", op.kind, op.path, err))
		}
	}
	u.commitLocked()
	return d, errors.Join(errs...)
}
