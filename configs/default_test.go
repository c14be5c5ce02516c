package configs

import (
	"path/filepath"
	"testing"
)

func TestDefaultMatchesProductContract(t *testing.T) {
	c, err := Parse(DefaultName, Default(), func(string) (string, bool) { return "", false }, nil)
	if err != nil {
		t.Fatalf("embedded default does not validate:\n%v", err)
	}
	if c.DataDir != "./data" {
		t.Errorf("data_dir = %q, want ./data", c.DataDir)
	}
	if c.Admin.Socket != filepath.Join("data", "spoold.sock") {
		t.Errorf("admin socket = %q, want data/spoold.sock", c.Admin.Socket)
	}
	if c.HTTP.Listen != "127.0.0.1:8925" {
		t.Errorf("http.listen = %q", c.HTTP.Listen)
	}
	if len(c.SMTPListeners) != 1 {
		t.Fatalf("want one SMTP listener, got %d", len(c.SMTPListeners))
	}
	l := c.SMTPListeners[0]
	if l.Listen != "127.0.0.1:2525" || l.TLS != ListenerTLSNone || len(l.Users) != 0 || l.RequireAuth {
		t.Errorf("listener = %+v, want 127.0.0.1:2525 without TLS or AUTH", l)
	}
	if len(l.AllowedNetworks) != 2 || l.AllowedNetworks[0].String() != "127.0.0.0/8" || l.AllowedNetworks[1].String() != "::1/128" {
		t.Errorf("allowed_networks = %v, want loopback only", l.AllowedNetworks)
	}
	// The scan folder's account and timings are the daemon's and the scan
	// folder's defaults: cmd/spoold's plan tests check them.
	if len(c.ScanFolders) != 1 || c.ScanFolders[0].Path != "./scans" {
		t.Errorf("scan folders = %+v", c.ScanFolders)
	}
	a, ok := c.Account("outbox")
	if !ok || a.Transport != TransportFile || filepath.Clean(a.Dir) != filepath.Join("data", "outbox") {
		t.Errorf("outbox account = %+v", a)
	}
	if c.Routes.Default != "outbox" {
		t.Errorf("routes.default = %q", c.Routes.Default)
	}
	if got := Default(); &got[0] == &defaultYAML[0] {
		t.Error("Default returns the embedded slice itself; callers could modify it")
	}
}
