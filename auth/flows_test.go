package auth_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/auth/authtest"
)

func TestAuthCodeBrowserLoginEndToEnd(t *testing.T) {
	e := newEnv(t)
	e.start()
	if h := e.health(); h.Status != auth.StatusNeedsReauth || !strings.Contains(h.Reason, "spoolctl auth login scanner") {
		t.Fatalf("before login: %+v", h)
	}
	_, err := e.token()
	wantErr(t, err, auth.ErrNeedsReauth)

	h := e.mustLogin()
	if !strings.EqualFold(h.Identity, testMailbox) || h.GrantedAt.IsZero() || h.AccessTokenExpiry.IsZero() {
		t.Fatalf("health after login: %+v", h)
	}
	tok, err := e.token()
	if err != nil || !strings.HasPrefix(tok, "at-") {
		t.Fatalf("AccessToken = %q, %v", tok, err)
	}
	if got := e.srv.Calls("authorize"); got != 1 {
		t.Fatalf("authorize calls = %d", got)
	}
	if got := e.srv.Calls("token:" + authtest.GrantAuthCode); got != 1 {
		t.Fatalf("code exchanges = %d", got)
	}
	if got := e.srv.Calls("token:" + authtest.GrantRefresh); got != 0 {
		t.Fatalf("a fresh token was refreshed: %d refreshes", got)
	}
	if len(e.store.get(testAccount, auth.TokenKey)) == 0 {
		t.Fatal("grant not persisted")
	}
	select {
	case name := <-e.recovered:
		if name != testAccount {
			t.Fatalf("recovered %q", name)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("login did not signal recovery")
	}
	// Health survives in the store, readable without the config.
	if oh := e.storedHealth(); oh["status"] != string(auth.StatusOK) || oh["mailbox"] != testMailbox {
		t.Fatalf("stored health = %v", oh)
	}
}

func TestCallbackRejectsUnknownStateAndReplay(t *testing.T) {
	e := newEnv(t)
	e.start()
	resp, err := http.Get(e.cb.URL + "/oauth2/callback?state=forged&code=x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("forged state answered %d", resp.StatusCode)
	}
	ctx := context.Background()
	ls, err := e.m.StartLogin(ctx, testAccount, auth.LoginBrowser)
	if err != nil {
		t.Fatal(err)
	}
	loc := authorizeRedirect(t, ls.AuthURL)
	for i, want := range []int{http.StatusOK, http.StatusBadRequest} {
		r, err := http.Get(loc)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if i == 0 && r.StatusCode != want {
			t.Fatalf("first callback answered %d", r.StatusCode)
		}
		if i == 1 && r.StatusCode == http.StatusOK && e.srv.Calls("token:"+authtest.GrantAuthCode) != 1 {
			t.Fatal("a replayed callback exchanged the code again")
		}
	}
	if _, err := e.m.WaitLogin(ctx, ls.ID); err != nil {
		t.Fatalf("WaitLogin: %v", err)
	}
}

func TestPasteLogin(t *testing.T) {
	e := newEnv(t)
	e.start()
	ctx := context.Background()
	ls, err := e.m.StartLogin(ctx, testAccount, auth.LoginPaste)
	if err != nil {
		t.Fatal(err)
	}
	loc := authorizeRedirect(t, ls.AuthURL)
	if !strings.Contains(loc, "code=") {
		t.Fatalf("authorize redirect %q", loc)
	}
	if _, err := e.m.CompletePaste(ctx, ls.ID, "http://localhost/?code=abc&state=wrong"); e.note(err) == nil || !strings.Contains(err.Error(), "state") {
		t.Fatalf("wrong state accepted: %v", err)
	}
	if _, err := e.m.CompletePaste(ctx, ls.ID, "nonsense"); e.note(err) == nil {
		t.Fatal("garbage accepted")
	}
	h, err := e.m.CompletePaste(ctx, ls.ID, "  "+loc+"\n")
	if e.note(err) != nil || h.Status != auth.StatusOK {
		t.Fatalf("CompletePaste = %+v, %v", h, err)
	}
	if h2, err := e.m.WaitLogin(ctx, ls.ID); err != nil || h2.Status != auth.StatusOK {
		t.Fatalf("WaitLogin after paste = %+v, %v", h2, err)
	}
	if _, err := e.token(); err != nil {
		t.Fatal(err)
	}
}

func TestIdentityMismatchRefused(t *testing.T) {
	e := newEnv(t)
	e.srv.SetIdentity("bob@example.com")
	e.start()
	_, err := e.browserLogin(testAccount)
	if !errors.Is(err, auth.ErrIdentityMismatch) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "bob@example.com") || !strings.Contains(err.Error(), testMailbox) {
		t.Fatalf("error does not name both identities: %v", err)
	}
	if len(e.store.get(testAccount, auth.TokenKey)) != 0 {
		t.Fatal("a grant for the wrong identity was stored")
	}
	if h := e.health(); h.Status != auth.StatusNeedsReauth {
		t.Fatalf("status = %s", h.Status)
	}
	// Case differences are not a mismatch.
	e.srv.SetIdentity(strings.ToUpper(testMailbox))
	e.mustLogin()
}

