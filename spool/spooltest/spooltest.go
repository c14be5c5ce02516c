// Package spooltest opens throwaway spools for other packages' tests, and holds the few helpers
// every package's tests share (WaitFor, FreePort, SyncBuffer).
package spooltest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
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

// PointTwiceAtOnePage damages a closed spool database the way a bad sector
// or a botched copy can: in the root branch page of a top-level bucket, the
// second child pointer is made to point at the first child's page. The file
// keeps its length and meta pages, so only a walk of the page tree (bbolt's
// check, or its free-page walk when it opens the file) finds it.
func PointTwiceAtOnePage(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// bbolt's layout: a page header of id (8), flags (2), count (2),
	// overflow (4); meta fields after it; branch elements of pos, ksize
	// (4 each) and pgid (8); leaf elements of flags, pos, ksize, vsize (4
	// each), with pos counted from the element. A bucket value starts with
	// its root page id.
	const hdr, elem = 16, 16
	ne := binary.NativeEndian
	pageSize := int(ne.Uint32(data[hdr+8:]))
	meta := 0
	if ne.Uint64(data[pageSize+hdr+48:]) > ne.Uint64(data[hdr+48:]) { // the newer meta page
		meta = pageSize
	}
	page := func(id uint64) int { return int(id) * pageSize }
	root := page(ne.Uint64(data[meta+hdr+16:]))
	if root+pageSize > len(data) || ne.Uint16(data[root+8:]) != 0x02 {
		return errors.New("spooltest: the root bucket page is not a leaf")
	}
	for i := 0; i < int(ne.Uint16(data[root+10:])); i++ {
		e := root + hdr + i*elem
		if ne.Uint32(data[e:])&0x01 == 0 { // not a bucket
			continue
		}
		v := e + int(ne.Uint32(data[e+4:])) + int(ne.Uint32(data[e+8:]))
		b := page(ne.Uint64(data[v:]))
		if b == 0 || b+pageSize > len(data) || ne.Uint16(data[b+8:]) != 0x01 || ne.Uint16(data[b+10:]) < 2 {
			continue // inline, or not a branch page with two children
		}
		first := b + hdr + 8
		copy(data[first+elem:first+elem+8], data[first:first+8])
		return os.WriteFile(path, data, 0o600)
	}
	return errors.New("spooltest: no bucket has a branch root with two children: enqueue more messages")
}

// FillClosed makes a spool in dir holding enough small messages for
// account that its buckets have branch pages (see PointTwiceAtOnePage), and
// closes it.
func FillClosed(t testing.TB, dir, account string) {
	t.Helper()
	s, err := spool.Open(dir, spool.Options{RescueInterval: -1})
	if err != nil {
		t.Fatalf("spooltest: opening spool: %v", err)
	}
	for i := 0; i < 400; i++ {
		if _, err := s.Enqueue(context.Background(), spool.EnqueueRequest{From: "a@example.com", To: []string{"b@example.com"}, Account: account},
			strings.NewReader(fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i, i))); err != nil {
			t.Fatalf("spooltest: enqueue: %v", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("spooltest: closing spool: %v", err)
	}
}
