package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/cmd/spoold/adminapi"
)

// TestToAdminError: auth's errors reach spoolctl with the admin API's stable
// codes and keep their own text.
func TestToAdminError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want error
	}{
		{fmt.Errorf("x: %w", auth.ErrUnknownAccount), adminapi.ErrUnknownAccount},
		{fmt.Errorf("x: %w", auth.ErrNeedsReauth), adminapi.ErrNeedsReauth},
		{fmt.Errorf("x: %w", auth.ErrTransient), adminapi.ErrUnavailable},
		{fmt.Errorf("x: %w", auth.ErrMisconfigured), adminapi.ErrInvalidArgument},
		{fmt.Errorf("x: %w", auth.ErrIdentityMismatch), adminapi.ErrInvalidArgument},
		{fmt.Errorf("auth: login %q: %w: start it again", "abc", auth.ErrLoginExpired), adminapi.ErrNotFound},
	} {
		got := toAdminError(tc.err)
		if !errors.Is(got, tc.want) {
			t.Errorf("%v: not mapped to %v", tc.err, tc.want)
		}
		if got.Error() != tc.err.Error() {
			t.Errorf("text changed: %q -> %q", tc.err, got)
		}
	}
	plain := errors.New("other")
	if got := toAdminError(plain); got != plain {
		t.Errorf("unrelated error wrapped: %v", got)
	}
	if toAdminError(nil) != nil {
		t.Error("nil not kept")
	}
}
