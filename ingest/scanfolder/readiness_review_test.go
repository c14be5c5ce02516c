//go:build linux

package scanfolder

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/spoold/spoold/spool"
)

// noLease makes the open-writer probe unsupported, as in the shipped unit
// (User=spoold without CAP_LEASE: files owned by share users give EPERM) and
// on network file systems. Then only inotify history, the quiet periods and
// the format checks hold a file back.
func noLease(w *Watcher) {
	w.writerCheck = func(*os.File) (bool, bool, error) { return false, true, errors.New("operation not permitted (test)") }
}

// The readiness modes again, without the lease probe.
var noLeaseModes = []readinessMode{
	{name: "watch-nolease", setup: noLease},
	{name: "poll-nolease", mod: readinessModes[1].mod, setup: func(w *Watcher) {
		w.noFsnotify = true
		noLease(w)
	}},
}

// untrackedQuiet sets the quiet period for files whose writes inotify did
// not see whole (the poll quiet period in production).
func untrackedQuiet(d time.Duration) func(*Watcher) {
	return func(w *Watcher) { w.untrackedQuiet.Store(int64(d)) }
}

func openWriter(t *testing.T, env *testEnv, rel string) *os.File {
	t.Helper()
	p := filepath.Join(env.dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// watchedDir creates a subfolder (if needed) and waits until its close-write watch is
// in place, so a file created in it next has its whole history seen.
func watchedDir(t *testing.T, env *testEnv, rel string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(env.dir, filepath.FromSlash(rel)), 0o755); err != nil {
		t.Fatal(err)
	}
	f := env.w.folders["scans"]
	waitFor(t, waitLong, rel+" watched", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.cw == nil {
			return false
		}
		f.cw.mu.Lock()
		defer f.cw.mu.Unlock()
		_, ok := f.cw.wds[rel]
		return ok
	})
}

func noScanYet(t *testing.T, env *testEnv) {
	t.Helper()
	if n := env.enq.count(spool.SourceScan); n != 0 {
		t.Fatalf("a file was sent while its writer was paused (%d messages)", n)
	}
}

// A file whose creation inotify did not see (there at start, after a
// reload, after an overflow) has no close-write history: without the lease
// probe it needs the poll quiet period; a file seen created and closed goes
// at once.
func TestUntrackedFileNeedsPollQuiet(t *testing.T) {
	dir := t.TempDir()
	rel := "alice@example.com/before-start.bin"
	os.MkdirAll(filepath.Join(dir, "alice@example.com"), 0o755)
	os.WriteFile(filepath.Join(dir, filepath.FromSlash(rel)), []byte("unknown type, cut short?"), 0o644)
	rec := newWaitRecorder()
	env := startIn(t, dir, nil, nil, func(w *Watcher) {
		w.waitHook = rec.hook
		noLease(w)
		untrackedQuiet(time.Hour)(w)
	})
	declined(t, rec, rel, 3, waitUntracked)
	env.write("alice@example.com/seen.bin", []byte("written and closed while watched"))
	waitFor(t, waitLong, "tracked file sent", func() bool { return env.enq.count(spool.SourceScan) == 1 })
	if !env.exists(rel) {
		t.Fatal("the untracked file was taken before the poll quiet period")
	}
	env.w.untrackedQuiet.Store(0)
	waitFor(t, waitLong, "untracked file sent", func() bool { return env.enq.count(spool.SourceScan) == 2 })
}

// A reload that restarts the folder mid-write loses the writer's history:
// the file is held back until its writer closes it, not sent after the
// (watch mode) quiet period.
func TestReloadMidWrite(t *testing.T) {
	env, rec := startReady(t, noLeaseModes[0], nil, nil, untrackedQuiet(time.Hour))
	rel := "alice@example.com/reload.bin"
	want := bytes.Repeat([]byte("page "), 40_000)
	watchedDir(t, env, "alice@example.com")
	f := openWriter(t, env, rel)
	f.Write(want[:len(want)/2])
	declined(t, rec, rel, 2, waitWriting)
	cfg := testConfig(env.dir)
	cfg.SubjectTemplate = "reloaded {{.File}}"
	if err := env.w.Reload([]FolderConfig{cfg}); err != nil {
		t.Fatal(err)
	}
	declined(t, rec, rel, 3, waitUntracked)
	noScanYet(t, env)
	f.Write(want[len(want)/2:])
	f.Close()
	oneScanEquals(t, env, rel, want)
}

