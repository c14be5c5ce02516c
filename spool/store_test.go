package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestCheckAfterClose: bbolt's page check (the conformance suite's
// ClosedAndCancelled covers every Backend method after Close).
func TestCheckAfterClose(t *testing.T) {
	s, err := Open(t.TempDir(), testOpts(newFakeClock()))
	if err != nil {
		t.Fatal(err)
	}
	mustEnqueue(t, s, req("a"), "x")
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Check after Close: %v, want ErrClosed", err)
	}
}

func TestCloseWaitsForInFlightEnqueues(t *testing.T) {
	s, err := Open(t.TempDir(), Options{Logger: quietLogger(), RescueInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	dir := s.Dir()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var acked []string
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				id, err := s.Enqueue(context.Background(), req("a"), strings.NewReader("x"))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
			}
		}()
	}
	waitFor(t, "some enqueues", 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) > 5 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s2 := openTest(t, dir, Options{Logger: quietLogger(), RescueInterval: -1})
	for _, id := range acked {
		mustGet(t, s2, id)
	}
}

func TestRecoveryOnOpen(t *testing.T) {
	clk := newFakeClock()
	dir := t.TempDir()
	s := openTest(t, dir, fileOpts(clk)) // the test deletes body files
	ctx := context.Background()
	gone := mustEnqueue(t, s, req("a"), "will lose body")
	deadGone := makeInState(t, s, clk, StateDead)
	kept := mustEnqueue(t, s, req("a"), "kept")
	leased := makeInState(t, s, clk, StateActive)
	deliveredID := makeInState(t, s, clk, StateDelivered)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	msgDir := filepath.Join(dir, MessagesDir)
	for _, id := range []string{gone, deadGone} {
		if err := os.Remove(filepath.Join(msgDir, id+".eml")); err != nil {
			t.Fatal(err)
		}
	}
	orphan := filepath.Join(msgDir, "01ORPHAN000000000000000000.eml")
	tmp := filepath.Join(msgDir, "01TMP0000000000000000000000.eml.1234.tmp")
	staleDelivered := filepath.Join(msgDir, deliveredID+".eml")
	for _, p := range []string{orphan, tmp, staleDelivered} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	clk.Add(6 * time.Minute) // past the lease
	s = openTest(t, dir, testOpts(clk))
	for _, p := range []string{orphan, tmp, staleDelivered} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not removed from messages/ by recovery: %v", filepath.Base(p), err)
		}
	}
	// A body no message names is kept aside, never deleted.
	if b, err := os.ReadFile(filepath.Join(dir, OrphansDir, filepath.Base(orphan))); err != nil || string(b) != "x" {
		t.Errorf("orphan body not kept in %s: %v", OrphansDir, err)
	}
	if m := mustGet(t, s, gone); m.State != StateDead || m.Reason != "body missing" {
		t.Errorf("missing body: %s reason %q", describe(m), m.Reason)
	}
	if m := mustGet(t, s, deadGone); m.State != StateDead || !strings.HasPrefix(m.Reason, "body missing") {
		t.Errorf("dead missing body: reason %q", m.Reason)
	}
	if m := mustGet(t, s, kept); m.State != StateQueued || readBody(t, s, kept) != "kept" {
		t.Errorf("intact message changed: %s", describe(m))
	}
	if m := mustGet(t, s, leased); m.State != StateQueued || m.LeaseOwner != "" {
		t.Errorf("expired lease not requeued: %s", describe(m))
	}
	if m := mustGet(t, s, deliveredID); m.State != StateDelivered {
		t.Errorf("delivered record: %s", describe(m))
	}
	if err := s.Requeue(ctx, gone); !errors.Is(err, ErrNotFound) {
		t.Errorf("Requeue of body-missing message: %v, want ErrNotFound", err)
	}
	// Recovery is idempotent: reopening changes nothing more.
	s.Close()
	s = openTest(t, dir, testOpts(clk))
	if m := mustGet(t, s, deadGone); strings.Count(m.Reason, "body missing") != 1 {
		t.Errorf("reason grows on reopen: %q", m.Reason)
	}
}

