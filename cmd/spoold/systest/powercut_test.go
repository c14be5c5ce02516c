//go:build linux

package systest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoold/spoold/delivery/smtpfake"
	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/spooltest/lazyfs"
)

var flagCuts = flag.Int("powercut.cuts", 30, "power cuts in TestPowerCutLoop (raise for a soak run)")

// powerFS is a node's lazy file system: data dir and scan folder live on it;
// config, log and the backing directory do not.
type powerFS struct {
	*lazyfs.Rig
	t      *testing.T
	mounts int
	lost   lazyfs.Stats // pending work thrown away, summed over cuts
}

func (p *powerFS) mount() {
	p.t.Helper()
	p.mounts++
	// Every other mount hides O_TMPFILE, so spoold's probe takes the
	// named-temp-file path there and the linked-tmpfile path elsewhere.
	p.Mount(lazyfs.Options{NoTmpfile: p.mounts%2 == 0})
}

// cut throws away everything not durable; the caller killed spoold first.
func (p *powerFS) cut() {
	p.t.Helper()
	st := p.Cut()
	p.lost.PendingFiles += st.PendingFiles
	p.lost.PendingDirs += st.PendingDirs
	p.lost.FileSyncs += st.FileSyncs
	p.lost.DirSyncs += st.DirSyncs
	p.lost.Tmpfiles += st.Tmpfiles
}

// TestPowerCutLoop runs spoold with its data dir and scan folder on lazyfs
// under SMTP (small inline and large file-backed messages) and scan-folder
// load, cuts power at random moments (-powercut.cuts times, 30 by default):
// kill -9, throw away every write, create, rename and unlink that was not
// fsync'd, remount, restart. After each cut the durable spool must open and
// pass Check; at the end every message that got a 250 and every scan that
// was dropped must reach the upstream at least once and nothing may be dead
// or failed.
func TestPowerCutLoop(t *testing.T) {
	needSuite(t)
	lazyfs.Require(t)
	cuts := *flagCuts
	if cuts < 1 {
		t.Fatalf("-powercut.cuts must be at least 1")
	}
	up := startFake(t, nil)

	n := newNode(t, nodeConfig{
		Scan:     true,
		LogLevel: "info",
		Accounts: relayAccount("relay", up.Port, ""),
		Routes:   "  default: relay\n",
	})
	// Made before any spawn, so the rig's cleanup runs after the kills.
	pf := &powerFS{Rig: lazyfs.NewRig(t, n.dir), t: t}
	pf.mount()
	n.DataDir, n.ScanDir = pf.Path("data"), pf.Path("scans")
	n.writeConfig()
	// The scanner's side: a durable scan folder (the daemon creates the
	// data dir itself, which is part of what is tested).
	scans, err := startDurableScans(n.ScanDir, "alice@example.com", 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}

	var addr atomic.Value
	addr.Store(n.SMTPAddr())
	small, big := newLedger(), newLedger()
	p := n.start()
	addr.Store(n.SMTPAddr())
	load := startGoLoad(3, 30, func() string { return addr.Load().(string) }, small)
	// One client pacing large messages about 60 ms apart.
	bigs := startLoad(bigLoad, 1, 16, func() string { return addr.Load().(string) }, big)

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 24))
	start := time.Now()
	earlyCuts, checks, undelivered := 0, 0, 0
	var checkTime time.Duration
	for round := 1; round <= cuts; round++ {
		// The random moment: anywhere in a commit, a body write, a
		// delivery or a scan move. Up to 2 s, so that scans dropped
		// while spoold runs get through their quiet period (0.5 s) and
		// are taken before some of the cuts: files already there at a
		// start wait for the 30 s poll quiet period on FUSE, which has no
		// read leases, and are taken only in the final run.
		time.Sleep(time.Duration(200+rng.IntN(1800)) * time.Millisecond)
		powerCut(pf, p, scans)
		checkStart := time.Now()
		undelivered += checkDurable(t, pf, round, true, up, scans, small, big)
		checkTime += time.Since(checkStart)
		checks++
		pf.mount()
		scans.resume()
		if round == cuts {
			break
		}
		if rng.IntN(5) == 0 {
			// Cut again during start-up and recovery.
			early := n.spawn()
			time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
			powerCut(pf, early, scans)
			undelivered += checkDurable(t, pf, round, false, up, scans, small, big)
			checks++
			pf.mount()
			scans.resume()
			earlyCuts++
		}
		p = n.start()
		addr.Store(n.SMTPAddr())
	}
	loopTime := time.Since(start)
	t.Logf("loop done in %s, %s of it in the offline checks", loopTime.Round(time.Second), checkTime.Round(time.Second))

	// Final run: no more cuts; stop the load and let everything drain.
	p = n.start()
	addr.Store(n.SMTPAddr())
	load.Stop()
	bigs.Stop()
	dropped := scans.stop()
	smallAcked, smallTried := small.snapshot()
	bigAcked, bigTried := big.snapshot()
	if len(smallAcked) == 0 || len(bigAcked) == 0 || len(dropped) == 0 {
		t.Fatalf("the load produced too little: %d small and %d large messages acknowledged, %d scans dropped",
			len(smallAcked), len(bigAcked), len(dropped))
	}
	keys := append(append(smallAcked, bigAcked...), dropped...)
	got := n.waitUpstream(up, scans.dir, keys, "after power cuts")
	t.Logf("drained after %s", time.Since(start).Round(time.Second))
	if left := scans.remaining(); len(left) > 0 {
		t.Errorf("scans still in the folder after the drain: %v", left)
	}
	n.waitSettled("after power cuts")
	t.Logf("settled after %s", time.Since(start).Round(time.Second))
	if code, err := p.Stop(60 * time.Second); err != nil || code != 0 {
		t.Errorf("spoold after the loop: SIGTERM exit %d, %v", code, err)
	}
	// A clean stop must have made everything durable: cut once more and
	// look at what the disk holds.
	pf.cut()
	dataDir := n.DataDir
	n.DataDir = filepath.Join(pf.Backing, "data")
	n.checkSpoolEmpty("after shutdown and a cut")
	n.DataDir = dataDir
	dups := 0
	for _, c := range got {
		dups += max(c-1, 0)
	}
	t.Logf("power-cut loop: %d cuts (%d during start-up) in %s, %d offline checks (finding %d acknowledged messages and dropped scans not yet upstream, each in the durable queue or folder); small messages: %d acknowledged of %d tried; "+
		"large (file-backed) messages: %d acknowledged of %d tried; scans: %d dropped and delivered; upstream received %d (%d duplicates); "+
		"thrown away at the cuts: %d unsynced files, %d unsynced directories; O_TMPFILE bodies on odd mounts: %d (even mounts: named temp files)",
		cuts+earlyCuts, earlyCuts, loopTime.Round(time.Second), checks, undelivered, len(smallAcked), smallTried, len(bigAcked), bigTried,
		len(dropped), up.Count(), dups, pf.lost.PendingFiles, pf.lost.PendingDirs, pf.lost.Tmpfiles)
}

