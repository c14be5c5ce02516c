package adminapi

import (
	"context"
	"testing"
	"time"

	"github.com/spoold/spoold/spool"
)

// A message a fallback account delivered names that account in show.
func TestShowNamesTheFallbackThatDelivered(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	viaFallback := e.enqueue(t, "a@example.com", "b@example.com")
	own := e.enqueue(t, "a@example.com", "c@example.com")
	ms, err := e.sp.Claim(ctx, e.clk.Now(), 100, "w1")
	if err != nil || len(ms) != 2 {
		t.Fatalf("claim: %d messages, %v", len(ms), err)
	}
	for _, m := range ms {
		if err := e.sp.StartAttempt(ctx, m.ID, "w1", e.clk.Now(), e.clk.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := e.sp.Delivered(ctx, m.ID, "w1", spool.Result{}); err != nil {
			t.Fatal(err)
		}
	}
	// Delivery records the route as it counts the recipients (delivery/budget.go).
	if err := e.sp.BudgetRecord(ctx, "relay", viaFallback, "m365", e.clk.Now(), 1, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := e.sp.BudgetRecord(ctx, "m365", own, "m365", e.clk.Now(), 1, time.Time{}); err != nil {
		t.Fatal(err)
	}
	v, err := e.c.Get(ctx, viaFallback)
	if err != nil {
		t.Fatal(err)
	}
	if v.DeliveredVia != "relay" || v.Account != "m365" {
		t.Fatalf("show: account %q delivered via %q; want m365 via relay", v.Account, v.DeliveredVia)
	}
	if v, err := e.c.Get(ctx, own); err != nil || v.DeliveredVia != "" {
		t.Fatalf("show own delivery: via %q, %v; want none", v.DeliveredVia, err)
	}
}
