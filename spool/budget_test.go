package spool

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestBudgetSurvivesReopenAndForgetsOldEntries(t *testing.T) {
	dir := t.TempDir()
	c := newFakeClock()
	s := openTest(t, dir, testOpts(c))
	ctx := context.Background()
	t0 := time.Date(2026, 1, 2, 9, 0, 0, 0, time.UTC)
	if es, err := s.BudgetEntries(ctx, "m365", time.Time{}); err != nil || len(es) != 0 {
		t.Fatalf("fresh spool: %v, %v; want none", es, err)
	}
	if err := s.BudgetRecord(ctx, "m365", "a", "m365", t0, 3, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := s.BudgetRecord(ctx, "m365", "b", "relay", t0.Add(time.Hour), 2, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := s.BudgetRecord(ctx, "m3650", "c", "m3650", t0, 7, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := s.BudgetRecord(ctx, "", "d", "", t0, 1, time.Time{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty account: %v, want ErrInvalid", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, testOpts(c))
	es, err := s.BudgetEntries(ctx, "m365", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[0].ID != "a" || es[0].Recipients != 3 || !es[0].At.Equal(t0) || es[1].ID != "b" || es[1].Recipients != 2 {
		t.Fatalf("after reopen: %+v", es)
	}
	if es, _ := s.BudgetEntries(ctx, "m365", t0.Add(time.Minute)); len(es) != 1 || es[0].ID != "b" {
		t.Fatalf("since: %+v", es)
	}
	if via, err := s.DeliveredVia(ctx, "b"); err != nil || via != "m365" {
		t.Fatalf("DeliveredVia(b) = %q, %v; want m365", via, err)
	}
	if via, _ := s.DeliveredVia(ctx, "a"); via != "" {
		t.Fatalf("DeliveredVia(a) = %q; want none (its own account)", via)
	}
	// A later record forgets the entries before the window.
	if err := s.BudgetRecord(ctx, "m365", "e", "m365", t0.Add(25*time.Hour), 1, t0.Add(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if es, _ := s.BudgetEntries(ctx, "m365", time.Time{}); len(es) != 2 || es[0].ID != "b" || es[1].ID != "e" {
		t.Fatalf("after forgetting: %+v", es)
	}
	if es, _ := s.BudgetEntries(ctx, "m3650", time.Time{}); len(es) != 1 {
		t.Fatalf("other account touched: %+v", es)
	}
}
