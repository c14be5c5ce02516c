package auth_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/auth/authtest"
)

// TestRefreshRejectedCoalesces: issue 12, a 535 on three parallel
// connections caused 2-6 refresh-token rotations. Every connection refused
// with the same token, whether it asks while the refresh is in flight or
// after it is done, gets the one new token; the reuse-detecting fake would
// revoke the grant on a second use of a rotated refresh token.
func TestRefreshRejectedCoalesces(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.mustLogin()
	stale, err := e.token()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e.srv.SetDelay(100 * time.Millisecond) // the first callers pile up on the flight
	const n = 8
	var wg sync.WaitGroup
	toks := make([]string, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			toks[i], errs[i] = e.m.RefreshRejected(ctx, testAccount, stale)
		}()
	}
	close(start)
	wg.Wait()
	e.srv.SetDelay(0)
	// Late refusals of the same token: their connections were slower.
	for range 3 {
		tok, err := e.m.RefreshRejected(ctx, testAccount, stale)
		toks, errs = append(toks, tok), append(errs, err)
	}
	for i := range toks {
		if errs[i] != nil || toks[i] == stale || toks[i] != toks[0] {
			t.Fatalf("caller %d: got a different or stale token (%v)", i, errs[i])
		}
	}
	if got := e.srv.Calls("token:" + authtest.GrantRefresh); got != 1 {
		t.Fatalf("refresh-token rotations = %d, want 1", got)
	}
	// The new token refused too: that is a new refusal, one more refresh.
	next, err := e.m.RefreshRejected(ctx, testAccount, toks[0])
	if err != nil || next == toks[0] {
		t.Fatalf("refusal of the new token: %v", err)
	}
	if got := e.srv.Calls("token:" + authtest.GrantRefresh); got != 2 {
		t.Fatalf("refresh-token rotations = %d, want 2", got)
	}
	if h := e.health(); h.Status != auth.StatusOK {
		t.Fatalf("health %+v", h)
	}
}

// TestRefreshRejectedAfterFailedRefreshAhead: a refresh-ahead that fails
// transiently hands back the current (refused) token to the callers sharing
// it; a caller whose token was refused must not get that token back, but a
// refresh of its own.
func TestRefreshRejectedAfterFailedRefreshAhead(t *testing.T) {
	e := newEnv(t)
	e.opts.RefreshAttempts = 1
	e.start()
	e.mustLogin()
	stale, _ := e.token()
	e.clock.Advance(57 * time.Minute) // inside RefreshBefore: AccessToken refreshes ahead
	e.srv.FailNext(1, http.StatusServiceUnavailable)
	e.srv.SetDelay(200 * time.Millisecond)
	ahead := make(chan string, 1)
	go func() { tok, _ := e.token(); ahead <- tok }()
	eventually(t, "the refresh-ahead in flight", func() bool { return e.srv.Calls("token:"+authtest.GrantRefresh) == 1 })
	tok, err := e.m.RefreshRejected(context.Background(), testAccount, stale)
	if err != nil || tok == stale {
		t.Fatalf("RefreshRejected handed back the refused token (%v)", err)
	}
	if got := <-ahead; got != stale {
		t.Fatal("the refresh-ahead caller should have kept the still-valid token")
	}
	if got := e.srv.Calls("token:" + authtest.GrantRefresh); got != 2 {
		t.Fatalf("refreshes = %d, want 2", got)
	}
}