func TestRotationPersistedAcrossReopen(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.mustLogin()
	first := string(e.store.get(testAccount, auth.TokenKey))
	for i := 0; i < 3; i++ {
		e.clock.Advance(2 * time.Hour)
		if _, err := e.token(); err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
		e.start() // restart: everything comes from the store
	}
	if got := e.srv.Calls("token:" + authtest.GrantRefresh); got != 3 {
		t.Fatalf("refreshes = %d, want 3", got)
	}
	if string(e.store.get(testAccount, auth.TokenKey)) == first {
		t.Fatal("rotated refresh token not persisted")
	}
	if h := e.health(); h.Status != auth.StatusOK {
		t.Fatalf("status %s: %s", h.Status, h.Reason)
	}
}

func TestRefreshWithoutRotationKeepsRefreshToken(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.mustLogin()
	e.srv.SetRotate(false)
	for i := 0; i < 3; i++ {
		e.clock.Advance(2 * time.Hour)
		if _, err := e.token(); err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
		e.start()
	}
	if got := e.srv.Calls("token:" + authtest.GrantRefresh); got != 3 {
		t.Fatalf("refreshes = %d", got)
	}
}

func TestCrashBetweenRotationAndSave(t *testing.T) {
	t.Run("process continues", func(t *testing.T) {
		e := newEnv(t)
		e.start()
		e.mustLogin()
		e.clock.Advance(2 * time.Hour)
		e.store.setFailPut(func(_, key string) error {
			if key == auth.TokenKey {
				return errors.New("disk full")
			}
			return nil
		})
		_, err := e.token()
		wantErr(t, err, auth.ErrTransient)
		if h := e.health(); len(h.Warnings) == 0 {
			t.Fatal("no warning about the unsaved token")
		}
		e.store.setFailPut(nil)
		tok, err := e.token()
		if err != nil || tok == "" {
			t.Fatalf("after the store recovered: %q %v", tok, err)
		}
		if got := e.srv.Calls("token:" + authtest.GrantRefresh); got != 1 {
			t.Fatalf("refreshes = %d: the unsaved token should be saved, not refreshed again", got)
		}
		e.start()
		e.clock.Advance(2 * time.Hour)
		if _, err := e.token(); err != nil {
			t.Fatalf("after restart: %v", err)
		}
	})
	t.Run("process dies", func(t *testing.T) {
		e := newEnv(t)
		e.start()
		e.mustLogin()
		stored := e.store.get(testAccount, auth.TokenKey)
		e.clock.Advance(2 * time.Hour)
		e.store.setFailPut(func(_, key string) error {
			if key == auth.TokenKey {
				return errors.New("killed")
			}
			return nil
		})
		_, err := e.token()
		wantErr(t, err, auth.ErrTransient)
		e.store.setFailPut(nil)
		e.start() // the rotated token is lost with the process
		_, err = e.token()
		wantErr(t, err, auth.ErrNeedsReauth) // the fake detects reuse of the old one
		h := e.health()
		if h.Status != auth.StatusNeedsReauth || !strings.Contains(h.Reason, "spoolctl auth login "+testAccount) {
			t.Fatalf("health = %+v", h)
		}
		if got := e.store.get(testAccount, auth.TokenKey); string(got) != string(stored) {
			t.Fatal("the refresh token was deleted or changed after invalid_grant")
		}
		// And a new login fixes it.
		e.mustLogin()
		if _, err := e.token(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestOneRefreshForFiftyConcurrentCallers(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.mustLogin()
	e.clock.Advance(2 * time.Hour)
	e.srv.SetDelay(200 * time.Millisecond) // keep the refresh in flight while callers pile up
	var wg sync.WaitGroup
	toks := make([]string, 50)
	errs := make([]error, 50)
	for i := range toks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks[i], errs[i] = e.m.AccessToken(context.Background(), testAccount)
		}()
	}
	wg.Wait()
	for i := range toks {
		if errs[i] != nil || toks[i] != toks[0] {
			t.Fatalf("caller %d: %q %v (first %q)", i, toks[i], errs[i], toks[0])
		}
	}
	if got := e.srv.Calls("token:" + authtest.GrantRefresh); got != 1 {
		t.Fatalf("refreshes = %d, want 1", got)
	}
}

func TestExpiryWithInjectedClock(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.mustLogin() // token lives 1h; RefreshBefore defaults to 5m
	t1, _ := e.token()
	e.clock.Advance(54 * time.Minute)
	t2, err := e.token()
	if err != nil || t2 != t1 {
		t.Fatalf("refreshed too early: %v", err)
	}
	e.clock.Advance(2 * time.Minute) // 4 minutes left: inside RefreshBefore
	t3, err := e.token()
	if err != nil || t3 == t1 {
		t.Fatalf("not refreshed ahead of expiry: %v", err)
	}
	if got := e.srv.Calls("token:" + authtest.GrantRefresh); got != 1 {
		t.Fatalf("refreshes = %d", got)
	}
	if h := e.health(); !h.AccessTokenExpiry.Equal(e.clock.Now().Add(time.Hour)) || !h.LastRefresh.Equal(e.clock.Now()) {
		t.Fatalf("health times %+v (now %v)", h, e.clock.Now())
	}
	// A forced refresh ignores a valid token.
	t4, err := e.m.RefreshRejected(context.Background(), testAccount, "")
	if err != nil || t4 == t3 {
		t.Fatalf("forced refresh = %v", err)
	}
}

func TestInvalidGrantNeedsReauth(t *testing.T) {
	for _, desc := range []string{"AADSTS700082: The refresh token has expired due to inactivity.", "AADSTS50173: grant revoked"} {
		t.Run(desc[:12], func(t *testing.T) {
			e := newEnv(t)
			e.start()
			e.mustLogin()
			<-e.recovered
			stored := e.store.get(testAccount, auth.TokenKey)
			e.srv.SetInvalidGrant(desc)
			e.clock.Advance(2 * time.Hour)
			_, err := e.token()
			wantErr(t, err, auth.ErrNeedsReauth)
			if !strings.Contains(err.Error(), desc[:12]) {
				t.Fatalf("error lost the AADSTS code: %v", err)
			}
			h := e.health()
			if h.Status != auth.StatusNeedsReauth || !strings.Contains(h.Reason, desc[:12]) {
				t.Fatalf("health %+v", h)
			}
			_, err = e.token()
			wantErr(t, err, auth.ErrNeedsReauth)
			if got := e.srv.Calls("token:" + authtest.GrantRefresh); got != 1 {
				t.Fatalf("refresh attempts = %d: invalid_grant must stop refreshing", got)
			}
			if string(e.store.get(testAccount, auth.TokenKey)) != string(stored) {
				t.Fatal("refresh token deleted after invalid_grant")
			}
			e.srv.SetInvalidGrant("")
			e.mustLogin()
			select {
			case <-e.recovered:
			case <-time.After(10 * time.Second):
				t.Fatal("no recovery signal after login")
			}
		})
	}
}

func TestTokenEndpointFailingIsTransient(t *testing.T) {
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusInternalServerError} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			e := newEnv(t)
			e.start()
			e.mustLogin()
			<-e.recovered
			e.clock.Advance(2 * time.Hour)
			e.srv.FailNext(100, status)
			_, err := e.token()
			wantErr(t, err, auth.ErrTransient)
			if got := e.srv.Calls("token:" + authtest.GrantRefresh); got != 3 {
				t.Fatalf("attempts = %d, want RefreshAttempts=3", got)
			}
			if h := e.health(); h.Status != auth.StatusRefreshFailing {
				t.Fatalf("status = %s", h.Status)
			}
			e.srv.FailNext(0, status)
			if _, err := e.token(); err != nil {
				t.Fatalf("after recovery: %v", err)
			}
			if h := e.health(); h.Status != auth.StatusOK {
				t.Fatalf("status = %s", h.Status)
			}
			select {
			case <-e.recovered:
			case <-time.After(10 * time.Second):
				t.Fatal("no recovery signal")
			}
		})
	}
}

