package delivery

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/auth/authtest"
	"github.com/spoold/spoold/delivery/graph/graphtest"
	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/spooltest"
)

// TestGraphTokenFlows sends through the fake Graph with tokens from the real
// auth manager and the fake identity provider: the fake Graph accepts only
// tokens the provider issued, for the scopes Graph needs.
func TestGraphTokenFlows(t *testing.T) {
	cases := []struct {
		name     string
		flow     string
		appPerms []string // admin-consented application permissions
		large    bool
		want     spool.State
		health   auth.Status
		reason   string
	}{
		{"delegated small", "authcode", nil, false, spool.StateDelivered, auth.StatusOK, ""},
		{"delegated large", "authcode", nil, true, spool.StateDelivered, auth.StatusOK, ""},
		{"app-only large", "client_credentials", []string{"Mail.Send", "Mail.ReadWrite"}, true, spool.StateDelivered, auth.StatusOK, ""},
		{"app-only without Mail.ReadWrite", "client_credentials", []string{"Mail.Send"}, true, spool.StateQueued, auth.StatusMisconfigured, "Mail.ReadWrite"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			idp := authtest.New("cid", graphMailbox)
			t.Cleanup(idp.Close)
			if c.flow == "client_credentials" {
				idp.SetClientSecret("app-secret") // a confidential client; the delegated one is public (PKCE)
			}
			g := graphtest.New(graphMailbox)
			t.Cleanup(g.Close)
			g.SetTokenCheck(idp.TokenScope)
			if c.appPerms != nil {
				g.SetAppPermissions(c.appPerms...)
			}
			sp := spooltest.OpenTemp(t, spool.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			ac := auth.AccountConfig{Name: "m365", Provider: "microsoft", Flow: c.flow, Tenant: "contoso.com", ClientID: "cid",
				Mailbox: graphMailbox, Graph: true, GraphReadWrite: true, TokenURL: idp.TokenURL(), AuthURL: idp.AuthURL(),
				RedirectURL: "http://localhost:1/oauth2/callback"}
			if c.flow == "client_credentials" {
				ac.ClientSecret = "app-secret"
			}
			m, err := auth.NewManager([]auth.AccountConfig{ac}, sp, auth.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
				RetryInitial: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close() })
			ctx := context.Background()
			if c.flow == "authcode" {
				ls, err := m.StartLogin(ctx, "m365", auth.LoginPaste)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(ls.AuthURL, "Mail.Send") || !strings.Contains(ls.AuthURL, "offline_access") {
					t.Errorf("login asks for %s, want Graph's Mail.Send and offline_access", ls.AuthURL)
				}
				noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
				resp, err := noFollow.Get(ls.AuthURL)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if h, err := m.CompletePaste(ctx, ls.ID, resp.Header.Get("Location")); err != nil || h.Status != auth.StatusOK {
					t.Fatalf("login: %+v %v", h, err)
				}
			}
			ca := filepath.Join(t.TempDir(), "ca.pem")
			os.WriteFile(ca, g.CertificatePEM(), 0o600)
			eng, err := New([]AccountConfig{{Name: "m365", Transport: "graph", GraphEndpoint: g.URL(), CAFile: ca, Mailbox: graphMailbox,
				RatePerMinute: -1, DataTimeout: time.Minute}}, sp, m,
				Options{Owner: "n1", ShutdownTimeout: 5 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Hostname: "spoold.test"})
			if err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- eng.Run(rctx) }()
			t.Cleanup(func() { cancel(); <-done })
			body := simpleBody
			if c.large {
				body, _ = scan(t, 3_500_000)
			}
			id := realEnqueue(t, sp, spool.EnqueueRequest{From: "alice@office.example", To: []string{"bob@dest.example"}}, body)
			realWait(t, sp, id, func(msg *spool.Message) bool {
				if c.want == spool.StateQueued {
					st := eng.AccountStates()[0]
					return st.HeldUntil.After(time.Now()) && (msg.State == spool.StateQueued || msg.State == spool.StateDeferred)
				}
				return msg.State == c.want
			})
			h, err := m.Health(ctx, "m365")
			if err != nil {
				t.Fatal(err)
			}
			if h.Status != c.health || !strings.Contains(h.Reason, c.reason) {
				t.Errorf("health %s (%s), want %s naming %q", h.Status, h.Reason, c.health, c.reason)
			}
			if ps := g.Problems(); len(ps) > 0 {
				t.Errorf("requests that break Graph's documented shape: %q", ps)
			}
		})
	}
}
