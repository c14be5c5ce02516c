package scanfolder

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// modeGroup checks rel's permission bits (with set-GID) and group.
func modeGroup(t *testing.T, dir, rel string, want fs.FileMode, gid int) {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() & (fs.ModePerm | fs.ModeSetgid); got != want {
		t.Errorf("%s: mode %v, want %v", rel, got, want)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Gid) != gid {
		t.Errorf("%s: group %d, want %d", rel, st.Gid, gid)
	}
}

// processed/, failed/ and .error.txt get the configured modes and group
// even under the unit's UMask=0077; mirrored subfolders copy their source
// subfolder's mode (dir_mode is for the top-level folders only).
func TestModesAndGroupUnderUmask077(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	gid := os.Getgid()
	group := strconv.Itoa(gid)
	if os.Getuid() == 0 {
		group, gid = "4242", 4242 // root may give any group
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "alice@example.com")
	os.Mkdir(src, 0o700)
	os.Chmod(src, 0o750|fs.ModeSetgid)
	os.Lchown(src, -1, gid)
	env := startIn(t, dir, nil, func(c *FolderConfig) {
		c.DirMode = "2750"
		c.FileMode = "0640"
		c.Group = group
	}, nil)
	env.write("alice@example.com/ok.pdf", sample(t, "sample.pdf"))
	env.write("noroute.pdf", sample(t, "sample.pdf"))
	waitFor(t, waitLong, "moved", func() bool {
		if e := env.w.Folders()[0].LastError; e != "" && !strings.Contains(e, "no route") {
			t.Fatalf("folder error: %s", e)
		}
		// The reason file is created, then given its mode, then the scan
		// follows it: wait for the scan, which comes last.
		return env.exists("processed/alice@example.com/ok.pdf") && env.exists("failed/noroute.pdf")
	})
	modeGroup(t, env.dir, ProcessedDir, 0o750|fs.ModeSetgid, gid)
	modeGroup(t, env.dir, ProcessedDir+"/alice@example.com", 0o750|fs.ModeSetgid, gid)
	modeGroup(t, env.dir, FailedDir, 0o750|fs.ModeSetgid, gid)
	modeGroup(t, env.dir, "failed/noroute.pdf.error.txt", 0o640, gid)
}

