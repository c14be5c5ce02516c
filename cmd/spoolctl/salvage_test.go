package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/spooltest"
)

func TestMain(m *testing.M) {
	// spoolctl checks a spool database in a child process of its own
	// binary, here the test binary.
	if len(os.Args) == 3 && os.Args[1] == "verify-spool" {
		os.Exit(Main(context.Background(), os.Args[1:], osDeps()))
	}
	os.Exit(m.Run())
}

// TestSalvageCommand: after spool.db is lost, salvage (stopped daemon)
// re-queues the body as held, reports it, and the spool opens again.
func TestSalvageCommand(t *testing.T) {
	dir := t.TempDir()
	s, err := spool.Open(dir, spool.Options{InlineBodyMax: -1, RescueInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	body := "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: s\r\n\r\nhello\r\n"
	if _, err := s.Enqueue(context.Background(), spool.EnqueueRequest{From: "alice@example.com", To: []string{"bob@example.com"}, Account: "a"}, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.Remove(filepath.Join(dir, spool.DBFile)); err != nil {
		t.Fatal(err)
	}
	wantExit(t, runCLI(t, &deps{}, "salvage", "--data-dir", dir), 2, "--account")
	r := runCLI(t, &deps{}, "salvage", "--data-dir", dir, "--account", "office", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "would re-queue") || !strings.Contains(r.stdout, "1 bodies would be re-queued") {
		t.Fatalf("dry run: %+v", r)
	}
	r = runCLI(t, &deps{}, "salvage", "--data-dir", dir, "--account", "office")
	if r.code != 0 || !strings.Contains(r.stdout, "1 bodies re-queued (held)") || !strings.Contains(r.stdout, "bob@example.com") {
		t.Fatalf("salvage: %+v", r)
	}
	r = runCLI(t, &deps{}, "--spool", dir, "list")
	if r.code != 0 || !strings.Contains(r.stdout, "held") {
		t.Fatalf("list after salvage: %+v", r)
	}
}

// TestOfflineDamagedSpool: --spool on a database whose page tree is damaged
// (bbolt would panic on a goroutine of its own) is refused with a message,
// not a crash; salvage then moves it aside.
func TestOfflineDamagedSpool(t *testing.T) {
	dir := t.TempDir()
	spooltest.FillClosed(t, dir, "a")
	if err := spooltest.PointTwiceAtOnePage(filepath.Join(dir, spool.DBFile)); err != nil {
		t.Fatal(err)
	}
	wantExit(t, runCLI(t, &deps{}, "--spool", dir, "list"), 1, "database is corrupt")
	r := runCLI(t, &deps{}, "salvage", "--data-dir", dir, "--account", "office")
	if r.code != 0 || !strings.Contains(r.stdout, "damaged database kept as") {
		t.Fatalf("salvage: %+v", r)
	}
}
