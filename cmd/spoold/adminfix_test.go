package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/spoold/spoold/spool"
)

// TestAdminMustFixNamesTheFix: each start-up refusal a restart cannot cure
// gets exit 2 with its own fix; a newer spool is not sent to restore or
// salvage, and a passing error restarts as before.
func TestAdminMustFixNamesTheFix(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("opening: %w", spool.ErrNewerSchema), "install the newer spoold as above"},
		{fmt.Errorf("opening: %w", spool.ErrCorrupt), "restore or salvage the spool as above"},
		{fmt.Errorf("opening: %w", spool.ErrNoDatabase), "restore or salvage the spool as above"},
		{errors.New("connection refused"), ""},
	} {
		if got := adminMustFix(c.err); got != c.want {
			t.Errorf("%v: %q, want %q", c.err, got, c.want)
		}
	}
}