func TestTransientFailureReturnsStillValidToken(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.mustLogin()
	t1, _ := e.token()
	e.clock.Advance(57 * time.Minute) // inside RefreshBefore, still valid
	e.srv.FailNext(100, http.StatusBadGateway)
	t2, err := e.token()
	if err != nil || t2 != t1 {
		t.Fatalf("got %v; want the still-valid token", err)
	}
	if h := e.health(); h.Status != auth.StatusRefreshFailing {
		t.Fatalf("status = %s", h.Status)
	}
	_, err = e.m.RefreshRejected(context.Background(), testAccount, "")
	wantErr(t, err, auth.ErrTransient)
}

func TestTokenEndpointSlowAndDown(t *testing.T) {
	e := newEnv(t)
	e.opts.RefreshAttempts = 2
	e.start()
	e.mustLogin()
	cfg := e.cfg()
	cfg.TokenTimeout = auth.MinTokenTimeout
	if err := e.m.Reload([]auth.AccountConfig{cfg}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Hour)
	e.srv.SetDelay(5 * time.Second)
	start := time.Now()
	_, err := e.token()
	wantErr(t, err, auth.ErrTransient)
	if el := time.Since(start); el > 4*time.Second {
		t.Fatalf("slow endpoint took %v: timeouts not applied", el)
	}
	if !strings.Contains(err.Error(), "no answer within") {
		t.Fatalf("error does not say it timed out: %v", err)
	}
	e.srv.SetDelay(0)
	e.srv.Close() // down: connection refused
	_, err = e.token()
	wantErr(t, err, auth.ErrTransient)
	if h := e.health(); h.Status != auth.StatusRefreshFailing || h.Reason == "" {
		t.Fatalf("health %+v", h)
	}
	// A caller's own deadline is honoured too.
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_, err = e.m.RefreshRejected(ctx, testAccount, "")
	if err == nil {
		t.Fatal("no error with an expired context")
	}
}