func TestCorruptDatabase(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, testOpts(newFakeClock()))
	mustEnqueue(t, s, req("a"), "x")
	s.Close()
	path := filepath.Join(dir, DBFile)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Scribble over both meta pages (pages 0 and 1).
	pageSize := os.Getpagesize()
	for _, off := range []int{16, pageSize + 16} {
		copy(data[off:], bytes.Repeat([]byte{0xAB}, 64))
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, testOpts(newFakeClock()))
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of corrupt db: %v, want ErrCorrupt", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(after, data) {
		t.Fatal("corrupt database file was modified")
	}
	// Garbage that is not a database at all.
	if err := os.WriteFile(path, bytes.Repeat([]byte("not a db "), 2000), 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	if _, err := Open(dir, testOpts(newFakeClock())); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of garbage: %v, want ErrCorrupt", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
		t.Fatal("garbage database file was modified")
	}
}

func TestReadOnly(t *testing.T) {
	dir := t.TempDir()
	clk := newFakeClock()
	s := openTest(t, dir, testOpts(clk))
	id := mustEnqueue(t, s, req("a"), "x")
	s.Close()
	opts := testOpts(clk)
	opts.ReadOnly = true
	ro := openTest(t, dir, opts)
	ctx := context.Background()
	if m := mustGet(t, ro, id); m.State != StateQueued {
		t.Fatal(describe(m))
	}
	if got := readBody(t, ro, id); got != "x" {
		t.Fatalf("body %q", got)
	}
	if _, err := ro.Enqueue(ctx, req("a"), strings.NewReader("x")); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Enqueue: %v", err)
	}
	if err := ro.Hold(ctx, id, ""); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Hold: %v", err)
	}
	if _, err := ro.Claim(ctx, clk.Now(), 1, "w"); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Claim: %v", err)
	}
	if err := ro.AccountPut(ctx, "a", "k", nil); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("AccountPut: %v", err)
	}
	if _, err := Open(t.TempDir(), opts); err == nil {
		t.Fatal("read-only open of an empty dir succeeded")
	}
}

func TestLockInProcess(t *testing.T) {
	dir := t.TempDir()
	openTest(t, dir, testOpts(newFakeClock()))
	opts := testOpts(newFakeClock())
	opts.LockTimeout = 100 * time.Millisecond
	_, err := Open(dir, opts)
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second Open: %v, want ErrInUse", err)
	}
	want := "spool " + filepath.Join(dir, DBFile) + " is in use by another process"
	if err.Error() != want {
		t.Fatalf("error text %q, want %q", err, want)
	}
}

// faultFS injects an error at one named step of the Enqueue path.
type faultFS struct {
	osFS
	failAt string // "create", "write", "sync", "close", "rename" (or link), "syncdir"
	err    error
	noAnon bool // act like a system without O_TMPFILE: bodies use named temp files
}

func (f *faultFS) CreateAnon(dir string) (anonFile, error) {
	if f.noAnon {
		return nil, fmt.Errorf("faultFS: %w", errors.ErrUnsupported)
	}
	if f.failAt == "create" {
		return nil, &os.PathError{Op: "open", Path: dir, Err: f.err}
	}
	file, err := f.osFS.CreateAnon(dir)
	if err != nil {
		return nil, err
	}
	return faultAnon{file.(osAnonFile), f}, nil
}

// faultAnon injects the same faults into an unnamed temp file; its Link is
// the "rename" step.
type faultAnon struct {
	osAnonFile
	fs *faultFS
}

func (f faultAnon) Write(p []byte) (int, error) { return faultFile{f.File, f.fs}.Write(p) }
func (f faultAnon) Sync() error                 { return faultFile{f.File, f.fs}.Sync() }
func (f faultAnon) Close() error                { return faultFile{f.File, f.fs}.Close() }

func (f faultAnon) Link(newpath string) error {
	if f.fs.failAt == "rename" {
		return &os.LinkError{Op: "link", Old: f.Name(), New: newpath, Err: f.fs.err}
	}
	return f.osAnonFile.Link(newpath)
}

type faultFile struct {
	*os.File
	fs *faultFS
}

func (f faultFile) Write(p []byte) (int, error) {
	if f.fs.failAt == "write" {
		return 0, &os.PathError{Op: "write", Path: f.Name(), Err: f.fs.err}
	}
	return f.File.Write(p)
}

