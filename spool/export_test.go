package spool

import (
	"context"
	"os"

	bolt "go.etcd.io/bbolt"
)

// Hooks for the conformance suite, which runs in package spool_test (the
// suite imports spool, so it cannot be imported by spool's own tests).

// RescueNow runs one rescuer pass.
func (s *Spool) RescueNow(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return s.rescueNow()
}

// BodyStoredForTest reports whether the body of id is stored, inline or as a file.
func (s *Spool) BodyStoredForTest(id string) bool { return bodyStored(s, id) }

// BodyCountForTest counts stored bodies: files in messages/ plus inline ones.
func (s *Spool) BodyCountForTest() (int, error) {
	es, err := readDirNames(s.msgDir)
	if err != nil {
		return 0, err
	}
	n := len(es)
	err = s.db.View(func(tx *bolt.Tx) error {
		n += tx.Bucket(bktBodies).Stats().KeyN
		return nil
	})
	return n, err
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}
