package spool

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"unsafe"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// releaseMapping drops this process's page mappings of the database file
// (MADV_DONTNEED on bbolt's read-only shared mmap). Recovery's scans touch
// every page, and the kernel maps pages around each fault, so after Open the
// whole file (inline bodies included) would count in the daemon's RSS although
// it is only clean page cache. The pages stay in the page cache and are mapped
// again on the next read; bbolt never writes through the mapping, so nothing
// is lost. It must run inside a read transaction, which keeps bbolt from
// remapping meanwhile.
func releaseMapping(tx *bolt.Tx) error {
	n := int(tx.Size())
	if n == 0 {
		return nil
	}
	// Info().Data is the address of the mapping as a uintptr; read it as a
	// pointer without a uintptr conversion.
	info := tx.DB().Info()
	base := *(*unsafe.Pointer)(unsafe.Pointer(&info.Data))
	return unix.Madvise(unsafe.Slice((*byte)(base), n), unix.MADV_DONTNEED)
}

func (osFS) CreateAnon(dir string) (anonFile, error) {
	f, err := os.OpenFile(dir, unix.O_TMPFILE|os.O_WRONLY, 0o600)
	if err != nil {
		// Kernels or file systems without O_TMPFILE answer EISDIR (the
		// flag reads as O_DIRECTORY) or EOPNOTSUPP.
		if errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("%w: %w", errors.ErrUnsupported, err)
		}
		return nil, err
	}
	return osAnonFile{f}, nil
}

type osAnonFile struct{ *os.File }

// Link names the file through /proc/self/fd, which needs no privilege;
// without /proc it tries AT_EMPTY_PATH, which needs CAP_DAC_READ_SEARCH.
func (f osAnonFile) Link(newpath string) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var lerr error
	err = rc.Control(func(fd uintptr) {
		lerr = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(fd)), unix.AT_FDCWD, newpath, unix.AT_SYMLINK_FOLLOW)
		if lerr == unix.ENOENT {
			if _, serr := os.Stat("/proc/self/fd"); serr != nil {
				lerr = unix.Linkat(int(fd), "", unix.AT_FDCWD, newpath, unix.AT_EMPTY_PATH)
			}
		}
	})
	if err != nil {
		return err
	}
	if lerr != nil {
		return &os.LinkError{Op: "link", Old: f.Name() + " (unnamed)", New: newpath, Err: lerr}
	}
	return nil
}
