package spool

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// spoolWithBodies makes a closed spool in a new directory holding inline
// bodies and file bodies, and returns the directory and the IDs.
func spoolWithBodies(t *testing.T, files, inline int) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	clk := newFakeClock()
	s, err := Open(dir, testOpts(clk))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := 0; i < files; i++ {
		body := strings.Repeat(fmt.Sprintf("line %d of a large body\r\n", i), 4000) // > 64 KiB: a file
		ids = append(ids, mustEnqueue(t, s, req("a"), body))
	}
	for i := 0; i < inline; i++ {
		ids = append(ids, mustEnqueue(t, s, req("a"), fmt.Sprintf("small body %d", i)))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, ids
}

// snapshot returns name -> contents of every file below dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMissingOrEmptyDatabaseRefused: a data directory that shows an earlier
// spool (body files, or the spool marker) but has no usable spool.db is
// refused, and nothing in it is touched: recovery would otherwise take every
// body file for an orphan and delete the queue.
func TestMissingOrEmptyDatabaseRefused(t *testing.T) {
	for _, tc := range []struct {
		name          string
		files, inline int
		damage        func(path string) error
	}{
		{"removed, file bodies", 3, 2, os.Remove},
		{"zero length, file bodies", 3, 2, func(p string) error { return os.Truncate(p, 0) }},
		{"removed, inline bodies only", 0, 3, os.Remove},
		{"zero length, inline bodies only", 0, 3, func(p string) error { return os.Truncate(p, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := spoolWithBodies(t, tc.files, tc.inline)
			if err := tc.damage(filepath.Join(dir, DBFile)); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, dir)
			_, err := Open(dir, testOpts(newFakeClock()))
			if !errors.Is(err, ErrNoDatabase) {
				t.Fatalf("Open: %v, want ErrNoDatabase", err)
			}
			for _, want := range []string{DBFile, "salvage"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			if after := snapshot(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("refused Open changed the directory:\nbefore %v\nafter  %v", keys(before), keys(after))
			}
		})
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestNewSpoolInEmptyOrFreshDirectory: with no sign of an earlier spool a
// missing or empty spool.db is a first start (an empty file is what a crash
// during the very first Open leaves).
func TestNewSpoolInEmptyOrFreshDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, DBFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := openTest(t, dir, testOpts(newFakeClock()))
	mustEnqueue(t, s, req("a"), "x")
	if _, err := os.Stat(filepath.Join(dir, markerFile)); err != nil {
		t.Fatalf("spool marker not written: %v", err)
	}
}

// TestMarkerWrittenForExistingSpool: a spool made before the marker existed
// gets one on its next Open, so a later loss of spool.db is noticed even
// when every body is inline.
func TestMarkerWrittenForExistingSpool(t *testing.T) {
	dir, _ := spoolWithBodies(t, 0, 1)
	if err := os.Remove(filepath.Join(dir, markerFile)); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, testOpts(newFakeClock()))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(filepath.Join(dir, markerFile)); err != nil {
		t.Fatalf("marker not written on reopen: %v", err)
	}
}

// TestTruncatedDatabaseNeverFaults truncates a spool of about 256 KiB at
// every page boundary. Each Open either refuses with ErrCorrupt, leaving the
// file and every body untouched, or (where the cut only removed unused space
// at the end) opens with every message intact. It must never fault: bbolt
// maps the file and reading a page past its end is SIGBUS.
func TestTruncatedDatabaseNeverFaults(t *testing.T) {
	src, ids := spoolWithBodies(t, 2, 120)
	data, err := os.ReadFile(filepath.Join(src, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 128<<10 {
		t.Fatalf("test spool is only %d bytes", len(data))
	}
	bodies := snapshot(t, filepath.Join(src, MessagesDir))
	const step = 4096
	refused := 0
	for size := step; size < len(data); size += step {
		dir := t.TempDir()
		if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, DBFile)
		if err := os.Truncate(path, int64(size)); err != nil {
			t.Fatal(err)
		}
		cut, _ := os.ReadFile(path)
		s, err := Open(dir, testOpts(newFakeClock()))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("size %d: Open: %v, want ErrCorrupt", size, err)
			}
			refused++
			if after, _ := os.ReadFile(path); !bytes.Equal(after, cut) {
				t.Fatalf("size %d: refused database was modified", size)
			}
			if got := snapshot(t, filepath.Join(dir, MessagesDir)); fmt.Sprint(got) != fmt.Sprint(bodies) {
				t.Fatalf("size %d: body files changed", size)
			}
			continue
		}
		for _, id := range ids {
			if _, err := s.Get(t.Context(), id); err != nil {
				t.Errorf("size %d: opened, but message %s: %v", size, id, err)
			}
		}
		s.Close()
	}
	if refused == 0 {
		t.Fatal("no truncation was refused")
	}
	t.Logf("%d of %d truncations refused", refused, len(data)/step-1)
}