func TestKeepAliveRefreshesIdleGrant(t *testing.T) {
	e := newEnv(t)
	e.opts.KeepAliveCheck = 10 * time.Millisecond
	cfg := e.cfg()
	cfg.KeepAlive = 24 * time.Hour
	m := e.start(cfg)
	e.mustLogin()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m.Start(ctx)
	e.clock.Advance(23 * time.Hour)
	time.Sleep(100 * time.Millisecond) // several keep-alive ticks pass: none may refresh yet
	if got := e.srv.Calls("token:" + authtest.GrantRefresh); got != 0 {
		t.Fatalf("keep-alive refreshed a grant used %v ago", 23*time.Hour)
	}
	e.clock.Advance(2 * time.Hour)
	eventually(t, "keep-alive refresh", func() bool { return e.srv.Calls("token:"+authtest.GrantRefresh) == 1 })
	eventually(t, "last refresh updated", func() bool { return e.health().LastRefresh.Equal(e.clock.Now()) })
	time.Sleep(100 * time.Millisecond)
	if got := e.srv.Calls("token:" + authtest.GrantRefresh); got != 1 {
		t.Fatalf("keep-alive refreshed %d times in one period", got)
	}
}

func TestDeviceFlow(t *testing.T) {
	e := newEnv(t)
	cfg := e.cfg()
	cfg.Flow = "device"
	e.srv.SetDevice(1, time.Minute, 2)
	e.start(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ls, err := e.m.StartLogin(ctx, testAccount, "")
	if err != nil {
		t.Fatal(err)
	}
	if ls.Mode != auth.LoginDevice || ls.UserCode == "" || !strings.HasSuffix(ls.VerificationURL, "/device") {
		t.Fatalf("LoginStart = %+v", ls)
	}
	// Let it poll through slow_down and pending before the user approves.
	eventually(t, "polling", func() bool { return e.srv.Calls("token:"+authtest.GrantDeviceCode) >= 3 })
	if err := e.srv.ApproveDevice(ls.UserCode); err != nil {
		t.Fatal(err)
	}
	h, err := e.m.WaitLogin(ctx, ls.ID)
	if err != nil || h.Status != auth.StatusOK || h.Identity == "" {
		t.Fatalf("WaitLogin = %+v, %v", h, err)
	}
	e.clock.Advance(2 * time.Hour)
	if _, err := e.token(); err != nil {
		t.Fatal(err)
	}
}

func TestDeviceFlowExpiredAndDenied(t *testing.T) {
	e := newEnv(t)
	cfg := e.cfg()
	cfg.Flow = "device"
	e.start(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ls, err := e.m.StartLogin(ctx, testAccount, auth.LoginDevice)
	if err != nil {
		t.Fatal(err)
	}
	e.srv.ExpireDevices()
	_, err = e.m.WaitLogin(ctx, ls.ID)
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired device code: %v", err)
	}
	ls, err = e.m.StartLogin(ctx, testAccount, auth.LoginDevice)
	if err != nil {
		t.Fatal(err)
	}
	_ = e.srv.DenyDevice(ls.UserCode)
	_, err = e.m.WaitLogin(ctx, ls.ID)
	if err == nil || !strings.Contains(err.Error(), "declined") {
		t.Fatalf("denied device login: %v", err)
	}
	if h := e.health(); h.Status != auth.StatusNeedsReauth {
		t.Fatalf("status %s", h.Status)
	}
}

func TestClientCredentialsWithSecret(t *testing.T) {
	e := newEnv(t)
	e.srv.SetClientSecret("s3cr3t-value-xyz")
	cfg := e.cfg()
	cfg.Flow = "client_credentials"
	cfg.ClientSecret = "s3cr3t-value-xyz"
	e.start(cfg)
	ls, err := e.m.StartLogin(context.Background(), testAccount, "")
	if err != nil || !ls.Done || ls.Health == nil || ls.Health.Status != auth.StatusOK {
		t.Fatalf("StartLogin = %+v, %v", ls, err)
	}
	if h, err := e.m.WaitLogin(context.Background(), ls.ID); err != nil || h.Status != auth.StatusOK {
		t.Fatalf("WaitLogin = %+v %v", h, err)
	}
	if _, err := e.token(); err != nil {
		t.Fatal(err)
	}
	if got := e.srv.Calls("token:" + authtest.GrantClientCredentials); got != 1 {
		t.Fatalf("client credential calls = %d", got)
	}
	// A wrong secret is a configuration problem, not a retry loop.
	cfg.ClientSecret = "wrong-secret-123"
	if err := e.m.Reload([]auth.AccountConfig{cfg}); err != nil {
		t.Fatal(err)
	}
	_, err = e.m.RefreshRejected(context.Background(), testAccount, "")
	e.note(err)
	wantErr(t, err, auth.ErrMisconfigured)
	if h := e.health(); h.Status != auth.StatusMisconfigured || !strings.Contains(h.Reason, "client_secret") {
		t.Fatalf("health %+v", h)
	}
}

func TestClientCredentialsWithCertificate(t *testing.T) {
	e := newEnv(t)
	certPEM, keyPEM, err := e.srv.NewClientCertificate()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := e.cfg()
	cfg.Flow = "client_credentials"
	cfg.CertificateFile = filepath.Join(dir, "cert.pem")
	cfg.PrivateKeyFile = filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cfg.CertificateFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.PrivateKeyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	e.start(cfg)
	for i := 0; i < 2; i++ {
		if _, err := e.m.RefreshRejected(context.Background(), testAccount, ""); err != nil {
			t.Fatalf("assertion %d: %v", i, err)
		}
	}
	if got := e.srv.Calls("token:" + authtest.GrantClientCredentials); got != 2 {
		t.Fatalf("calls = %d", got)
	}
	// A key that does not match the certificate is refused at config time.
	_, other, err := authtest.New("x", "").NewClientCertificate()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.PrivateKeyFile, other, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Reload([]auth.AccountConfig{cfg}); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched key: %v", err)
	}
}

