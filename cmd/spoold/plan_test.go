package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spoold/spoold/configs"
)

// exampleSecrets writes the secret files the shipped examples name under
// /etc/spoold/, private to the test.
func exampleSecrets(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := json.Marshal(map[string]string{
		"type": "service_account", "client_email": "sa@p.iam.gserviceaccount.com", "token_uri": "https://oauth2.googleapis.com/token",
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"m365.secret": "app-secret\n", "google-sa.json": string(sa),
		"mfd-2nd-floor.hash": hash + "\n", "relay.password": "relay-pw\n", "m365.crt": "cert", "m365.key": "key",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// examplePlan parses a shipped example through the daemon's plan.
func examplePlan(t *testing.T, name string) *plan {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "configs", name))
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(strings.ReplaceAll(string(data), "/etc/spoold/", exampleSecrets(t)+"/"))
	return textPlan(t, name, string(data))
}

func textPlan(t *testing.T, name, src string) *plan {
	t.Helper()
	var p *plan
	env := func(n string) (string, bool) { return "env-" + n, true }
	if _, err := configs.Parse(name, []byte(src), env, planChecker(&p)); err != nil {
		t.Fatalf("%s does not validate:\n%v", name, err)
	}
	return p
}

func effectiveAccount(t *testing.T, p *plan, name string) *configs.Account {
	t.Helper()
	a, ok := p.effective().Account(name)
	if !ok {
		t.Fatalf("no account %q", name)
	}
	return a
}

func TestPlanAppliesProviderPresets(t *testing.T) {
	a := effectiveAccount(t, examplePlan(t, "m365-app-only.yaml"), "m365")
	if a.Host != "smtp.office365.com" || a.Port != 587 || a.TLS != configs.UpstreamStartTLS || a.Auth != configs.AuthXOAuth2 {
		t.Errorf("Microsoft preset not applied: %s:%d tls=%s auth=%s", a.Host, a.Port, a.TLS, a.Auth)
	}
	if a.TokenURL != "https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/oauth2/v2.0/token" {
		t.Errorf("token URL = %q", a.TokenURL)
	}
	if strings.Join(a.Scopes, " ") != "https://outlook.office365.com/.default" {
		t.Errorf("app-only scopes = %v", a.Scopes)
	}
	if a.MaxConnections != 3 || a.RatePerMinute != 30 || a.MaxMessageSize != 35*configs.MB || a.SenderRule != configs.SenderRewrite {
		t.Errorf("Microsoft limits not applied: conns %d rate %v size %d rule %s", a.MaxConnections, a.RatePerMinute, a.MaxMessageSize, a.SenderRule)
	}

	a = effectiveAccount(t, examplePlan(t, "m365-delegated.yaml"), "m365")
	if a.Flow != configs.FlowAuthCode || a.RedirectURL != "http://localhost:8925/oauth2/callback" {
		t.Errorf("flow %q redirect %q", a.Flow, a.RedirectURL)
	}
	if strings.Join(a.Scopes, " ") != "https://outlook.office.com/SMTP.Send offline_access" {
		t.Errorf("delegated scopes = %v", a.Scopes)
	}

	a = effectiveAccount(t, examplePlan(t, "m365-usgov.yaml"), "gov")
	if a.Flow != configs.FlowDevice || a.RedirectURL != "http://localhost:8925/oauth2/callback" {
		t.Errorf("a device-flow account gets the callback too (browser or --paste sign-in): flow %q redirect %q", a.Flow, a.RedirectURL)
	}

	// Gmail is not Microsoft: Google documents no connection or rate limit
	// for smtp.gmail.com, so delivery's generic defaults apply.
	a = effectiveAccount(t, examplePlan(t, "gmail.yaml"), "gmail")
	if a.Host != "smtp.gmail.com" || a.MaxConnections == 3 || a.RatePerMinute == 30 {
		t.Errorf("gmail got Microsoft's limits: host %s conns %d rate %v", a.Host, a.MaxConnections, a.RatePerMinute)
	}
}

func TestPlanKeepsExplicitValues(t *testing.T) {
	p := textPlan(t, "t.yaml", `http:
  listen: 127.0.0.1:8080
scan_folders:
  - path: ./in
    failure_notice: false
accounts:
  - name: out
    transport: file
  - name: m365
    provider: microsoft
    tenant: contoso.com
    client_id: cid
    mailbox: s@contoso.com
    max_connections: 1
routes:
  default: out
`)
	a := effectiveAccount(t, p, "m365")
	if a.MaxConnections != 1 || a.RatePerMinute != 30 {
		t.Errorf("explicit max_connections must win over the preset, the rest stays: %d, %v", a.MaxConnections, a.RatePerMinute)
	}
	if a.RedirectURL != "http://localhost:8080/oauth2/callback" {
		t.Errorf("redirect follows the HTTP port: %q", a.RedirectURL)
	}
	f := p.effective().ScanFolders[0]
	if f.FailureNotice == nil || *f.FailureNotice || f.WriterCheck == nil || !*f.WriterCheck {
		t.Errorf("failure_notice false must be kept, writer_check defaults on: %v %v", f.FailureNotice, f.WriterCheck)
	}
	if f.Name != "in" || f.Account != "out" || f.QuietPeriod != 3*time.Second {
		t.Errorf("scan folder = name %q account %q quiet %s", f.Name, f.Account, f.QuietPeriod)
	}
}

// TestEmbeddedDefaultPlan is the product contract of the quick start, as
// the daemon runs it.
func TestEmbeddedDefaultPlan(t *testing.T) {
	var p *plan
	if _, err := configs.LoadDefault(planChecker(&p)); err != nil {
		t.Fatal(err)
	}
	c := p.effective()
	l := c.SMTPListeners[0]
	if l.Listen != "127.0.0.1:2525" || l.TLS != configs.ListenerTLSNone || l.MaxMessageSize != 35*configs.MB || l.MaxConnections != 200 || l.MaxLineLength != 4000 {
		t.Errorf("listener = %+v", l)
	}
	f := c.ScanFolders[0]
	if f.Account != "outbox" || f.Mode != configs.ScanWatch || f.QuietPeriod != 3*time.Second {
		t.Errorf("scan folder = %+v", f)
	}
	a, _ := c.Account("outbox")
	if a.Transport != configs.TransportFile || filepath.Clean(a.Dir) != filepath.Join("data", "outbox") || a.SenderRule != configs.SenderKeep {
		t.Errorf("outbox = %+v", a)
	}
}
