package auth_test

import (
	"strings"
	"testing"
	"time"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/auth/authtest"
)

// TestSlowRotatingTokenEndpoint: issue 12, a token endpoint slower than
// spoold's timeout rotated the refresh token, spoold never saw the answer,
// retried with the old token, and the reuse-detecting server revoked the
// grant. Within token_timeout the slow answer is taken (one rotation, the
// grant lives on); a timeout shorter than the server ends as described, and
// the reason says to raise token_timeout.
func TestSlowRotatingTokenEndpoint(t *testing.T) {
	const slow = 1500 * time.Millisecond
	t.Run("within token_timeout", func(t *testing.T) {
		e := newEnv(t)
		cfg := e.cfg()
		cfg.TokenTimeout = 3 * time.Second
		e.start(cfg)
		e.mustLogin()
		e.srv.SetAnswerDelay(slow)
		e.clock.Advance(2 * time.Hour)
		t1, err := e.token()
		if err != nil {
			t.Fatalf("slow answer within token_timeout: %v", err)
		}
		e.srv.SetAnswerDelay(0)
		e.clock.Advance(2 * time.Hour)
		if t2, err := e.token(); err != nil || t2 == t1 {
			t.Fatalf("refresh after the slow one: %v (the grant must survive)", err)
		}
		if got := e.srv.Calls("token:" + authtest.GrantRefresh); got != 2 {
			t.Fatalf("refreshes = %d, want 2", got)
		}
	})
	t.Run("shorter than the server", func(t *testing.T) {
		e := newEnv(t)
		cfg := e.cfg()
		cfg.TokenTimeout = auth.MinTokenTimeout
		e.start(cfg)
		e.mustLogin()
		e.srv.SetAnswerDelay(slow)
		e.clock.Advance(2 * time.Hour)
		// Every request rotated the token or was refused as reuse, and no
		// answer came in time: the endpoint looks down.
		_, err := e.token()
		wantErr(t, err, auth.ErrTransient)
		// It answers again: the grant was revoked meanwhile.
		e.srv.SetAnswerDelay(0)
		_, err = e.token()
		wantErr(t, err, auth.ErrNeedsReauth)
		h := e.health()
		if h.Status != auth.StatusNeedsReauth || !strings.Contains(h.Reason, "raise token_timeout") {
			t.Fatalf("health %+v", h)
		}
		for _, s := range e.srv.Issued() {
			if strings.Contains(h.Reason, s) || strings.Contains(err.Error(), s) || strings.Contains(e.logs.String(), s) {
				t.Fatal("a token leaked into the reason, error or log")
			}
		}
	})
}