func TestGoogleServiceAccount(t *testing.T) {
	e := newEnv(t)
	key, err := e.srv.NewServiceAccount("spoold@project.iam.gserviceaccount.com")
	if err != nil {
		t.Fatal(err)
	}
	cfg := auth.AccountConfig{Name: testAccount, Provider: "google", Flow: "service_account", Mailbox: testMailbox,
		ServiceAccountFile: writePrivate(t, "sa.json", key)} // token_uri from the key file points at the fake
	e.start(cfg)
	tok, err := e.token()
	if err != nil || tok == "" {
		t.Fatalf("AccessToken: %v", err)
	}
	if got := e.srv.LastSubject(); got != testMailbox {
		t.Fatalf("assertion sub = %q, want the mailbox", got)
	}
	e.srv.SetInvalidGrant("Client is unauthorized to retrieve access tokens using this method")
	_, err = e.m.RefreshRejected(context.Background(), testAccount, "")
	wantErr(t, err, auth.ErrNeedsReauth)
	if h := e.health(); !strings.Contains(h.Reason, "delegation") {
		t.Fatalf("reason does not point at delegation: %q", h.Reason)
	}
	e.srv.SetInvalidGrant("")
	if ls, err := e.m.StartLogin(context.Background(), testAccount, ""); err != nil || !ls.Done {
		t.Fatalf("StartLogin after fixing delegation: %+v %v", ls, err)
	}
	if _, err := e.token(); err != nil {
		t.Fatal(err)
	}
}

