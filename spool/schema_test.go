package spool

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestNewerSchemaIsNotCalledDamage: a spool.db a newer spoold wrote (after
// a downgrade) is refused with ErrNewerSchema and the versions, not as a
// damaged database whose fix would be a restore or a salvage.
func TestNewerSchemaIsNotCalledDamage(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{Logger: quietLogger(), RescueInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bolt.Open(filepath.Join(dir, "spool.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bktMeta).Put([]byte("schema"), []byte{schemaVersion + 1})
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(dir, Options{Logger: quietLogger(), RescueInterval: -1})
	if !errors.Is(err, ErrNewerSchema) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("opening a newer spool: %v, want ErrNewerSchema and not ErrCorrupt", err)
	}
	if !strings.Contains(err.Error(), "newer than this spoold knows") {
		t.Errorf("the error does not say what to do: %v", err)
	}
}
