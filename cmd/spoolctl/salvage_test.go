package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spoold/spoold/spool"
)

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
