//go:build linux

package scanfolder

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// closeWatcher reports file events from its own raw inotify instance:
// fsnotify does not export IN_CLOSE_WRITE, and everything that changes what
// we know about a name (created, written, closed, moved, deleted) must come
// from one instance so the events arrive in the order the kernel saw them (a
// modify after a close marks the file as being written again; spoold's own
// move of x.pdf, reported late by another instance, would otherwise erase
// the mark of a new writer of x.pdf).
type closeWatcher struct {
	file   *os.File // the inotify fd, non-blocking, so Close wakes a pending Read
	events chan closeEvent
	done   chan struct{} // closed by close: read stops even while nobody drains events
	once   sync.Once

	mu   sync.Mutex
	dirs map[int]string // watch descriptor -> relative dir ("." = root)
	wds  map[string]int // relative dir -> watch descriptor
}

const closeWatchMask = unix.IN_CREATE | unix.IN_MODIFY | unix.IN_CLOSE_WRITE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_DELETE | unix.IN_ONLYDIR | unix.IN_DONT_FOLLOW

func newCloseWatcher() (*closeWatcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	cw := &closeWatcher{
		file:   os.NewFile(uintptr(fd), "inotify"),
		events: make(chan closeEvent, 256),
		done:   make(chan struct{}),
		dirs:   map[int]string{},
		wds:    map[string]int{},
	}
	go cw.read()
	return cw, nil
}

// add watches abs as rel. A renamed directory keeps its watch descriptor:
// inotify_add_watch on the new name returns the wd the old name has, and
// the watch is re-pointed to the new name (the old name then has none, so
// removing it later cannot remove the kernel watch the new name uses).
func (cw *closeWatcher) add(abs, rel string) error {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	if _, ok := cw.wds[rel]; ok {
		return nil
	}
	wd, err := unix.InotifyAddWatch(int(cw.file.Fd()), abs, closeWatchMask)
	if err != nil {
		return fmt.Errorf("inotify_add_watch %s: %w", abs, err)
	}
	if old, ok := cw.dirs[wd]; ok && old != rel {
		delete(cw.wds, old)
	}
	cw.dirs[wd], cw.wds[rel] = rel, wd
	return nil
}

func (cw *closeWatcher) remove(rel string) {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	wd, ok := cw.wds[rel]
	if !ok {
		return
	}
	delete(cw.wds, rel)
	if cw.dirs[wd] == rel { // never a watch another name uses now
		_, _ = unix.InotifyRmWatch(int(cw.file.Fd()), uint32(wd))
		delete(cw.dirs, wd)
	}
}

func (cw *closeWatcher) close() {
	cw.once.Do(func() {
		close(cw.done)
		cw.file.Close()
	})
}

func (cw *closeWatcher) send(ev closeEvent) bool {
	select {
	case cw.events <- ev:
		return true
	case <-cw.done:
		return false
	}
}

// read decodes inotify records until the fd is closed; then it closes events.
func (cw *closeWatcher) read() {
	defer close(cw.events)
	buf := make([]byte, 64<<10)
	for {
		n, err := cw.file.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			// Broken: report it as lost events (every file loses its
			// history and needs the poll quiet period) and stop.
			cw.send(closeEvent{overflow: true})
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameLen := int(ev.Len)
			name := ""
			if nameLen > 0 && off+unix.SizeofInotifyEvent+nameLen <= n {
				raw := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+nameLen]
				for i, c := range raw {
					if c == 0 {
						raw = raw[:i]
						break
					}
				}
				name = string(raw)
			}
			off += unix.SizeofInotifyEvent + nameLen
			switch {
			case ev.Mask&unix.IN_Q_OVERFLOW != 0:
				if !cw.send(closeEvent{overflow: true}) {
					return
				}
				continue
			case ev.Mask&unix.IN_IGNORED != 0:
				cw.mu.Lock()
				if rel, ok := cw.dirs[int(ev.Wd)]; ok {
					delete(cw.dirs, int(ev.Wd))
					if cw.wds[rel] == int(ev.Wd) {
						delete(cw.wds, rel)
					}
				}
				cw.mu.Unlock()
				continue
			case name == "" || ev.Mask&unix.IN_ISDIR != 0:
				continue
			}
			cw.mu.Lock()
			dir, ok := cw.dirs[int(ev.Wd)]
			cw.mu.Unlock()
			if !ok {
				continue
			}
			rel := name
			if dir != "." {
				rel = dir + "/" + name
			}
			var kind evKind
			switch {
			case ev.Mask&(unix.IN_MOVED_FROM|unix.IN_DELETE) != 0:
				kind = evGone
			case ev.Mask&unix.IN_MOVED_TO != 0:
				kind = evMovedIn
			case ev.Mask&unix.IN_CREATE != 0:
				kind = evCreated
			case ev.Mask&unix.IN_CLOSE_WRITE != 0:
				kind = evClosed
			default:
				kind = evModified
			}
			if !cw.send(closeEvent{rel: rel, kind: kind, cookie: ev.Cookie}) {
				return
			}
		}
	}
}

// writerCheck says whether any process has the file open for writing, by
// trying to take a read lease on f (F_SETLEASE F_RDLCK fails with EAGAIN
// while any open file description for writing exists, whoever holds it: a
// local writer, or smbd and nfsd for remote ones). The lease is released at
// once, so a writer opening the file meanwhile waits at most for that.
// unsupported is true when the kernel refuses leases here (EPERM: spoold is
// neither the file's owner nor has CAP_LEASE; EINVAL/ENOSYS: the file system
// has no leases); the caller then relies on the other signals.
//
// On network file systems a lease needs the server's oplock or delegation
// (CIFS and NFS answer EAGAIN without one even when nobody writes), and a
// remote writer never shows locally anyway: there the check is reported as
// unsupported and the quiet period and format checks decide.
func writerCheck(f *os.File) (writing, unsupported bool, err error) {
	fd := int(f.Fd())
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err == nil && networkFS(int64(st.Type)) {
		return false, true, fmt.Errorf("network file system (type %#x): open writers on other machines cannot be seen", st.Type)
	}
	_, err = unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_RDLCK)
	switch {
	case err == nil:
		if _, uerr := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK); uerr != nil {
			return false, false, fmt.Errorf("releasing read lease: %w", uerr)
		}
		return false, false, nil
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EBUSY):
		return true, false, nil
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS),
		errors.Is(err, unix.ENOTSUP):
		return false, true, err
	}
	return false, false, fmt.Errorf("read lease probe: %w", err)
}

const closeWatchSupported = true

// networkFS reports file system types (statfs f_type) whose leases do not
// mean "no writer": SMB/CIFS, NFS, Ceph, 9P, AFS/OpenAFS, Coda, FUSE (sshfs, rclone).
func networkFS(t int64) bool {
	switch t {
	case unix.NFS_SUPER_MAGIC, unix.SMB_SUPER_MAGIC, 0xFF534D42 /* CIFS */, 0xFE534D42, /* SMB2 */
		unix.CEPH_SUPER_MAGIC, unix.V9FS_MAGIC, unix.AFS_SUPER_MAGIC, unix.CODA_SUPER_MAGIC,
		unix.FUSE_SUPER_MAGIC:
		return true
	}
	return false
}
