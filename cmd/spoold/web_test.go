package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/configs"
	"github.com/spoold/spoold/spool/spooltest"
)

// TestMetricsToken: with http.metrics_token set, /metrics asks a client
// that is not on loopback for the bearer token; a local scraper needs none;
// /healthz stays open; without a console "/" is not found.
func TestMetricsToken(t *testing.T) {
	h := newHTTPHandler(prometheus.NewRegistry(), func() error { return nil }, nil, nil, "tok-3e1f")
	get := func(path, remote, auth string) int {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.RemoteAddr = remote
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	for _, tc := range []struct {
		path, remote, auth string
		want               int
	}{
		{"/metrics", "192.0.2.9:5000", "", http.StatusUnauthorized},
		{"/metrics", "192.0.2.9:5000", "Bearer wrong", http.StatusUnauthorized},
		{"/metrics", "192.0.2.9:5000", "tok-3e1f", http.StatusUnauthorized},
		{"/metrics", "192.0.2.9:5000", "Bearer tok-3e1f", http.StatusOK},
		{"/metrics", "127.0.0.1:5000", "", http.StatusOK},
		{"/metrics", "[::1]:5000", "", http.StatusOK},
		{"/healthz", "192.0.2.9:5000", "", http.StatusOK},
		{"/", "127.0.0.1:5000", "", http.StatusNotFound},
	} {
		if got := get(tc.path, tc.remote, tc.auth); got != tc.want {
			t.Errorf("GET %s from %s with %q: %d, want %d", tc.path, tc.remote, tc.auth, got, tc.want)
		}
	}
}

// TestConsoleConfigChecks: -check refuses a console beyond loopback without
// TLS or users, and accepts it with both or with console: false.
func TestConsoleConfigChecks(t *testing.T) {
	base := "accounts:\n  - {name: out, transport: file}\nroutes: {default: out}\n"
	for _, tc := range []struct{ name, http, want string }{
		{"open", "http: {listen: 0.0.0.0:8925}\n", "http.tls: the web console listens beyond loopback"},
		{"no users", "http: {listen: 0.0.0.0:8925, tls: true}\n", "http.console_users: the web console listens beyond loopback"},
		{"bad hash", "http:\n  console_users: [{name: a, password_hash: secret}]\n", "http.console_users[0].password_hash: not a bcrypt hash"},
		{"console off", "http: {listen: 0.0.0.0:8925, console: false}\n", ""},
		{"loopback", "http: {listen: 127.0.0.1:8925}\n", ""},
	} {
		_, err := configs.Parse("test.yaml", []byte(tc.http+base), noEnv, planChecker(new(*plan)))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestScanFilesAndRetry: the admin API lists a scan folder's failed file
// with the reason spoold wrote next to it, and a retry puts it back into
// the folder, where the watcher takes it like a new scan.
func TestScanFilesAndRetry(t *testing.T) {
	dir := t.TempDir()
	scans := filepath.Join(dir, "scans")
	failed := filepath.Join(scans, "failed", "it@contoso.com")
	if err := os.MkdirAll(failed, 0o750); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(failed, "scan.pdf"), "%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n3 0 obj<</Type/Page/Parent 2 0 R>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")
	writeFile(t, filepath.Join(failed, "scan.pdf.error.txt"), "spoold could not send this scan.\n\nFile:   it@contoso.com/scan.pdf\nReason: too big: over the account's limit\n")
	config := filepath.Join(dir, "spoold.yaml")
	writeFile(t, config, fmt.Sprintf(`data_dir: %s/data
http: {listen: ""}
admin: {socket: %s}
delivery: {paused: true}
scan_folders:
  - {path: %s, mode: poll, rescan_interval: 200ms, quiet_period: 100ms}
accounts:
  - {name: out, transport: file}
routes: {default: out}
`, dir, filepath.Join(shortSocketDir(t), "s.sock"), scans))
	p, err := loadPlan(config)
	if err != nil {
		t.Fatal(err)
	}
	d, err := startDaemon(context.Background(), p, config, slog.New(slog.DiscardHandler), new(slog.LevelVar))
	if err != nil {
		t.Fatal(err)
	}
	defer d.shutdown()
	c := wire.NewClient(d.cfg.Admin.Socket)
	defer c.CloseIdleConnections()
	ctx := context.Background()
	sf, err := c.ScanFiles(ctx, "", 10)
	if err != nil || len(sf.Files) != 1 || !sf.Files[0].Failed || sf.Files[0].Path != "it@contoso.com/scan.pdf" ||
		sf.Files[0].Reason != "too big: over the account's limit" {
		t.Fatalf("scan files: %+v %v", sf, err)
	}
	if _, err := c.RetryScanFile(ctx, "scans", "../../etc/passwd"); err == nil || !strings.Contains(err.Error(), "not a file in failed/") {
		t.Fatalf("retry outside failed/: %v", err)
	}
	if _, err := c.RetryScanFile(ctx, sf.Files[0].Folder, sf.Files[0].Path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(failed, "scan.pdf.error.txt")); !os.IsNotExist(err) {
		t.Fatalf("the reason file stayed: %v", err)
	}
	spooltest.WaitFor(t, "the retried scan queued", 30*time.Second, func() bool {
		l, err := c.Search(ctx, wire.SearchRequest{Source: "scan"})
		return err == nil && len(l.Messages) == 1
	})
	if _, err := c.RetryScanFile(ctx, "scans", "it@contoso.com/scan.pdf"); err == nil || !strings.Contains(err.Error(), "no failed file") {
		t.Fatalf("second retry: %v", err)
	}
}

// TestRedirectFollowsHTTPTLS: with http.tls the OAuth callback is served
// over HTTPS, so an account's default redirect URL says https.
func TestRedirectFollowsHTTPTLS(t *testing.T) {
	for _, tc := range []struct{ http, want string }{
		{"http: {listen: 127.0.0.1:9000}\n", "http://localhost:9000/oauth2/callback"},
		{"http: {listen: 127.0.0.1:9000, tls: true}\n", "https://localhost:9000/oauth2/callback"},
	} {
		p := textPlan(t, "t.yaml", tc.http+`accounts:
  - {name: m365, provider: microsoft, tenant: contoso.com, client_id: cid, mailbox: s@contoso.com}
routes: {default: m365}
`)
		if got := p.oauth[0].RedirectURL; got != tc.want {
			t.Errorf("%s: redirect %s, want %s", strings.TrimSpace(tc.http), got, tc.want)
		}
	}
}

// TestReloadConsoleUsers: console users added by a reload apply at once,
// without a restart warning, and the settings page shows them (hash
// redacted); a changed http.listen still needs a restart.
func TestReloadConsoleUsers(t *testing.T) {
	dir := t.TempDir()
	port := spooltest.FreePort(t)
	config := filepath.Join(dir, "spoold.yaml")
	socket := filepath.Join(shortSocketDir(t), "s.sock")
	conf := func(listen, users string) string {
		return fmt.Sprintf(`data_dir: %s/data
http:
  listen: %s
  console_users: %s
admin: {socket: %s}
accounts:
  - {name: out, transport: file}
routes: {default: out}
`, dir, listen, users, socket)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	writeFile(t, config, conf(listen, "[]"))
	p, err := loadPlan(config)
	if err != nil {
		t.Fatal(err)
	}
	d, err := startDaemon(context.Background(), p, config, slog.New(slog.DiscardHandler), new(slog.LevelVar))
	if err != nil {
		t.Fatal(err)
	}
	defer d.shutdown()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	status := func() int {
		resp, err := noRedirect.Get("http://" + listen + "/queue")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(); got != http.StatusOK {
		t.Fatalf("loopback console without users: %d", got)
	}
	hash := "$2a$04$AAAAAAAAAAAAAAAAAAAAAOXYy1k1aXxUI5Ej3d2sZ2tfEXf0Z0sWe"
	if _, err := bcryptCost(hash); err != nil {
		t.Fatal(err)
	}
	writeFile(t, config, conf(listen, `[{name: admin, password_hash: "`+hash+`"}]`))
	if err := d.reload(); err != nil {
		t.Fatal(err)
	}
	if got := status(); got != http.StatusSeeOther {
		t.Fatalf("after a reload added users: %d, want the login", got)
	}
	c := wire.NewClient(d.cfg.Admin.Socket)
	defer c.CloseIdleConnections()
	st, err := c.Status(context.Background())
	if err != nil || st.LastReload == nil || !st.LastReload.OK || len(st.LastReload.Warnings) != 0 {
		t.Fatalf("reload outcome: %+v %v", st.LastReload, err)
	}
	cfg, err := c.Config(context.Background())
	if err != nil || !strings.Contains(cfg.YAML, "name: admin") || strings.Contains(cfg.YAML, hash) {
		t.Fatalf("effective config after the reload:\n%s %v", cfg.YAML, err)
	}
	writeFile(t, config, conf(fmt.Sprintf("127.0.0.1:%d", spooltest.FreePort(t)), `[{name: admin, password_hash: "`+hash+`"}]`))
	if err := d.reload(); err != nil {
		t.Fatal(err)
	}
	st, err = c.Status(context.Background())
	if err != nil || len(st.LastReload.Warnings) != 1 || !strings.HasPrefix(st.LastReload.Warnings[0], "http.listen: needs a restart") {
		t.Fatalf("a changed http.listen: %+v %v", st.LastReload, err)
	}
}

func bcryptCost(hash string) (int, error) { return bcrypt.Cost([]byte(hash)) }
