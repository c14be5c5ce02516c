package auth_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/configs/field"
)

// TestSignInAs: issue 15. The mailbox is an alias (or the UPN differs from
// the address): without sign_in_as the identity check refuses the sign-in
// and says both names and both fixes; with sign_in_as set to the UPN the
// sign-in is accepted, matched case-insensitively, and the mailbox stays
// what the account sends as.
func TestSignInAs(t *testing.T) {
	const upn = "Scan.Admin@contoso.onmicrosoft.com"
	e := newEnv(t)
	e.srv.SetIdentity(upn)
	e.start()
	_, err := e.browserLogin(testAccount)
	if !errors.Is(err, auth.ErrIdentityMismatch) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{upn, testMailbox, "sign in as " + testMailbox, "sign_in_as: " + upn} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("mismatch error lacks %q: %v", want, err)
		}
	}
	if strings.Count(err.Error(), "account "+testAccount) != 1 || strings.Contains(err.Error(), "auth: ") {
		t.Fatalf("error names the account other than once or repeats a prefix: %v", err)
	}

	cfg := e.cfg()
	cfg.SignInAs = strings.ToLower(upn)
	if err := e.m.Reload([]auth.AccountConfig{cfg}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ls, err := e.m.StartLogin(ctx, testAccount, auth.LoginBrowser)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ls.AuthURL, "login_hint=scan.admin%40contoso.onmicrosoft.com") {
		t.Fatalf("the authorize URL does not hint the sign-in name: %s", ls.AuthURL)
	}
	h := e.mustLogin()
	if h.Identity != upn || h.Mailbox != testMailbox {
		t.Fatalf("health after sign-in = %+v", h)
	}
	if _, err := e.token(); err != nil {
		t.Fatal(err)
	}
	// Dropping sign_in_as again: the grant no longer fits (it is for the UPN).
	if err := e.m.Reload([]auth.AccountConfig{e.cfg()}); err != nil {
		t.Fatal(err)
	}
	if h := e.health(); h.Status != auth.StatusNeedsReauth || !strings.Contains(h.Reason, "sign_in_as") {
		t.Fatalf("after dropping sign_in_as: %+v", h)
	}
	if err := e.m.Reload([]auth.AccountConfig{cfg}); err != nil {
		t.Fatal(err)
	}
	if h := e.health(); h.Status != auth.StatusOK {
		t.Fatalf("after restoring sign_in_as: %+v", h)
	}
}

func TestSignInAsValidated(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		name string
		set  func(*auth.AccountConfig)
		want string
	}{
		{"not an address", func(c *auth.AccountConfig) { c.SignInAs = "Scan Admin" }, "not an e-mail address"},
		{"app-only", func(c *auth.AccountConfig) {
			c.Flow, c.ClientSecret, c.SignInAs = "client_credentials", "s", "a@contoso.com"
		}, "signs no user in"},
	} {
		cfg := e.cfg()
		c.set(&cfg)
		var ps field.Problems
		if err := cfg.Validate(); !errors.As(err, &ps) {
			t.Fatalf("%s: Validate = %v", c.name, err)
		}
		found := false
		for _, p := range ps {
			found = found || p.Key == "sign_in_as" && strings.Contains(p.Reason, c.want)
		}
		if !found {
			t.Fatalf("%s: problems %v, want sign_in_as: %s", c.name, ps, c.want)
		}
	}
	cfg := e.cfg()
	cfg.SignInAs = " Scan.Admin@contoso.onmicrosoft.com "
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a valid sign_in_as: %v", err)
	}
}
