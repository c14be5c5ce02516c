package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/spoold/spoold/auth/authtest"
	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/delivery/smtpfake"
	"github.com/spoold/spoold/spool/spooltest"
)

// requireChromium returns the path of a Chromium for the real-browser
// tests: skipped where it is missing, a failure in CI (.ci/run installs
// Debian's chromium).
func requireChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed; .ci/run should have installed it (apt-get install chromium)")
	}
	t.Skip("chromium not installed: apt-get install chromium to run the web console's browser tests")
	return ""
}

// browser starts a headless Chromium for the test and returns its context.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := requireChromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.WindowSize(1280, 900),
		chromedp.IgnoreCertErrors) // the console's self-signed certificate
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to sandbox as root (CI)
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	if err := chromedp.Do(bctx); err != nil { // starts the browser
		t.Fatalf("starting chromium: %v", err)
	}
	return bctx
}

// do runs browser steps with a deadline, failing the test with what.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(c, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(c, chromedp.Text(sel))
	if err != nil {
		t.Fatalf("reading %s: %v", sel, err)
	}
	return s
}

// waitText polls until the element's text contains want.
func waitText(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	expr := fmt.Sprintf(`(function(){var e=document.querySelector(%q);return !!e && e.textContent.indexOf(%q)>=0})()`, sel, want)
	if _, err := chromedp.Run(c, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
		got, _ := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q)||{textContent:"(no element)"}).textContent`, sel)))
		t.Fatalf("waiting for %q in %s: %v; it says %q", want, sel, err, got)
	}
}

// screenshot saves the page as docs/images/console-<name>.png when
// SPOOLD_SCREENSHOTS names a directory (the README's pictures), else into
// the test's temporary directory.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(c, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := os.Getenv("SPOOLD_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.WriteFile(filepath.Join(dir, "console-"+name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// consoleDaemon runs spoold in process with an OAuth account against the
// fake authorization server and a fake upstream, an SMTP listener and
// delivery paused (so messages stay in the queue).
type consoleDaemon struct {
	d        *daemon
	url      string
	smtp     string
	api      *wire.Client
	idp      *authtest.Server
	upstream *smtpfake.Server
	logs     *spooltest.SyncBuffer
}

const (
	consoleClientSecret = "client-secret-console-3b9d"
	upstreamReply       = "OK queued as FAKE-UPSTREAM-51f0"
)

func startConsoleDaemon(t *testing.T, httpSection string) *consoleDaemon {
	t.Helper()
	dir := t.TempDir()
	idp := authtest.New("cid-console", "scanner@contoso.com")
	t.Cleanup(idp.Close)
	idp.SetClientSecret(consoleClientSecret)
	up, err := smtpfake.Start(smtpfake.Options{TLS: "starttls", Auth: "xoauth2", Dir: dir, Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "DATA" {
			return smtpfake.Reply{Code: 250, Enhanced: "2.0.0", Text: upstreamReply}
		}
		return smtpfake.Reply{}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	httpPort, smtpPort := spooltest.FreePort(t), spooltest.FreePort(t)
	socket := filepath.Join(shortSocketDir(t), "s.sock")
	config := filepath.Join(dir, "spoold.yaml")
	writeFile(t, config, fmt.Sprintf(`data_dir: %s/data
http:
  %s
admin:
  socket: %s
delivery:
  paused: true
smtp_listeners:
  - name: local
    listen: 127.0.0.1:%d
    allowed_networks: [127.0.0.1]
accounts:
  - name: m365
    provider: generic
    client_id: cid-console
    client_secret: %s
    auth_url: %s
    token_url: %s
    scopes: [smtp]
    mailbox: scanner@contoso.com
    host: 127.0.0.1
    port: %d
    tls: starttls
    ca_file: %s
routes:
  default: m365