// Without dir_mode, file_mode and group, nothing becomes more readable than
// it was: processed/ and failed/ take the scan folder's mode and group, a
// mirrored subfolder its source subfolder's (a 0700 per-user folder stays
// 0700), and .error.txt the failed file's (whoever could read the scan can
// read why it failed).
func TestDefaultModesFollowTheSource(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to give files other groups")
	}
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	os.Chmod(dir, 0o751)
	os.Lchown(dir, -1, 4301)
	for _, d := range []string{"alice@example.com", "bob@example.com"} {
		os.Mkdir(filepath.Join(dir, d), 0o700)
	}
	os.Chmod(filepath.Join(dir, "bob@example.com"), 0o770|fs.ModeSetgid)
	os.Lchown(filepath.Join(dir, "bob@example.com"), -1, 4302)
	env := startIn(t, dir, nil, func(c *FolderConfig) { c.IncompleteLimit = 300 * time.Millisecond }, nil)
	env.write("alice@example.com/private.pdf", sample(t, "sample.pdf"))
	env.write("bob@example.com/shared.pdf", sample(t, "sample.pdf"))
	// The bad file gets its mode and group before it appears in the folder:
	// a watcher that looked between a write and a later chmod would rightly
	// copy the mode it saw.
	staged := filepath.Join(t.TempDir(), "bad.pdf")
	if err := os.WriteFile(staged, []byte("%PDF-1.4 not a pdf"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(staged, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(staged, -1, 4303); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(staged, filepath.Join(dir, "bob@example.com", "bad.pdf")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitLong, "moved", func() bool {
		return env.exists("processed/alice@example.com/private.pdf") && env.exists("processed/bob@example.com/shared.pdf") &&
			env.exists("failed/bob@example.com/bad.pdf")
	})
	modeGroup(t, dir, ProcessedDir, 0o751, 4301)
	modeGroup(t, dir, FailedDir, 0o751, 4301)
	modeGroup(t, dir, "processed/alice@example.com", 0o700, 0)
	modeGroup(t, dir, "processed/bob@example.com", 0o770|fs.ModeSetgid, 4302)
	modeGroup(t, dir, "failed/bob@example.com", 0o770|fs.ModeSetgid, 4302)
	modeGroup(t, dir, "failed/bob@example.com/bad.pdf.error.txt", 0o640, 4303)
}

// When setting up failed/'s reason file fails (say chown gives EPERM), the
// reason file is removed again: retries do not leave bad.pdf.error.txt,
// bad-1.pdf.error.txt, ... until no name is free. A directory whose mode
// could not be set is removed too, so the next attempt sets it up again.
func TestFailedSetupLeavesNothing(t *testing.T) {
	var refuse, dirRefused atomic.Bool
	refuse.Store(true)
	var refused atomic.Int32
	env := start(t, nil, func(c *FolderConfig) { c.FileMode = "0640" }, func(w *Watcher) {
		w.chmodHook = func(name string) error {
			if name == FailedDir && dirRefused.CompareAndSwap(false, true) {
				return errors.New("operation not permitted (test, dir)")
			}
			if refuse.Load() && strings.HasSuffix(name, errorSuffix) {
				refused.Add(1)
				return errors.New("operation not permitted (test)")
			}
			return nil
		}
	})
	root, _ := os.Stat(env.dir)
	env.write("noroute.pdf", sample(t, "sample.pdf"))
	waitFor(t, waitLong, "several refused attempts", func() bool { return refused.Load() >= 4 })
	// The hook counts a refusal before the watcher removes that attempt's
	// reason file, so failed/ may hold the current one for a moment; between
	// attempts it must be empty. Leftovers that stay fail this wait.
	var entries []os.DirEntry
	waitFor(t, waitLong, "failed/ without leftovers of failed set-ups", func() bool {
		entries, _ = os.ReadDir(filepath.Join(env.dir, FailedDir))
		return len(entries) == 0
	})
	if !strings.Contains(env.w.Folders()[0].LastError, "operation not permitted") {
		t.Errorf("status does not say why the move failed: %q", env.w.Folders()[0].LastError)
	}
	refuse.Store(false)
	// The reason is written before the file is moved: wait for both.
	waitFor(t, waitLong, "failed", func() bool {
		return env.exists("failed/noroute.pdf.error.txt") && env.exists("failed/noroute.pdf")
	})
	entries, _ = os.ReadDir(filepath.Join(env.dir, FailedDir))
	if len(entries) != 2 {
		t.Errorf("failed/ holds %d entries, want the file and its reason", len(entries))
	}
	// failed/ was removed after its refused chmod and made again properly.
	modeGroup(t, env.dir, FailedDir, root.Mode()&(fs.ModePerm|fs.ModeSetgid), int(root.Sys().(*syscall.Stat_t).Gid))
}

// A configured group spoold is not in would make every move fail every
// RetryDelay: it is refused up front, naming the unit setting that fixes it.
func TestGroupMembership(t *testing.T) {
	if err := checkGroupMember("scanners", 4000, 1000, 1000, []int{27, 4000}); err != nil {
		t.Errorf("supplementary group refused: %v", err)
	}
	if err := checkGroupMember("spoold", 1000, 1000, 1000, nil); err != nil {
		t.Errorf("own group refused: %v", err)
	}
	if err := checkGroupMember("anything", 4000, 0, 0, nil); err != nil {
		t.Errorf("root refused: %v", err)
	}
	err := checkGroupMember("scanners", 4000, 1000, 1000, []int{27})
	if err == nil || !strings.Contains(err.Error(), "SupplementaryGroups=scanners") {
		t.Errorf("non-member: %v", err)
	}
}

// Modes in messages read the way they are configured ("2650", not 020000650).
func TestModeMessagesInOctal(t *testing.T) {
	if got := formatMode(0o750 | fs.ModeSetgid); got != "2750" {
		t.Errorf("FormatMode = %q, want 2750", got)
	}
	c := FolderConfig{Name: "s", Path: t.TempDir(), Account: "a", DirMode: "02650"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "dir_mode: 2650:") {
		t.Errorf("error %v, want it to name dir_mode 2650", err)
	}
}