func (f faultFile) Sync() error {
	if f.fs.failAt == "sync" {
		return &os.PathError{Op: "sync", Path: f.Name(), Err: f.fs.err}
	}
	return f.File.Sync()
}

func (f faultFile) Close() error {
	if f.fs.failAt == "close" {
		f.File.Close()
		return &os.PathError{Op: "close", Path: f.Name(), Err: f.fs.err}
	}
	return f.File.Close()
}

func (f *faultFS) CreateTemp(dir, pattern string) (tempFile, error) {
	if f.failAt == "create" {
		return nil, &os.PathError{Op: "open", Path: dir, Err: f.err}
	}
	file, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return faultFile{file, f}, nil
}

func (f *faultFS) Rename(o, n string) error {
	if f.failAt == "rename" {
		return &os.LinkError{Op: "rename", Old: o, New: n, Err: f.err}
	}
	return os.Rename(o, n)
}

func (f *faultFS) SyncDir(dir string) error {
	if f.failAt == "syncdir" {
		return &os.PathError{Op: "sync", Path: dir, Err: f.err}
	}
	return osFS{}.SyncDir(dir)
}

func TestEnqueueNoSpaceAtEveryStep(t *testing.T) {
	for _, mode := range []string{"unnamed", "named"} {
		for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT} {
			for _, step := range []string{"create", "write", "sync", "close", "rename", "syncdir", "commit"} {
				t.Run(mode+"/"+errno.Error()+"/"+step, func(t *testing.T) {
					testEnqueueNoSpaceAt(t, mode == "named", errno, step)
				})
			}
		}
	}
}

func testEnqueueNoSpaceAt(t *testing.T, named bool, errno syscall.Errno, step string) {
	ffs := &faultFS{err: errno, noAnon: named}
	s, err := open(t.TempDir(), testOpts(newFakeClock()), ffs)
	if err != nil {
		t.Fatal(err)
	}
	if s.anon == named {
		t.Fatalf("spool uses unnamed temp files: %v, want %v", s.anon, !named)
	}
	registerCheck(t, s)
	ok := mustEnqueue(t, s, req("a"), "before the disk filled")
	ffs.failAt = step
	if step == "commit" {
		s.beforeCommit = func() error { return &os.PathError{Op: "write", Path: s.dbPath, Err: errno} }
	}
	_, err = s.Enqueue(context.Background(), req("a"), strings.NewReader(strings.Repeat("x", 100000)))
	if !errors.Is(err, ErrNoSpace) || !errors.Is(err, errno) {
		t.Fatalf("err = %v, want ErrNoSpace wrapping %v", err, errno)
	}
	if n := countBodies(t, s); n != 1 {
		t.Fatalf("%d files in messages/, want only the earlier message", n)
	}
	st, _ := s.Stats(context.Background())
	if st[StateQueued] != 1 {
		t.Fatalf("queued = %d, want 1", st[StateQueued])
	}
	if readBody(t, s, ok) != "before the disk filled" {
		t.Fatal("earlier message damaged")
	}
	// Space comes back: enqueue works again.
	ffs.failAt, s.beforeCommit = "", nil
	mustEnqueue(t, s, req("a"), "after")
}

// TestEnqueueNoSpaceTmpfs fills a real, tiny tmpfs. It needs root and mount.
func TestEnqueueNoSpaceTmpfs(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=2m"); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v): real-filesystem ENOSPC test skipped; injected ENOSPC tests still run", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	dir := filepath.Join(mnt, "spool")
	s := openTest(t, dir, testOpts(newFakeClock()))
	ctx := context.Background()
	var acked []string
	var err error
	for i := 0; i < 1000; i++ {
		var id string
		id, err = s.Enqueue(ctx, req("a"), io.LimitReader(zeroReader{}, 64<<10))
		if err != nil {
			break
		}
		acked = append(acked, id)
	}
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("filling a 2 MB tmpfs: err = %v after %d messages, want ErrNoSpace", err, len(acked))
	}
	if n := countBodies(t, s); n != len(acked) {
		t.Fatalf("%d files for %d acknowledged messages", n, len(acked))
	}
	for _, id := range acked {
		if m := mustGet(t, s, id); m.Size != 64<<10 {
			t.Fatalf("%s size %d", id, m.Size)
		}
	}
	// Freeing space makes the spool usable again.
	if err := s.Delete(ctx, acked[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, req("a"), strings.NewReader("small")); err != nil {
		t.Fatalf("enqueue after freeing space: %v", err)
	}
}

