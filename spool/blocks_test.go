package spool

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"sync"
	"testing"
)

// writeCountFS counts the writes made to body files.
type writeCountFS struct {
	osFS
	mu     sync.Mutex
	writes []int
}

func (f *writeCountFS) CreateAnon(dir string) (anonFile, error) {
	file, err := f.osFS.CreateAnon(dir)
	if err != nil {
		return nil, err
	}
	return countAnon{file.(osAnonFile), f}, nil
}

type countAnon struct {
	osAnonFile
	fs *writeCountFS
}

func (c countAnon) Write(p []byte) (int, error) {
	c.fs.mu.Lock()
	c.fs.writes = append(c.fs.writes, len(p))
	c.fs.mu.Unlock()
	return c.osAnonFile.Write(p)
}

// smallReads returns at most n bytes per Read, as a network connection does.
type smallReads struct {
	r io.Reader
	n int
}

func (s *smallReads) Read(p []byte) (int, error) {
	if len(p) > s.n {
		p = p[:s.n]
	}
	return s.r.Read(p)
}

// TestBodyWrittenInBlocks: a 1 MB body that arrives in small reads is
// written to its file in bodyBlock-sized writes (five, not one per read) and
// reads back byte for byte; a read error halfway stores nothing.
func TestBodyWrittenInBlocks(t *testing.T) {
	cfs := &writeCountFS{}
	s, err := open(t.TempDir(), testOpts(newFakeClock()), cfs)
	if err != nil {
		t.Fatal(err)
	}
	registerCheck(t, s)
	if !s.anon {
		t.Skip("no unnamed temp files on this file system")
	}
	body := make([]byte, 1<<20+123)
	rand.New(rand.NewSource(1)).Read(body)
	id, err := s.Enqueue(context.Background(), req("a"), &smallReads{r: bytes.NewReader(body), n: 1500})
	if err != nil {
		t.Fatal(err)
	}
	if got := readBody(t, s, id); got != string(body) {
		t.Fatalf("body read back differs (%d bytes, want %d)", len(got), len(body))
	}
	cfs.mu.Lock()
	writes := append([]int(nil), cfs.writes...)
	cfs.writes = nil
	cfs.mu.Unlock()
	if len(writes) != 5 {
		t.Fatalf("body written in %d writes %v, want 5 of at most %d bytes", len(writes), writes, bodyBlock)
	}
	for _, w := range writes[:4] {
		if w != bodyBlock {
			t.Fatalf("writes %v: want full blocks of %d bytes before the last", writes, bodyBlock)
		}
	}

	broken := io.MultiReader(bytes.NewReader(body[:600<<10]), iotestErrReader{})
	if _, err := s.Enqueue(context.Background(), req("a"), &smallReads{r: broken, n: 1500}); !errors.Is(err, errBrokenBody) {
		t.Fatalf("err = %v, want the body's read error", err)
	}
	if n := countBodies(t, s); n != 1 {
		t.Fatalf("%d files in messages/ after a failed read, want only the first message's", n)
	}
}

var errBrokenBody = errors.New("connection reset")

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errBrokenBody }
