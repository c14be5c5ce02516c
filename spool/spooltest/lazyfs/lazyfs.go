//go:build linux

// Package lazyfs is a FUSE file system for power-cut tests. It serves a tree
// loaded from a backing directory from memory and forgets, at a simulated
// power cut, everything that was not made durable the way POSIX requires at
// its most pessimistic (ext4 without a journal and XFS can show each case):
//
//   - a file's data, size and mtime become durable at fsync or fdatasync of
//     that file, and not before;
//   - a directory's entries (creates, links, renames, unlinks, mkdir, rmdir)
//     become durable at fsync of that directory, and not before. A rename
//     across directories is two changes: each directory keeps its side until
//     it is fsync'd, so a cut can lose the file from both or keep it in both;
//   - a name made durable for a file whose data never was is an empty file.
//
// A kill -9 loses nothing on a real file system because the page cache
// survives the process; only a cut like this one can show whether fsyncs are
// the right ones in the right order. Cut unmounts and writes the durable state
// into the backing directory, which then holds exactly what was made durable;
// Mount on it again is the reboot.
//
// What is served: regular files (read, write, truncate, fallocate, mmap
// through the kernel's page cache), directories, unix sockets (for admin
// sockets), hard links and O_TMPFILE with linkat (unless Options.NoTmpfile).
// Modes, owners and times other than mtime are kept but not tracked for
// durability. Symlinks and xattrs are not supported.
//
// Never touch a memory mapping of a file on the mount from the process that
// serves it (bbolt maps its database): the faulting thread cannot reach a Go
// safe point, so a garbage collection waits for it while the goroutines that
// would answer the fault are stopped, and the process hangs. Run such
// programs in a child process, or open what they wrote in the backing
// directory after Cut.
package lazyfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Options tune a mount.
type Options struct {
	// NoTmpfile answers O_TMPFILE with EOPNOTSUPP, as file systems without
	// it do, so callers take their named-temp-file path.
	NoTmpfile bool
	// Debug logs every FUSE request.
	Debug bool
}

// ErrCut is returned by operations on a file system after its power cut.
var ErrCut = errors.New("lazyfs: power was cut")

// pageSize is the unit of copy-on-write sharing between the live and the
// durable content of a file; fsync copies page pointers, not data, so a
// database that fdatasyncs after every commit stays cheap to model.
const pageSize = 4096

type page [pageSize]byte

// node is one inode of the model. Its live state is what readers see; the
// d-prefixed fields are its durable state.
type node struct {
	num   uint64
	mode  uint32 // S_IFMT bits and permissions
	uid   uint32
	gid   uint32
	nlink int // live names (directories: not counted)
	atime time.Time
	ctime time.Time
	mtime time.Time

	// Regular files. Pages shared with dpages are never written in place.
	pages  []*page
	size   int64
	dpages []*page
	dsize  int64
	dmtime time.Time

	// Directories.
	kids  map[string]*node
	dkids map[string]*node
}

func (n *node) isDir() bool { return n.mode&syscall.S_IFMT == syscall.S_IFDIR }
func (n *node) isReg() bool { return n.mode&syscall.S_IFMT == syscall.S_IFREG }

// Stats counts what the file system saw since it was mounted.
type Stats struct {
	FileSyncs, DirSyncs int
	// Files created by name (open with O_CREAT, mknod) and unnamed
	// (O_TMPFILE), to tell which path a program took.
	Creates, Tmpfiles int
	// At the cut: files whose live content differed from the durable one,
	// and directories whose live entries differed (work that was lost).
	PendingFiles, PendingDirs int
}

// FS is one mount.
type FS struct {
	backing, mountpoint string
	opts                Options
	server              *fuse.Server

	mu      sync.Mutex
	root    *node
	nextIno uint64
	cut     bool
	stats   Stats
}

