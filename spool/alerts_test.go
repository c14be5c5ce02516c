package spool

import (
	"context"
	"errors"
	"testing"
)

func TestAlertStateSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	c := newFakeClock()
	s := openTest(t, dir, testOpts(c))
	ctx := context.Background()
	if st, err := s.AlertState(ctx); err != nil || len(st) != 0 {
		t.Fatalf("fresh spool: AlertState = %v, %v; want empty", st, err)
	}
	if err := s.AlertWrite(ctx, map[string][]byte{"active/a": []byte("1"), "active/b": []byte("2")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AlertWrite(ctx, map[string][]byte{"out/1": nil}, []string{"active/a", "never-written"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AlertWrite(ctx, map[string][]byte{"": []byte("x")}, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty key: err = %v, want ErrInvalid", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, testOpts(c))
	st, err := s.AlertState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || string(st["active/b"]) != "2" || st["out/1"] == nil {
		t.Fatalf("after reopen: %q", st)
	}
}

// A database written before alerts existed has no alerts bucket; a
// read-only open (spoolctl --spool) must still work and read it as empty.
func TestAlertStateReadOnlyWithoutBucket(t *testing.T) {
	dir := t.TempDir()
	c := newFakeClock()
	s := openTest(t, dir, testOpts(c))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	opts := testOpts(c)
	opts.ReadOnly = true
	ro := openTest(t, dir, opts)
	st, err := ro.AlertState(context.Background())
	if err != nil || len(st) != 0 {
		t.Fatalf("AlertState = %v, %v", st, err)
	}
	if err := ro.AlertWrite(context.Background(), map[string][]byte{"k": nil}, nil); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("AlertWrite read-only: %v", err)
	}
}

func TestWaitingByAccount(t *testing.T) {
	c := newFakeClock()
	s := openTest(t, t.TempDir(), testOpts(c))
	mustEnqueue(t, s, req("m365", "a@example.com"), "x")
	mustEnqueue(t, s, req("m365", "b@example.com"), "x")
	id := mustEnqueue(t, s, req("gmail", "c@example.com"), "x")
	if err := s.Hold(context.Background(), id, "test"); err != nil {
		t.Fatal(err)
	}
	got, err := s.WaitingByAccount(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got["m365"] != 2 || got["gmail"] != 0 || len(got) != 1 {
		t.Fatalf("WaitingByAccount = %v, want m365:2 only (held is not waiting)", got)
	}
}
