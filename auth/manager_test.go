package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/auth/authtest"
	"github.com/spoold/spoold/configs/field"
	"github.com/spoold/spoold/configs/secret"
	"github.com/spoold/spoold/spool"
)

// TestNoSecretsInLogsOrErrors runs every flow, success and failure, with
// debug logging and checks that no secret, code or token appears in any log
// line or error text.
func TestNoSecretsInLogsOrErrors(t *testing.T) {
	e := newEnv(t)
	const clientSecret = "client-secret-Zx9QwErTy"
	e.srv.SetClientSecret(clientSecret)
	certPEM, keyPEM, err := e.srv.NewClientCertificate()
	if err != nil {
		t.Fatal(err)
	}
	saKey, err := e.srv.NewServiceAccount("sa@p.iam.gserviceaccount.com")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	_ = os.WriteFile(certFile, certPEM, 0o600)
	_ = os.WriteFile(keyFile, keyPEM, 0o600)

	deleg := e.cfg()
	deleg.ClientSecret = clientSecret
	dev := e.cfg()
	dev.Name, dev.Flow, dev.ClientSecret = "dev", "device", clientSecret
	cc := e.cfg()
	cc.Name, cc.Flow, cc.ClientSecret = "cc", "client_credentials", clientSecret
	cert := e.cfg()
	cert.Name, cert.Flow, cert.CertificateFile, cert.PrivateKeyFile = "cert", "client_credentials", certFile, keyFile
	sa := auth.AccountConfig{Name: "sa", Provider: "google", Flow: "service_account", Mailbox: testMailbox, ServiceAccountFile: writePrivate(t, "sa.json", saKey)}
	cfgs := []auth.AccountConfig{deleg, dev, cc, cert, sa}
	m := e.start(cfgs...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	e.mustLogin()
	ls, err := m.StartLogin(ctx, "dev", auth.LoginDevice)
	if err != nil {
		t.Fatal(err)
	}
	_ = e.srv.ApproveDevice(ls.UserCode)
	if _, err := m.WaitLogin(ctx, ls.ID); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"cc", "cert", "sa"} {
		if _, err := m.StartLogin(ctx, name, ""); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	e.clock.Advance(2 * time.Hour)
	for _, name := range m.Accounts() {
		if _, err := m.AccessToken(ctx, name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// Failures: transient, invalid_grant, bad secret, identity mismatch.
	e.srv.FailNext(3, http.StatusServiceUnavailable)
	_, err = m.RefreshRejected(ctx, testAccount, "")
	e.note(err)
	e.srv.SetInvalidGrant("AADSTS700082: expired")
	for _, name := range m.Accounts() {
		_, err := m.RefreshRejected(ctx, name, "")
		e.note(err)
	}
	e.srv.SetInvalidGrant("")
	e.srv.SetIdentity("mallory@example.com")
	_, err = e.browserLogin(testAccount)
	e.note(err)
	wrong := cc
	wrong.ClientSecret = "wrong-secret-AbCdEf"
	if err := m.Reload([]auth.AccountConfig{deleg, dev, wrong, cert, sa}); err != nil {
		t.Fatal(err)
	}
	_, err = m.RefreshRejected(ctx, "cc", "")
	e.note(err)
	for _, h := range m.AllHealth(ctx) {
		b, _ := json.Marshal(h)
		e.errTexts = append(e.errTexts, string(b), h.Reason)
	}
	// Configs printed every way.
	for _, c := range cfgs {
		b, _ := json.Marshal(c)
		e.errTexts = append(e.errTexts, fmt.Sprintf("%v %+v %#v %s", c, c, c, b), fmt.Sprint(c.ClientSecret))
		e.opts.Logger.Debug("config", "cfg", c, "secret", c.ClientSecret)
	}

	secrets := append(e.srv.Issued(), clientSecret, "wrong-secret-AbCdEf", string(keyPEM), string(saKey))
	logs := e.logs.String()
	if !strings.Contains(logs, "level=DEBUG") {
		t.Fatal("debug logging was not captured")
	}
	texts := append([]string{logs}, e.errTexts...)
	if len(e.errTexts) < 8 {
		t.Fatalf("too few error texts collected (%d): the failure paths did not run", len(e.errTexts))
	}
	for _, s := range secrets {
		probe := s
		if len(probe) > 100 {
			probe = probe[len(probe)/2 : len(probe)/2+32] // a distinctive slice of a key
		}
		for _, txt := range texts {
			if strings.Contains(txt, probe) {
				t.Fatalf("secret %.12q... leaked in: %.300s", probe, txt)
			}
		}
	}
	if !strings.Contains(fmt.Sprintf("%v", deleg.ClientSecret), "[redacted]") {
		t.Fatal("a client secret does not print [redacted]")
	}
}

func TestSecretRedaction(t *testing.T) {
	s := secret.Secret("hunter2-value")
	var b strings.Builder
	logger := slog.New(slog.NewJSONHandler(&b, nil))
	logger.Info("x", "s", s)
	j, _ := json.Marshal(struct{ S secret.Secret }{s})
	for _, out := range []string{s.String(), fmt.Sprintf("%v|%s|%q|%+v|%#v|%x", s, s, s, s, s, s), b.String(), string(j)} {
		if strings.Contains(out, "hunter2") {
			t.Fatalf("leak: %s", out)
		}
	}
	if s.Reveal() != "hunter2-value" {
		t.Fatal("Reveal")
	}
	if secret.Secret("").String() != "" {
		t.Fatal("empty secret should print empty")
	}
}

func TestPresets(t *testing.T) {
	cases := []struct {
		p                      auth.Provider
		tenant, token, smtp, s string
	}{
		{auth.ProviderMicrosoft, "contoso.com", "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token", "smtp.office365.com:587", "https://outlook.office.com/SMTP.Send"},
		{auth.ProviderMicrosoftUSGov, "t1", "https://login.microsoftonline.us/t1/oauth2/v2.0/token", "smtp.office365.us:587", "https://outlook.office365.us/SMTP.Send"},
		{auth.ProviderGoogle, "", "https://oauth2.googleapis.com/token", "smtp.gmail.com:587", "https://mail.google.com/"},
	}
	for _, c := range cases {
		p, err := auth.Preset(c.p, c.tenant)
		if err != nil || p.TokenURL != c.token || p.SMTPAddr() != c.smtp || p.Scopes[0] != c.s {
			t.Fatalf("%s: %+v %v", c.p, p, err)
		}
	}
	if p, _ := auth.Preset(auth.ProviderMicrosoft, ""); !strings.Contains(p.AuthURL, "/organizations/") || !strings.Contains(strings.Join(p.Scopes, " "), "offline_access") {
		t.Fatalf("microsoft default: %+v", p)
	}
	if p, _ := auth.Preset(auth.ProviderMicrosoft, "x"); p.AppScopes[0] != "https://outlook.office365.com/.default" {
		t.Fatalf("app scope %v", p.AppScopes)
	}
	for _, prov := range []auth.Provider{auth.ProviderMicrosoft, auth.ProviderMicrosoftUSGov} {
		if p, _ := auth.Preset(prov, "t"); p.MaxConnections != 3 || p.RatePerMinute != 30 || p.MaxMessageSize != 35_000_000 {
			t.Fatalf("%s limits: %d conns, %v/min, %d bytes", prov, p.MaxConnections, p.RatePerMinute, p.MaxMessageSize)
		}
	}
	// Google documents none of the three for smtp.gmail.com: delivery's defaults apply.
	if p, _ := auth.Preset(auth.ProviderGoogle, ""); p.MaxConnections != 0 || p.RatePerMinute != 0 || p.MaxMessageSize != 0 {
		t.Fatalf("google limits: %+v", p)
	}
	if p, err := auth.Preset(auth.ProviderGeneric, ""); err != nil || p.TokenURL != "" || p.SMTPAddr() != "" {
		t.Fatalf("generic %+v %v", p, err)
	}
	if _, err := auth.Preset("yahoo", ""); err == nil {
		t.Fatal("unknown provider accepted")
	}
	if _, err := auth.Preset(auth.ProviderMicrosoft, "evil/../x"); err == nil {
		t.Fatal("tenant with a slash accepted")
	}
}

// TestValidateKeys checks that each problem is reported at the account's
// YAML key, so configs can point at the line.
func TestValidateKeys(t *testing.T) {
	dir := t.TempDir()
	srv := authtest.New("c", "")
	certPEM, keyPEM, err := srv.NewClientCertificate()
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := srv.NewClientCertificate()
	if err != nil {
		t.Fatal(err)
	}
	saKey, err := srv.NewServiceAccount("sa@p.iam.gserviceaccount.com")
	if err != nil {
		t.Fatal(err)
	}
	file := func(name string, data []byte, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // umask may have narrowed it
			t.Fatal(err)
		}
		return path
	}
	certFile, keyFile := file("c.pem", certPEM, 0o644), file("k.pem", keyPEM, 0o600)
	bothFile := file("both.pem", append(append([]byte{}, keyPEM...), certPEM...), 0o600)
	otherKeyFile := file("other.pem", otherKey, 0o600)
	openKey := file("open.pem", keyPEM, 0o644)
	saFile, saOpen := file("sa.json", saKey, 0o600), file("sa-open.json", saKey, 0o644)
	saBad := file("sa-bad.json", []byte("{not json"), 0o600)

	ms := auth.AccountConfig{Name: "a", Provider: "microsoft", Tenant: "contoso.com", ClientID: "c", Mailbox: "x@contoso.com",
		RedirectURL: "http://localhost:9191/oauth2/callback"}
	with := func(f func(*auth.AccountConfig)) auth.AccountConfig { c := ms; f(&c); return c }
	cases := []struct {
		name string
		cfg  auth.AccountConfig
		key  string
		want string // part of the reason
	}{
		{"no name", with(func(c *auth.AccountConfig) { c.Name = "" }), "name", "required"},
		{"no provider", with(func(c *auth.AccountConfig) { c.Provider = "" }), "provider", "required"},
		{"unknown provider", with(func(c *auth.AccountConfig) { c.Provider = "aol" }), "provider", "unknown"},
		{"unknown flow", with(func(c *auth.AccountConfig) { c.Flow = "implicit" }), "flow", "unknown"},
		{"no mailbox", with(func(c *auth.AccountConfig) { c.Mailbox = "" }), "mailbox", "required"},
		{"bad mailbox", with(func(c *auth.AccountConfig) { c.Mailbox = "Alice <a@b.c>" }), "mailbox", "not an e-mail address"},
		{"no tenant", with(func(c *auth.AccountConfig) { c.Tenant = "" }), "tenant", "required for provider microsoft"},
		{"bad tenant", with(func(c *auth.AccountConfig) { c.Tenant = "evil/../x" }), "tenant", "not a tenant ID or domain"},
		{"app-only on organizations", with(func(c *auth.AccountConfig) {
			c.Flow, c.Tenant, c.ClientSecret = "client_credentials", "organizations", "s"
		}), "tenant", "specific tenant"},
		{"no client_id", with(func(c *auth.AccountConfig) { c.ClientID = "" }), "client_id", "application (client) ID"},
		{"microsoft service account", with(func(c *auth.AccountConfig) { c.Flow, c.ServiceAccountFile = "service_account", saFile }), "flow", "uses client_credentials"},
		{"no redirect", with(func(c *auth.AccountConfig) { c.RedirectURL = "" }), "redirect_url", "required for flow authcode"},
		{"bad redirect", with(func(c *auth.AccountConfig) { c.RedirectURL = "localhost:9191" }), "redirect_url", "not an http(s) URL"},
		{"bad token_url", with(func(c *auth.AccountConfig) { c.TokenURL = "ftp://x" }), "token_url", "not an http(s) URL"},
		{"bad auth_url", with(func(c *auth.AccountConfig) { c.AuthURL = "/authorize" }), "auth_url", "not an http(s) URL"},
		{"bad device_auth_url", with(func(c *auth.AccountConfig) { c.DeviceAuthURL = "https://" }), "device_auth_url", "not an http(s) URL"},
		{"negative refresh_before", with(func(c *auth.AccountConfig) { c.RefreshBefore = -time.Second }), "refresh_before", "negative"},
		{"negative keep_alive", with(func(c *auth.AccountConfig) { c.KeepAlive = -time.Hour }), "keep_alive", "negative"},
		{"short token_timeout", with(func(c *auth.AccountConfig) { c.TokenTimeout = time.Millisecond }), "token_timeout", "out of range"},
		{"long token_timeout", with(func(c *auth.AccountConfig) { c.TokenTimeout = time.Hour }), "token_timeout", "out of range"},
		{"no app credential", with(func(c *auth.AccountConfig) { c.Flow = "client_credentials" }), "client_secret", "needs client_secret"},
		{"certificate without key", with(func(c *auth.AccountConfig) { c.Flow, c.CertificateFile = "client_credentials", certFile }), "private_key_file", "set both"},
		{"key without certificate", with(func(c *auth.AccountConfig) { c.Flow, c.PrivateKeyFile = "client_credentials", keyFile }), "certificate_file", "set both"},
		{"missing key", with(func(c *auth.AccountConfig) {
			c.Flow, c.CertificateFile, c.PrivateKeyFile = "client_credentials", certFile, filepath.Join(dir, "none.pem")
		}), "private_key_file", "cannot read"},
		{"missing certificate", with(func(c *auth.AccountConfig) {
			c.Flow, c.CertificateFile, c.PrivateKeyFile = "client_credentials", filepath.Join(dir, "none.pem"), keyFile
		}), "certificate_file", "cannot read"},
		{"readable key", with(func(c *auth.AccountConfig) {
			c.Flow, c.CertificateFile, c.PrivateKeyFile = "client_credentials", certFile, openKey
		}), "private_key_file", "chmod 600"},
		{"key of another certificate", with(func(c *auth.AccountConfig) {
			c.Flow, c.CertificateFile, c.PrivateKeyFile = "client_credentials", certFile, otherKeyFile
		}), "private_key_file", "does not match"},
		{"google device", auth.AccountConfig{Name: "g", Provider: "google", Flow: "device", ClientID: "c", Mailbox: "x@y.example"}, "flow", "device flow"},
		{"google client_credentials", auth.AccountConfig{Name: "g", Provider: "google", Flow: "client_credentials", ClientID: "c", ClientSecret: "s", Mailbox: "x@y.example"}, "flow", "no client_credentials grant"},
		{"google authcode without client_id", auth.AccountConfig{Name: "g", Provider: "google", Mailbox: "x@y.example", RedirectURL: "http://localhost/cb"}, "client_id", "Google Cloud console"},
		{"no service account key", auth.AccountConfig{Name: "g", Provider: "google", Flow: "service_account", Mailbox: "x@y.example"}, "service_account_file", "required"},
		{"service account key not JSON", auth.AccountConfig{Name: "g", Provider: "google", Flow: "service_account", Mailbox: "x@y.example", ServiceAccountFile: saBad}, "service_account_file", "not valid JSON"},
		{"service account key readable", auth.AccountConfig{Name: "g", Provider: "google", Flow: "service_account", Mailbox: "x@y.example", ServiceAccountFile: saOpen}, "service_account_file", "chmod 600"},
		{"generic without token_url", auth.AccountConfig{Name: "x", Provider: "generic", ClientID: "c", Mailbox: "x@y.example", AuthURL: "https://a", Scopes: []string{"s"}, RedirectURL: "http://localhost/cb"}, "token_url", "required for provider generic"},
		{"generic without auth_url", auth.AccountConfig{Name: "x", Provider: "generic", ClientID: "c", Mailbox: "x@y.example", TokenURL: "https://t", Scopes: []string{"s"}, RedirectURL: "http://localhost/cb"}, "auth_url", "required"},
		{"generic device without device_auth_url", auth.AccountConfig{Name: "x", Provider: "generic", Flow: "device", ClientID: "c", Mailbox: "x@y.example", TokenURL: "https://t", Scopes: []string{"s"}}, "device_auth_url", "required"},
		{"generic without scopes", auth.AccountConfig{Name: "x", Provider: "generic", ClientID: "c", Mailbox: "x@y.example", TokenURL: "https://t", AuthURL: "https://a", RedirectURL: "http://localhost/cb"}, "scopes", "required"},
		{"generic without client_id", auth.AccountConfig{Name: "x", Provider: "generic", Mailbox: "x@y.example", TokenURL: "https://t", AuthURL: "https://a", Scopes: []string{"s"}, RedirectURL: "http://localhost/cb"}, "client_id", "required"},
		{"generic service account", auth.AccountConfig{Name: "x", Provider: "generic", Flow: "service_account", Mailbox: "x@y.example", TokenURL: "https://t", Scopes: []string{"s"}, ServiceAccountFile: saFile}, "flow", "for provider google"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ps field.Problems
			if err := c.cfg.Validate(); !errors.As(err, &ps) {
				t.Fatalf("Validate = %v, want field.Problems", err)
			}
			found := false
			for _, p := range ps {
				if p.Key == c.key && strings.Contains(p.Reason, c.want) {
					found = true
				}
			}
			if !found {
				t.Fatalf("problems %q, want key %q with %q", ps, c.key, c.want)
			}
			// Manager construction refuses exactly what Validate refuses.
			if _, err := auth.NewManager([]auth.AccountConfig{c.cfg}, newMemStore(), auth.Options{}); err == nil {
				t.Fatal("NewManager accepted what Validate refused")
			}
		})
	}

	// Valid accounts of every flow pass Validate and start a Manager.
	good := []auth.AccountConfig{
		ms,
		with(func(c *auth.AccountConfig) { c.Name, c.Flow, c.RedirectURL = "dev", "device", "" }),
		with(func(c *auth.AccountConfig) {
			c.Name, c.Flow, c.ClientSecret, c.RedirectURL = "cc", "client_credentials", "s", ""
		}),
		with(func(c *auth.AccountConfig) {
			c.Name, c.Flow, c.CertificateFile, c.PrivateKeyFile = "cert", "client_credentials", certFile, keyFile
		}),
		with(func(c *auth.AccountConfig) { c.Name, c.Flow, c.PrivateKeyFile = "both", "client_credentials", bothFile }),
		{Name: "sa", Provider: "google", Flow: "service_account", Mailbox: "x@y.example", ServiceAccountFile: saFile},
		{Name: "gmail", Provider: "Google", ClientID: "c", Mailbox: " x@y.example ", RedirectURL: "http://localhost/cb"},
		{Name: "gen", Provider: "generic", Flow: "device", ClientID: "c", Mailbox: "x@y.example", TokenURL: "https://t", DeviceAuthURL: "https://d", Scopes: []string{"s"}},
	}
	for _, c := range good {
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
	}
	if err := auth.ValidateAccounts(good); err != nil {
		t.Fatal(err)
	}
	m, err := auth.NewManager(good, newMemStore(), auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got := m.Accounts(); len(got) != len(good) {
		t.Fatalf("accounts = %v", got)
	}

	// ValidateAccounts prefixes keys with the position and finds names used twice.
	err = auth.ValidateAccounts([]auth.AccountConfig{ms, with(func(c *auth.AccountConfig) { c.Name, c.Mailbox = "b", "" }), ms})
	var ps field.Problems
	if !errors.As(err, &ps) || len(ps) != 2 || ps[0].Key != "[1].mailbox" || ps[1].Key != "[2].name" || !strings.Contains(ps[1].Reason, "twice (also [0])") {
		t.Fatalf("ValidateAccounts = %q", err)
	}
}

// TestWithDefaults checks the defaults of each provider and flow, and that
// applying them twice changes nothing.
func TestWithDefaults(t *testing.T) {
	const (
		msBase  = "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/"
		govBase = "https://login.microsoftonline.us/contoso.us/oauth2/v2.0/"
	)
	cases := []struct {
		in               auth.AccountConfig
		flow             string
		auth, token, dev string
		scopes           string
	}{
		{auth.AccountConfig{Provider: "microsoft", Tenant: "contoso.com"}, "authcode",
			msBase + "authorize", msBase + "token", msBase + "devicecode", "https://outlook.office.com/SMTP.Send offline_access"},
		{auth.AccountConfig{Provider: "Microsoft", Tenant: "contoso.com", Flow: "device"}, "device",
			msBase + "authorize", msBase + "token", msBase + "devicecode", "https://outlook.office.com/SMTP.Send offline_access"},
		{auth.AccountConfig{Provider: "microsoft", Tenant: "contoso.com", Flow: "client_credentials"}, "client_credentials",
			"", msBase + "token", "", "https://outlook.office365.com/.default"},
		{auth.AccountConfig{Provider: "microsoft-usgov", Tenant: "contoso.us"}, "authcode",
			govBase + "authorize", govBase + "token", govBase + "devicecode", "https://outlook.office365.us/SMTP.Send offline_access"},
		{auth.AccountConfig{Provider: "microsoft-usgov", Tenant: "contoso.us", Flow: "client_credentials"}, "client_credentials",
			"", govBase + "token", "", "https://outlook.office365.us/.default"},
		{auth.AccountConfig{Provider: "google"}, "authcode",
			"https://accounts.google.com/o/oauth2/v2/auth", "https://oauth2.googleapis.com/token", "https://oauth2.googleapis.com/device/code", "https://mail.google.com/"},
		// A service account's token endpoint comes from its key file (token_uri).
		{auth.AccountConfig{Provider: "google", Flow: "service_account"}, "service_account", "", "", "", "https://mail.google.com/"},
		{auth.AccountConfig{Provider: "generic", TokenURL: "https://t", Scopes: []string{"s"}}, "authcode", "", "https://t", "", "s"},
		// Set values win over the preset.
		{auth.AccountConfig{Provider: "microsoft", Tenant: "contoso.com", TokenURL: "https://t", Scopes: []string{"s"}}, "authcode",
			msBase + "authorize", "https://t", msBase + "devicecode", "s"},
		// Without a provider there is no flow to default.
		{auth.AccountConfig{}, "", "", "", "", ""},
	}
	for _, c := range cases {
		got := c.in.WithDefaults()
		if got.Flow != c.flow || got.AuthURL != c.auth || got.TokenURL != c.token || got.DeviceAuthURL != c.dev || strings.Join(got.Scopes, " ") != c.scopes {
			t.Errorf("%+v: got flow %q auth %q token %q device %q scopes %q", c.in, got.Flow, got.AuthURL, got.TokenURL, got.DeviceAuthURL, got.Scopes)
		}
		if got.RefreshBefore != auth.DefaultRefreshBefore || got.KeepAlive != auth.DefaultKeepAlive || got.TokenTimeout != auth.DefaultTokenTimeout {
			t.Errorf("%+v: durations %s %s %s", c.in, got.RefreshBefore, got.KeepAlive, got.TokenTimeout)
		}
		if got.RedirectURL != "" {
			t.Errorf("%+v: redirect_url %q: it is the daemon's to fill", c.in, got.RedirectURL)
		}
		if again := got.WithDefaults(); !reflect.DeepEqual(again, got) {
			t.Errorf("not idempotent: %+v then %+v", got, again)
		}
	}
	set := auth.AccountConfig{Provider: "google", RefreshBefore: time.Minute, KeepAlive: time.Hour, TokenTimeout: 5 * time.Second}.WithDefaults()
	if set.RefreshBefore != time.Minute || set.KeepAlive != time.Hour || set.TokenTimeout != 5*time.Second {
		t.Fatalf("set durations overwritten: %+v", set)
	}
}

func TestReloadKeepsGrants(t *testing.T) {
	e := newEnv(t)
	m := e.start()
	e.mustLogin()
	tok, _ := e.token()
	other := e.cfg()
	other.Name = "other"
	if err := m.Reload([]auth.AccountConfig{e.cfg(), other}); err != nil {
		t.Fatal(err)
	}
	if t2, err := e.token(); err != nil || t2 != tok {
		t.Fatalf("grant lost on reload: %v", err)
	}
	if !slices.Contains(m.Accounts(), "other") {
		t.Fatal("account not added")
	}
	bad := other
	bad.Mailbox = ""
	if err := m.Reload([]auth.AccountConfig{bad}); err == nil || !slices.Contains(m.Accounts(), testAccount) {
		t.Fatal("an invalid reload changed the account set")
	}
	if err := m.Reload([]auth.AccountConfig{other}); err != nil || slices.Contains(m.Accounts(), testAccount) {
		t.Fatalf("removal: %v", err)
	}
	if _, err := m.AccessToken(context.Background(), testAccount); !errors.Is(err, auth.ErrUnknownAccount) {
		t.Fatalf("removed account: %v", err)
	}
	// Changing the mailbox makes the old grant unusable.
	changed := e.cfg()
	changed.Mailbox = "bob@example.com"
	if err := m.Reload([]auth.AccountConfig{e.cfg()}); err != nil {
		t.Fatal(err)
	}
	if err := m.Reload([]auth.AccountConfig{changed}); err != nil {
		t.Fatal(err)
	}
	_, err := e.token()
	wantErr(t, err, auth.ErrNeedsReauth)
	if h := e.health(); !strings.Contains(h.Reason, "bob@example.com") {
		t.Fatalf("reason %q", h.Reason)
	}
	// Changing it back makes the grant usable again (issue 12).
	if err := m.Reload([]auth.AccountConfig{e.cfg()}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.token(); err != nil {
		t.Fatalf("mailbox restored: %v", err)
	}
}

func TestMisconfiguredClearedByConfigChangeOrResume(t *testing.T) {
	e := newEnv(t)
	e.srv.SetClientSecret("good-secret-1")
	cfg := e.cfg()
	cfg.Flow, cfg.ClientSecret = "client_credentials", "bad-secret-1"
	m := e.start(cfg)
	_, err := e.token()
	wantErr(t, err, auth.ErrMisconfigured)
	e.start(cfg) // restart with the same config: still misconfigured, no new request
	before := e.srv.Calls("token:" + authtest.GrantClientCredentials)
	_, err = e.token()
	wantErr(t, err, auth.ErrMisconfigured)
	if e.srv.Calls("token:"+authtest.GrantClientCredentials) != before {
		t.Fatal("a misconfigured account kept calling the token endpoint")
	}
	cfg.ClientSecret = "good-secret-1"
	m = e.start(cfg) // restart with the fixed config
	if _, err := e.token(); err != nil {
		t.Fatalf("fixed config: %v", err)
	}
	ctx := context.Background()
	_ = m.MarkMisconfigured(ctx, testAccount, "SMTP AUTH disabled (535 5.7.139): enable it for the mailbox")
	if err := m.Resume(ctx, testAccount); err != nil {
		t.Fatal(err)
	}
	if _, err := e.token(); err != nil {
		t.Fatalf("after Resume: %v", err)
	}
}

func TestHealthWarnings(t *testing.T) {
	e := newEnv(t)
	cfg := e.cfg()
	cfg.Provider = "google"
	cfg.ClientSecretExpires = e.clock.Now().Add(9 * 24 * time.Hour)
	e.start(cfg)
	e.mustLogin()
	h := e.health()
	if len(h.Warnings) != 1 || !strings.Contains(h.Warnings[0], "expires in 9 days") {
		t.Fatalf("warnings %q", h.Warnings)
	}
	e.srv.SetRotate(false)
	for i := 0; i < 6; i++ { // keep refreshing daily so only the grant ages
		e.clock.Advance(24 * time.Hour)
		if _, err := e.token(); err != nil {
			t.Fatal(err)
		}
	}
	h = e.health()
	if h.GrantAge != 6*24*time.Hour || len(h.Warnings) != 2 || !strings.Contains(h.Warnings[1], "testing") {
		t.Fatalf("age %v warnings %q", h.GrantAge, h.Warnings)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	e.opts.Registerer = reg
	e.start()
	e.mustLogin()
	e.clock.Advance(2 * time.Hour)
	if _, err := e.token(); err != nil {
		t.Fatal(err)
	}
	e.srv.SetInvalidGrant("x")
	_, _ = e.m.RefreshRejected(context.Background(), testAccount, "")
	e.start() // a second Manager on the same registry reuses the collectors
	want := `
# HELP spoold_account_health 1 for the account's current health status (ok, needs_reauth, misconfigured, refresh_failing, pending), 0 for the others.
# TYPE spoold_account_health gauge
spoold_account_health{account="scanner",status="misconfigured"} 0
spoold_account_health{account="scanner",status="needs_reauth"} 1
spoold_account_health{account="scanner",status="ok"} 0
spoold_account_health{account="scanner",status="pending"} 0
spoold_account_health{account="scanner",status="refresh_failing"} 0
# HELP spoold_token_refreshes_total OAuth2 token requests (refresh, client credentials, JWT bearer) by account and result.
# TYPE spoold_token_refreshes_total counter
spoold_token_refreshes_total{account="scanner",result="needs_reauth"} 1
spoold_token_refreshes_total{account="scanner",result="ok"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

// TestRotationWithRealSpool repeats the reopen test on the bbolt spool.
func TestRotationWithRealSpool(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	open := func() *spool.Spool {
		s, err := spool.Open(dir, spool.Options{RescueInterval: -1})
		if err != nil {
			t.Fatalf("spool.Open: %v", err)
		}
		return s
	}
	sp := open()
	m, err := auth.NewManager([]auth.AccountConfig{e.cfg()}, sp, e.opts)
	if err != nil {
		t.Fatal(err)
	}
	e.m = m
	e.hmu.Lock()
	e.handler = m.CallbackHandler()
	e.hmu.Unlock()
	e.mustLogin()
	for i := 0; i < 2; i++ {
		e.clock.Advance(2 * time.Hour)
		if _, err := e.token(); err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
		_ = m.Close()
		if err := sp.Close(); err != nil {
			t.Fatal(err)
		}
		sp = open()
		if m, err = auth.NewManager([]auth.AccountConfig{e.cfg()}, sp, e.opts); err != nil {
			t.Fatal(err)
		}
		e.m = m
	}
	e.clock.Advance(2 * time.Hour)
	if _, err := e.token(); err != nil {
		t.Fatalf("after reopen: %v", err)
	}
	if h := e.health(); h.Status != auth.StatusOK {
		t.Fatalf("status %s %s", h.Status, h.Reason)
	}
	_ = m.Close()
	_ = sp.Close()
}

// A login whose health write was lost still counts after a restart: the
// stored grant is newer than the stored "not signed in" status.
func TestLostHealthWriteAfterLogin(t *testing.T) {
	e := newEnv(t)
	e.start()
	// A stored "needs_reauth" from before the login.
	if err := e.m.MarkNeedsReauth(context.Background(), testAccount, "not signed in"); err != nil {
		t.Fatal(err)
	}
	e.store.setFailPut(func(_, key string) error {
		if key == auth.HealthKey {
			return errors.New("io error")
		}
		return nil
	})
	e.mustLogin()
	e.store.setFailPut(nil)
	if !strings.Contains(e.logs.String(), "saving account health failed") {
		t.Fatal("health write failure not logged")
	}
	if len(e.store.get(testAccount, auth.HealthKey)) == 0 {
		t.Fatal("setup: no stored health")
	}
	e.start()
	if h := e.health(); h.Status != auth.StatusOK {
		t.Fatalf("after restart: %s %s", h.Status, h.Reason)
	}
}
