package spool

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
)

// kindCounter counts Options.Enqueued calls by source kind.
type kindCounter struct {
	mu sync.Mutex
	n  map[SourceKind]int
}

func (c *kindCounter) inc(k SourceKind) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[SourceKind]int{}
	}
	c.n[k]++
}

func (c *kindCounter) get(k SourceKind) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k]
}

// TestEnqueuedCountsCommits: the hook runs once per committed message, for
// inline and file bodies, and never for a failed commit or a duplicate key.
func TestEnqueuedCountsCommits(t *testing.T) {
	var c kindCounter
	opts := testOpts(newFakeClock())
	opts.Enqueued = c.inc
	s := openTest(t, t.TempDir(), opts)
	ctx := context.Background()
	big := strings.Repeat("x", MaxInlineBody+1)

	mustEnqueue(t, s, req("a"), "inline")
	if _, err := s.Enqueue(ctx, req("a"), strings.NewReader(big)); err != nil {
		t.Fatal(err)
	}
	if n := c.get(SourceSMTP); n != 2 {
		t.Fatalf("smtp counted %d, want 2", n)
	}

	notice := req("a")
	notice.Source = Source{Kind: SourceNotice, NoticeFor: "x"}
	notice.IdempotencyKey = "notice:x"
	first := mustEnqueue(t, s, notice, "notice")
	if again := mustEnqueue(t, s, notice, "notice"); again != first {
		t.Fatalf("duplicate key gave %s, want %s", again, first)
	}
	if n := c.get(SourceNotice); n != 1 {
		t.Fatalf("notice counted %d, want 1 (the duplicate commits nothing)", n)
	}

	boom := errors.New("commit failed")
	s.beforeCommit = func() error { return boom }
	for _, body := range []string{"inline", big} {
		if _, err := s.Enqueue(ctx, req("a"), strings.NewReader(body)); err == nil {
			t.Fatal("enqueue succeeded despite the failed commit")
		}
	}
	verify := req("a")
	verify.Verify = func() error { return boom }
	s.beforeCommit = nil
	if _, err := s.Enqueue(ctx, verify, strings.NewReader("refused before the commit")); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the Verify error", err)
	}
	if n := c.get(SourceSMTP); n != 2 {
		t.Fatalf("smtp counted %d after failed commits, want still 2", n)
	}
	mustEnqueue(t, s, req("a"), "after")
	if n := c.get(SourceSMTP); n != 3 {
		t.Fatalf("smtp counted %d, want 3", n)
	}
}
