package field

import (
	"errors"
	"fmt"
	"testing"
)

func TestMergeAndJoin(t *testing.T) {
	var inner Problems
	inner.Add("max", "must be at least first (%s)", "1m")
	inner.Add("", "whole struct")
	var ps Problems
	ps.Merge("retry", inner)
	ps.MergeErr(Index("users", 1), inner.Err())
	ps.MergeErr("tls", errors.New("plain error"))
	ps.MergeErr("nothing", nil)
	want := []string{"retry.max", "retry", "users[1].max", "users[1]", "tls"}
	if len(ps) != len(want) {
		t.Fatalf("got %d problems, want %d: %v", len(ps), len(want), ps)
	}
	for i, k := range want {
		if ps[i].Key != k {
			t.Errorf("problem %d key = %q, want %q", i, ps[i].Key, k)
		}
	}
	if got := Join("a", "[2].b"); got != "a[2].b" {
		t.Errorf("Join = %q", got)
	}
	var back Problems
	if !errors.As(fmt.Errorf("wrapped: %w", ps.Err()), &back) || len(back) != len(ps) {
		t.Errorf("Problems does not survive wrapping")
	}
	if (Problems{}).Err() != nil {
		t.Errorf("empty Problems is an error")
	}
}