`, dir, strings.ReplaceAll(httpSection, "PORT", fmt.Sprint(httpPort)), socket, smtpPort, consoleClientSecret,
		idp.AuthURL(), idp.TokenURL(), up.Port, up.CAFile))
	p, err := loadPlan(config)
	if err != nil {
		t.Fatal(err)
	}
	logs := &spooltest.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	d, err := startDaemon(context.Background(), p, config, log, new(slog.LevelVar))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.shutdown()
		if t.Failed() {
			t.Logf("spoold log:\n%s", logs.String())
		}
	})
	scheme := "http"
	if p.console.TLS {
		scheme = "https"
	}
	c := wire.NewClient(socket)
	t.Cleanup(c.CloseIdleConnections)
	return &consoleDaemon{d: d, url: fmt.Sprintf("%s://127.0.0.1:%d", scheme, httpPort), smtp: fmt.Sprintf("127.0.0.1:%d", smtpPort),
		api: c, idp: idp, upstream: up, logs: logs}
}

// TestConsoleInBrowser drives the console in headless Chromium as an admin
// would: the overview loads; a message sent with swaks shows in the queue
// with its subject; Hold and Release change its state as the admin API
// (spoolctl) sees it; Authorize against the fake authorization server ends
// with the account OK; Send test shows the fake upstream's reply; and no
// page holds the client secret or a token the server issued.
func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	ctx := browser(t)
	cd := startConsoleDaemon(t, "listen: 127.0.0.1:PORT")
	api := context.Background()

	do(t, ctx, "overview", chromedp.Navigate(cd.url+"/"), chromedp.WaitVisible("#live table.counts"))
	if got := text(t, ctx, "h1"); got != "Overview" {
		t.Fatalf("overview heading %q", got)
	}
	waitText(t, ctx, "#live", "m365")

	// A message from a real SMTP client (swaks; in CI it must be there,
	// elsewhere Go's net/smtp stands in so the rest still runs).
	subject := "Console scan 7c1d"
	if swaks, err := exec.LookPath("swaks"); err == nil {
		out, err := exec.Command(swaks, "--server", cd.smtp, "--from", "mfd@contoso.com", "--to", "it@contoso.com",
			"--header", "Subject: "+subject, "--body", "scan attached").CombinedOutput()
		if err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
	} else if os.Getenv("CI") != "" {
		t.Fatal("swaks is not installed; .ci/run should have installed it")
	} else {
		t.Log("swaks not installed: sending with net/smtp instead")
		if err := sendMail(cd.smtp, "mfd@contoso.com", "it@contoso.com", subject); err != nil {
			t.Fatal(err)
		}
	}
	list, err := cd.api.List(api, wire.ListRequest{})
	if err != nil || len(list.Messages) != 1 {
		t.Fatalf("spoolctl list: %+v %v", list, err)
	}
	id := list.Messages[0].ID
	waitText(t, ctx, `#live td[data-state="queued"]`, "1") // the overview refreshes by itself
	screenshot(t, ctx, "overview")

	do(t, ctx, "queue", chromedp.Navigate(cd.url+"/queue"), chromedp.WaitVisible("#messages"))
	waitText(t, ctx, fmt.Sprintf(`tr[data-id=%q] td.subject`, id), subject)
	screenshot(t, ctx, "queue")

	// Hold with the row's button; the admin API sees it held.
	do(t, ctx, "hold", chromedp.Click(fmt.Sprintf(`button[value="hold:%s"]`, id)), chromedp.WaitVisible("#flash"))
	waitText(t, ctx, "#flash", "hold: 1 message(s) done")
	if m, err := cd.api.Get(api, id); err != nil || m.State != wire.StateHeld {
		t.Fatalf("after Hold, spoolctl shows %s (%v)", m.State, err)
	}
	// Release from the message page.
	do(t, ctx, "message page", chromedp.Navigate(cd.url+"/messages/"+id), chromedp.WaitVisible("#release"))
	waitText(t, ctx, "#subject", subject)
	do(t, ctx, "release", chromedp.Click("#release"), chromedp.WaitVisible("#flash"))
	waitText(t, ctx, "#state", "queued")
	if m, err := cd.api.Get(api, id); err != nil || m.State != wire.StateQueued {
		t.Fatalf("after Release, spoolctl shows %s (%v)", m.State, err)
	}
	screenshot(t, ctx, "message")
	// The admin audit (spoolctl audit) names the console user.
	audit, err := cd.api.Audit(api, wire.AuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var held, released bool
	for _, e := range audit.Entries {
		if e.Via == "console" && e.User == "local" && e.UID == -1 && e.Target == "message "+id && e.Result == "ok" {
			held = held || e.Action == "hold"
			released = released || e.Action == "release"
		}
	}
	if !held || !released {
		t.Fatalf("the audit lacks the console's hold and release of %s: %+v", id, audit.Entries)
	}

	// Authorize: the console starts the sign-in, the browser goes to the
	// authorization server, which sends it to spoold's /oauth2/callback.
	do(t, ctx, "accounts", chromedp.Navigate(cd.url+"/accounts"), chromedp.WaitVisible(`[data-account-status="m365"]`))
	if got := text(t, ctx, `[data-account-status="m365"]`); got == "ok" {
		t.Fatal("account ok before Authorize")
	}
	do(t, ctx, "authorize", chromedp.Click(`button[data-authorize="m365"]`), chromedp.WaitVisible("#signin-link"))
	screenshot(t, ctx, "authorize")
	link, err := chromedp.Run(ctx, chromedp.AttributeValue("#signin-link", "href"))
	if err != nil || !strings.HasPrefix(link.Value, cd.idp.AuthURL()) {
		t.Fatalf("sign-in link %q %v", link.Value, err)
	}
	do(t, ctx, "sign in", chromedp.Navigate(link.Value))
	spooltest.WaitFor(t, "account m365 ok", 30*time.Second, func() bool {
		a, err := cd.api.Account(api, "m365")
		return err == nil && a.Status == "ok"
	})
	do(t, ctx, "accounts again", chromedp.Navigate(cd.url+"/accounts"), chromedp.WaitVisible(`[data-account-status="m365"]`))
	waitText(t, ctx, `[data-account-status="m365"]`, "ok")

	// Send test through the signed-in account.
	do(t, ctx, "send test",
		chromedp.SendKeys(`input[data-test-to="m365"]`, "it@contoso.com"),
		chromedp.Click(`button[data-test-send="m365"]`),
		chromedp.WaitVisible("#test-result"))
	waitText(t, ctx, "#test-reply", "250 2.0.0 "+upstreamReply)
	screenshot(t, ctx, "accounts")
	if n := cd.upstream.Commands("DATA"); n != 1 {
		t.Fatalf("the fake upstream answered DATA %d times, want once (the test message)", n)
	}

	do(t, ctx, "settings", chromedp.Navigate(cd.url+"/settings"), chromedp.WaitVisible("#config"))
	waitText(t, ctx, "#config", `client_secret: "[redacted]"`)

	// No page or live part holds the client secret or an issued token.
	secrets := append([]string{consoleClientSecret}, cd.idp.Issued()...)
	if len(secrets) < 2 {
		t.Fatal("the authorization server issued no token")
	}
	hc := consoleHTTPClient(t)
	for _, p := range []string{"/", "/live/overview", "/queue", "/messages/" + id, "/accounts", "/live/accounts", "/scans", "/settings"} {
		body := fetch(t, hc, cd.url+p)
		for _, s := range secrets {
			if s != "" && strings.Contains(body, s) {
				t.Errorf("%s holds a secret or token %q", p, s)
			}
		}
	}
	// Every action was logged with who did it.
	for _, action := range []string{"hold", "release", "authorize", "test send"} {
		if !regexp.MustCompile(`"msg":"console action","component":"console","user":"local","client":"127.0.0.1","action":"` + action + `"`).MatchString(cd.logs.String()) {
			t.Errorf("no console action %q logged with its user", action)
		}
	}
}

