//go:build linux

package scanfolder

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoold/spoold/spool"
)

// Readiness scenarios from issue 13, each run against the real watcher in
// watch mode (fsnotify + close-write events + lease probe) and in poll mode
// (rescans only: the lease probe, quiet period and format checks decide).
// Synchronisation is on conditions: a writer "pauses" until the watcher has
// looked at the file and declined it at least twice after its quiet period.

type readinessMode struct {
	name  string
	mod   func(*FolderConfig)
	setup func(*Watcher)
}

var readinessModes = []readinessMode{
	{name: "watch"},
	{name: "poll", mod: func(c *FolderConfig) {
		c.Mode = ModePoll
		c.RescanInterval = 150 * time.Millisecond
	}, setup: func(w *Watcher) { w.noFsnotify = true }},
}

// waitRecorder counts, per file, how often the watcher declined it and why.
type waitRecorder struct {
	mu    sync.Mutex
	waits map[string]map[string]int
}

func newWaitRecorder() *waitRecorder { return &waitRecorder{waits: map[string]map[string]int{}} }

func (r *waitRecorder) hook(rel, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waits[rel] == nil {
		r.waits[rel] = map[string]int{}
	}
	r.waits[rel][why]++
}

// total counts the declines of rel for any of whys (all reasons if none).
func (r *waitRecorder) total(rel string, whys ...string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for why, c := range r.waits[rel] {
		if len(whys) == 0 || containsStr(whys, why) {
			n += c
		}
	}
	return n
}

func (r *waitRecorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprint(r.waits)
}

func containsStr(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// startReady starts a watcher in the given mode with a wait recorder.
func startReady(t *testing.T, m readinessMode, enq Enqueuer, mod func(*FolderConfig), setup func(*Watcher)) (*testEnv, *waitRecorder) {
	t.Helper()
	rec := newWaitRecorder()
	env := start(t, enq, func(c *FolderConfig) {
		if m.mod != nil {
			m.mod(c)
		}
		if mod != nil {
			mod(c)
		}
	}, func(w *Watcher) {
		w.waitHook = rec.hook
		if m.setup != nil {
			m.setup(w)
		}
		if setup != nil {
			setup(w)
		}
	})
	if f := env.w.folders["scans"]; f.cfg.Mode == ModeWatch {
		// The users' subfolders exist and are watched before a scan
		// arrives, as in a deployed share: inotify sees each file whole.
		// (A file in a subfolder made just before it is untracked, see
		// TestUntrackedFileNeedsPollQuiet.)
		watchedDir(t, env, "alice@example.com")
	}
	return env, rec
}

// declined waits until the watcher has declined rel at least n times
// (for one of whys), which proves the writer's pause outlasted the quiet period.
func declined(t *testing.T, rec *waitRecorder, rel string, n int, whys ...string) {
	t.Helper()
	waitFor(t, waitLong, fmt.Sprintf("%s declined %d times %v", rel, n, whys), func() bool {
		return rec.total(rel, whys...) >= n
	})
}

// oneScanEquals waits for exactly one scan of rel and checks its attachment
// byte for byte; it also checks the file moved to processed/ and nothing failed.
func oneScanEquals(t *testing.T, env *testEnv, rel string, want []byte) {
	t.Helper()
	waitFor(t, waitLong, rel+" sent and moved", func() bool {
		return env.enq.count(spool.SourceScan) >= 1 && env.exists("processed/"+rel)
	})
	msgs := env.enq.messages(spool.SourceScan)
	if len(msgs) != 1 {
		t.Fatalf("%d scan messages, want 1", len(msgs))
	}
	if got := parseMessage(t, msgs[0].body).attachment; !bytes.Equal(got, want) {
		t.Fatalf("attachment is %d bytes, differs from the finished %d-byte file", len(got), len(want))
	}
	if got, err := os.ReadFile(filepath.Join(env.dir, ProcessedDir, filepath.FromSlash(rel))); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("processed file differs from the finished file (%v)", err)
	}
	if env.exists(FailedDir) || env.enq.count(spool.SourceNotice) != 0 {
		t.Fatal("something went to failed/ or a failure notice was sent")
	}
}

