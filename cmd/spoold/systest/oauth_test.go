package systest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"golang.org/x/crypto/bcrypt"

	"github.com/spoold/spoold/auth/authtest"
	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/delivery/smtpfake"
	"github.com/spoold/spoold/spool/spooltest"
)

func randHex(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// login runs `spoolctl auth login ACCOUNT`, follows the printed URL like a
// browser (authtest signs in at once and redirects to the daemon's
// /oauth2/callback) and waits for spoolctl to report the account signed in.
func (n *node) login(t *testing.T, account string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.spoolctl, "--socket", n.Socket(), "auth", "login", account, "--wait", "50s")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errOut strings.Builder
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	followed := false
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if u := strings.TrimSpace(line); !followed && strings.HasPrefix(u, "http") {
			followed = true
			resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(u)
			if err != nil {
				t.Errorf("following the sign-in URL: %v", err)
				continue
			}
			resp.Body.Close()
		}
	}
	err = cmd.Wait()
	n.mu.Lock()
	fmt.Fprintf(&n.outputs, "$ spoolctl auth login %s\n%s%s", account, out.String(), errOut.String())
	n.mu.Unlock()
	if err != nil || !strings.Contains(out.String(), "signed in") {
		t.Fatalf("spoolctl auth login %s: %v\n%s%s", account, err, out.String(), errOut.String())
	}
}

// sendAuth submits one message after AUTH PLAIN.
func sendAuth(addr, user, pass, from, key string) error {
	c, err := dialSMTP(addr, "systest", 5*time.Second, 30*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
		return err
	}
	if err := send(c, from, []string{"bob@example.com"}, key); err != nil {
		return err
	}
	_ = c.Quit()
	return nil
}

// waitMessage polls spoolctl show for the message tagged by its sender
// until cond holds.
func (n *node) waitMessage(t *testing.T, from, what string, timeout time.Duration, cond func(wire.MessageView) bool) wire.MessageView {
	t.Helper()
	var id string
	var m wire.MessageView
	ok := spooltest.Poll(timeout, func() bool {
		if id == "" {
			for _, v := range n.list("") {
				if v.From == from {
					id = v.ID
				}
			}
			if id == "" {
				return false
			}
		}
		m = n.show(id)
		return cond(m)
	})
	if !ok {
		t.Fatalf("message from %s (%s): %s not reached in %s: state %s, attempts %d, last error %+v, reason %q",
			from, id, what, timeout, m.State, m.Attempts, m.LastError, m.Reason)
	}
	return m
}