// Renaming a subfolder keeps its close-write watch (the rescan adds the new
// name, which gets the same watch descriptor, before it drops the old one),
// and a file being written in it is not sent cut short.
func TestRenamedSubfolder(t *testing.T) {
	// No periodic rescans: files in the renamed folder are found through
	// its (fsnotify) watch, which must survive the rename too.
	env, rec := startReady(t, noLeaseModes[0], nil, func(c *FolderConfig) { c.RescanInterval = time.Hour }, untrackedQuiet(time.Hour))
	old, rel := "bob@example.com/moved.bin", "carol@example.com/moved.bin"
	want := bytes.Repeat([]byte("page "), 40_000)
	watchedDir(t, env, "bob@example.com")
	f := openWriter(t, env, old)
	f.Write(want[:len(want)/3])
	declined(t, rec, old, 2, waitWriting)
	if err := os.Rename(filepath.Join(env.dir, "bob@example.com"), filepath.Join(env.dir, "carol@example.com")); err != nil {
		t.Fatal(err)
	}
	f.Write(want[len(want)/3 : 2*len(want)/3])
	declined(t, rec, rel, 3, waitWriting, waitUntracked)
	// A file created in the renamed folder is seen written, not just
	// untracked: the folder's close-write watch survived.
	g := openWriter(t, env, "carol@example.com/new.bin")
	g.Write(want[:len(want)/2])
	declined(t, rec, "carol@example.com/new.bin", 3, waitWriting)
	noScanYet(t, env)
	g.Write(want[len(want)/2:])
	g.Close()
	f.Write(want[2*len(want)/3:])
	f.Close()
	waitFor(t, waitLong, "both sent", func() bool { return env.enq.count(spool.SourceScan) == 2 })
	for _, m := range env.enq.messages(spool.SourceScan) {
		if got := parseMessage(t, m.body).attachment; !bytes.Equal(got, want) {
			t.Fatalf("%s: attachment is %d bytes, want the finished %d", m.req.Source.Path, len(got), len(want))
		}
	}
}

// spoold's own move of x.pdf (a rename event from fsnotify) may be handled
// after inotify reported a new writer of x.pdf: the new writer's mark must
// survive. Events about the name come from one inotify instance, in order.
func TestOwnMoveDoesNotClearNewWriter(t *testing.T) {
	env := start(t, nil, nil, noLease)
	f := env.w.folders["scans"]
	// The new writer's file is there, as it is in the race this models: a
	// rescan (the watcher's first one may still be running) forgets the
	// marks of names it does not find.
	openWriter(t, env, "x.pdf")
	// A readiness pass follows the first rescan in the watcher's loop.
	waitFor(t, waitLong, "the first rescan", func() bool { return f.checks.Load() > 0 })
	f.closeEvent(closeEvent{rel: "x.pdf", kind: evModified})
	f.event(fsnotify.Event{Name: filepath.Join(env.dir, "x.pdf"), Op: fsnotify.Rename})
	if !f.isWriting("x.pdf") {
		t.Fatal("a late rename event from the other watcher cleared the new writer's mark")
	}
	f.closeEvent(closeEvent{rel: "x.pdf", kind: evGone})
	if f.isWriting("x.pdf") {
		t.Fatal("a move reported by the same inotify instance did not clear the mark")
	}
}