// forModes runs fn in watch and poll mode, each with and without the
// open-writer (lease) probe, except in the modes named in skip.
func forModes(t *testing.T, fn func(t *testing.T, m readinessMode), skip ...string) {
	for _, m := range append(append([]readinessMode{}, readinessModes...), noLeaseModes...) {
		if containsStr(skip, m.name) {
			continue
		}
		t.Run(m.name, func(t *testing.T) { fn(t, m) })
	}
}

// pollNoLease is the mode where a writer holding a finished-looking file
// open cannot be seen at all (a network share with no lease probe): there
// only the quiet period, which tests keep short, stands between it and the
// recipient. The README says so.
const pollNoLease = "poll-nolease"

// A writer holding the file open pauses mid-write for longer than the quiet
// period (issue 13's first report): the half file is never sent.
func TestPauseMidWriteWriterKeepsOpen(t *testing.T) {
	forModes(t, func(t *testing.T, m readinessMode) {
		env, rec := startReady(t, m, nil, nil, nil)
		rel := "alice@example.com/pause.pdf"
		want := testPDF(t, 300_000)
		f := openWriter(t, env, rel)
		f.Write(want[:len(want)/2])
		declined(t, rec, rel, 3)
		noScanYet(t, env)
		f.Write(want[len(want)/2:])
		f.Close()
		oneScanEquals(t, env, rel, want)
	})
}