// Mount loads backing into memory and mounts it at mountpoint. It needs
// /dev/fuse and root (it mounts directly, without fusermount).
func Mount(backing, mountpoint string, opts Options) (*FS, error) {
	f := &FS{backing: backing, mountpoint: mountpoint, opts: opts, nextIno: 2}
	root, err := f.load(backing)
	if err != nil {
		return nil, err
	}
	f.root = root
	root.num = 1
	timeout := time.Second
	f.server, err = fs.Mount(mountpoint, &fnode{fs: f, n: root}, &fs.Options{
		// The kernel is the only client and updates its caches on every
		// change it makes, so cached entries and attributes stay right.
		EntryTimeout: &timeout,
		AttrTimeout:  &timeout,
		MountOptions: fuse.MountOptions{
			FsName: "lazyfs", Name: "lazyfs",
			// As root, mount(2) directly: no fusermount package needed.
			DirectMountStrict: true,
			DisableXAttrs:     true,
			Debug:             opts.Debug,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("lazyfs: mounting %s: %w", mountpoint, err)
	}
	return f, nil
}

// Available reports why lazyfs cannot mount here (nil when it can): it
// needs /dev/fuse and the privilege to mount(2) (root), not fusermount.
func Available() error {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("lazyfs: %w", err)
	}
	dir, err := os.MkdirTemp("", "lazyfs-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	backing, mnt := filepath.Join(dir, "b"), filepath.Join(dir, "m")
	for _, d := range []string{backing, mnt} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	f, err := Mount(backing, mnt, Options{})
	if err != nil {
		return err
	}
	_, err = f.Cut()
	return err
}

// Mountpoint returns where the file system is mounted.
func (f *FS) Mountpoint() string { return f.mountpoint }

// Stats returns the counters.
func (f *FS) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// Cut is the power cut: from now on every request fails with EIO, the mount
// goes away, and the backing directory is rewritten to hold exactly the
// durable state. Processes using the mount should be dead first (a lazy
// unmount is used if something still holds it). The returned Stats count the
// pending work that was thrown away.
func (f *FS) Cut() (Stats, error) {
	f.mu.Lock()
	if f.cut {
		f.mu.Unlock()
		return Stats{}, ErrCut
	}
	f.cut = true
	f.countPending()
	st := f.stats
	root := f.root
	f.mu.Unlock()

	if err := f.server.Unmount(); err != nil {
		// Something still holds the mount: detach it. Every request now
		// fails, so it can do no harm until its last user goes away.
		if derr := unix.Unmount(f.mountpoint, unix.MNT_DETACH); derr != nil {
			return st, fmt.Errorf("lazyfs: unmounting %s: %w (lazy unmount: %v)", f.mountpoint, err, derr)
		}
	}
	// The model is frozen (cut is set), so it can be written unlocked.
	if err := writeImage(f.backing, root); err != nil {
		return st, err
	}
	return st, nil
}

// countPending fills the Pending counters from the live tree.
func (f *FS) countPending() {
	seen := map[*node]bool{}
	var walk func(n *node)
	walk = func(n *node) {
		if seen[n] {
			return
		}
		seen[n] = true
		if n.isDir() {
			if !sameKids(n.kids, n.dkids) {
				f.stats.PendingDirs++
			}
			for _, k := range n.kids {
				walk(k)
			}
			return
		}
		if n.isReg() && (n.size != n.dsize || !samePages(n.pages, n.dpages)) {
			f.stats.PendingFiles++
		}
	}
	walk(f.root)
}

func sameKids(a, b map[string]*node) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func samePages(a, b []*page) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// load reads the backing tree as the durable and live state of a fresh mount.
func (f *FS) load(dir string) (*node, error) {
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("lazyfs: backing directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("lazyfs: backing %s is not a directory", dir)
	}
	byIno := map[uint64]*node{} // hard links in the backing tree
	var walk func(path string, fi os.FileInfo) (*node, error)
	walk = func(path string, fi os.FileInfo) (*node, error) {
		st := fi.Sys().(*syscall.Stat_t)
		if n := byIno[st.Ino]; n != nil && !fi.IsDir() {
			n.nlink++
			return n, nil
		}
		n := &node{mode: st.Mode, uid: st.Uid, gid: st.Gid, mtime: fi.ModTime(), atime: fi.ModTime(), ctime: fi.ModTime()}
		n.dmtime = n.mtime
		n.num = f.nextIno
		f.nextIno++
		byIno[st.Ino] = n
		switch {
		case fi.IsDir():
			n.kids = map[string]*node{}
			ents, err := os.ReadDir(path)
			if err != nil {
				return nil, err
			}
			for _, e := range ents {
				cfi, err := e.Info()
				if err != nil {
					return nil, err
				}
				k, err := walk(filepath.Join(path, e.Name()), cfi)
				if err != nil {
					return nil, err
				}
				if k != nil {
					n.kids[e.Name()] = k
				}
			}
			n.dkids = cloneKids(n.kids)
		case fi.Mode().IsRegular():
			n.nlink = 1
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, err
			}
			n.write(b, 0)
			n.dpages = append([]*page(nil), n.pages...)
			n.dsize = n.size
		case fi.Mode()&os.ModeSocket != 0:
			n.nlink = 1
		default:
			return nil, nil // symlinks, devices: not served
		}
		return n, nil
	}
	return walk(dir, fi)
}

func cloneKids(m map[string]*node) map[string]*node {
	c := make(map[string]*node, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// writeImage replaces the contents of dir with the durable tree of root.
func writeImage(dir string, root *node) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("lazyfs: writing the durable image: %w", err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("lazyfs: writing the durable image: %w", err)
		}
	}
	written := map[*node]string{}
	var walk func(path string, n *node) error
	walk = func(path string, n *node) error {
		names := make([]string, 0, len(n.dkids))
		for name := range n.dkids {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			k := n.dkids[name]
			p := filepath.Join(path, name)
			if prev, ok := written[k]; ok {
				if k.isDir() {
					// A directory durably named twice (a rename whose
					// two sides both became durable): keep the first.
					continue
				}
				if err := os.Link(prev, p); err != nil {
					return err
				}
				continue
			}
			written[k] = p
			perm := os.FileMode(k.mode & 0o7777)
			switch {
			case k.isDir():
				if err := os.Mkdir(p, perm); err != nil {
					return err
				}
				if err := walk(p, k); err != nil {
					return err
				}
				if err := os.Chmod(p, perm); err != nil {
					return err
				}
			case k.isReg():
				if err := os.WriteFile(p, k.durableBytes(), perm); err != nil {
					return err
				}
				if err := os.Chmod(p, perm); err != nil {
					return err
				}
				if err := os.Chtimes(p, k.dmtime, k.dmtime); err != nil {
					return err
				}
			default:
				if err := unix.Mknod(p, k.mode, 0); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(dir, root); err != nil {
		return fmt.Errorf("lazyfs: writing the durable image: %w", err)
	}
	return nil
}

func (n *node) durableBytes() []byte {
	b := make([]byte, n.dsize)
	for i := int64(0); i < n.dsize; i += pageSize {
		if p := int(i / pageSize); p < len(n.dpages) && n.dpages[p] != nil {
			copy(b[i:], n.dpages[p][:])
		}
	}
	return b
}

// write copies b into the live pages at off, copying pages that the durable
// state shares.
func (n *node) write(b []byte, off int64) {
	end := off + int64(len(b))
	for need := int((end + pageSize - 1) / pageSize); len(n.pages) < need; {
		n.pages = append(n.pages, nil)
	}
	for pos := off; pos < end; {
		i := int(pos / pageSize)
		p := n.ownPage(i)
		c := copy(p[pos%pageSize:], b[pos-off:])
		pos += int64(c)
	}
	if end > n.size {
		n.size = end
	}
}

// ownPage returns page i for writing: new if absent, a copy if shared with
// the durable state.
func (n *node) ownPage(i int) *page {
	p := n.pages[i]
	switch {
	case p == nil:
		p = new(page)
	case i < len(n.dpages) && n.dpages[i] == p:
		c := *p
		p = &c
	default:
		return p
	}
	n.pages[i] = p
	return p
}

func (n *node) read(dest []byte, off int64) int {
	if off >= n.size {
		return 0
	}
	end := min(off+int64(len(dest)), n.size)
	for pos := off; pos < end; {
		i := int(pos / pageSize)
		chunk := min(pageSize-pos%pageSize, end-pos)
		if p := n.pages[i]; p != nil {
			copy(dest[pos-off:pos-off+chunk], p[pos%pageSize:])
		} else {
			clear(dest[pos-off : pos-off+chunk])
		}
		pos += chunk
	}
	return int(end - off)
}

func (n *node) truncate(size int64) {
	if size < n.size {
		// Zero the tail of the last kept page so a later extension reads
		// zeros, as it would on disk.
		if rem := size % pageSize; rem != 0 {
			i := int(size / pageSize)
			if i < len(n.pages) && n.pages[i] != nil {
				p := n.ownPage(i)
				clear(p[rem:])
			}
		}
		keep := int((size + pageSize - 1) / pageSize)
		if keep < len(n.pages) {
			clear(n.pages[keep:])
			n.pages = n.pages[:keep]
		}
	}
	for need := int((size + pageSize - 1) / pageSize); len(n.pages) < need; {
		n.pages = append(n.pages, nil)
	}
	n.size = size
}

// sync makes the live state of n durable (fsync).
func (n *node) sync(datasync bool) {
	if n.isDir() {
		n.dkids = cloneKids(n.kids)
		return
	}
	n.dpages = append(n.dpages[:0:0], n.pages...)
	n.dsize = n.size
	if !datasync {
		n.dmtime = n.mtime
	} else if n.dmtime.IsZero() {
		n.dmtime = n.mtime
	}
}

// newNode allocates an inode; f.mu is held.
func (f *FS) newNode(mode uint32, ctx context.Context) *node {
	now := time.Now()
	n := &node{num: f.nextIno, mode: mode, atime: now, mtime: now, ctime: now}
	f.nextIno++
	if c, ok := fuse.FromContext(ctx); ok {
		n.uid, n.gid = c.Uid, c.Gid
	}
	if n.isDir() {
		n.kids, n.dkids = map[string]*node{}, map[string]*node{}
	}
	return n
}

// fnode is the go-fuse face of a node. Several fnodes may point at one node
// (go-fuse keeps the first one it registered for an inode number).
type fnode struct {
	fs.Inode
	fs *FS
	n  *node
}

var (
	_ fs.NodeLookuper    = (*fnode)(nil)
	_ fs.NodeGetattrer   = (*fnode)(nil)
	_ fs.NodeSetattrer   = (*fnode)(nil)
	_ fs.NodeOpener      = (*fnode)(nil)
	_ fs.NodeCreater     = (*fnode)(nil)
	_ fs.NodeTmpfiler    = (*fnode)(nil)
	_ fs.NodeReader      = (*fnode)(nil)
	_ fs.NodeWriter      = (*fnode)(nil)
	_ fs.NodeFsyncer     = (*fnode)(nil)
	_ fs.NodeFlusher     = (*fnode)(nil)
	_ fs.NodeAllocater   = (*fnode)(nil)
	_ fs.NodeMkdirer     = (*fnode)(nil)
	_ fs.NodeMknoder     = (*fnode)(nil)
	_ fs.NodeLinker      = (*fnode)(nil)
	_ fs.NodeUnlinker    = (*fnode)(nil)
	_ fs.NodeRmdirer     = (*fnode)(nil)
	_ fs.NodeRenamer     = (*fnode)(nil)
	_ fs.NodeReaddirer   = (*fnode)(nil)
	_ fs.NodeStatfser    = (*fnode)(nil)
	_ fs.NodeOpendirer   = (*fnode)(nil)
	_ fs.NodeReleaser    = (*fnode)(nil)
	_ fs.NodeOnForgetter = (*fnode)(nil)
)

// lock takes the model lock; it reports false after the cut.
func (fn *fnode) lock() bool {
	fn.fs.mu.Lock()
	if fn.fs.cut {
		fn.fs.mu.Unlock()
		return false
	}
	return true
}

func (fn *fnode) unlock() { fn.fs.mu.Unlock() }

func (fn *fnode) child(ctx context.Context, n *node, out *fuse.EntryOut) *fs.Inode {
	fillAttr(n, &out.Attr)
	return fn.NewInode(ctx, &fnode{fs: fn.fs, n: n}, fs.StableAttr{Mode: n.mode & syscall.S_IFMT, Ino: n.num})
}

func fillAttr(n *node, a *fuse.Attr) {
	a.Ino = n.num
	a.Mode = n.mode
	a.Owner = fuse.Owner{Uid: n.uid, Gid: n.gid}
	a.Blksize = pageSize
	switch {
	case n.isDir():
		links := 2
		for _, k := range n.kids {
			if k.isDir() {
				links++
			}
		}
		a.Nlink = uint32(links)
		a.Size = pageSize
	default:
		a.Nlink = uint32(n.nlink)
		a.Size = uint64(n.size)
	}
	a.Blocks = (a.Size + 511) / 512
	a.SetTimes(&n.atime, &n.mtime, &n.ctime)
}

func (fn *fnode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !fn.lock() {
		return nil, syscall.EIO
	}
	defer fn.unlock()
	k := fn.n.kids[name]
	if k == nil {
		return nil, syscall.ENOENT
	}
	return fn.child(ctx, k, out), 0
}

func (fn *fnode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if !fn.lock() {
		return syscall.EIO
	}
	defer fn.unlock()
	fillAttr(fn.n, &out.Attr)
	return 0
}

func (fn *fnode) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if !fn.lock() {
		return syscall.EIO
	}
	defer fn.unlock()
	n := fn.n
	now := time.Now()
	if sz, ok := in.GetSize(); ok {
		if !n.isReg() {
			return syscall.EINVAL
		}
		n.truncate(int64(sz))
		n.mtime = now
	}
	if m, ok := in.GetMode(); ok {
		n.mode = n.mode&syscall.S_IFMT | m&0o7777
	}
	if uid, ok := in.GetUID(); ok {
		n.uid = uid
	}
	if gid, ok := in.GetGID(); ok {
		n.gid = gid
	}
	if t, ok := in.GetMTime(); ok {
		n.mtime = t
	}
	if t, ok := in.GetATime(); ok {
		n.atime = t
	}
	n.ctime = now
	fillAttr(n, &out.Attr)
	return 0
}

func (fn *fnode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if !fn.lock() {
		return nil, 0, syscall.EIO
	}
	defer fn.unlock()
	if flags&syscall.O_TRUNC != 0 && fn.n.isReg() {
		fn.n.truncate(0)
		fn.n.mtime = time.Now()
	}
	// No FOPEN_DIRECT_IO: reads and shared mmaps (bbolt's) go through
	// the kernel's page cache, which every write (pwrite included)
	// updates on its way here, so a mapping sees what was written.
	return nil, 0, 0
}

func (fn *fnode) Opendir(ctx context.Context) syscall.Errno { return 0 }

func (fn *fnode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if !fn.lock() {
		return nil, nil, 0, syscall.EIO
	}
	defer fn.unlock()
	if k := fn.n.kids[name]; k != nil {
		// The kernel only sends CREATE for names it believes absent.
		return nil, nil, 0, syscall.EEXIST
	}
	k := fn.fs.newNode(syscall.S_IFREG|mode&0o7777, ctx)
	k.nlink = 1
	fn.fs.stats.Creates++
	fn.n.kids[name] = k
	fn.n.mtime = k.mtime
	return fn.child(ctx, k, out), nil, 0, 0
}

func (fn *fnode) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if fn.fs.opts.NoTmpfile {
		return nil, nil, 0, syscall.EOPNOTSUPP
	}
	if !fn.lock() {
		return nil, nil, 0, syscall.EIO
	}
	defer fn.unlock()
	k := fn.fs.newNode(syscall.S_IFREG|mode&0o7777, ctx)
	fn.fs.stats.Tmpfiles++
	return fn.child(ctx, k, out), nil, 0, 0
}

func (fn *fnode) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if !fn.lock() {
		return nil, syscall.EIO
	}
	defer fn.unlock()
	n := fn.n.read(dest, off)
	return fuse.ReadResultData(dest[:n]), 0
}

func (fn *fnode) Write(ctx context.Context, f fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if !fn.lock() {
		return 0, syscall.EIO
	}
	defer fn.unlock()
	fn.n.write(data, off)
	fn.n.mtime = time.Now()
	return uint32(len(data)), 0
}

func (fn *fnode) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	if !fn.lock() {
		return syscall.EIO
	}
	defer fn.unlock()
	if fn.n.isDir() {
		fn.fs.stats.DirSyncs++
	} else {
		fn.fs.stats.FileSyncs++
	}
	fn.n.sync(flags&1 != 0) // FUSE_FSYNC_FDATASYNC
	return 0
}

