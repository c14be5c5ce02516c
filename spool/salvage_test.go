package spool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func salvageBody(extraHeaders string) string {
	return "Received: from mfd ([192.0.2.7])\r\n\tby relay.example (spoold) with ESMTP\r\n\tfor <bcc@example.com>; Mon, 3 Mar 2025 09:00:00 +0000\r\n" +
		"From: Alice <alice@example.com>\r\nTo: bob@example.com, Carol <carol@example.com>\r\n" + extraHeaders +
		"Subject: scan\r\n\r\n" + strings.Repeat("scan data line\r\n", 6000)
}

func salvageOpts() SalvageOptions {
	o := testOpts(newFakeClock())
	return SalvageOptions{Account: "outbox", Spool: o, Now: func() time.Time { return time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC) }}
}

// TestSalvageAfterLostDatabase: spool.db removed; salvage re-queues every
// body file as a held message with the envelope from its header and the
// same bytes, and the directory opens normally afterwards.
func TestSalvageAfterLostDatabase(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, fileOpts(newFakeClock()))
	want := map[string]string{}
	for _, extra := range []string{"", "Cc: dave@example.com\r\n"} {
		body := salvageBody(extra)
		id := mustEnqueue(t, s, req("a"), body)
		want[id] = body
	}
	s.Close()
	if err := os.Remove(filepath.Join(dir, DBFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, testOpts(newFakeClock())); !errors.Is(err, ErrNoDatabase) {
		t.Fatalf("Open before salvage: %v", err)
	}

	dry, err := Salvage(dir, func() SalvageOptions { o := salvageOpts(); o.DryRun = true; return o }())
	if err != nil || len(dry.Bodies) != 2 {
		t.Fatalf("dry run: %+v %v", dry, err)
	}
	if _, err := os.Stat(filepath.Join(dir, DBFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dry run created %s: %v", DBFile, err)
	}

	rep, err := Salvage(dir, salvageOpts())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Bodies) != 2 || rep.KeptIn != "" {
		t.Fatalf("report: %+v", rep)
	}
	s = openTest(t, dir, testOpts(newFakeClock()))
	bodies := map[string]bool{}
	for _, b := range rep.Bodies {
		if b.Problem != "" || b.ID == "" {
			t.Fatalf("body %s not re-queued: %q", b.File, b.Problem)
		}
		m := mustGet(t, s, b.ID)
		if m.State != StateHeld || m.Account != "outbox" || m.From != "alice@example.com" {
			t.Errorf("salvaged message: %s account %s from %s", describe(m), m.Account, m.From)
		}
		var to []string
		for _, r := range m.Recipients {
			to = append(to, r.Addr)
		}
		for _, addr := range []string{"bob@example.com", "carol@example.com", "bcc@example.com"} {
			if !slices.Contains(to, addr) {
				t.Errorf("recipients %v lack %s", to, addr)
			}
		}
		bodies[readBody(t, s, b.ID)] = true
	}
	for id, body := range want {
		if !bodies[body] {
			t.Errorf("body of %s not re-queued byte for byte", id)
		}
	}
	if err := s.Release(context.Background(), rep.Bodies[0].ID); err != nil {
		t.Errorf("Release of a salvaged message: %v", err)
	}
	s.Close()
	// A second run finds nothing left to take.
	again, err := Salvage(dir, salvageOpts())
	if err != nil || len(again.Bodies) != 0 {
		t.Fatalf("second salvage: %+v %v", again, err)
	}
}