// TestOAuthFaultsAndSecrets runs XOAUTH2 accounts against authtest token
// endpoints that are down, slow and answering invalid_grant, a password
// relay account and an SMTP AUTH user, all with debug logging; it asserts
// the DESIGN.md section 5 outcomes through spoolctl and then that no client
// secret, token, password or AUTH PLAIN string appears in the daemon's log
// or any spoolctl output.
func TestOAuthFaultsAndSecrets(t *testing.T) {
	needSuite(t)
	appSecret, userSecret := randHex(t, "appsecret-"), randHex(t, "usersecret-")
	relayPass, smtpPass := randHex(t, "relaypass-"), randHex(t, "smtppass-")

	asApp := authtest.New("systest-app", "scanner@example.com")
	t.Cleanup(asApp.Close)
	asApp.SetClientSecret(appSecret)
	asUser := authtest.New("systest-user", "alice@example.com")
	t.Cleanup(asUser.Close)
	asUser.SetClientSecret(userSecret)
	// Short-lived access tokens so the user account refreshes every few
	// seconds and meets invalid_grant soon after it is switched on.
	asUser.SetAccessTTL(4 * time.Second)

	dir := t.TempDir()
	upApp, err := smtpfake.Start(smtpfake.Options{TLS: "starttls", Auth: "xoauth2", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(upApp.Close)
	upUser, err := smtpfake.Start(smtpfake.Options{TLS: "starttls", Auth: "xoauth2", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(upUser.Close)
	upPw, err := smtpfake.Start(smtpfake.Options{TLS: "starttls", Auth: "plain", User: "relayuser", Password: relayPass, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(upPw.Close)

	hash, err := bcrypt.GenerateFromPassword([]byte(smtpPass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	retry := "    retry: {first: 1s, multiplier: 2, max: 4s, jitter: 0.2, lifetime: 1h}\n"
	accounts := fmt.Sprintf(`  - name: app
    provider: generic
    flow: client_credentials
    client_id: systest-app
    client_secret: ${SYSTEST_APP_SECRET}
    token_url: %s
    scopes: [https://outlook.office365.com/.default]
    mailbox: scanner@example.com
    host: 127.0.0.1
    port: %d
    tls: starttls
    ca_file: %s
%s  - name: user
    provider: generic
    flow: authcode
    client_id: systest-user
    client_secret: ${SYSTEST_USER_SECRET}
    auth_url: %s
    token_url: %s
    scopes: [https://outlook.office.com/SMTP.Send, offline_access]
    mailbox: alice@example.com
    refresh_before: 2s
    host: 127.0.0.1
    port: %d
    tls: starttls
    ca_file: %s
%s  - name: pw
    host: 127.0.0.1
    port: %d
    tls: starttls
    ca_file: %s
    auth: plain
    username: relayuser
    password: ${SYSTEST_RELAY_PASSWORD}
%s`, asApp.TokenURL(), upApp.Port, upApp.CAFile, retry,
		asUser.AuthURL(), asUser.TokenURL(), upUser.Port, upUser.CAFile, retry,
		upPw.Port, upPw.CAFile, retry)
	listener := fmt.Sprintf(`    legacy: true
    users:
      - name: scanner
        password_hash: "%s"
        account: pw
`, hash)

	// The token endpoint is down for the first requests, then slow.
	asApp.FailNext(3, http.StatusServiceUnavailable)
	asApp.SetDelay(2 * time.Second)

	n := newNode(t, nodeConfig{
		LogLevel: "debug",
		Listener: listener,
		Accounts: accounts,
		Routes:   "  default: pw\n  sender_domains:\n    app.test: app\n    user.test: user\n",
		Env: []string{"SYSTEST_APP_SECRET=" + appSecret, "SYSTEST_USER_SECRET=" + userSecret,
			"SYSTEST_RELAY_PASSWORD=" + relayPass},
	})
	p := n.start()

	// Token endpoint down, then slow: the message waits without using up
	// attempts and is delivered once a token comes.
	if err := sendOne2(n, "mfd@app.test", "app-1"); err != nil {
		t.Fatalf("submitting to the app account: %v", err)
	}
	m := n.waitMessage(t, "mfd@app.test", "delivered", 90*time.Second, func(m wire.MessageView) bool {
		return m.State == wire.StateDelivered
	})
	if m.Attempts > 1 {
		t.Errorf("app account: %d attempts while the token endpoint failed, want 1 (waiting must not use attempts)", m.Attempts)
	}
	if asApp.Calls("token:client_credentials") < 4 {
		t.Errorf("token endpoint saw %d client_credentials requests, want the 3 failures and a success", asApp.Calls("token:client_credentials"))
	}
	if a := n.account("app"); a.Status != "ok" {
		t.Errorf("app account status %q (%s) after recovery, want ok", a.Status, a.Reason)
	}
	if got := received(upApp)["app-1"]; got != 1 {
		t.Errorf("app upstream received app-1 %d times, want 1", got)
	}
	asApp.SetDelay(0)

	// Authorization code login, delivery, then invalid_grant: the account
	// needs re-authorization, its mail waits, and a new login releases it.
	n.login(t, "user")
	if err := sendOne2(n, "mfd@user.test", "user-1"); err != nil {
		t.Fatal(err)
	}
	n.waitMessage(t, "mfd@user.test", "delivered", 60*time.Second, func(m wire.MessageView) bool {
		return m.State == wire.StateDelivered
	})
	// Tokens are refreshed when delivery needs one: once the current access
	// token has expired, the next message meets invalid_grant.
	asUser.SetInvalidGrant("AADSTS700082: The refresh token has expired due to inactivity.")
	spooltest.WaitFor(t, "the user account's access token to expire", 30*time.Second, func() bool {
		exp := n.account("user").TokenExpiry
		return !exp.IsZero() && time.Now().After(exp)
	})
	if err := sendOne2(n, "mfd2@user.test", "user-2"); err != nil {
		t.Fatal(err)
	}
	var acct wire.AccountInfo
	spooltest.WaitFor(t, "account user to need re-authorization", 60*time.Second, func() bool {
		acct = n.account("user")
		return acct.Status == "needs_reauth"
	})
	if acct.Reason == "" {
		t.Errorf("needs_reauth without a reason telling the admin what to do")
	}
	refreshes := asUser.Calls("token:refresh_token")
	held := n.waitMessage(t, "mfd2@user.test", "waiting for re-authorization", 30*time.Second, func(m wire.MessageView) bool {
		return m.State == wire.StateDeferred || m.State == wire.StateQueued
	})
	if held.Attempts > 0 {
		t.Errorf("message for a needs_reauth account: state %s, attempts %d; want waiting with 0 attempts", held.State, held.Attempts)
	}
	if received(upUser)["user-2"] != 0 {
		t.Errorf("user-2 was delivered although the account needed re-authorization")
	}
	asUser.SetInvalidGrant("")
	n.login(t, "user")
	m = n.waitMessage(t, "mfd2@user.test", "delivered after re-login", 90*time.Second, func(m wire.MessageView) bool {
		return m.State == wire.StateDelivered
	})
	if got := asUser.Calls("token:refresh_token") - refreshes; got > 3 {
		t.Errorf("%d refresh requests after invalid_grant, want none until the new login (and a few after it)", got)
	}

	// Password relay through an SMTP AUTH user.
	if err := sendAuth(n.SMTPAddr(), "scanner", smtpPass, "mfd@pw.test", "pw-1"); err != nil {
		t.Fatalf("AUTH PLAIN submission: %v", err)
	}
	n.waitMessage(t, "mfd@pw.test", "delivered", 60*time.Second, func(m wire.MessageView) bool {
		return m.State == wire.StateDelivered
	})
	for _, args := range [][]string{{"status"}, {"status", "--json"}, {"accounts"}, {"accounts", "--json"},
		{"list", "--json", "--state", "delivered"}, {"show", m.ID}, {"show", m.ID, "--json"}} {
		n.ctl(args...)
	}
	if code, err := p.Stop(60 * time.Second); err != nil || code != 0 {
		t.Errorf("SIGTERM: exit %d, %v", code, err)
	}
	n.checkSpool()

	// The secrets check: every log line and CLI output of the run.
	secrets := map[string]string{
		"app client secret":     appSecret,
		"user client secret":    userSecret,
		"relay password":        relayPass,
		"SMTP AUTH password":    smtpPass,
		"AUTH PLAIN (listener)": base64.StdEncoding.EncodeToString([]byte("\x00scanner\x00" + smtpPass)),
		"AUTH PLAIN (relay)":    base64.StdEncoding.EncodeToString([]byte("\x00relayuser\x00" + relayPass)),
	}
	for i, tok := range append(asApp.Issued(), asUser.Issued()...) {
		secrets[fmt.Sprintf("issued token/code #%d", i)] = tok
	}
	for i, tok := range append(upApp.Tokens(), upUser.Tokens()...) {
		secrets[fmt.Sprintf("XOAUTH2 initial response #%d", i)] = base64.StdEncoding.EncodeToString(
			[]byte("user=scanner@example.com\x01auth=Bearer " + tok + "\x01\x01"))
	}
	logText, err := os.ReadFile(n.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	outputs := n.outputs.String()
	n.mu.Unlock()
	if len(logText) == 0 || !strings.Contains(string(logText), `"level":"DEBUG"`) {
		t.Fatalf("no debug log lines captured; the secrets check would prove nothing")
	}
	for what, s := range secrets {
		if len(s) < 8 {
			continue
		}
		if strings.Contains(string(logText), s) {
			t.Errorf("the daemon log contains the %s", what)
		}
		if strings.Contains(outputs, s) {
			t.Errorf("spoolctl output contains the %s", what)
		}
	}
	t.Logf("secrets: checked %d secrets against %d bytes of debug log and %d bytes of spoolctl output",
		len(secrets), len(logText), len(outputs))
}

func sendOne2(n *node, from, key string) error {
	return sendTo(n.SMTPAddr(), from, []string{"bob@example.com"}, key)
}
