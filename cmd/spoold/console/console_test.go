package console

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/spoold/spoold/cmd/spoold/adminapi"
	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/configs/secret"
	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/spooltest"
)

// Secrets the fakes know; no page may show them.
const (
	testToken    = "ya29.issued-access-token-5c1e"
	testPassword = "correct horse battery staple"
	metricsTok   = "metrics-token-77aa"
)

// fakeAccounts is the daemon side of the admin service: one OAuth account
// whose sign-in the test finishes, recording the actor of each request.
type fakeAccounts struct {
	mu     sync.Mutex
	status string
	actors []adminapi.Actor
	done   chan struct{}
}

func (f *fakeAccounts) saw(ctx context.Context) {
	a, _ := adminapi.ActorFrom(ctx)
	f.mu.Lock()
	f.actors = append(f.actors, a)
	f.mu.Unlock()
}

func (f *fakeAccounts) Accounts(ctx context.Context) ([]wire.AccountInfo, error) {
	f.saw(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	return []wire.AccountInfo{{Name: "m365", Transport: "smtp", Provider: "microsoft", Flow: "authcode",
		Mailbox: "scanner@example.com", Status: f.status, Reason: "sign in with Authorize",
		ClientSecretExpires: time.Now().Add(20 * 24 * time.Hour)}}, nil
}

func (f *fakeAccounts) StartLogin(ctx context.Context, account, mode string) (wire.LoginStart, error) {
	f.saw(ctx)
	if account != "m365" {
		return wire.LoginStart{}, fmt.Errorf("%w: %s", adminapi.ErrUnknownAccount, account)
	}
	if mode == wire.LoginDevice {
		return wire.LoginStart{LoginID: "L1", Account: account, Mode: mode, UserCode: "WXYZ-1234", VerificationURI: "https://microsoft.com/devicelogin"}, nil
	}
	return wire.LoginStart{LoginID: "L1", Account: account, Mode: mode,
		URL: "https://login.example.com/authorize?redirect_uri=http%3A%2F%2Flocalhost%3A8925%2Foauth2%2Fcallback&state=s"}, nil
}

func (f *fakeAccounts) CompletePaste(ctx context.Context, id, u string) (wire.AccountInfo, error) {
	f.saw(ctx)
	return wire.AccountInfo{Name: "m365", Status: "ok"}, nil
}

func (f *fakeAccounts) WaitLogin(ctx context.Context, id string) (wire.AccountInfo, error) {
	f.saw(ctx)
	select {
	case <-f.done:
		return wire.AccountInfo{Name: "m365", Status: "ok", Identity: "scanner@example.com"}, nil
	case <-ctx.Done():
		return wire.AccountInfo{}, ctx.Err()
	}
}

func (f *fakeAccounts) Logout(context.Context, string) error { return nil }

func (f *fakeAccounts) TestSend(ctx context.Context, account, to string) (wire.TestSendResult, error) {
	f.saw(ctx)
	return wire.TestSendResult{Account: account, To: to, Code: 250, Enhanced: "2.0.0", Text: "OK <queued as 42>"}, nil
}

type fakeInfo struct{}

func (fakeInfo) Version() string                { return "test" }
func (fakeInfo) Started() time.Time             { return time.Now().Add(-time.Hour) }
func (fakeInfo) Listeners() []wire.ListenerInfo { return nil }
func (fakeInfo) ScanFolders() []wire.FolderInfo {
	return []wire.FolderInfo{{Name: "scans", Path: "/srv/scans", Mode: "watch"}}
}
func (fakeInfo) ScanFiles(context.Context, string, int) (wire.ScanFilesResponse, error) {
	return wire.ScanFilesResponse{Files: []wire.ScanFile{{Folder: "scans", Path: "bad.pdf", Failed: true, Reason: "not a PDF", Time: time.Now()}}}, nil
}
func (fakeInfo) RetryScanFile(_ context.Context, folder, p string) (wire.ScanFile, error) {
	return wire.ScanFile{Folder: folder, Path: p}, nil
}
func (fakeInfo) EffectiveConfig() (string, []byte, error) {
	return "/etc/spoold/spoold.yaml", []byte("accounts:\n  - name: m365\n    client_secret: '[redacted]'\n"), nil
}

type env struct {
	sp   *spool.Spool
	acc  *fakeAccounts
	srv  *httptest.Server
	c    *http.Client
	ids  []string
	opts Options
}

func newEnv(t testing.TB, opts Options) *env {
	t.Helper()
	sp := spooltest.OpenTemp(t, spool.Options{RescueInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	acc := &fakeAccounts{status: "needs_reauth", done: make(chan struct{})}
	svc := adminapi.NewService(sp, acc, fakeInfo{}, adminapi.Options{Logger: slog.New(slog.DiscardHandler)})
	opts.Logger = slog.New(slog.DiscardHandler)
	c, err := New(svc.Handler(), opts)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{sp: sp, acc: acc, opts: opts}
	if opts.TLS {
		e.srv = httptest.NewTLSServer(c)
		e.c = e.srv.Client()
	} else {
		e.srv = httptest.NewServer(c)
		e.c = &http.Client{}
	}
	t.Cleanup(e.srv.Close)
	jar, _ := cookiejar.New(nil)
	e.c.Jar = jar
	e.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for i := range 3 {
		id, err := sp.Enqueue(context.Background(), spool.EnqueueRequest{
			From: "mfd@example.com", To: []string{"user@example.com"}, Account: "m365",
			Source: spool.Source{Kind: spool.SourceSMTP},
		}, strings.NewReader(fmt.Sprintf("Subject: Scan %d\r\nX-Token: %s\r\n\r\nbody\r\n", i, "not-a-secret")))
		if err != nil {
			t.Fatal(err)
		}
		e.ids = append(e.ids, id)
	}
	return e
}

func (e *env) get(t testing.TB, path string) (*http.Response, string) {
	t.Helper()
	resp, err := e.c.Get(e.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (e *env) post(t *testing.T, path string, form url.Values) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := e.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t testing.TB, page string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", page)
	}
	return m[1]
}

// allPosts is every POST route with a form that would act if the token
// were right.
func (e *env) allPosts() map[string]url.Values {
	return map[string]url.Values{
		"/queue/action":               {"op": {"hold"}, "id": {e.ids[0]}},
		"/queue/flush":                {},
		"/accounts/m365/authorize":    {"mode": {"browser"}},
		"/logins/L1/paste":            {"url": {"http://localhost/cb?code=x"}},
		"/accounts/m365/test-send":    {"to": {"it@example.com"}},
		"/delivery/pause":             {},
		"/delivery/resume":            {},
		"/scans/retry":                {"folder": {"scans"}, "path": {"bad.pdf"}},
		"/logout":                     {},
		"/login":                      {"user": {"admin"}, "password": {testPassword}},
		"/messages/" + e.ids[0] + "/": {},
	}
}

// TestEveryPostNeedsTheCSRFToken: without the session's token, with
// another session's token or from another origin, every POST is refused
// and changes nothing.
func TestEveryPostNeedsTheCSRFToken(t *testing.T) {
	e := newEnv(t, Options{Listen: "127.0.0.1:8925"})
	_, page := e.get(t, "/queue")
	good := csrfOf(t, page)
	other := newEnv(t, Options{Listen: "127.0.0.1:8925"})
	_, otherPage := other.get(t, "/")
	foreign := csrfOf(t, otherPage)
	for path, form := range e.allPosts() {
		for name, tok := range map[string]string{"none": "", "another session's": foreign, "garbled": good + "x"} {
			f := url.Values{}
			for k, v := range form {
				f[k] = v
			}
			if tok != "" {
				f.Set("csrf", tok)
			}
			resp, body := e.post(t, path, f)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "CSRF") {
				t.Errorf("POST %s with %s token: %d %q, want 403", path, name, resp.StatusCode, body)
			}
		}
	}
	// The right token from another site (a browser names the origin).
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/queue/action", strings.NewReader(url.Values{"csrf": {good}, "op": {"hold"}, "id": {e.ids[0]}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	resp, err := e.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin POST with a good token: %d, want 403", resp.StatusCode)
	}
	m, err := e.sp.Get(context.Background(), e.ids[0])
	if err != nil || m.State != spool.StateQueued {
		t.Fatalf("a refused POST changed the message: %v %v", m.State, err)
	}
	// With the token the same action works: the refusals were the token's.
	resp, _ = e.post(t, "/queue/action", url.Values{"csrf": {good}, "op": {"hold"}, "id": {e.ids[0]}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("hold with the token: %d", resp.StatusCode)
	}
	if m, _ := e.sp.Get(context.Background(), e.ids[0]); m.State != spool.StateHeld {
		t.Fatalf("hold with the token left the message %s", m.State)
	}
}

// TestSecurityHeadersOnEveryPage: CSP without inline script, no framing,
// nosniff, no referrer, no caching of pages.
func TestSecurityHeadersOnEveryPage(t *testing.T) {
	e := newEnv(t, Options{Listen: "127.0.0.1:8925"})
	for _, p := range []string{"/", "/queue", "/messages/" + e.ids[1], "/accounts", "/scans", "/settings", "/live/overview", "/login", "/nope"} {
		resp, body := e.get(t, p)
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", p, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: CSP allows inline code: %q", p, csp)
		}
		for k, v := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"} {
			if h.Get(k) != v {
				t.Errorf("%s: %s = %q, want %q", p, k, h.Get(k), v)
			}
		}
		// No inline script or style in what is served.
		if regexp.MustCompile(`<script>|<script [^>]*>[^<]|<style|style="|onclick=|onload=|javascript:`).MatchString(body) {
			t.Errorf("%s: inline script or style in the page", p)
		}
	}
}

