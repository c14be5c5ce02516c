package auth

import (
	"slices"
	"strings"
	"testing"
)

func TestGraphScopesPerCloudAndFlow(t *testing.T) {
	cases := []struct {
		name     string
		c        AccountConfig
		want     []string
		tokenURL string
	}{
		{"delegated, sendMail only", AccountConfig{Provider: "microsoft", Tenant: "contoso.com", Graph: true},
			[]string{"https://graph.microsoft.com/Mail.Send", "offline_access"}, "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token"},
		{"delegated, large messages", AccountConfig{Provider: "microsoft", Tenant: "contoso.com", Graph: true, GraphReadWrite: true},
			[]string{"https://graph.microsoft.com/Mail.Send", "https://graph.microsoft.com/Mail.ReadWrite", "offline_access"}, ""},
		{"app-only", AccountConfig{Provider: "microsoft", Tenant: "contoso.com", Flow: "client_credentials", Graph: true, GraphReadWrite: true},
			[]string{"https://graph.microsoft.com/.default"}, ""},
		{"GCC High", AccountConfig{Provider: "microsoft-usgov", Tenant: "contoso.us", Graph: true},
			[]string{"https://graph.microsoft.us/Mail.Send", "offline_access"}, "https://login.microsoftonline.us/contoso.us/oauth2/v2.0/token"},
		{"DoD", AccountConfig{Provider: "microsoft-usgov", Tenant: "contoso.mil", Flow: "client_credentials", Graph: true, GraphEndpoint: "https://dod-graph.microsoft.us/"},
			[]string{"https://dod-graph.microsoft.us/.default"}, ""},
		{"endpoint override keeps the cloud's audience", AccountConfig{Provider: "microsoft", Tenant: "contoso.com", Graph: true, GraphEndpoint: "https://127.0.0.1:8443"},
			[]string{"https://graph.microsoft.com/Mail.Send", "offline_access"}, ""},
		{"stated scopes win", AccountConfig{Provider: "microsoft", Tenant: "contoso.com", Graph: true, Scopes: []string{"x"}},
			[]string{"x"}, ""},
		{"SMTP account unchanged", AccountConfig{Provider: "microsoft", Tenant: "contoso.com"},
			[]string{"https://outlook.office.com/SMTP.Send", "offline_access"}, ""},
	}
	for _, c := range cases {
		got := c.c.WithDefaults()
		if !slices.Equal(got.Scopes, c.want) {
			t.Errorf("%s: scopes %q, want %q", c.name, got.Scopes, c.want)
		}
		if c.tokenURL != "" && got.TokenURL != c.tokenURL {
			t.Errorf("%s: token URL %q, want %q", c.name, got.TokenURL, c.tokenURL)
		}
	}
}

func TestGraphNeedsMicrosoft(t *testing.T) {
	c := AccountConfig{Name: "g", Provider: "google", Flow: "authcode", Mailbox: "a@example.com", ClientID: "x",
		RedirectURL: "http://localhost:1/cb", Graph: true}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "transport") || !strings.Contains(err.Error(), "microsoft-usgov") {
		t.Errorf("Validate = %v, want a transport problem naming the Microsoft providers", err)
	}
}

func TestPresetGraphEndpoints(t *testing.T) {
	for p, want := range map[Provider]string{ProviderMicrosoft: GraphGlobal, ProviderMicrosoftUSGov: GraphUSGovL4, ProviderGoogle: ""} {
		pi, err := Preset(p, "contoso.com")
		if err != nil || pi.GraphEndpoint != want {
			t.Errorf("%s: graph endpoint %q (%v), want %q", p, pi.GraphEndpoint, err, want)
		}
	}
}
