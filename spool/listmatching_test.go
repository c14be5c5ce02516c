package spool

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestListMatchingPagesEveryMatchOnce: a selective predicate under a small
// scan bound, oldest or newest first, by state or over all IDs, returns each
// match exactly once across pages, in order, and no page examines more than
// the bound.
func TestListMatchingPagesEveryMatchOnce(t *testing.T) {
	clk := newFakeClock()
	s := openTest(t, t.TempDir(), testOpts(clk))
	ctx := context.Background()
	var all, want []string
	for i := range 40 {
		id := mustEnqueue(t, s, req("a"), fmt.Sprint(i))
		all = append(all, id)
		if i%7 == 3 {
			want = append(want, id)
		}
		clk.Add(time.Millisecond)
	}
	wanted := map[string]bool{}
	for _, id := range want {
		wanted[id] = true
	}
	for _, newest := range []bool{false, true} {
		for _, f := range []Filter{{}, {State: StateQueued}} {
			examined := 0
			opts := ListOptions{Newest: newest, MaxScan: 5, Match: func(m *Message) bool { examined++; return wanted[m.ID] }}
			var got []string
			cursor := ""
			for pages := 0; ; pages++ {
				if pages > 50 {
					t.Fatal("paging does not end")
				}
				examined = 0
				p, err := s.ListMatching(ctx, f, opts, cursor, 2)
				if err != nil {
					t.Fatal(err)
				}
				if examined > 5 {
					t.Fatalf("one page examined %d records, bound is 5", examined)
				}
				for _, m := range p.Messages {
					got = append(got, m.ID)
				}
				if p.Next == "" {
					break
				}
				cursor = p.Next
			}
			exp := slices.Clone(want)
			if newest {
				slices.Reverse(exp)
			}
			if !slices.Equal(got, exp) {
				t.Errorf("newest=%t filter=%+v: got %v, want %v", newest, f, got, exp)
			}
		}
	}
	// Newest first without a predicate: the first page is the newest IDs.
	p, err := s.ListMatching(ctx, Filter{State: StateQueued}, ListOptions{Newest: true}, "", 3)
	if err != nil || len(p.Messages) != 3 || p.Messages[0].ID != all[39] || p.Next != all[37] {
		t.Fatalf("newest page: %v %v", p, err)
	}
}
