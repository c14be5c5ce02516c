package fieldtest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/spoold/spoold/configs/field"
)

func TestKeys(t *testing.T) {
	var ps field.Problems
	ps.Add("mode", "bad")
	ps.Add("users[1].name", "bad")
	if got := Keys(t, fmt.Errorf("listener: %w", ps.Err())); !slices.Equal(got, []string{"mode", "users[1].name"}) {
		t.Errorf("Keys = %q", got)
	}
	if got := Keys(t, nil); got != nil {
		t.Errorf("Keys(nil) = %q", got)
	}
}
