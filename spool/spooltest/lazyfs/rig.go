//go:build linux

package lazyfs

import (
	"os"
	"path/filepath"
	"testing"
)

// Require skips the test where FUSE mounts are impossible, except in CI
// (CI=true), where it fails: there the environment promises them.
func Require(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("lazyfs cannot mount in CI: %v", err)
		}
		t.Skipf("lazyfs cannot mount here (needs /dev/fuse and root): %v", err)
	}
}

// Rig is a backing directory and a mount point for a test that cuts the
// power and mounts again. lazyfs's own tests, the spool's power-cut test and
// the system suite's share it, so that the setup, the Stats of each cut and
// the cleanup of a mount left standing exist once, beside Mount itself.
type Rig struct {
	t       testing.TB
	Backing string // the disk: after Cut it holds exactly what was durable
	Mnt     string // where the file system is mounted
	FS      *FS    // the current mount; nil after Cut until the next Mount
}

// NewRig makes the backing directory and the mount point under dir and
// registers a cleanup that cuts a mount still standing, so the test's
// temporary directories can be removed. Callers run Require first. The
// cleanup runs after those registered later (in particular the kills of
// processes using the mount), so create the rig before starting them.
func NewRig(t testing.TB, dir string) *Rig {
	t.Helper()
	r := &Rig{t: t, Backing: filepath.Join(dir, "backing"), Mnt: filepath.Join(dir, "mnt")}
	for _, d := range []string{r.Backing, r.Mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if r.FS != nil {
			r.FS.Cut()
		}
	})
	return r
}

// Mount mounts the backing directory (the reboot after a Cut).
func (r *Rig) Mount(opts Options) {
	r.t.Helper()
	f, err := Mount(r.Backing, r.Mnt, opts)
	if err != nil {
		r.t.Fatal(err)
	}
	r.FS = f
}

// Cut cuts the power: processes using the mount should be dead first. It
// returns the pending work thrown away.
func (r *Rig) Cut() Stats {
	r.t.Helper()
	st, err := r.FS.Cut()
	r.FS = nil
	if err != nil {
		r.t.Fatalf("power cut: %v", err)
	}
	return st
}

// Path is name inside the mount.
func (r *Rig) Path(name string) string { return filepath.Join(r.Mnt, name) }
