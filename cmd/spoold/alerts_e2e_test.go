package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoold/spoold/auth/authtest"
	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/spool/spooltest"
)

// TestAlertsEndToEnd runs the real binary with an OAuth account and a
// webhook. Not signed in yet: one alert naming the fix, one "resolved"
// after the sign-in through the daemon's callback. Then the token endpoint
// answers invalid_grant: exactly one alert naming the fix (with the
// provider's reason), and one "resolved" after re-authorization. No webhook
// body holds the client secret, the webhook URL's key or a token the fake
// issued.
func TestAlertsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the spoold binary")
	}
	dir := t.TempDir()
	bin := buildBinary(t, "github.com/spoold/spoold/cmd/spoold", dir)

	idp := authtest.New("cid-e2e", "scanner@contoso.com")
	t.Cleanup(idp.Close)
	idp.SetClientSecret("client-secret-e2e-7f3a")
	idp.SetAccessTTL(time.Minute)

	var mu sync.Mutex
	var bodies []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
	}))
	t.Cleanup(hook.Close)
	received := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), bodies...) }

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := ln.Addr().String()
	ln.Close()
	socket := filepath.Join(shortSocketDir(t), "s.sock")
	config := filepath.Join(dir, "spoold.yaml")
	writeFile(t, config, fmt.Sprintf(`data_dir: ./data
http:
  listen: %s
admin:
  socket: %s
accounts:
  - name: m365
    provider: generic
    client_id: cid-e2e
    client_secret: client-secret-e2e-7f3a
    auth_url: %s
    token_url: %s
    scopes: [smtp]
    mailbox: scanner@contoso.com
    host: 127.0.0.1
    port: 1
routes:
  default: m365
alerts:
  check_interval: 1s
  webhooks:
    - name: ops
      url: %s/hook/KEY-e2e-91c2
`, httpAddr, socket, idp.AuthURL(), idp.TokenURL(), hook.URL))

	logs := &spooltest.SyncBuffer{}
	_, stop := startSpoold(t, bin, dir, config, logs)

	waitAlerts := func(n int) []map[string]any {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for len(received()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("webhook got %d alerts, want %d:\n%s", len(received()), n, strings.Join(received(), "\n"))
			}
			time.Sleep(50 * time.Millisecond)
		}
		var out []map[string]any
		for _, b := range received() {
			var m map[string]any
			if err := json.Unmarshal([]byte(b), &m); err != nil {
				t.Fatalf("webhook body: %v: %s", err, b)
			}
			out = append(out, m)
		}
		return out
	}
	got := waitAlerts(1)
	if got[0]["event"] != "started" || got[0]["kind"] != "account_needs_reauth" || !strings.Contains(got[0]["fix"].(string), "spoolctl auth login m365") {
		t.Fatalf("first alert: %v", got[0])
	}

	// Sign in through the daemon: the fake identity provider redirects the
	// "browser" to spoold's callback.
	c := wire.NewClient(socket)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	login := func() {
		t.Helper()
		ls, err := c.StartLogin(ctx, "m365", "")
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(ls.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if info, err := c.WaitLogin(ctx, ls.LoginID); err != nil || info.Status != "ok" {
			t.Fatalf("login: %+v, %v", info, err)
		}
	}
	login()
	got = waitAlerts(2)
	if got[1]["event"] != "resolved" || got[1]["key"] != "account_needs_reauth/m365" {
		t.Fatalf("second alert: %v", got[1])
	}

	// The grant dies: the token endpoint answers invalid_grant to the next
	// refresh (access tokens live shorter than refresh_before, so every use
	// refreshes; a test send uses one).
	idp.SetInvalidGrant("AADSTS70008: The provided authorization code or refresh token has expired due to inactivity.")
	if _, err := c.TestSend(ctx, "m365", "it@contoso.com"); err == nil {
		t.Fatal("test send worked with a dead grant")
	}
	got = waitAlerts(3)
	if got[2]["event"] != "started" || got[2]["key"] != "account_needs_reauth/m365" || !strings.Contains(got[2]["fix"].(string), "spoolctl auth login m365") ||
		!strings.Contains(got[2]["text"].(string), "AADSTS70008") {
		t.Fatalf("third alert: %v", got[2])
	}
	idp.SetInvalidGrant("")
	login()
	got = waitAlerts(4)
	if got[3]["event"] != "resolved" || got[3]["key"] != "account_needs_reauth/m365" {
		t.Fatalf("fourth alert: %v", got[3])
	}
	// The webhook has the fourth body before spoold has read the answer
	// and counted it sent: wait for the count.
	var st wire.AlertsResponse
	if !spooltest.Poll(30*time.Second, func() bool {
		st, err = c.Alerts(ctx)
		return err == nil && len(st.Active) == 0 && len(st.Channels) == 1 && st.Channels[0].Sent == 4 && st.Channels[0].Pending == 0
	}) {
		t.Fatalf("spoolctl alerts: %+v, %v; want no active alert and 4 sent, none pending", st, err)
	}
	if err := stop(); err != nil {
		t.Fatalf("spoold did not stop cleanly: %v", err)
	}
	// Each step above found its notification at its index, so a duplicate
	// would have shown there; after the stop nothing more can arrive.
	if n := len(received()); n != 4 {
		t.Fatalf("webhook got %d alerts, want exactly 4:\n%s", n, strings.Join(received(), "\n"))
	}
	secrets := append([]string{"client-secret-e2e-7f3a", "KEY-e2e-91c2"}, idp.Issued()...)
	for _, b := range received() {
		for _, s := range secrets {
			if s != "" && strings.Contains(b, s) {
				t.Errorf("a webhook body holds a secret or token %q:\n%s", s, b)
			}
		}
	}
}