// Flush is close(2): it makes nothing durable.
func (fn *fnode) Flush(ctx context.Context, f fs.FileHandle) syscall.Errno { return 0 }

func (fn *fnode) Release(ctx context.Context, f fs.FileHandle) syscall.Errno { return 0 }

func (fn *fnode) OnForget() {}

func (fn *fnode) Allocate(ctx context.Context, f fs.FileHandle, off, size uint64, mode uint32) syscall.Errno {
	if !fn.lock() {
		return syscall.EIO
	}
	defer fn.unlock()
	switch mode {
	case 0:
		if end := int64(off + size); end > fn.n.size {
			fn.n.truncate(end)
			fn.n.mtime = time.Now()
		}
	case unix.FALLOC_FL_KEEP_SIZE:
		// Space reservation only; memory needs none.
	default:
		return syscall.EOPNOTSUPP
	}
	return 0
}

func (fn *fnode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !fn.lock() {
		return nil, syscall.EIO
	}
	defer fn.unlock()
	if fn.n.kids[name] != nil {
		return nil, syscall.EEXIST
	}
	k := fn.fs.newNode(syscall.S_IFDIR|mode&0o7777, ctx)
	fn.n.kids[name] = k
	fn.n.mtime = k.mtime
	return fn.child(ctx, k, out), 0
}

