package scanfolder

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// processed/, failed/ and .error.txt get the configured modes and group
// even under the unit's UMask=0077.
func TestModesAndGroupUnderUmask077(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	gid := os.Getgid()
	group := "0"
	if os.Getuid() == 0 {
		group, gid = "4242", 4242 // root may give any group
	}
	env := start(t, nil, func(c *FolderConfig) {
		c.DirMode = 0o750 | fs.ModeSetgid
		c.FileMode = 0o640
		c.Group = group
	}, nil)
	env.write("alice@example.com/ok.pdf", sample(t, "sample.pdf"))
	env.write("noroute.pdf", sample(t, "sample.pdf"))
	waitFor(t, 5*time.Second, "moved", func() bool {
		if e := env.w.Folders()[0].LastError; e != "" && !strings.Contains(e, "no route") {
			t.Fatalf("folder error: %s", e)
		}
		return env.exists("processed/alice@example.com/ok.pdf") && env.exists("failed/noroute.pdf.error.txt")
	})
	check := func(rel string, want fs.FileMode) {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(env.dir, filepath.FromSlash(rel)))
		if err != nil {
			t.Fatal(err)
		}
		got := fi.Mode() & (fs.ModePerm | fs.ModeSetgid)
		if got != want {
			t.Errorf("%s: mode %v, want %v", rel, got, want)
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Gid) != gid {
			t.Errorf("%s: group %d, want %d", rel, st.Gid, gid)
		}
	}
	check(ProcessedDir, 0o750|fs.ModeSetgid)
	check(ProcessedDir+"/alice@example.com", 0o750|fs.ModeSetgid)
	check(FailedDir, 0o750|fs.ModeSetgid)
	check("failed/noroute.pdf.error.txt", 0o640)
}
