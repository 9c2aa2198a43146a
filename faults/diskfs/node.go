package diskfs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// node is the loopback node with the layer's gate before each operation and, with unsynced
// tracking, a record of what each name change and write replaced.
type node struct {
	fs.LoopbackNode
	d *Disk
}

func (n *node) backing(name string) string {
	return filepath.Join(n.RootData.Path, n.Path(n.Root()), name)
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if e := n.d.gate(ctx, Meta, false); e != 0 {
		return nil, e
	}
	return n.LoopbackNode.Lookup(ctx, name, out)
}

func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if e := n.d.gate(ctx, Meta, false); e != 0 {
		return e
	}
	if h, ok := f.(*file); ok {
		f = h.lf
	}
	return n.LoopbackNode.Getattr(ctx, f, out)
}

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok {
		if e := n.d.gate(ctx, Write, true); e != 0 {
			return e
		}
		if u := n.d.un; u != nil {
			if err := u.resizingPath(n.backing(""), int64(sz)); err != nil {
				return fs.ToErrno(err)
			}
		}
	}
	if h, ok := f.(*file); ok {
		f = h.lf
	}
	return n.LoopbackNode.Setattr(ctx, f, in, out)
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if e := n.d.gate(ctx, Meta, false); e != 0 {
		return nil, 0, e
	}
	if flags&syscall.O_TRUNC != 0 {
		if e := n.d.gate(ctx, Write, false); e != 0 {
			return nil, 0, e
		}
		if u := n.d.un; u != nil {
			if err := u.resizingPath(n.backing(""), 0); err != nil {
				return nil, 0, fs.ToErrno(err)
			}
		}
	}
	fh, fl, e := n.LoopbackNode.Open(ctx, flags)
	if e != 0 {
		return nil, 0, e
	}
	return n.wrap(fh), fl, 0
}

func (n *node) wrap(fh fs.FileHandle) fs.FileHandle {
	lf, ok := fh.(*fs.LoopbackFile)
	if !ok {
		return fh
	}
	fd, _ := lf.PassthroughFd()
	f := &file{lf: lf, fd: fd, d: n.d}
	if n.d.opts.Passthrough {
		return &passFile{f}
	}
	return f
}

// passFile is an open file whose reads and writes the kernel does on the backing file itself.
type passFile struct{ *file }

func (p *passFile) PassthroughFd() (int, bool) { return p.fd, true }

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if e := n.d.gate(ctx, Write, true); e != 0 {
		return nil, nil, 0, e
	}
	p := n.backing(name)
	if u := n.d.un; u != nil {
		if _, err := os.Lstat(p); err != nil {
			u.created(p)
		} else if flags&syscall.O_TRUNC != 0 {
			if err := u.resizingPath(p, 0); err != nil {
				return nil, nil, 0, fs.ToErrno(err)
			}
		}
	}
	ch, fh, fl, e := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if e != 0 {
		return nil, nil, 0, e
	}
	return ch, n.wrap(fh), fl, 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if e := n.d.gate(ctx, Write, true); e != 0 {
		return nil, e
	}
	ch, e := n.LoopbackNode.Mkdir(ctx, name, mode, out)
	if e == 0 && n.d.un != nil {
		n.d.un.created(n.backing(name))
	}
	return ch, e
}

func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if e := n.d.gate(ctx, Write, true); e != 0 {
		return nil, e
	}
	ch, e := n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
	if e == 0 && n.d.un != nil {
		n.d.un.created(n.backing(name))
	}
	return ch, e
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if e := n.d.gate(ctx, Write, true); e != 0 {
		return nil, e
	}
	ch, e := n.LoopbackNode.Symlink(ctx, target, name, out)
	if e == 0 && n.d.un != nil {
		n.d.un.created(n.backing(name))
	}
	return ch, e
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if e := n.d.gate(ctx, Write, true); e != 0 {
		return nil, e
	}
	ch, e := n.LoopbackNode.Link(ctx, target, name, out)
	if e == 0 && n.d.un != nil {
		n.d.un.created(n.backing(name))
	}
	return ch, e
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if e := n.d.gate(ctx, Write, false); e != 0 {
		return e
	}
	e := n.LoopbackNode.Rmdir(ctx, name)
	if e == 0 && n.d.un != nil {
		n.d.un.removedDir(n.backing(name))
	}
	return e
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if e := n.d.gate(ctx, Write, false); e != 0 {
		return e
	}
	if u := n.d.un; u != nil {
		if err := u.unlinking(n.backing(name)); err != nil {
			return fs.ToErrno(err)
		}
	}
	return n.LoopbackNode.Unlink(ctx, name)
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if e := n.d.gate(ctx, Write, false); e != 0 {
		return e
	}
	if u := n.d.un; u != nil {
		np, ok := newParent.(*node)
		if !ok {
			return syscall.EXDEV
		}
		if err := u.renaming(n.backing(name), np.backing(newName)); err != nil {
			return fs.ToErrno(err)
		}
	}
	return n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if e := n.d.gate(ctx, Meta, false); e != 0 {
		return nil, 0, e
	}
	fd, err := syscall.Open(n.backing(""), syscall.O_DIRECTORY|syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, fs.ToErrno(err)
	}
	ds, e := fs.NewLoopbackDirStreamFd(fd)
	if e != 0 {
		syscall.Close(fd)
		return nil, 0, e
	}
	return &dir{ds: ds, fd: fd, d: n.d}, 0, 0
}

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	if e := n.d.gate(ctx, Meta, false); e != 0 {
		return nil, e
	}
	return n.LoopbackNode.Readdir(ctx)
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	e := n.LoopbackNode.Statfs(ctx, out)
	if e == 0 && n.d.full() {
		out.Bfree, out.Bavail = 0, 0
	}
	return e
}