func (fn *fnode) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if mode&syscall.S_IFMT != syscall.S_IFSOCK && mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, syscall.EPERM
	}
	if !fn.lock() {
		return nil, syscall.EIO
	}
	defer fn.unlock()
	if fn.n.kids[name] != nil {
		return nil, syscall.EEXIST
	}
	k := fn.fs.newNode(mode, ctx)
	k.nlink = 1
	fn.n.kids[name] = k
	fn.n.mtime = k.mtime
	return fn.child(ctx, k, out), 0
}

func (fn *fnode) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	t, ok := target.(*fnode)
	if !ok {
		return nil, syscall.EXDEV
	}
	if !fn.lock() {
		return nil, syscall.EIO
	}
	defer fn.unlock()
	if fn.n.kids[name] != nil {
		return nil, syscall.EEXIST
	}
	if t.n.isDir() {
		return nil, syscall.EPERM
	}
	fn.n.kids[name] = t.n
	t.n.nlink++
	t.n.ctime = time.Now()
	fn.n.mtime = t.n.ctime
	return fn.child(ctx, t.n, out), 0
}

func (fn *fnode) Unlink(ctx context.Context, name string) syscall.Errno {
	if !fn.lock() {
		return syscall.EIO
	}
	defer fn.unlock()
	k := fn.n.kids[name]
	if k == nil {
		return syscall.ENOENT
	}
	if k.isDir() {
		return syscall.EISDIR
	}
	delete(fn.n.kids, name)
	k.nlink--
	fn.n.mtime = time.Now()
	return 0
}