// TestNoSecretInPages: pages never show the password hash or the metrics
// token of the configuration, whatever is rendered.
func TestNoSecretInPages(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	e := newEnv(t, Options{Listen: "127.0.0.1:8925", Users: []User{{Name: "admin", PasswordHash: secret.Secret(hash)}}, MetricsToken: metricsTok})
	e.login(t, "admin", testPassword)
	for _, p := range []string{"/", "/queue", "/queue?q=scan", "/messages/" + e.ids[1], "/accounts", "/scans", "/settings", "/live/overview", "/live/accounts"} {
		resp, body := e.get(t, p)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d\n%s", p, resp.StatusCode, body)
		}
		for _, s := range []string{string(hash), metricsTok, testPassword} {
			if strings.Contains(body, s) {
				t.Errorf("%s shows a secret %q", p, s)
			}
		}
	}
}

func (e *env) login(t *testing.T, user, pw string) *http.Response {
	t.Helper()
	_, page := e.get(t, "/login")
	resp, _ := e.post(t, "/login", url.Values{"csrf": {csrfOf(t, page)}, "user": {user}, "password": {pw}, "next": {"/queue"}})
	return resp
}

// TestLoginBeyondLoopback: a console listening beyond loopback (under TLS)
// sends every page to the login, refuses a wrong password, throttles
// guessing, and signs in with the right one under a new, Secure,
// HttpOnly, SameSite=Strict session cookie.
func TestLoginBeyondLoopback(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	e := newEnv(t, Options{Listen: "0.0.0.0:8925", TLS: true, Users: []User{{Name: "admin", PasswordHash: secret.Secret(hash)}},
		LoginBurst: 3, LoginEvery: time.Hour})
	for _, p := range []string{"/", "/queue", "/settings", "/messages/" + e.ids[0] + "/eml"} {
		resp, _ := e.get(t, p)
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
			t.Errorf("%s without a login: %d %s", p, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	if resp, _ := e.get(t, "/live/overview"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("live part without a login: %d", resp.StatusCode)
	}
	if resp := e.login(t, "admin", "wrong"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", resp.StatusCode)
	}
	if resp := e.login(t, "nobody", testPassword); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unknown user: %d", resp.StatusCode)
	}
	if resp, _ := e.get(t, "/queue"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a refused login gave access: %d", resp.StatusCode)
	}
	resp := e.login(t, "admin", testPassword)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/queue" {
		t.Fatalf("right password: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	ck := resp.Cookies()
	if len(ck) != 1 || ck[0].Name != "__Host-spoold_console" || !ck[0].HttpOnly || !ck[0].Secure || ck[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie: %+v", ck)
	}
	if resp, body := e.get(t, "/queue"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Scan 1") {
		t.Fatalf("queue after login: %d", resp.StatusCode)
	}
	// The address's budget (3) is spent: even the right password waits.
	e.c.Jar, _ = cookiejar.New(nil)
	if resp := e.login(t, "admin", testPassword); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("4th attempt from one address: %d, want 429", resp.StatusCode)
	}
}

// TestActionsCarryTheConsoleActor: what the console asks of the admin
// service names the console user, so the service can log who did it.
func TestActionsCarryTheConsoleActor(t *testing.T) {
	e := newEnv(t, Options{Listen: "127.0.0.1:8925"})
	_, page := e.get(t, "/accounts")
	resp, body := e.post(t, "/accounts/m365/test-send", url.Values{"csrf": {csrfOf(t, page)}, "to": {"it@example.com"}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "250 2.0.0 OK &lt;queued as 42&gt;") {
		t.Fatalf("test send: %d\n%s", resp.StatusCode, body)
	}
	e.acc.mu.Lock()
	defer e.acc.mu.Unlock()
	if len(e.acc.actors) == 0 {
		t.Fatal("the service saw no request")
	}
	for _, a := range e.acc.actors {
		if a != (adminapi.Actor{Via: "console", UID: -1, User: "local"}) {
			t.Fatalf("actor %+v", a)
		}
	}
}

// TestQueueDeleteAsksFirst: delete shows a confirmation and deletes only
// with it; the .eml download is an attachment with the stored bytes.
func TestQueueDeleteAsksFirst(t *testing.T) {
	e := newEnv(t, Options{Listen: "127.0.0.1:8925"})
	_, page := e.get(t, "/queue")
	tok := csrfOf(t, page)
	resp, body := e.post(t, "/queue/action", url.Values{"csrf": {tok}, "op": {"delete"}, "id": {e.ids[0], e.ids[1]}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Delete 2 message(s)?") {
		t.Fatalf("delete without confirm: %d\n%s", resp.StatusCode, body)
	}
	if _, err := e.sp.Get(context.Background(), e.ids[0]); err != nil {
		t.Fatal("deleted before the confirmation")
	}
	resp, _ = e.post(t, "/queue/action", url.Values{"csrf": {tok}, "op": {"delete"}, "confirm": {"yes"}, "id": {e.ids[0], e.ids[1]},
		"return": {"/messages/" + e.ids[0]}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/queue" {
		t.Fatalf("confirmed delete: %d to %q (the message page is gone: the queue)", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, id := range e.ids[:2] {
		if _, err := e.sp.Get(context.Background(), id); err == nil {
			t.Fatalf("%s still there after a confirmed delete", id)
		}
	}
	resp, body = e.get(t, "/messages/"+e.ids[2]+"/eml")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment;") || !strings.HasPrefix(body, "Subject: Scan 2\r\n") {
		t.Fatalf(".eml: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Disposition"), body)
	}
}

func TestOptionsValidate(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("x"), bcrypt.MinCost)
	users := []User{{Name: "admin", PasswordHash: secret.Secret(hash)}}
	off := false
	for _, tc := range []struct {
		name string
		o    Options
		want []string // keys with a problem
	}{
		{"loopback, nothing", Options{Listen: "127.0.0.1:8925"}, nil},
		{"localhost", Options{Listen: "localhost:8925"}, nil},
		{"beyond loopback, nothing", Options{Listen: "0.0.0.0:8925"}, []string{"tls", "console_users"}},
		{"beyond loopback, TLS only", Options{Listen: ":8925", TLS: true}, []string{"console_users"}},
		{"beyond loopback, complete", Options{Listen: "192.0.2.1:8925", TLS: true, Users: users}, nil},
		{"beyond loopback, console off", Options{Listen: "0.0.0.0:8925", Enabled: &off}, nil},
		{"cert without tls", Options{Listen: "127.0.0.1:1", CertFile: "/x.crt", KeyFile: "/x.key"}, []string{"tls"}},
		{"cert without key", Options{Listen: "127.0.0.1:1", TLS: true, CertFile: "/x.crt"}, []string{"key_file"}},
		{"bad hash, dup user", Options{Listen: "127.0.0.1:1", Users: []User{{Name: "a", PasswordHash: "plain"}, {Name: "a", PasswordHash: secret.Secret(hash)}, {PasswordHash: secret.Secret(hash)}}},
			[]string{"console_users[0].password_hash", "console_users[1].name", "console_users[2].name"}},
	} {
		var got []string
		for _, p := range tc.o.Validate() {
			got = append(got, p.Key)
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: problems at %v, want %v (%v)", tc.name, got, tc.want, tc.o.Validate())
		}
	}
}

// TestAuthorizeFlows: Authorize shows the provider's sign-in link with the
// paste box (the redirect goes to localhost), or the device code; the page's
// long poll reports the finished sign-in only to the browser session that
// started it; a pasted address completes it.
func TestAuthorizeFlows(t *testing.T) {
	e := newEnv(t, Options{Listen: "127.0.0.1:8925"})
	_, page := e.get(t, "/accounts")
	tok := csrfOf(t, page)
	if !strings.Contains(page, `data-authorize="m365"`) || !strings.Contains(page, "Authorize with a device code") {
		t.Fatalf("accounts page lacks the Authorize buttons:\n%s", page)
	}
	_, body := e.post(t, "/accounts/m365/authorize", url.Values{"csrf": {tok}, "mode": {"browser"}})
	for _, want := range []string{`id="signin-link" href="https://login.example.com/authorize?`, "http://localhost:8925/oauth2/callback",
		"only reaches spoold from a browser on spoold's own host", `action="/logins/L1/paste"`, `data-login-wait="/logins/L1/wait"`} {
		if !strings.Contains(body, want) {
			t.Errorf("authorize page lacks %q", want)
		}
	}
	_, body = e.post(t, "/accounts/m365/authorize", url.Values{"csrf": {tok}, "mode": {"device"}})
	if !strings.Contains(body, `id="user-code">WXYZ-1234<`) || !strings.Contains(body, "https://microsoft.com/devicelogin") {
		t.Errorf("device authorize page:\n%s", body)
	}
	// Another browser session may not follow this sign-in.
	other := &http.Client{}
	resp, err := other.Get(e.srv.URL + "/logins/L1/wait")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "not started in this browser session") {
		t.Fatalf("another session's wait: %s", b)
	}
	close(e.acc.done)
	_, body = e.get(t, "/logins/L1/wait")
	if !strings.Contains(body, `"done":true`) || !strings.Contains(body, `"ok":true`) || !strings.Contains(body, "signed in as scanner@example.com") {
		t.Fatalf("wait: %s", body)
	}
	resp, _ = e.post(t, "/logins/L1/paste", url.Values{"csrf": {tok}, "url": {"http://localhost:8925/oauth2/callback?code=abc&state=s"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/accounts" {
		t.Fatalf("paste: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if _, body := e.get(t, "/accounts"); !strings.Contains(body, "Account m365 signed in") || strings.Contains(body, "code=abc") {
		t.Fatalf("after paste the page says:\n%s", body)
	}
}

// TestSetUsersOnReload: users added by a reload make a loopback console ask
// for a login at once; a changed password ends that user's sessions;
// removing every user opens the loopback console again.
func TestSetUsersOnReload(t *testing.T) {
	e := newEnv(t, Options{Listen: "127.0.0.1:8925"})
	c := e.srv.Config.Handler.(*Console)
	if resp, _ := e.get(t, "/queue"); resp.StatusCode != http.StatusOK {
		t.Fatalf("loopback without users: %d", resp.StatusCode)
	}
	h1, _ := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	c.SetUsers([]User{{Name: "admin", PasswordHash: secret.Secret(h1)}})
	if resp, _ := e.get(t, "/queue"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after users were added the local session still works: %d", resp.StatusCode)
	}
	if resp := e.login(t, "admin", testPassword); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	if resp, _ := e.get(t, "/queue"); resp.StatusCode != http.StatusOK {
		t.Fatalf("signed in: %d", resp.StatusCode)
	}
	c.SetUsers([]User{{Name: "admin", PasswordHash: secret.Secret(h1)}}) // unchanged: the session stays
	if resp, _ := e.get(t, "/queue"); resp.StatusCode != http.StatusOK {
		t.Fatalf("an unchanged user lost the session: %d", resp.StatusCode)
	}
	h2, _ := bcrypt.GenerateFromPassword([]byte("new password"), bcrypt.MinCost)
	c.SetUsers([]User{{Name: "admin", PasswordHash: secret.Secret(h2)}})
	if resp, _ := e.get(t, "/queue"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a changed password kept the session: %d", resp.StatusCode)
	}
	c.SetUsers(nil)
	if resp, _ := e.get(t, "/queue"); resp.StatusCode != http.StatusOK {
		t.Fatalf("loopback without users again: %d", resp.StatusCode)
	}
}
