package spool_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/spooltest"
)

// TestVerifyCatchesBboltPanics: a spool.db of full length whose page tree
// points twice at one page. bbolt panics on it in a goroutine of its own
// while opening (no recover can catch that), so Open checks the file in a
// child process first and refuses with ErrCorrupt, leaving it untouched.
func TestVerifyCatchesBboltPanics(t *testing.T) {
	dir := t.TempDir()
	opts := spool.Options{RescueInterval: -1, Verify: spool.ChildVerifier(os.Args[0], "verify-child")}
	spooltest.FillClosed(t, dir, "a")
	s, err := spool.Open(dir, opts) // sound: the child says yes
	if err != nil {
		t.Fatalf("Open of a sound spool with Verify: %v", err)
	}
	s.Close()

	path := filepath.Join(dir, spool.DBFile)
	if err := spooltest.PointTwiceAtOnePage(path); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	_, err = spool.Open(dir, opts)
	if !errors.Is(err, spool.ErrCorrupt) || !strings.Contains(err.Error(), "crashed the checker") || !strings.Contains(err.Error(), "spoolctl salvage") {
		t.Fatalf("Open of a damaged spool: %v, want ErrCorrupt from a crashed checker naming salvage", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, data) {
		t.Fatal("damaged database was modified")
	}
	// Salvage, given the same verifier, takes it for unusable and keeps it.
	rep, err := spool.Salvage(dir, spool.SalvageOptions{Account: "out", Spool: opts})
	if err != nil || rep.DamagedDB == "" {
		t.Fatalf("salvage of a damaged spool: %+v, %v", rep, err)
	}
	if kept, _ := os.ReadFile(rep.DamagedDB); !bytes.Equal(kept, data) {
		t.Fatal("damaged database not kept byte for byte")
	}
}
