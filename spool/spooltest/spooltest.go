// Package spooltest opens throwaway spools for other packages' tests.
package spooltest

import (
	"errors"
	"testing"

	"github.com/spoold/spoold/spool"
)

// OpenTemp opens a spool in t.TempDir() with opts and registers a cleanup
// that runs the database consistency check and closes it. Tests may Close
// the spool themselves; the cleanup then skips both.
func OpenTemp(t testing.TB, opts spool.Options) *spool.Spool {
	t.Helper()
	s, err := spool.Open(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("spooltest: opening spool: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Check(); err != nil && !errors.Is(err, spool.ErrClosed) {
			t.Errorf("spooltest: spool check: %v", err)
		}
		if err := s.Close(); err != nil && !errors.Is(err, spool.ErrClosed) {
			t.Errorf("spooltest: closing spool: %v", err)
		}
	})
	return s
}