func consoleHTTPClient(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // the test's self-signed certificate
}

func fetch(t *testing.T, hc *http.Client, url string) string {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d\n%s", url, resp.StatusCode, b)
	}
	return string(b)
}

// TestConsoleBeyondLoopbackDemandsLogin: a console listening on all
// interfaces serves HTTPS (the self-signed certificate), sends the browser
// to the login, refuses a wrong password and lets the right one in.
func TestConsoleBeyondLoopbackDemandsLogin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	ctx := browser(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("pa55-console-word"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cd := startConsoleDaemon(t, fmt.Sprintf(`listen: 0.0.0.0:PORT
  tls: true
  metrics_token: metrics-7d0e
  console_users:
    - name: admin
      password_hash: "%s"`, hash))
	if !strings.HasPrefix(cd.url, "https://") {
		t.Fatalf("console URL %s is not HTTPS", cd.url)
	}
	do(t, ctx, "open the console", chromedp.Navigate(cd.url+"/queue"), chromedp.WaitVisible("#login"))
	screenshot(t, ctx, "login")
	do(t, ctx, "wrong password",
		chromedp.SendKeys("#user", "admin"), chromedp.SendKeys("#password", "guess"),
		chromedp.Click("#signin"), chromedp.WaitVisible("#flash"))
	waitText(t, ctx, "#flash", "Wrong user name or password")
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); !strings.HasSuffix(loc, "/login") {
		t.Fatalf("after a wrong password the browser is at %s", loc)
	}
	do(t, ctx, "right password",
		chromedp.SendKeys("#user", "admin"), chromedp.SendKeys("#password", "pa55-console-word"),
		chromedp.Click("#signin"), chromedp.WaitVisible("#messages"))
	if who := text(t, ctx, ".who"); !strings.Contains(who, "admin") {
		t.Fatalf("signed in as %q", who)
	}
	// Scrapers: /healthz stays open; pages do not show the hash.
	hc := consoleHTTPClient(t)
	if body := fetch(t, hc, cd.url+"/healthz"); strings.TrimSpace(body) != "ok" {
		t.Fatalf("/healthz: %q", body)
	}
	if body := fetch(t, hc, cd.url+"/login"); strings.Contains(body, string(hash)) {
		t.Fatal("the login page holds the password hash")
	}
}