// Fsync is a directory's or a file's fsync without an open handle.
func (n *node) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	if h, ok := f.(*file); ok {
		return h.Fsync(ctx, flags)
	}
	if e := n.d.gate(ctx, Fsync, false); e != 0 {
		return e
	}
	fd, err := syscall.Open(n.backing(""), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fs.ToErrno(err)
	}
	defer syscall.Close(fd)
	return n.d.synced(fd, flags)
}

// synced fsyncs fd (fdatasync when the caller asked for that, as etcd's WAL does: a full fsync
// would also write the inode's times each time) and, once that succeeded, marks its data and every
// earlier name change durable.
func (d *Disk) synced(fd int, flags uint32) syscall.Errno {
	sync := syscall.Fsync
	if flags&1 != 0 { // FUSE_FSYNC_FDATASYNC
		sync = syscall.Fdatasync
	}
	if err := sync(fd); err != nil {
		return fs.ToErrno(err)
	}
	if d.un != nil {
		d.un.synced(fd)
	}
	return 0
}

// file is an open file: the loopback file's operations behind the gate. It does not offer the
// kernel a passthrough descriptor, so every read and write comes through the layer.
type file struct {
	lf *fs.LoopbackFile
	fd int
	d  *Disk
}

var (
	_ fs.FileReader    = (*file)(nil)
	_ fs.FileWriter    = (*file)(nil)
	_ fs.FileFsyncer   = (*file)(nil)
	_ fs.FileFlusher   = (*file)(nil)
	_ fs.FileReleaser  = (*file)(nil)
	_ fs.FileGetattrer = (*file)(nil)
	_ fs.FileSetattrer = (*file)(nil)
	_ fs.FileLseeker   = (*file)(nil)
	_ fs.FileAllocater = (*file)(nil)
)

func (f *file) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if e := f.d.gate(ctx, Read, false); e != 0 {
		return nil, e
	}
	return f.lf.Read(ctx, buf, off)
}

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if e := f.d.gate(ctx, Write, true); e != 0 {
		return 0, e
	}
	if u := f.d.un; u != nil {
		if err := u.writing(f.fd, off, int64(len(data))); err != nil {
			return 0, fs.ToErrno(err)
		}
	}
	return f.lf.Write(ctx, data, off)
}

func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if e := f.d.gate(ctx, Fsync, false); e != 0 {
		return e
	}
	return f.d.synced(f.fd, flags)
}

func (f *file) Flush(ctx context.Context) syscall.Errno   { return f.lf.Flush(ctx) }
func (f *file) Release(ctx context.Context) syscall.Errno { return f.lf.Release(ctx) }
func (f *file) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return f.lf.Getattr(ctx, out)
}
func (f *file) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return f.lf.Setattr(ctx, in, out)
}
func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return f.lf.Lseek(ctx, off, whence)
}

func (f *file) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	if e := f.d.gate(ctx, Write, true); e != 0 {
		return e
	}
	if u := f.d.un; u != nil {
		if err := u.writing(f.fd, int64(off), 0); err != nil { // records the size it had
			return fs.ToErrno(err)
		}
	}
	return f.lf.Allocate(ctx, off, size, mode)
}

// dir is an open directory: listing behind the gate, and its fsync a journal commit.
type dir struct {
	ds fs.DirStream
	fd int
	d  *Disk
}

var (
	_ fs.FileReaddirenter = (*dir)(nil)
	_ fs.FileReleasedirer = (*dir)(nil)
	_ fs.FileSeekdirer    = (*dir)(nil)
	_ fs.FileFsyncdirer   = (*dir)(nil)
)

func (d *dir) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if r, ok := d.ds.(fs.FileReaddirenter); ok {
		return r.Readdirent(ctx)
	}
	return nil, syscall.ENOTSUP
}

func (d *dir) Releasedir(ctx context.Context, flags uint32) {
	if r, ok := d.ds.(fs.FileReleasedirer); ok {
		r.Releasedir(ctx, flags)
		return
	}
	d.ds.Close()
}

func (d *dir) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if s, ok := d.ds.(fs.FileSeekdirer); ok {
		return s.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

func (d *dir) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	if e := d.d.gate(ctx, Fsync, false); e != 0 {
		return e
	}
	return d.d.synced(d.fd, flags)
}

func lookPath(bin string) (string, error) { return exec.LookPath(bin) }

func runCmd(p string, args ...string) (string, error) {
	out, err := exec.Command(p, args...).CombinedOutput()
	return string(out), err
}