// powerCut stops proc the way a power cut does: SIGKILL (the process dies
// with the machine), then the file system forgets what was not durable. The
// scanner is paused across it, as a scanner would be down with the power.
func powerCut(pf *powerFS, p *proc, scans *durableScans) {
	pf.t.Helper()
	p.Kill()
	scans.pause()
	pf.cut()
}

// checkDurable opens what the disk holds after a cut, outside FUSE and
// read-only, and runs the spool's Check: every state the fsyncs leave
// behind must be a consistent spool. Once spoold was ready (wasReady), its
// spool must exist on disk: it acknowledged messages into it. Then nothing
// may be lost at this cut: every message that got a 250 is upstream already
// or in the durable queue, and every scan dropped is upstream, in the queue
// or still in the durable folder.
func checkDurable(t *testing.T, pf *powerFS, round int, wasReady bool, up *smtpfake.Server, scans *durableScans, ledgers ...*ledger) (pending int) {
	t.Helper()
	dir := filepath.Join(pf.Backing, "data")
	got := received(up)
	var acked []string
	for _, l := range ledgers {
		a, _ := l.snapshot()
		acked = append(acked, a...)
	}
	dropped := scans.dropped()
	if _, err := os.Stat(filepath.Join(dir, spool.DBFile)); errors.Is(err, os.ErrNotExist) {
		if wasReady {
			t.Fatalf("cut %d: %s is gone after a power cut although spoold was ready and acknowledging", round, spool.DBFile)
		}
		return 0
	}
	sp, err := spool.Open(dir, spool.Options{ReadOnly: true, RescueInterval: -1})
	if err != nil {
		t.Fatalf("cut %d: the durable spool does not open: %v", round, err)
	}
	defer sp.Close()
	if err := sp.Check(); err != nil {
		t.Fatalf("cut %d: spool check after the cut: %v", round, err)
	}
	// What the durable queue holds, by the keys in the bodies: the test
	// key header of SMTP messages, the file name in a scan's message.
	// Delivered records are skipped: what they carried is upstream.
	queued := map[string]bool{}
	ctx := context.Background()
	for _, state := range []spool.State{spool.StateQueued, spool.StateActive, spool.StateDeferred, spool.StateHeld, spool.StateDead} {
		for cursor := ""; ; {
			page, err := sp.List(ctx, spool.Filter{State: state}, cursor, spool.MaxListLimit)
			if err != nil {
				t.Fatalf("cut %d: listing the durable spool: %v", round, err)
			}
			for _, m := range page.Messages {
				if m.Source.Path != "" {
					queued[path.Base(m.Source.Path)] = true
				}
				rc, err := sp.OpenBody(m.ID)
				if err != nil {
					t.Fatalf("cut %d: body of %s (%s): %v", round, m.ID, m.State, err)
				}
				b, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					t.Fatalf("cut %d: reading the body of %s: %v", round, m.ID, err)
				}
				if k := goKeyRe.FindSubmatch(b); k != nil {
					queued[string(k[1])] = true
				}
			}
			if cursor = page.Next; cursor == "" {
				break
			}
		}
	}
	inFolder := map[string]bool{}
	entries, _ := os.ReadDir(filepath.Join(pf.Backing, "scans", scans.user))
	for _, e := range entries {
		inFolder[e.Name()] = true
	}
	var lost []string
	for _, k := range acked {
		if got[k] == 0 {
			if !queued[k] {
				lost = append(lost, k)
			}
			pending++
		}
	}
	for _, name := range dropped {
		if got[name] == 0 {
			if !queued[name] && !inFolder[name] {
				lost = append(lost, name)
			}
			pending++
		}
	}
	if len(lost) > 0 {
		sort.Strings(lost)
		t.Fatalf("cut %d: acknowledged messages or dropped scans are neither upstream, nor in the durable queue, nor in the scan folder: %v", round, lost)
	}
	return pending
}

