package spool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestLifecycleEnqueueClaimDeliver(t *testing.T) {
	clk := newFakeClock()
	dir := t.TempDir()
	s := openTest(t, dir, testOpts(clk))
	ctx := context.Background()

	id := mustEnqueue(t, s, req("outbox", "a@example.com", "b@example.com"), "Subject: hi\r\n\r\nbody\r\n")
	if len(id) != idLen {
		t.Fatalf("id %q: want length %d", id, idLen)
	}
	select {
	case <-s.Notify():
	default:
		t.Fatal("Enqueue did not signal Notify")
	}
	m := mustGet(t, s, id)
	if m.State != StateQueued || m.Size != int64(len("Subject: hi\r\n\r\nbody\r\n")) || len(m.Recipients) != 2 {
		t.Fatalf("after enqueue: %s size=%d rcpts=%d", describe(m), m.Size, len(m.Recipients))
	}
	if got := readBody(t, s, id); got != "Subject: hi\r\n\r\nbody\r\n" {
		t.Fatalf("body = %q", got)
	}
	// A small body is stored inline, in the database.
	if !m.BodyInline || bodyFileExistsOnDisk(s, id) {
		t.Fatalf("small body: inline=%v file=%v, want inline only", m.BodyInline, bodyFileExistsOnDisk(s, id))
	}
	// Bodies hold mail: owner-only, like the database. On Linux large ones
	// are written as unnamed O_TMPFILE files, which must get the same mode.
	if runtime.GOOS == "linux" && !s.anon {
		t.Error("spool does not use O_TMPFILE bodies on Linux")
	}
	for _, p := range []string{filepath.Join(dir, DBFile)} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v err %v; want 0600", p, fi.Mode().Perm(), err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, MessagesDir)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("messages dir mode: %v %v", fi.Mode().Perm(), err)
	}

	now := clk.Now()
	claimed, err := s.Claim(ctx, now, 10, "w1")
	if err != nil || len(claimed) != 1 || claimed[0].ID != id {
		t.Fatalf("Claim = %v, %v; want [%s]", claimed, err, id)
	}
	if c := claimed[0]; c.State != StateActive || c.LeaseOwner != "w1" || !c.LeaseUntil.Equal(now.Add(5*time.Minute)) {
		t.Fatalf("claimed: %s", describe(c))
	}
	if again, _ := s.Claim(ctx, now, 10, "w2"); len(again) != 0 {
		t.Fatalf("second Claim returned %d messages, want 0", len(again))
	}
	if err := s.StartAttempt(ctx, id, "w1", now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delivered(ctx, id, "w1", Result{Now: now.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	m = mustGet(t, s, id)
	if m.State != StateDelivered || m.Attempts != 1 || len(m.History) != 1 || m.History[0].Result != "delivered" {
		t.Fatalf("after Delivered: %s history=%+v", describe(m), m.History)
	}
	for _, r := range m.Recipients {
		if r.State != RcptDelivered {
			t.Fatalf("recipient %s is %s", r.Addr, r.State)
		}
	}
	if bodyStored(s, id) {
		t.Fatal("body file kept after delivery")
	}
	if _, err := s.OpenBody(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OpenBody after delivery: %v, want ErrNotFound", err)
	}
	st, err := s.Stats(ctx)
	if err != nil || st[StateDelivered] != 1 || st[StateQueued] != 0 || st[StateActive] != 0 {
		t.Fatalf("Stats = %v, %v", st, err)
	}
}

func TestEnqueueValidation(t *testing.T) {
	s := openTest(t, t.TempDir(), testOpts(newFakeClock()))
	cases := map[string]EnqueueRequest{
		"no account":    {To: []string{"a@x"}},
		"no recipients": {Account: "a"},
		"empty rcpt":    {Account: "a", To: []string{""}},
		"CR in rcpt":    {Account: "a", To: []string{"a@x\r\nRCPT TO:<evil>"}},
		"NUL in rcpt":   {Account: "a", To: []string{"a\x00@x"}},
		"LF in from":    {Account: "a", To: []string{"a@x"}, From: "x\n"},
		"NUL account":   {Account: "a\x00b", To: []string{"a@x"}},
	}
	for name, r := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := s.Enqueue(context.Background(), r, strings.NewReader("x"))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
	if n := countBodies(t, s); n != 0 {
		t.Fatalf("%d files left in messages/ after rejected enqueues", n)
	}
}

func countFiles(t fataler, dir string) int {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}
