package spool

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// syncRecorder records the directories fsync'd through the spool's fsys.
type syncRecorder struct {
	osFS
	synced []string
}

func (r *syncRecorder) SyncDir(dir string) error {
	r.synced = append(r.synced, dir)
	return r.osFS.SyncDir(dir)
}

// TestOpenNewSpoolSyncsParent: a new spool fsyncs the directory that holds
// its data dir, so a power cut cannot take the data dir (spoold creates it
// just before) with every message acknowledged since. Found by the power-cut
// loop (cmd/spoold/systest TestPowerCutLoop on lazyfs). Reopening does it
// too: a crash between creating spool.db and that fsync must not leave the
// data dir's entry unsynced for good.
func TestOpenNewSpoolSyncsParent(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "data")
	if err := os.Mkdir(dir, 0o700); err != nil { // as spoold's ensureDataDir does
		t.Fatal(err)
	}
	rec := &syncRecorder{}
	s, err := open(dir, testOpts(newFakeClock()), rec)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(rec.synced, parent) || !slices.Contains(rec.synced, dir) {
		t.Errorf("new spool fsync'd %v, want %s and its parent %s", rec.synced, dir, parent)
	}
	s.Close()
	rec.synced = nil
	s, err = open(dir, testOpts(newFakeClock()), rec)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !slices.Contains(rec.synced, parent) {
		t.Errorf("reopening fsync'd %v, want the parent %s too", rec.synced, parent)
	}
}