// durableScans drops numbered scans into <scanDir>/<user>/ the way a
// careful scanner on a power-safe share does: write *.part, fsync, rename,
// fsync the folder. Only a drop that completed counts as dropped.
type durableScans struct {
	dir    string
	user   string
	every  time.Duration
	gate   sync.RWMutex // held for writing while the power is off
	paused atomic.Bool
	n      int
	mu     sync.Mutex
	done   []string
	stopc  chan struct{}
	wg     sync.WaitGroup
}

func startDurableScans(scanDir, user string, every time.Duration) (*durableScans, error) {
	s := &durableScans{dir: filepath.Join(scanDir, user), user: user, every: every, stopc: make(chan struct{})}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, err
	}
	for _, d := range []string{s.dir, scanDir, filepath.Dir(scanDir)} {
		if err := syncDir(d); err != nil {
			return nil, err
		}
	}
	s.wg.Add(1)
	go s.run()
	return s, nil
}

func (s *durableScans) pause() {
	if s.paused.CompareAndSwap(false, true) {
		s.gate.Lock()
	}
}

func (s *durableScans) resume() {
	if s.paused.CompareAndSwap(true, false) {
		s.gate.Unlock()
	}
}

func (s *durableScans) run() {
	defer s.wg.Done()
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	for {
		select {
		case <-s.stopc:
			return
		case <-tick.C:
		}
		s.gate.RLock()
		s.drop()
		s.gate.RUnlock()
	}
}

// drop writes one scan; failures (there are none while powered) leave the
// name out of the dropped list.
func (s *durableScans) drop() {
	s.n++
	name := fmt.Sprintf("scan-%06d.pdf", s.n)
	part := filepath.Join(s.dir, name+".part")
	// One in three is large enough to be stored as a body file, the
	// others are stored inline.
	size := 12 << 10
	if s.n%3 == 0 {
		size = 80 << 10
	}
	body := fmt.Sprintf("%%PDF-1.4\n%% systest %s\n%s\n%%%%EOF\n", name, strings.Repeat("x", size))
	f, err := os.Create(part)
	if err != nil {
		return
	}
	_, err = f.WriteString(body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(part, filepath.Join(s.dir, name))
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		return
	}
	s.mu.Lock()
	s.done = append(s.done, name)
	s.mu.Unlock()
}

// dropped returns the names dropped durably so far.
func (s *durableScans) dropped() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.done...)
}

// stop ends the drops and returns the names dropped durably.
func (s *durableScans) stop() []string {
	s.resume()
	close(s.stopc)
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.done...)
}

// remaining lists scan files still in the user folder.
func (s *durableScans) remaining() map[string]bool { return scanFiles(s.dir) }

func syncDir(dir string) error {
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
