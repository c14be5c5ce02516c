package auth_test

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/auth/authtest"
)

// healthGauge is spoold_account_health for the test account and status.
func healthGauge(t *testing.T, reg *prometheus.Registry, st auth.Status) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "spoold_account_health" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var acc, status string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "account":
					acc = l.GetValue()
				case "status":
					status = l.GetValue()
				}
			}
			if acc == testAccount && status == string(st) {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no spoold_account_health{status=%q}", st)
	return 0
}

// TestAppOnlyPendingUntilFirstToken: issue 15. An app-only account
// (client_credentials, service_account) that never obtained a token with its
// current settings is not "ok": it says so (pending, with how to test it now)
// in Health and metrics, at start, after a failure and after a reload, until a
// token was actually obtained.
func TestAppOnlyPendingUntilFirstToken(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	e.opts.Registerer = reg
	e.srv.SetClientSecret("s3cr3t-value-xyz")
	good := e.cfg()
	good.Flow, good.ClientSecret = "client_credentials", "s3cr3t-value-xyz"
	bad := good
	bad.ClientSecret = "wrong-secret-123"
	pending := func(when string) {
		t.Helper()
		h := e.health()
		if h.Status != auth.StatusPending || !strings.Contains(h.Reason, "spoolctl auth login "+testAccount) {
			t.Fatalf("%s: health = %s (%s), want pending with the command to test it", when, h.Status, h.Reason)
		}
		if healthGauge(t, reg, auth.StatusPending) != 1 || healthGauge(t, reg, auth.StatusOK) != 0 {
			t.Fatalf("%s: metrics do not say pending", when)
		}
	}

	e.start(bad)
	pending("at start")
	_, err := e.token()
	wantErr(t, err, auth.ErrMisconfigured)
	if h := e.health(); h.Status != auth.StatusMisconfigured {
		t.Fatalf("after a refused secret: %+v", h)
	}
	// The reload clears misconfigured for another try; nothing was obtained yet.
	if err := e.m.Reload([]auth.AccountConfig{good}); err != nil {
		t.Fatal(err)
	}
	pending("after the reload")
	if err := e.m.Resume(context.Background(), testAccount); err != nil { // what the daemon does on SIGHUP
		t.Fatal(err)
	}
	pending("after Resume")
	e.start(good) // a restart before any token
	pending("after a restart")

	if _, err := e.token(); err != nil {
		t.Fatal(err)
	}
	if h := e.health(); h.Status != auth.StatusOK || h.Reason != "" {
		t.Fatalf("after the first token: %+v", h)
	}
	if healthGauge(t, reg, auth.StatusOK) != 1 || healthGauge(t, reg, auth.StatusPending) != 0 {
		t.Fatal("metrics do not say ok after the first token")
	}
	e.start(good)
	if h := e.health(); h.Status != auth.StatusOK {
		t.Fatalf("restart after a token: %+v", h)
	}

	// New credentials: the cached token proves nothing about them. The next
	// token call obtains one with the new secret.
	e.srv.SetClientSecret("rotated-secret-456")
	rotated := good
	rotated.ClientSecret = "rotated-secret-456"
	if err := e.m.Reload([]auth.AccountConfig{rotated}); err != nil {
		t.Fatal(err)
	}
	pending("after a secret change")
	if _, err := e.token(); err != nil {
		t.Fatal(err)
	}
	if got := e.srv.Calls("token:" + authtest.GrantClientCredentials); got != 3 {
		t.Fatalf("client credential calls = %d, want 3 (refused, first, after the secret change)", got)
	}
	if h := e.health(); h.Status != auth.StatusOK {
		t.Fatalf("after a token with the new secret: %+v", h)
	}

	// `spoolctl auth login` on a pending account obtains the token at once.
	e.start(good)
	e.srv.SetClientSecret("s3cr3t-value-xyz")
	pending("back to the first secret")
	ls, err := e.m.StartLogin(context.Background(), testAccount, "")
	if err != nil || !ls.Done || ls.Health.Status != auth.StatusOK {
		t.Fatalf("StartLogin = %+v, %v", ls, err)
	}
}
