package spool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// fsys is the set of file-system operations on the Enqueue path. It exists so
// tests can inject ENOSPC/EDQUOT at every durability step; production uses osFS.
type fsys interface {
	CreateTemp(dir, pattern string) (tempFile, error)
	// CreateAnon opens an unnamed file on dir's file system (O_TMPFILE).
	// Errors match errors.ErrUnsupported where the OS or file system has
	// no such thing.
	CreateAnon(dir string) (anonFile, error)
	Rename(oldpath, newpath string) error
	Remove(name string) error
	SyncDir(dir string) error
}

// tempFile is what Enqueue needs from a temporary body file.
type tempFile interface {
	io.Writer
	Sync() error
	Close() error
	Name() string
}

// anonFile is an unnamed temporary body file: it has no directory entry until
// Link gives it one, so creating it takes no directory lock and a crash
// leaves nothing to clean up.
type anonFile interface {
	io.Writer
	Sync() error
	Close() error
	Name() string
	// Link gives the file the name newpath (linkat); it fails if newpath exists.
	Link(newpath string) error
}

type osFS struct{}

func (osFS) CreateTemp(dir, pattern string) (tempFile, error) { return os.CreateTemp(dir, pattern) }
func (osFS) Rename(oldpath, newpath string) error             { return os.Rename(oldpath, newpath) }
func (osFS) Remove(name string) error                         { return os.Remove(name) }

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// isNoSpace reports whether err means the file system is full or over quota.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// wrapIO wraps an I/O error of an enqueue step, adding ErrNoSpace to the chain
// when the device is full so callers can answer 452 4.3.1.
func wrapIO(step string, err error) error {
	if isNoSpace(err) {
		return fmt.Errorf("spool: enqueue: %s: %w: %w", step, ErrNoSpace, err)
	}
	return fmt.Errorf("spool: enqueue: %s: %w", step, err)
}
