package scanfolder

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/spoold/spoold/spool"
)

// openSpool opens the real spool in dir.
func openSpool(t testing.TB, dir string) *spool.Spool {
	t.Helper()
	s, err := spool.Open(dir, spool.Options{Logger: quietLogger(), LockTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("spool.Open: %v", err)
	}
	return s
}

func spoolMessages(t testing.TB, s *spool.Spool) []*spool.Message {
	t.Helper()
	p, err := s.List(context.Background(), spool.Filter{}, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	return p.Messages
}

// TestRealSpoolCrashBetweenCommitAndMove commits through the real spool,
// "crashes" before the move (watcher abandoned, spool closed), then restarts
// both: exactly one message, and the scan ends in processed/.
func TestRealSpoolCrashBetweenCommitAndMove(t *testing.T) {
	spoolDir, scanDir := t.TempDir(), t.TempDir()
	s := openSpool(t, spoolDir)
	committed := make(chan struct{}, 1)
	env := startIn(t, scanDir, s, nil, func(w *Watcher) {
		w.afterCommitHook = func(string) error {
			committed <- struct{}{}
			return errors.New("simulated crash after commit")
		}
	})
	data := sample(t, "sample.pdf")
	env.write("alice@example.com/scan.pdf", data)
	select {
	case <-committed:
	case <-time.After(waitLong):
		t.Fatal("no commit")
	}
	env.w.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !env.exists("alice@example.com/scan.pdf") {
		t.Fatal("file moved despite the crash before the move")
	}

	s = openSpool(t, spoolDir)
	defer s.Close()
	env2 := startIn(t, scanDir, s, nil, nil)
	waitFor(t, waitLong, "moved after restart", func() bool { return env2.exists("processed/alice@example.com/scan.pdf") })
	env2.w.Close()
	checkOneStoredScan(t, s, data)
}

func checkOneStoredScan(t *testing.T, s *spool.Spool, data []byte) {
	t.Helper()
	msgs := spoolMessages(t, s)
	if len(msgs) != 1 {
		t.Fatalf("%d messages in the spool, want exactly 1", len(msgs))
	}
	m := msgs[0]
	if m.Source.Kind != spool.SourceScan || m.Source.Path != "alice@example.com/scan.pdf" || m.Account != "outbox" {
		t.Errorf("stored message %+v", m)
	}
	f, err := s.OpenBody(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	body, _ := io.ReadAll(f)
	if got := parseMessage(t, body).attachment; !bytes.Equal(got, data) {
		t.Errorf("stored attachment differs from the file")
	}
}

const childEnv = "SCANFOLDER_CRASH_CHILD"

// TestRealSpoolSIGKILLBetweenCommitAndMove runs a watcher in a child process
// that blocks right after the spool commit and kills it with SIGKILL there;
// a restarted watcher must only move the file.
func TestRealSpoolSIGKILLBetweenCommitAndMove(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		crashChild()
		return
	}
	spoolDir, scanDir := t.TempDir(), t.TempDir()
	data := sample(t, "sample.pdf")
	os.MkdirAll(filepath.Join(scanDir, "alice@example.com"), 0o755)
	if err := os.WriteFile(filepath.Join(scanDir, "alice@example.com", "scan.pdf"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "committed")
	cmd := exec.Command(os.Args[0], "-test.run=^TestRealSpoolSIGKILLBetweenCommitAndMove$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=1", "CHILD_SPOOL="+spoolDir, "CHILD_SCANS="+scanDir, "CHILD_MARKER="+marker)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(60 * time.Second)
	for {
		if _, err := os.Stat(marker); err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("child exited before committing: %v\n%s", err, out.String())
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("child did not commit in time\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	if _, err := os.Stat(filepath.Join(scanDir, "alice@example.com", "scan.pdf")); err != nil {
		t.Fatalf("file gone after the kill: %v", err)
	}

	s := openSpool(t, spoolDir)
	defer s.Close()
	env := startIn(t, scanDir, s, nil, nil)
	waitFor(t, waitLong, "moved after restart", func() bool { return env.exists("processed/alice@example.com/scan.pdf") })
	env.w.Close()
	checkOneStoredScan(t, s, data)
}

// crashChild is the child side: watch, commit, write the marker, hang.
func crashChild() {
	s, err := spool.Open(os.Getenv("CHILD_SPOOL"), spool.Options{Logger: quietLogger()})
	if err != nil {
		os.Exit(3)
	}
	cfg := testConfig(os.Getenv("CHILD_SCANS"))
	w, err := New([]FolderConfig{cfg}, s, Options{Logger: quietLogger(), Hostname: "spoold.test"})
	if err != nil {
		os.Exit(4)
	}
	w.afterCommitHook = func(string) error {
		os.WriteFile(os.Getenv("CHILD_MARKER"), []byte("1"), 0o644)
		select {} // wait here for SIGKILL
	}
	if err := w.Start(context.Background()); err != nil {
		os.Exit(5)
	}
	time.Sleep(2 * time.Minute)
	os.Exit(6)
}

// TestRealSpoolAppendBeforeCommit appends to the scan after its message was
// built and before the real spool sees the body's end: the spool stores
// nothing for that version (no half-built message, no orphan), and the
// finished file is stored once, byte for byte. A 200 KB file makes the
// spool take its body-file path.
func TestRealSpoolAppendBeforeCommit(t *testing.T) {
	for _, size := range []int{749, 200_000} {
		spoolDir, scanDir := t.TempDir(), t.TempDir()
		s := openSpool(t, spoolDir)
		var once bool
		first := testPDF(t, size)
		extra := []byte("% appended\n%%EOF\n")
		want := append(append([]byte{}, first...), extra...)
		env := startIn(t, scanDir, s, nil, func(w *Watcher) {
			w.beforeEOFHook = func(rel string) {
				if !once { // workers are many, but one file: no race on once
					once = true
					appendFile(filepath.Join(scanDir, filepath.FromSlash(rel)), extra)
				}
			}
		})
		env.write("alice@example.com/scan.pdf", first)
		waitFor(t, waitLong, "moved", func() bool { return env.exists("processed/alice@example.com/scan.pdf") })
		env.w.Close()
		checkOneStoredScan(t, s, want)
		ents, _ := os.ReadDir(filepath.Join(spoolDir, "messages"))
		for _, e := range ents {
			if size < 64<<10 {
				t.Errorf("inline-sized scan left a body file %s", e.Name())
			}
		}
		if size >= 64<<10 && len(ents) != 1 {
			t.Errorf("%d body files, want 1", len(ents))
		}
		s.Close()
	}
}