// A preallocated file (size set first, zero-filled, as Windows and SMB
// clients write) is held back by the format check until written, in every
// mode, with or without the lease probe.
func TestPreallocatedFileThroughWatcher(t *testing.T) {
	forModes(t, func(t *testing.T, m readinessMode) {
		env, rec := startReady(t, m, nil, nil, nil)
		rel := "alice@example.com/prealloc.jpg"
		want := sample(t, "sample.jpg")
		head := jpegSegmentEnds(want)[1]
		f := openWriter(t, env, rel)
		f.Truncate(int64(len(want)))
		f.WriteAt(want[:head], 0)
		f.Sync()
		declined(t, rec, rel, 3)
		noScanYet(t, env)
		f.WriteAt(want[head:], int64(head))
		f.Close()
		oneScanEquals(t, env, rel, want)
	})
}

// A TIFF over the check's budget cannot be judged: it is sent on the
// other signals, not failed and not stuck.
func TestTIFFOverBudgetThroughWatcher(t *testing.T) {
	forModes(t, func(t *testing.T, m readinessMode) {
		env, _ := startReady(t, m, nil, nil, nil)
		rel := "alice@example.com/crafted.tiff"
		data := tiffOverlappingChain(200)
		env.write(rel, data)
		oneScanEquals(t, env, rel, data)
	})
}

// truncate(2) by path gives IN_MODIFY without a close: where the lease
// probe works and finds no writer, the stale mark is dropped instead of
// failing the file as "written to, never closed".
func TestTruncateByPathNoStaleWriter(t *testing.T) {
	probe, err := os.Create(filepath.Join(t.TempDir(), "probe"))
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	if _, unsupported, _ := writerCheck(probe); unsupported {
		t.Skip("read leases unsupported here")
	}
	env, _ := startReady(t, readinessModes[0], nil, func(c *FolderConfig) { c.IncompleteLimit = 700 * time.Millisecond }, nil)
	rel := "alice@example.com/truncated.pdf"
	want := sample(t, "sample.pdf")
	p := env.write(rel, append(append([]byte{}, want...), "junk the device trims"...))
	if err := os.Truncate(p, int64(len(want))); err != nil {
		t.Fatal(err)
	}
	oneScanEquals(t, env, rel, want)
}

// BenchmarkStableToEnqueueNoLease is BenchmarkStableToEnqueue as the shipped
// unit runs (no lease probe): close-write events and the format check
// decide, in a subfolder watched before the files arrive.
func BenchmarkStableToEnqueueNoLease(b *testing.B) {
	be := &benchEnqueuer{Enqueuer: benchEnq(b, true), done: make(chan string, 16)}
	env := start(b, be, func(c *FolderConfig) { c.AfterSuccess = AfterDelete }, noLease)
	os.MkdirAll(filepath.Join(env.dir, "b@example.com"), 0o755)
	f := env.w.folders["scans"]
	waitFor(b, waitLong, "watched", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.watched["b@example.com"]
	})
	quiet := 200 * time.Millisecond
	var lat []time.Duration
	data := append(bytes.Repeat([]byte("%PDF-1.4 "), 10_000), "\n%%EOF\n"...)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rel := "b@example.com/s" + strconv.Itoa(i) + ".pdf"
		env.write(rel, data)
		written := time.Now()
		select {
		case <-be.done:
		case <-time.After(waitLong):
			b.Fatal("timeout")
		}
		lat = append(lat, time.Since(written)-quiet)
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
}

// Lost inotify events (queue overflow) forget every file's history: a
// close may be among them, and so may a modify.
func TestOverflowForgetsHistory(t *testing.T) {
	env := start(t, nil, nil, noLease)
	f := env.w.folders["scans"]
	f.closeEvent(closeEvent{rel: "a.pdf", kind: evCreated})
	f.closeEvent(closeEvent{rel: "b.pdf", kind: evModified})
	f.closeEvent(closeEvent{rel: "c.pdf", kind: evGone, cookie: 7})
	f.closeEvent(closeEvent{rel: "d.pdf", kind: evMovedIn, cookie: 7})
	if !f.isTracked("a.pdf") || !f.isWriting("b.pdf") {
		t.Fatal("history not kept")
	}
	f.closeEvent(closeEvent{overflow: true})
	if f.isTracked("a.pdf") || f.isWriting("b.pdf") {
		t.Fatal("history kept across lost events")
	}
}