// TestSalvageTruncatedDatabaseKeepsIt: an unusable database is moved aside
// byte for byte, never deleted.
func TestSalvageTruncatedDatabaseKeepsIt(t *testing.T) {
	dir, _ := spoolWithBodies(t, 1, 40)
	path := filepath.Join(dir, DBFile)
	if err := os.Truncate(path, 8192); err != nil {
		t.Fatal(err)
	}
	cut, _ := os.ReadFile(path)
	rep, err := Salvage(dir, salvageOpts())
	if err != nil {
		t.Fatal(err)
	}
	kept, err := os.ReadFile(rep.DamagedDB)
	if err != nil || string(kept) != string(cut) {
		t.Fatalf("damaged database not kept as %q: %v", rep.DamagedDB, err)
	}
	// The body has no To header (the test helper writes none), so it is
	// kept for the admin, not dropped.
	if len(rep.Bodies) != 1 || rep.Bodies[0].Problem == "" || rep.KeptIn == "" {
		t.Fatalf("report: %+v", rep)
	}
	if _, err := os.Stat(filepath.Join(rep.KeptIn, filepath.Base(rep.Bodies[0].File))); err != nil {
		t.Fatalf("body without recipients not kept: %v", err)
	}
	s := openTest(t, dir, testOpts(newFakeClock()))
	_ = s
}

// TestSalvageOrphansIntoLiveSpool: bodies that recovery set aside are
// re-queued into the existing database, whose messages stay as they were.
func TestSalvageOrphansIntoLiveSpool(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, testOpts(newFakeClock()))
	keep := mustEnqueue(t, s, req("a"), "kept message")
	s.Close()
	if err := os.MkdirAll(filepath.Join(dir, OrphansDir), 0o700); err != nil {
		t.Fatal(err)
	}
	orphan := filepath.Join(dir, OrphansDir, "01ORPHAN000000000000000001.eml")
	if err := os.WriteFile(orphan, []byte(salvageBody("")), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := Salvage(dir, salvageOpts())
	if err != nil || len(rep.Bodies) != 1 || rep.Bodies[0].ID == "" || rep.DamagedDB != "" {
		t.Fatalf("report %+v, %v", rep, err)
	}
	s = openTest(t, dir, testOpts(newFakeClock()))
	if m := mustGet(t, s, keep); m.State != StateQueued || readBody(t, s, keep) != "kept message" {
		t.Errorf("existing message changed: %s", describe(m))
	}
	if readBody(t, s, rep.Bodies[0].ID) != salvageBody("") {
		t.Error("orphan body not re-queued byte for byte")
	}
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("re-queued orphan still in %s", OrphansDir)
	}
}

// TestSalvageRerunAfterInterruption: a salvage cut off after it moved the
// bodies to salvage-*/ and before it committed them; the rerun takes them,
// and start-up without a database still refuses while they wait there.
func TestSalvageRerunAfterInterruption(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, fileOpts(newFakeClock()))
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, mustEnqueue(t, s, req("a"), salvageBody("")))
	}
	s.Close()
	if err := os.Remove(filepath.Join(dir, DBFile)); err != nil {
		t.Fatal(err)
	}
	kept := filepath.Join(dir, salvageDirPrefix+"20261128T070000Z")
	if err := os.Mkdir(kept, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if err := os.Rename(filepath.Join(dir, MessagesDir, id+".eml"), filepath.Join(kept, id+".eml")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Open(dir, testOpts(newFakeClock())); !errors.Is(err, ErrNoDatabase) || !strings.Contains(err.Error(), "3 body files") {
		t.Fatalf("Open with bodies waiting in %s: %v", kept, err)
	}
	rep, err := Salvage(dir, salvageOpts())
	if err != nil || len(rep.Bodies) != 3 {
		t.Fatalf("rerun: %+v, %v", rep, err)
	}
	s = openTest(t, dir, testOpts(newFakeClock()))
	for _, b := range rep.Bodies {
		if m := mustGet(t, s, b.ID); m.State != StateHeld {
			t.Errorf("salvaged message %s", describe(m))
		}
	}
}

// TestSalvageRefusesMissingDirectory: a mistyped --data-dir is an error, not
// a new empty spool.
func TestSalvageRefusesMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "typo")
	if _, err := Salvage(dir, salvageOpts()); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Salvage of a missing directory: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("salvage created %s", dir)
	}
}