// TestOrphanFloodIsQuarantined: more body files without metadata than a crash
// during enqueue could leave are not deleted but moved aside, loudly: they
// more likely mean metadata was lost.
func TestOrphanFloodIsQuarantined(t *testing.T) {
	dir, _ := spoolWithBodies(t, 0, 1)
	msgDir := filepath.Join(dir, MessagesDir)
	var names []string
	for i := 0; i < manyOrphans+1; i++ {
		name := fmt.Sprintf("01ORPHAN%018d.eml", i)
		names = append(names, name)
		if err := os.WriteFile(filepath.Join(msgDir, name), []byte("orphan "+name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	opts := testOpts(newFakeClock())
	opts.Logger = newBufLogger(&logs)
	s := openTest(t, dir, opts)
	_ = s
	for _, name := range names {
		if _, err := os.Stat(filepath.Join(msgDir, name)); err == nil {
			t.Fatalf("%s left in messages/", name)
		}
		b, err := os.ReadFile(filepath.Join(dir, OrphansDir, name))
		if err != nil || string(b) != "orphan "+name {
			t.Fatalf("%s not kept in %s: %v", name, OrphansDir, err)
		}
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), OrphansDir) {
		t.Errorf("quarantine not logged as an error naming %s:\n%s", OrphansDir, logs.String())
	}
}

// TestOpenBodyMissingFile: a body file deleted while the spool runs is
// reported as ErrBodyMissing, which delivery dead-letters, not as a missing
// message.
func TestOpenBodyMissingFile(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, fileOpts(newFakeClock()))
	id := mustEnqueue(t, s, req("a"), "body")
	if err := os.Remove(s.bodyPath(id)); err != nil {
		t.Fatal(err)
	}
	_, err := s.OpenBody(id)
	if !errors.Is(err, ErrBodyMissing) || errors.Is(err, ErrNotFound) {
		t.Fatalf("OpenBody: %v, want ErrBodyMissing (and not ErrNotFound)", err)
	}
	if _, err := s.OpenBody("01NOSUCHMESSAGE00000000000"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OpenBody of an unknown message: %v, want ErrNotFound", err)
	}
}

func newBufLogger(b *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, nil))
}

// TestOlderDatabaseRestoreKeepsNewerBodies: spool.db put back from a backup
// older than messages/ (a partial restore). The bodies of messages accepted
// after the backup are not deleted: they are moved to orphaned/ for salvage.
func TestOlderDatabaseRestoreKeepsNewerBodies(t *testing.T) {
	dir := t.TempDir()
	clk := newFakeClock()
	s := openTest(t, dir, fileOpts(clk))
	mustEnqueue(t, s, req("a"), salvageBody(""))
	s.Close()
	backup, err := os.ReadFile(filepath.Join(dir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, fileOpts(clk))
	var later []string
	for i := 0; i < 5; i++ {
		later = append(later, mustEnqueue(t, s, req("a"), salvageBody("")))
	}
	s.Close()
	if err := os.WriteFile(filepath.Join(dir, DBFile), backup, 0o600); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, fileOpts(clk))
	for _, id := range later {
		if _, err := os.Stat(filepath.Join(dir, OrphansDir, id+".eml")); err != nil {
			t.Errorf("body of %s accepted after the backup was not kept: %v", id, err)
		}
	}
	s.Close()
	rep, err := Salvage(dir, salvageOpts())
	if err != nil || len(rep.Bodies) != len(later) {
		t.Fatalf("salvage of the kept bodies: %+v, %v", rep, err)
	}
}
