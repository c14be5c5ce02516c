//go:build linux

package spool

import (
	"bufio"
	"errors"
	"flag"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/spoold/spoold/spool/spooltest/lazyfs"
)

var powerCuts = flag.Int("spool.cuts", 8, "power cuts per body-file mode in TestPowerCutDurability")

// TestPowerCutDurability is TestCrashDurability with the power cut as well:
// the enqueueing child runs on lazyfs, is SIGKILLed, and then everything it
// wrote but did not fsync (file data, and creates, links and renames not
// covered by a directory fsync) is thrown away. Every acknowledged ID must
// survive with its body, in both body-file modes: O_TMPFILE + linkat, and
// the named temp file + rename that file systems without O_TMPFILE get.
// The spool's data dir is created unsynced, as spoold's ensureDataDir does.
func TestPowerCutDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	if err := lazyfs.Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("lazyfs cannot mount in CI: %v", err)
		}
		t.Skipf("lazyfs cannot mount here (needs /dev/fuse and root): %v", err)
	}
	for _, mode := range []string{"tmpfile", "named"} {
		t.Run(mode, func(t *testing.T) { testPowerCuts(t, mode == "named") })
	}
}

func testPowerCuts(t *testing.T, named bool) {
	root := t.TempDir()
	backing, mnt := filepath.Join(root, "backing"), filepath.Join(root, "mnt")
	for _, d := range []string{backing, mnt} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	var fsys *lazyfs.FS
	mount := func() {
		var err error
		if fsys, err = lazyfs.Mount(backing, mnt, lazyfs.Options{NoTmpfile: named}); err != nil {
			t.Fatal(err)
		}
	}
	mount()
	t.Cleanup(func() {
		if fsys != nil {
			fsys.Cut()
		}
	})
	if err := os.Mkdir(filepath.Join(mnt, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 24))
	acked := map[string]bool{}
	tmpfiles, creates := 0, 0
	for i := 0; i < *powerCuts; i++ {
		cmd := childCmd(t, "enqueue", filepath.Join(mnt, "data"))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		target := 1 + r.IntN(40)
		deadline := time.After(60 * time.Second)
	wait:
		for got := 0; got < target; {
			select {
			case l, ok := <-lines:
				if !ok {
					break wait
				}
				acked[l] = true
				got++
			case <-deadline:
				cmd.Process.Kill()
				t.Fatalf("child %d acknowledged only %d messages in 60s", i, got)
			}
		}
		// The cut lands anywhere in the next enqueues.
		time.Sleep(time.Duration(r.IntN(3000)) * time.Microsecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for l := range lines {
			acked[l] = true
		}
		<-readDone
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("child %d did not die by SIGKILL: %v", i, err)
		}
		st, err := fsys.Cut()
		fsys = nil
		if err != nil {
			t.Fatal(err)
		}
		tmpfiles += st.Tmpfiles
		creates += st.Creates
		// The backing directory is the disk after the reboot.
		verifyAcked(t, filepath.Join(backing, "data"), acked)
		mount()
	}
	// Each mode must really have taken its path.
	if named && tmpfiles > 0 || !named && tmpfiles == 0 {
		t.Errorf("named=%v: %d O_TMPFILE opens, %d creates", named, tmpfiles, creates)
	}
	t.Logf("power cuts: %d, acknowledged messages checked: %d, O_TMPFILE opens: %d, creates: %d, none lost",
		*powerCuts, len(acked), tmpfiles, creates)
}
