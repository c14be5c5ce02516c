package auth_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spoold/spoold/auth"
)

// oneSentence fails unless err names the account once, repeats no "auth:"
// prefix or sentinel text and still matches target.
func oneSentence(t *testing.T, what string, err, target error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	if target != nil && !errors.Is(err, target) {
		t.Fatalf("%s: %v does not match %v", what, err, target)
	}
	msg := err.Error()
	if strings.Contains(msg, "auth:") {
		t.Fatalf("%s: a package prefix: %s", what, msg)
	}
	if n := strings.Count(msg, "account "+testAccount); n != 1 {
		t.Fatalf("%s: the account is named %d times: %s", what, n, msg)
	}
	for _, s := range []string{"needs re-authorization", "misconfigured", "temporarily unavailable"} {
		if strings.Count(msg, s) > 1 {
			t.Fatalf("%s: %q repeated: %s", what, s, msg)
		}
	}
	fix := false
	for _, verb := range []string{"run", "retry", "set", "check", "start", "add", "grant", "grants", "exclude", "copy", "create", "update", "use", "correct"} {
		fix = fix || strings.Contains(" "+msg+" ", " "+verb+" ")
	}
	if !fix {
		t.Fatalf("%s: no fix: %s", what, msg)
	}
}

// TestErrorsReadAsOneSentence: issue 15's error chains. Auth errors name the
// account once, carry no package prefix, do not repeat their sentinel's
// text and say the fix, while errors.Is still finds the sentinel.
func TestErrorsReadAsOneSentence(t *testing.T) {
	e := newEnv(t)
	e.start()
	ctx := context.Background()
	_, err := e.token()
	oneSentence(t, "not signed in", err, auth.ErrNeedsReauth)
	err = e.m.Resume(ctx, testAccount)
	oneSentence(t, "Resume of a missing grant", err, auth.ErrNeedsReauth)

	e.mustLogin()
	e.clock.Advance(2 * time.Hour)
	e.srv.FailNext(100, http.StatusServiceUnavailable)
	_, err = e.token()
	oneSentence(t, "token endpoint down", err, auth.ErrTransient)
	e.srv.FailNext(0, 0)

	e.srv.SetInvalidGrant("AADSTS700082: The refresh token has expired due to inactivity.")
	_, err = e.token()
	oneSentence(t, "refresh refused", err, auth.ErrNeedsReauth)
	_, err = e.token()
	oneSentence(t, "blocked afterwards", err, auth.ErrNeedsReauth)

	_, err = e.m.WaitLogin(ctx, "0123")
	if !errors.Is(err, auth.ErrLoginExpired) || strings.Contains(err.Error(), "auth:") || !strings.Contains(err.Error(), "start it again") {
		t.Fatalf("unknown login: %v", err)
	}
	_, err = e.m.AccessToken(ctx, "nope")
	if !errors.Is(err, auth.ErrUnknownAccount) || err.Error() != `unknown account "nope" (configured: scanner)` {
		t.Fatalf("unknown account: %v", err)
	}

	// App-only: a refused secret, then the same error again while blocked.
	e = newEnv(t)
	e.srv.SetClientSecret("s3cr3t-value-xyz")
	cfg := e.cfg()
	cfg.Flow, cfg.ClientSecret = "client_credentials", "wrong-secret-123"
	e.start(cfg)
	_, err = e.token()
	oneSentence(t, "wrong secret", err, auth.ErrMisconfigured)
	_, err = e.token()
	oneSentence(t, "wrong secret, blocked", err, auth.ErrMisconfigured)
}

// TestAADSTSFixes: issue 15. The Microsoft sign-in errors admins actually
// see get a short fix in the error and the health reason.
func TestAADSTSFixes(t *testing.T) {
	cases := []struct {
		code, oauth, desc string
		want              []string // in the error and the reason
	}{
		{"AADSTS50011", "invalid_request", "AADSTS50011: The redirect URI 'http://localhost:1/x' specified in the request does not match the redirect URIs configured for the application.",
			[]string{"AADSTS50011", "/oauth2/callback to the app registration"}},
		{"AADSTS65001", "invalid_grant", "AADSTS65001: The user or administrator has not consented to use the application.",
			[]string{"AADSTS65001", "Grant admin consent", "SMTP.Send"}},
		{"AADSTS90094", "invalid_grant", "AADSTS90094: The grant requires admin permission.",
			[]string{"AADSTS90094", "Grant admin consent", "SMTP.Send"}},
		{"AADSTS700016", "unauthorized_client", "AADSTS700016: Application with identifier 'client-1' was not found in the directory 'Contoso'.",
			[]string{"AADSTS700016", "check tenant and client_id", "contoso.onmicrosoft.com", testClient}},
		{"AADSTS53003", "invalid_grant", "AADSTS53003: Access has been blocked by Conditional Access policies.",
			[]string{"AADSTS53003", "Conditional Access", "sign-in log"}},
		{"AADSTS7000215", "invalid_client", "AADSTS7000215: Invalid client secret provided.",
			[]string{"AADSTS7000215", "Value, not its Secret ID"}},
		{"AADSTS7000222", "invalid_client", "AADSTS7000222: The provided client secret keys for app 'client-1' are expired.",
			[]string{"AADSTS7000222", "has expired", "update client_secret"}},
	}
	for _, c := range cases {
		t.Run(c.code, func(t *testing.T) {
			e := newEnv(t)
			e.start()
			e.mustLogin()
			e.clock.Advance(2 * time.Hour)
			e.srv.SetTokenError(http.StatusBadRequest, c.oauth, c.desc)
			_, err := e.token()
			oneSentence(t, "refresh", err, auth.ErrMisconfigured)
			h := e.health()
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) || !strings.Contains(h.Reason, w) {
					t.Fatalf("error %q / reason %q lack %q", err, h.Reason, w)
				}
			}
			if h.Status != auth.StatusMisconfigured {
				t.Fatalf("status %s", h.Status)
			}
			// The same answer to a sign-in's code exchange.
			_, err = e.browserLogin(testAccount)
			oneSentence(t, "code exchange", err, nil)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("login error %q lacks %q", err, w)
				}
			}
		})
	}
}
