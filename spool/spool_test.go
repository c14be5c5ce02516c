package spool

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestStorageLayout checks what the embedded spool keeps on disk for an
// accepted message (the conformance suite's Lifecycle runs the message
// through its states on bbolt).
func TestStorageLayout(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, testOpts(newFakeClock()))
	id := mustEnqueue(t, s, req("outbox", "a@example.com", "b@example.com"), "Subject: hi\r\n\r\nbody\r\n")
	if len(id) != idLen {
		t.Fatalf("id %q: want length %d", id, idLen)
	}
	// A small body is stored inline, in the database.
	if m := mustGet(t, s, id); !m.BodyInline || bodyFileExistsOnDisk(s, id) {
		t.Fatalf("small body: inline=%v file=%v, want inline only", m.BodyInline, bodyFileExistsOnDisk(s, id))
	}
	// Bodies hold mail: owner-only, like the database. On Linux large ones
	// are written as unnamed O_TMPFILE files, which must get the same mode.
	if runtime.GOOS == "linux" && !s.anon {
		t.Error("spool does not use O_TMPFILE bodies on Linux")
	}
	if fi, err := os.Stat(filepath.Join(dir, DBFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: mode %v err %v; want 0600", DBFile, fi.Mode().Perm(), err)
	}
	if fi, err := os.Stat(filepath.Join(dir, MessagesDir)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("messages dir mode: %v %v", fi.Mode().Perm(), err)
	}
}

func countFiles(t fataler, dir string) int {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}
