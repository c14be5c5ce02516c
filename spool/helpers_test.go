package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// fakeClock is a settable clock shared by a test and the spool.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testOpts returns options with a fake clock, no background rescuer and a
// silent logger.
func testOpts(c *fakeClock) Options {
	return Options{Clock: c.Now, RescueInterval: -1, Logger: quietLogger(), LockTimeout: 200 * time.Millisecond}
}

// openTest opens a spool in dir and registers Check and Close in cleanup.
func openTest(t testing.TB, dir string, opts Options) *Spool {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	registerCheck(t, s)
	return s
}

func registerCheck(t testing.TB, s *Spool) {
	t.Cleanup(func() {
		if err := s.Check(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("cleanup Check: %v", err)
		}
		if err := s.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("cleanup Close: %v", err)
		}
	})
}

func req(account string, to ...string) EnqueueRequest {
	if len(to) == 0 {
		to = []string{"bob@example.com"}
	}
	return EnqueueRequest{From: "scanner@example.com", To: to, Account: account, Source: Source{Kind: SourceSMTP, PeerIP: "127.0.0.1"}}
}

func mustEnqueue(t testing.TB, s *Spool, r EnqueueRequest, body string) string {
	t.Helper()
	id, err := s.Enqueue(context.Background(), r, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	return id
}

func mustGet(t testing.TB, s *Spool, id string) *Message {
	t.Helper()
	m, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return m
}

func readBody(t testing.TB, s *Spool, id string) string {
	t.Helper()
	f, err := s.OpenBody(id)
	if err != nil {
		t.Fatalf("OpenBody(%s): %v", id, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("reading body %s: %v", id, err)
	}
	return string(b)
}

// bodyStored reports whether the body of id is kept, inline or as a file.
func bodyStored(s *Spool, id string) bool {
	if _, err := os.Stat(s.bodyPath(id)); err == nil {
		return true
	}
	inline := false
	s.db.View(func(tx *bolt.Tx) error {
		inline = tx.Bucket(bktBodies).Get([]byte(id)) != nil
		return nil
	})
	return inline
}

func bodyFileExistsOnDisk(s *Spool, id string) bool {
	_, err := os.Stat(s.bodyPath(id))
	return err == nil
}

// fataler is what the helpers need of testing.TB and rapid.T.
type fataler interface {
	Helper()
	Fatal(args ...any)
}

// countBodies counts stored bodies: files in messages/ plus inline ones.
func countBodies(t fataler, s *Spool) int {
	t.Helper()
	n := countFiles(t, s.msgDir)
	if err := s.db.View(func(tx *bolt.Tx) error {
		n += tx.Bucket(bktBodies).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// fileOpts is testOpts with every body in a file of its own, for tests of
// the file path.
func fileOpts(c *fakeClock) Options {
	o := testOpts(c)
	o.InlineBodyMax = -1
	return o
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func describe(m *Message) string {
	return fmt.Sprintf("%s state=%s attempts=%d next=%v lease=%s/%v", m.ID, m.State, m.Attempts, m.NextAttempt, m.LeaseOwner, m.LeaseUntil)
}

// makeInState returns the ID of a fresh message brought into state st by the
// legal path; active messages are leased by "w1".
func makeInState(t *testing.T, s *Spool, clk *fakeClock, st State) string {
	t.Helper()
	ctx := context.Background()
	id := mustEnqueue(t, s, req("acct", "a@example.com", "b@example.com"), "body of "+string(st))
	if st == StateQueued {
		return id
	}
	if st == StateHeld {
		if err := s.Hold(ctx, id, "admin"); err != nil {
			t.Fatal(err)
		}
		return id
	}
	ms, err := s.ClaimAccount(ctx, "acct", clk.Now(), 1, "w1")
	if err != nil || len(ms) != 1 || ms[0].ID != id {
		t.Fatalf("claim for setup: %v %v", ms, err)
	}
	switch st {
	case StateActive:
	case StateDeferred:
		err = s.Defer(ctx, id, "w1", clk.Now().Add(time.Hour), Result{Error: &ErrorRecord{Code: 451, Text: "try later"}})
	case StateDead:
		err = s.Dead(ctx, id, "w1", Result{Reason: "550 no such user"})
	case StateDelivered:
		err = s.Delivered(ctx, id, "w1", Result{})
	}
	if err != nil {
		t.Fatalf("setup %s: %v", st, err)
	}
	if m := mustGet(t, s, id); m.State != st {
		t.Fatalf("setup: got %s want %s", m.State, st)
	}
	return id
}

// CheckIndexesForTest checks bbolt's bucket layout against the records: the
// due indexes hold exactly the queued and deferred messages at their
// NextAttempt, the lease index exactly the active ones at their LeaseUntil.
// The conformance suite calls it (through the bbolt target's Check) after
// every step of its property test, which checks the records against its
// model.
func (s *Spool) CheckIndexesForTest() error {
	if err := s.begin(context.Background(), false); err != nil {
		return err
	}
	defer s.end()
	return s.db.View(func(tx *bolt.Tx) error {
		wantDue, wantAcct, wantLease := map[string]bool{}, map[string]bool{}, map[string]bool{}
		err := tx.Bucket(bktMessages).ForEach(func(k, _ []byte) error {
			m, err := getMsg(tx, string(k))
			if err != nil {
				return err
			}
			if isDueState(m.State) {
				wantDue[string(dueKey(m.NextAttempt, m.ID))] = true
				wantAcct[string(acctDueKey(m.Account, m.NextAttempt, m.ID))] = true
			}
			if m.State == StateActive {
				wantLease[string(leaseKey(m.LeaseUntil, m.ID))] = true
			}
			return nil
		})
		if err != nil {
			return err
		}
		for name, want := range map[string]map[string]bool{"due": wantDue, "acctdue": wantAcct, "leases": wantLease} {
			got := 0
			err := tx.Bucket([]byte(name)).ForEach(func(k, _ []byte) error {
				if !want[string(k)] {
					return fmt.Errorf("index %s has unexpected key %x", name, k)
				}
				got++
				return nil
			})
			if err != nil {
				return err
			}
			if got != len(want) {
				return fmt.Errorf("index %s has %d keys, want %d", name, got, len(want))
			}
		}
		return nil
	})
}
