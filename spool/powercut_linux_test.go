//go:build linux

package spool

import (
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
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
	lazyfs.Require(t)
	for _, mode := range []string{"tmpfile", "named"} {
		t.Run(mode, func(t *testing.T) { testPowerCuts(t, mode == "named") })
	}
}

func testPowerCuts(t *testing.T, named bool) {
	rig := lazyfs.NewRig(t, t.TempDir())
	opts := lazyfs.Options{NoTmpfile: named}
	rig.Mount(opts)
	if err := os.Mkdir(rig.Path("data"), 0o700); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 24))
	acked := map[string]bool{}
	tmpfiles, creates := 0, 0
	for i := 0; i < *powerCuts; i++ {
		killEnqueuer(t, i, rig.Path("data"), r, acked)
		st := rig.Cut()
		tmpfiles += st.Tmpfiles
		creates += st.Creates
		// The backing directory is the disk after the reboot.
		verifyAcked(t, filepath.Join(rig.Backing, "data"), acked)
		rig.Mount(opts)
	}
	// Each mode must really have taken its path.
	if named && tmpfiles > 0 || !named && tmpfiles == 0 {
		t.Errorf("named=%v: %d O_TMPFILE opens, %d creates", named, tmpfiles, creates)
	}
	t.Logf("power cuts: %d, acknowledged messages checked: %d, O_TMPFILE opens: %d, creates: %d, none lost",
		*powerCuts, len(acked), tmpfiles, creates)
}
