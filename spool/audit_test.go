package spool_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/spooltest"
)

func TestAuditAppendListPrune(t *testing.T) {
	sp := spooltest.OpenTemp(t, spool.Options{})
	ctx := context.Background()
	if es, err := sp.AuditList(ctx, time.Time{}, 0); err != nil || len(es) != 0 {
		t.Fatalf("empty log: %v, %v", es, err)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 10; i++ {
		e := spool.AuditEntry{Time: base.Add(time.Duration(i) * 24 * time.Hour), Via: "socket", UID: 1000, User: "alice",
			Action: "hold", Target: fmt.Sprintf("message %d", i), Result: "ok"}
		if err := sp.AuditAppend(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	// Same timestamp twice: both kept.
	if err := sp.AuditAppend(ctx, spool.AuditEntry{Time: base, Action: "purge", Result: "ok", UID: -1}); err != nil {
		t.Fatal(err)
	}
	es, err := sp.AuditList(ctx, time.Time{}, 0)
	if err != nil || len(es) != 11 {
		t.Fatalf("list: %d entries, %v", len(es), err)
	}
	if es[0].Target != "message 9" || !es[0].Time.Equal(base.Add(9*24*time.Hour)) || es[0].User != "alice" {
		t.Fatalf("newest first: got %+v", es[0])
	}
	if es, _ := sp.AuditList(ctx, base.Add(7*24*time.Hour), 0); len(es) != 3 {
		t.Fatalf("since day 7: %d entries, want 3", len(es))
	}
	if es, _ := sp.AuditList(ctx, time.Time{}, 4); len(es) != 4 {
		t.Fatalf("limit 4: %d entries", len(es))
	}
	n, err := sp.AuditPrune(ctx, base.Add(5*24*time.Hour))
	if err != nil || n != 6 {
		t.Fatalf("prune before day 5 = %d, %v; want 6 (days 0-4 and the second day-0 entry)", n, err)
	}
	if es, _ := sp.AuditList(ctx, time.Time{}, 0); len(es) != 5 || es[len(es)-1].Target != "message 5" {
		t.Fatalf("after prune: %+v", es)
	}
	if err := sp.AuditAppend(ctx, spool.AuditEntry{Action: "x"}); err == nil {
		t.Fatal("an entry without a time was accepted")
	}
}