func (fn *fnode) Rmdir(ctx context.Context, name string) syscall.Errno {
	if !fn.lock() {
		return syscall.EIO
	}
	defer fn.unlock()
	k := fn.n.kids[name]
	switch {
	case k == nil:
		return syscall.ENOENT
	case !k.isDir():
		return syscall.ENOTDIR
	case len(k.kids) > 0:
		return syscall.ENOTEMPTY
	}
	delete(fn.n.kids, name)
	fn.n.mtime = time.Now()
	return 0
}

func (fn *fnode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*fnode)
	if !ok {
		return syscall.EXDEV
	}
	if flags&^uint32(unix.RENAME_NOREPLACE) != 0 {
		return syscall.EINVAL // RENAME_EXCHANGE and RENAME_WHITEOUT are not needed
	}
	if !fn.lock() {
		return syscall.EIO
	}
	defer fn.unlock()
	src, dst := fn.n, np.n
	k := src.kids[name]
	if k == nil {
		return syscall.ENOENT
	}
	if old := dst.kids[newName]; old != nil {
		switch {
		case old == k:
			return 0 // same file: rename(2) does nothing
		case flags&unix.RENAME_NOREPLACE != 0:
			return syscall.EEXIST
		case old.isDir() && !k.isDir():
			return syscall.EISDIR
		case !old.isDir() && k.isDir():
			return syscall.ENOTDIR
		case old.isDir() && len(old.kids) > 0:
			return syscall.ENOTEMPTY
		}
		if !old.isDir() {
			old.nlink--
		}
	}
	delete(src.kids, name)
	dst.kids[newName] = k
	now := time.Now()
	src.mtime, dst.mtime, k.ctime = now, now, now
	return 0
}

func (fn *fnode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	if !fn.lock() {
		return nil, syscall.EIO
	}
	defer fn.unlock()
	list := make([]fuse.DirEntry, 0, len(fn.n.kids))
	for name, k := range fn.n.kids {
		list = append(list, fuse.DirEntry{Name: name, Mode: k.mode, Ino: k.num})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	return fs.NewListDirStream(list), 0
}

func (fn *fnode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	// Plenty of room: disk-full behaviour is tested elsewhere.
	out.Bsize = pageSize
	out.Frsize = pageSize
	out.Blocks = 1 << 24
	out.Bfree = 1 << 23
	out.Bavail = 1 << 23
	out.Files = 1 << 20
	out.Ffree = 1 << 19
	out.NameLen = 255
	return 0
}
