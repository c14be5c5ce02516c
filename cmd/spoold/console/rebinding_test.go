package console

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/spoold/spoold/configs/secret"
)

// A web page the admin visits can point its own name at 127.0.0.1 (DNS
// rebinding) and then read the login-free loopback console as same-origin,
// CSRF token included. The console must answer only to loopback names then.
func TestLoopbackConsoleRefusesForeignHostNames(t *testing.T) {
	e := newEnv(t, Options{Listen: "127.0.0.1:8925"})
	for _, host := range []string{"attacker.example", "attacker.example:8925", "10.0.0.5:8925"} {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/queue", nil)
		req.Host = host
		resp, err := e.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("Host %s: status %d, want 421", host, resp.StatusCode)
		}
		if strings.Contains(string(body), `name="csrf"`) || strings.Contains(string(body), e.ids[0]) {
			t.Errorf("Host %s: the page was served: %.200s", host, body)
		}
		if len(resp.Cookies()) > 0 {
			t.Errorf("Host %s: a session cookie was set", host)
		}
	}
	for _, host := range []string{"127.0.0.1:8925", "localhost:8925", "[::1]:8925", "localhost"} {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/queue", nil)
		req.Host = host
		resp, err := e.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("Host %s: status %d, want 200", host, resp.StatusCode)
		}
	}
}

// Behind a login the name does not matter: a rebinding page has no session.
func TestLoginConsoleAcceptsAnyHostName(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	e := newEnv(t, Options{Listen: "0.0.0.0:8925", TLS: true, Users: []User{{Name: "admin", PasswordHash: secret.Secret(hash)}}})
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/login", nil)
	req.Host = "spool.example.com"
	resp, err := e.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d, want 200", resp.StatusCode)
	}
}