// A writer that closes between its two halves (open, write, close, pause,
// reopen, append): no writer signal is left, the PDF check holds it back.
func TestPauseMidWriteWriterReopens(t *testing.T) {
	forModes(t, func(t *testing.T, m readinessMode) {
		env, rec := startReady(t, m, nil, nil, nil)
		rel := "alice@example.com/reopen.pdf"
		want := testPDF(t, 300_000)
		env.write(rel, want[:len(want)/2])
		declined(t, rec, rel, 3, waitIncomplete)
		noScanYet(t, env)
		f, err := os.OpenFile(filepath.Join(env.dir, filepath.FromSlash(rel)), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(want[len(want)/2:])
		f.Close()
		oneScanEquals(t, env, rel, want)
	})
}

// An empty placeholder, then the content (issue 13's second report): the
// empty file waits instead of failing.
func TestEmptyPlaceholderThenContent(t *testing.T) {
	forModes(t, func(t *testing.T, m readinessMode) {
		env, rec := startReady(t, m, nil, nil, nil)
		rel := "alice@example.com/placeholder.pdf"
		env.write(rel, nil)
		declined(t, rec, rel, 3, waitEmpty)
		want := sample(t, "sample.pdf")
		env.write(rel, want)
		oneScanEquals(t, env, rel, want)
	})
}

// A writer writes what looks like a finished PDF, keeps the file open over
// a pause and then appends an incremental update: only the writer signals
// (close-write in watch mode, the lease probe in both) can tell.
func TestWriterKeepsCompleteLookingFileOpen(t *testing.T) {
	forModes(t, func(t *testing.T, m readinessMode) {
		env, rec := startReady(t, m, nil, nil, nil)
		rel := "alice@example.com/update.pdf"
		first := sample(t, "sample.pdf")
		update := []byte("1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\nstartxref\n546\n%%EOF\n")
		want := append(append([]byte{}, first...), update...)
		f := openWriter(t, env, rel)
		f.Write(first)
		declined(t, rec, rel, 3, waitWriting, waitOpen)
		noScanYet(t, env)
		f.Write(update)
		f.Close()
		oneScanEquals(t, env, rel, want)
	}, pollNoLease)
}

// A PDF and a JPEG cut short and never finished go to failed/ after the
// limit with a reason that says so, and are never sent.
func TestCutShortNeverFinished(t *testing.T) {
	forModes(t, func(t *testing.T, m readinessMode) {
		env, rec := startReady(t, m, nil, func(c *FolderConfig) { c.IncompleteLimit = 700 * time.Millisecond }, nil)
		pdf, jpg := testPDF(t, 20_000), sample(t, "sample.jpg")
		env.write("alice@example.com/cut.pdf", pdf[:len(pdf)*2/3])
		env.write("alice@example.com/cut.jpg", jpg[:len(jpg)*2/3])
		for _, rel := range []string{"alice@example.com/cut.pdf", "alice@example.com/cut.jpg"} {
			r := env.failedWith(rel)
			if !strings.Contains(r, "never became complete") {
				t.Errorf("%s: reason %q", rel, r)
			}
			if rec.total(rel, waitIncomplete) < 2 {
				t.Errorf("%s failed without waiting (%s)", rel, rec)
			}
		}
		if n := env.enq.count(spool.SourceScan); n != 0 {
			t.Fatalf("%d truncated files sent", n)
		}
		waitFor(t, waitLong, "failure notices", func() bool { return env.enq.count(spool.SourceNotice) == 2 })
	})
}

// A writer that never closes the file goes to failed/ after the limit too.
func TestWriterNeverClosesFails(t *testing.T) {
	forModes(t, func(t *testing.T, m readinessMode) {
		env, _ := startReady(t, m, nil, func(c *FolderConfig) { c.IncompleteLimit = 700 * time.Millisecond }, nil)
		rel := "alice@example.com/held.jpg"
		f := openWriter(t, env, rel)
		f.Write(sample(t, "sample.jpg"))
		r := env.failedWith(rel)
		if !strings.Contains(r, "still open for writing") {
			t.Errorf("reason %q", r)
		}
		if n := env.enq.count(spool.SourceScan); n != 0 {
			t.Fatalf("%d messages", n)
		}
	}, pollNoLease)
}

// appendingSpool appends to the scan file while its first Enqueue runs,
// before the spool reads the body.
type appendingSpool struct {
	*fakeSpool
	path  string
	extra []byte
	once  sync.Once
}

func (a *appendingSpool) Enqueue(ctx context.Context, req spool.EnqueueRequest, body io.Reader) (string, error) {
	if req.Source.Kind == spool.SourceScan {
		a.once.Do(func() { appendFile(a.path, a.extra) })
	}
	return a.fakeSpool.Enqueue(ctx, req, body)
}

// holdingSpool is a fake spool that can hold messages.
type holdingSpool struct {
	*fakeSpool
	mu   sync.Mutex
	held map[string]string
}

func (h *holdingSpool) Hold(ctx context.Context, id, reason string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held[id] = reason
	return nil
}

// A file appended to after its enqueue started is not enqueued in that
// state; it is picked up again and sent once, complete.
func TestAppendedAfterEnqueueStarted(t *testing.T) {
	rel := "alice@example.com/append.pdf"
	first := sample(t, "sample.pdf")
	extra := []byte("% appended\n%%EOF\n")
	want := append(append([]byte{}, first...), extra...)

	t.Run("before the body is read", func(t *testing.T) {
		forModes(t, func(t *testing.T, m readinessMode) {
			as := &appendingSpool{fakeSpool: newFakeSpool(), extra: extra}
			env, _ := startReady(t, m, as, nil, nil)
			as.path = filepath.Join(env.dir, filepath.FromSlash(rel))
			env.enq = as.fakeSpool
			env.write(rel, first)
			oneScanEquals(t, env, rel, want)
		})
	})
	t.Run("after the message was built, before the commit", func(t *testing.T) {
		forModes(t, func(t *testing.T, m readinessMode) {
			var once sync.Once
			var dir string
			env, _ := startReady(t, m, nil, nil, func(w *Watcher) {
				w.beforeEOFHook = func(r string) {
					once.Do(func() { appendFile(filepath.Join(dir, filepath.FromSlash(r)), extra) })
				}
			})
			dir = env.dir
			env.write(rel, first)
			oneScanEquals(t, env, rel, want)
		})
	})
	t.Run("right after the commit", func(t *testing.T) {
		hs := &holdingSpool{fakeSpool: newFakeSpool(), held: map[string]string{}}
		var once sync.Once
		var dir string
		env := start(t, hs, nil, func(w *Watcher) {
			w.afterCommitHook = func(r string) error {
				once.Do(func() { appendFile(filepath.Join(dir, filepath.FromSlash(r)), extra) })
				return nil
			}
		})
		env.enq = hs.fakeSpool
		dir = env.dir
		env.write(rel, first)
		waitFor(t, waitLong, "sent again and moved", func() bool {
			return env.enq.count(spool.SourceScan) == 2 && env.exists("processed/"+rel)
		})
		msgs := env.enq.messages(spool.SourceScan)
		hs.mu.Lock()
		_, firstHeld := hs.held[msgs[0].id]
		_, secondHeld := hs.held[msgs[1].id]
		hs.mu.Unlock()
		if !firstHeld || secondHeld {
			t.Errorf("held: first %v second %v; want only the first (superseded) held", firstHeld, secondHeld)
		}
		if got := parseMessage(t, msgs[1].body).attachment; !bytes.Equal(got, want) {
			t.Fatalf("second message's attachment differs from the finished file")
		}
	})
}

// SMB-like writes through a second process: the writer preallocates the
// file to its final size, writes the last block (with %%EOF) first, pauses
// holding the file open, then fills in the rest with positioned writes, as
// SMB clients and smbd do. Size, tail and even the format check look
// finished during the pause; only the writer signals hold it back.
const writerChildEnv = "SCANFOLDER_WRITER_CHILD"

func TestSMBLikeWriterInSecondProcess(t *testing.T) {
	if os.Getenv(writerChildEnv) != "" {
		smbWriterChild()
		return
	}
	forModes(t, func(t *testing.T, m readinessMode) {
		env, rec := startReady(t, m, nil, nil, nil)
		rel := "alice@example.com/smb.pdf"
		want := testPDF(t, 200_000)
		src, dst := writerPaths(t, env, rel, want)
		cmd := exec.Command(os.Args[0], "-test.run=^TestSMBLikeWriterInSecondProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), writerChildEnv+"=1", "WRITER_SRC="+src, "WRITER_DST="+dst)
		w := startPausedWriter(t, cmd)
		declined(t, rec, rel, 3, waitWriting, waitOpen)
		noScanYet(t, env)
		w.finish()
		oneScanEquals(t, env, rel, want)
	}, pollNoLease)
}

func smbWriterChild() {
	want, err := os.ReadFile(os.Getenv("WRITER_SRC"))
	if err != nil {
		os.Exit(3)
	}
	f, err := os.OpenFile(os.Getenv("WRITER_DST"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		os.Exit(4)
	}
	const block = 64 << 10
	last := (len(want) - 1) / block * block
	f.Truncate(int64(len(want)))
	f.WriteAt(want[last:], int64(last))
	fmt.Println("paused")
	bufio.NewReader(os.Stdin).ReadString('\n')
	for off := 0; off < last; off += block {
		f.WriteAt(want[off:min(off+block, last)], int64(off))
	}
	f.Close()
	fmt.Println("done")
	os.Exit(0)
}

// writerPaths puts want in a source file outside the folder and returns it
// with rel's path in the folder (its directory made), for a writer process
// to copy from one to the other.
func writerPaths(t *testing.T, env *testEnv, rel string, want []byte) (src, dst string) {
	t.Helper()
	src = filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(src, want, 0o644); err != nil {
		t.Fatal(err)
	}
	dst = filepath.Join(env.dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	return src, dst
}

// pausedWriter is a writer in another process that prints "paused" while
// it holds the file half written, waits for a line on its stdin, writes the
// rest and prints "done".
type pausedWriter struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines *bufio.Scanner
}

// startPausedWriter starts cmd and returns once it has paused; it is killed
// if the test ends first.
func startPausedWriter(t *testing.T, cmd *exec.Cmd) *pausedWriter {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	w := &pausedWriter{t: t, cmd: cmd, stdin: stdin, lines: bufio.NewScanner(stdout)}
	w.waitLine("paused")
	return w
}

func (w *pausedWriter) waitLine(want string) {
	w.t.Helper()
	for w.lines.Scan() {
		if w.lines.Text() == want {
			return
		}
	}
	w.t.Fatalf("writer process ended before %q", want)
}

// finish lets the writer go on and waits until it has written the rest and
// exited.
func (w *pausedWriter) finish() {
	w.t.Helper()
	io.WriteString(w.stdin, "go\n")
	w.waitLine("done")
	if err := w.cmd.Wait(); err != nil {
		w.t.Fatalf("writer process: %v", err)
	}
}

// The same through a shell: dd writes the first half through a descriptor
// the shell holds open until told to go on, then the rest.
func TestShellWriterHoldsDescriptor(t *testing.T) {
	if _, err := exec.LookPath("dd"); err != nil {
		t.Skip("no dd")
	}
	forModes(t, func(t *testing.T, m readinessMode) {
		env, rec := startReady(t, m, nil, nil, nil)
		rel := "alice@example.com/dd.pdf"
		want := testPDF(t, 100_000)
		src, dst := writerPaths(t, env, rel, want)
		half := strconv.Itoa(len(want) / 2)
		script := `exec 3<>"$2"
dd if="$1" bs=` + half + ` count=1 status=none >&3
echo paused
read x
dd if="$1" bs=` + half + ` skip=1 status=none >&3
exec 3>&-
echo done`
		w := startPausedWriter(t, exec.Command("sh", "-c", script, "sh", src, dst))
		declined(t, rec, rel, 3)
		noScanYet(t, env)
		w.finish()
		oneScanEquals(t, env, rel, want)
	})
}

// Without lease support (EPERM: spoold neither owns the file nor has
// CAP_LEASE) the watcher warns once and goes on with the other signals.
func TestWriterCheckUnsupportedFallsBack(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	var calls atomic.Int32
	dir := t.TempDir()
	cfg := testConfig(dir)
	w, err := New([]FolderConfig{cfg}, newFakeSpool(), Options{Logger: newSyncLogger(&logs, &mu), Hostname: "spoold.test"})
	if err != nil {
		t.Fatal(err)
	}
	enq := w.enq.(*fakeSpool)
	w.writerCheck = func(*os.File) (bool, bool, error) {
		calls.Add(1)
		return false, true, errors.New("operation not permitted")
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	env := &testEnv{t: t, dir: dir, w: w, enq: enq}
	watchedDir(t, env, "alice@example.com")
	env.write("alice@example.com/a.pdf", sample(t, "sample.pdf"))
	env.write("alice@example.com/b.pdf", sample(t, "sample.pdf"))
	waitFor(t, waitLong, "both sent", func() bool { return enq.count(spool.SourceScan) == 2 })
	mu.Lock()
	n := strings.Count(logs.String(), "cannot check for open writers")
	mu.Unlock()
	if n != 1 || calls.Load() < 2 {
		t.Errorf("warning logged %d times over %d checks; want once", n, calls.Load())
	}
}

// syncWriter serialises writes from concurrent log calls.
type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func newSyncLogger(w io.Writer, mu *sync.Mutex) *slog.Logger {
	return slog.New(slog.NewTextHandler(syncWriter{mu, w}, nil))
}