// TestBodyStorage checks where bodies live: up to InlineBodyMax in the
// database, committed and deleted with their record; larger ones, or all
// with InlineBodyMax < 0, in files.
func TestBodyStorage(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s := openTest(t, t.TempDir(), testOpts(clk))
	small := "Subject: s\r\n\r\n" + strings.Repeat("s", 1000)
	edge := strings.Repeat("e", MaxInlineBody)
	large := strings.Repeat("l", MaxInlineBody+1)
	ids := map[string]string{}
	empty := mustEnqueue(t, s, req("a"), "")
	if m := mustGet(t, s, empty); !m.BodyInline || readBody(t, s, empty) != "" {
		t.Fatalf("empty body: inline=%v", m.BodyInline)
	}
	if err := s.Delete(ctx, empty); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"small": small, "edge": edge, "large": large} {
		ids[name] = mustEnqueue(t, s, req("a"), body)
		if got := readBody(t, s, ids[name]); got != body {
			t.Fatalf("%s: body of %d bytes read back as %d bytes", name, len(body), len(got))
		}
	}
	for name, wantInline := range map[string]bool{"small": true, "edge": true, "large": false} {
		m := mustGet(t, s, ids[name])
		if m.BodyInline != wantInline || bodyFileExistsOnDisk(s, m.ID) == wantInline {
			t.Errorf("%s (%d bytes): inline=%v file=%v, want inline=%v", name, m.Size, m.BodyInline, bodyFileExistsOnDisk(s, m.ID), wantInline)
		}
	}
	if n := countFiles(t, s.msgDir); n != 1 {
		t.Fatalf("%d files in messages/, want 1", n)
	}

	// Delivered: the inline body goes in the same commit.
	msgs, err := s.Claim(ctx, clk.Now(), 10, "w")
	if err != nil || len(msgs) != 3 {
		t.Fatalf("Claim: %d, %v", len(msgs), err)
	}
	if err := s.StartAttempt(ctx, ids["small"], "w", clk.Now(), clk.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delivered(ctx, ids["small"], "w", Result{}); err != nil {
		t.Fatal(err)
	}
	if m := mustGet(t, s, ids["small"]); m.BodyInline || bodyStored(s, m.ID) {
		t.Fatalf("delivered: inline=%v stored=%v, want the body gone", m.BodyInline, bodyStored(s, m.ID))
	}
	if _, err := s.OpenBody(ids["small"]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OpenBody after delivery: %v, want ErrNotFound", err)
	}
	// Dead keeps it; Requeue finds it; Delete removes it.
	if err := s.Dead(ctx, ids["edge"], "w", Result{Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Requeue(ctx, ids["edge"]); err != nil {
		t.Fatalf("Requeue of a dead inline message: %v", err)
	}
	if err := s.Hold(ctx, ids["edge"], "test"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, ids["edge"]); err != nil {
		t.Fatal(err)
	}
	if bodyStored(s, ids["edge"]) {
		t.Fatal("Delete left the inline body behind")
	}
	if n := countBodies(t, s); n != 1 {
		t.Fatalf("%d bodies stored, want only the large one's", n)
	}

	// InlineBodyMax < 0: files only; a reopen (which also drops the
	// database's page mappings) keeps both kinds readable.
	kept := mustEnqueue(t, s, req("a"), small)
	dir := s.Dir()
	s.Close()
	opts := testOpts(clk)
	opts.InlineBodyMax = -1
	s = openTest(t, dir, opts)
	id := mustEnqueue(t, s, req("a"), small)
	if m := mustGet(t, s, id); m.BodyInline || !bodyFileExistsOnDisk(s, id) {
		t.Fatalf("InlineBodyMax -1: inline=%v file=%v", m.BodyInline, bodyFileExistsOnDisk(s, id))
	}
	if got := readBody(t, s, ids["large"]); got != large {
		t.Fatal("large body changed across reopen")
	}
	if got := readBody(t, s, kept); got != small {
		t.Fatal("inline body changed across reopen")
	}
}
