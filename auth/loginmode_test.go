package auth_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/spoold/spoold/auth"
)

// TestGoogleDeviceLoginRefused: issue 15. Google does not allow the Gmail
// scope in the device flow: `auth login gmail --device` is refused before
// any request, with the ways that work.
func TestGoogleDeviceLoginRefused(t *testing.T) {
	e := newEnv(t)
	cfg := auth.AccountConfig{Name: testAccount, Provider: "google", ClientID: testClient, Mailbox: testMailbox,
		AuthURL: e.srv.AuthURL(), TokenURL: e.srv.TokenURL(), DeviceAuthURL: e.srv.DeviceAuthURL(),
		RedirectURL: e.cb.URL + "/oauth2/callback"}
	e.start(cfg)
	_, err := e.m.StartLogin(context.Background(), testAccount, auth.LoginDevice)
	if !errors.Is(err, auth.ErrLoginUnsupported) {
		t.Fatalf("err = %v, want ErrLoginUnsupported", err)
	}
	for _, want := range []string{"account " + testAccount, "Google", "spoolctl auth login " + testAccount, "--paste", "service_account"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("refusal lacks %q: %v", want, err)
		}
	}
	if n := e.srv.Calls("devicecode"); n != 0 {
		t.Fatalf("the device endpoint was called %d times", n)
	}
	if _, err := e.m.StartLogin(context.Background(), testAccount, auth.LoginBrowser); err != nil {
		t.Fatalf("the browser login the refusal offers: %v", err)
	}
}

// TestDeviceAccountNeedsNoRedirect: a device-flow account has no redirect
// URL and needs none; asked for a browser login, it says to use --device.
func TestDeviceAccountNeedsNoRedirect(t *testing.T) {
	e := newEnv(t)
	cfg := e.cfg()
	cfg.Flow, cfg.RedirectURL = "device", ""
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a device account without redirect_url: %v", err)
	}
	e.start(cfg)
	for _, mode := range []auth.LoginMode{auth.LoginBrowser, auth.LoginPaste} {
		_, err := e.m.StartLogin(context.Background(), testAccount, mode)
		if !errors.Is(err, auth.ErrLoginUnsupported) || !strings.Contains(err.Error(), "--device") {
			t.Fatalf("%s login of a device account: %v", mode, err)
		}
	}
	ls, err := e.m.StartLogin(context.Background(), testAccount, "")
	if err != nil || ls.Mode != auth.LoginDevice || ls.RedirectURL != "" {
		t.Fatalf("the account's own flow: %+v, %v", ls, err)
	}
}
