package auth_test

import (
	"context"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/auth/authtest"
)

// TestTokenRequestsHonourProxyEnvironment: issue 15. Behind an outbound
// proxy, token requests go through HTTPS_PROXY, except for hosts in
// NO_PROXY. net/http reads these variables once per process, so the
// requests are made by a child process of this test binary with its own
// environment; the parent plays the proxy and checks what went through it.
func TestTokenRequestsHonourProxyEnvironment(t *testing.T) {
	if os.Getenv("SPOOLD_AUTH_PROXY_CHILD") != "" {
		proxyChild(t)
		return
	}
	srv := authtest.New(testClient, "")
	t.Cleanup(srv.Close)
	srv.SetClientSecret("proxy-secret-123")
	// The token endpoint as the world sees it: TLS, certificate for example.com.
	target, _ := url.Parse(srv.URL())
	tlsSrv := httptest.NewTLSServer(httputil.NewSingleHostReverseProxy(target))
	t.Cleanup(tlsSrv.Close)
	certFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var connects []string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		connects = append(connects, r.Method+" "+r.Host)
		mu.Unlock()
		if r.Method != http.MethodConnect || r.Host != "example.com:443" {
			http.Error(w, "unexpected", http.StatusBadGateway)
			return
		}
		up, err := net.Dial("tcp", tlsSrv.Listener.Addr().String())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer up.Close()
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
		done := make(chan struct{}, 2)
		go func() { _, _ = io.Copy(up, buf); done <- struct{}{} }()
		go func() { _, _ = io.Copy(conn, up); done <- struct{}{} }()
		<-done
	}))
	t.Cleanup(proxy.Close)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestTokenRequestsHonourProxyEnvironment$", "-test.v")
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(strings.ToUpper(kv), "=")
		return k == "HTTP_PROXY" || k == "HTTPS_PROXY" || k == "NO_PROXY" || k == "ALL_PROXY"
	}), "SPOOLD_AUTH_PROXY_CHILD=1", "HTTPS_PROXY="+proxy.URL, "NO_PROXY=direct.example.test", "SSL_CERT_FILE="+certFile)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(connects, []string{"CONNECT example.com:443"}) {
		t.Fatalf("the proxy saw %q, want one CONNECT to example.com:443 (and none for the NO_PROXY host)\n%s", connects, out)
	}
	if n := srv.Calls("token:" + authtest.GrantClientCredentials); n != 1 {
		t.Fatalf("token requests that reached the endpoint: %d\n%s", n, out)
	}
}

// proxyChild makes the token requests with the Manager's default HTTP client.
func proxyChild(t *testing.T) {
	acc := func(name, tokenURL string) auth.AccountConfig {
		return auth.AccountConfig{Name: name, Provider: "generic", Flow: "client_credentials", ClientID: testClient,
			ClientSecret: "proxy-secret-123", Mailbox: testMailbox, TokenURL: tokenURL, Scopes: []string{"smtp"}, TokenTimeout: 10 * time.Second}
	}
	m, err := auth.NewManager([]auth.AccountConfig{acc("proxied", "https://example.com/token"), acc("direct", "https://direct.example.test/token")},
		newMemStore(), auth.Options{RefreshAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	if _, err := m.AccessToken(ctx, "proxied"); err != nil {
		t.Fatalf("through HTTPS_PROXY: %v", err)
	}
	// NO_PROXY: dialled directly, and the reserved .test name does not resolve.
	if _, err := m.AccessToken(ctx, "direct"); err == nil {
		t.Fatal("a NO_PROXY host was reached")
	}
}