func TestLogoutAndMarks(t *testing.T) {
	e := newEnv(t)
	m := e.start()
	e.mustLogin()
	ctx := context.Background()
	if err := m.MarkMisconfigured(ctx, testAccount, "SMTP AUTH is disabled for the tenant: enable it with Set-CASMailbox -SmtpClientAuthenticationDisabled $false"); err != nil {
		t.Fatal(err)
	}
	_, err := e.token()
	wantErr(t, err, auth.ErrMisconfigured)
	if oh := e.storedHealth(); oh["status"] != string(auth.StatusMisconfigured) {
		t.Fatalf("stored health = %v", oh)
	}
	e.start() // survives a restart
	_, err = e.token()
	wantErr(t, err, auth.ErrMisconfigured)
	e.mustLogin()
	if err := e.m.MarkNeedsReauth(ctx, testAccount, "535 5.7.3 after a forced refresh"); err != nil {
		t.Fatal(err)
	}
	_, err = e.token()
	wantErr(t, err, auth.ErrNeedsReauth)
	if err := e.m.Logout(ctx, testAccount); err != nil {
		t.Fatal(err)
	}
	if len(e.store.get(testAccount, auth.TokenKey)) != 0 {
		t.Fatal("logout kept the grant")
	}
	if _, err := e.m.Health(ctx, "nope"); !errors.Is(err, auth.ErrUnknownAccount) {
		t.Fatalf("unknown account: %v", err)
	}
	if _, err := e.m.AccessToken(ctx, "nope"); !errors.Is(err, auth.ErrUnknownAccount) {
		t.Fatalf("unknown account: %v", err)
	}
}
