package auth

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		err  error
		want errKind
	}{
		{&EndpointError{Status: 400, Code: "invalid_grant"}, kindReauth},
		{&EndpointError{Status: 400, Code: "invalid_request", Description: "AADSTS700082: expired due to inactivity"}, kindReauth},
		{&EndpointError{Status: 400, Code: "invalid_client", Description: "AADSTS70043: conditional access"}, kindReauth},
		{&EndpointError{Status: 401, Code: "invalid_client"}, kindConfig},
		{&EndpointError{Status: 400, Code: "invalid_scope"}, kindConfig},
		{&EndpointError{Status: 200, Code: "invalid_response"}, kindConfig},
		{&EndpointError{Status: 429}, kindTransient},
		{&EndpointError{Status: 503, Code: "temporarily_unavailable"}, kindTransient},
		{&EndpointError{Status: 500, Code: "invalid_client"}, kindTransient},
		{&EndpointError{Status: 408}, kindTransient},
		{errors.New("connection refused"), kindTransient},
		{fmt.Errorf("x: %w", configError{errors.New("bad key")}), kindConfig},
	}
	for i, c := range cases {
		if got := classify(c.err); got != c.want {
			t.Errorf("case %d %v: got %d want %d", i, c.err, got, c.want)
		}
	}
}

func TestParseEndpointErrorKeepsCodeDropsBody(t *testing.T) {
	body := []byte(`{"error":"invalid_grant","error_description":"AADSTS50173: revoked\r\nTrace ID: 1","refresh_token":"rt-SECRET"}`)
	e := parseEndpointError(http.StatusBadRequest, body)
	if e.Code != "invalid_grant" || !strings.HasPrefix(e.Description, "AADSTS50173") || strings.Contains(e.Error(), "rt-SECRET") || strings.ContainsAny(e.Description, "\r\n") {
		t.Fatalf("%+v", e)
	}
	if e := parseEndpointError(502, []byte("<html>bad gateway</html>")); e.Code != "" || e.Error() != "token endpoint answered 502" {
		t.Fatalf("%+v", e)
	}
	if e := parseEndpointError(400, []byte("error=invalid_grant&error_description=x")); e.Code != "invalid_grant" {
		t.Fatalf("form error: %+v", e)
	}
}

func TestIDTokenClaims(t *testing.T) {
	enc := base64.RawURLEncoding
	tok := enc.EncodeToString([]byte(`{"alg":"none"}`)) + "." + enc.EncodeToString([]byte(`{"upn":"A@X.COM"}`)) + ".sig"
	c, err := idTokenClaims(tok)
	if err != nil || c.UPN != "A@X.COM" {
		t.Fatalf("%+v %v", c, err)
	}
	r := &resolved{provider: ProviderMicrosoft, cfg: AccountConfig{Mailbox: "a@x.com"}}
	if id, err := checkIdentity("a", tok, r); err != nil || id != "A@X.COM" {
		t.Fatalf("%q %v", id, err)
	}
	if _, err := checkIdentity("a", "", r); err == nil {
		t.Fatal("missing ID token accepted for microsoft")
	}
	if id, err := checkIdentity("a", "", &resolved{provider: ProviderGeneric}); err != nil || id != "" {
		t.Fatal("generic without ID token should pass unverified")
	}
	for _, bad := range []string{"x", "a.b", "a.!!!.c", "a." + enc.EncodeToString([]byte("[]")) + ".c"} {
		if _, err := idTokenClaims(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseTokenResponse(t *testing.T) {
	tr, err := parseTokenResponse(200, []byte(`{"access_token":"a","expires_in":"3599","refresh_token":"r"}`))
	if err != nil || tr.ExpiresIn.Seconds() != 3599 || tr.TokenType != "Bearer" {
		t.Fatalf("%+v %v", tr, err)
	}
	if _, err := parseTokenResponse(200, []byte(`<html>`)); classify(err) != kindConfig {
		t.Fatalf("html answer: %v", err)
	}
	if _, err := parseTokenResponse(200, []byte(`{"token_type":"Bearer"}`)); err == nil {
		t.Fatal("no access token accepted")
	}
}

func TestXOAUTH2Client(t *testing.T) {
	c := NewXOAUTH2Client("a@x.com", "tok")
	mech, ir, err := c.Start()
	if err != nil || mech != "XOAUTH2" || string(ir) != "user=a@x.com\x01auth=Bearer tok\x01\x01" {
		t.Fatalf("%s %q %v", mech, ir, err)
	}
	if resp, err := c.Next([]byte(`{"status":"401"}`)); err != nil || len(resp) != 0 {
		t.Fatalf("error challenge answered %q %v", resp, err)
	}
	if _, _, err := NewXOAUTH2Client("", "t").Start(); err == nil {
		t.Fatal("empty user accepted")
	}
}

// Fuzz targets for everything fed from outside: endpoint answers, ID
// tokens and pasted redirect URLs. None may panic; outputs stay sane.
func FuzzParseEndpointAnswers(f *testing.F) {
	f.Add([]byte(`{"error":"invalid_grant","error_description":"AADSTS700082"}`))
	f.Add([]byte(`{"access_token":"a","expires_in":3600}`))
	f.Add([]byte(`{"device_code":"d","user_code":"U","verification_uri":"https://x","interval":"5"}`))
	f.Add([]byte("error=x&error_description=y"))
	f.Fuzz(func(t *testing.T, body []byte) {
		e := parseEndpointError(400, body)
		if utf8.RuneCountInString(e.Description) > 403 || strings.ContainsAny(e.Description+e.Code, "\r\n") {
			t.Fatalf("unsanitized: %q", e.Description)
		}
		if tr, err := parseTokenResponse(200, body); err == nil && (tr.AccessToken == "" || tr.ExpiresIn <= 0) {
			t.Fatalf("accepted %+v", tr)
		}
	})
}

func FuzzIDTokenClaims(f *testing.F) {
	f.Add("eyJhbGciOiJub25lIn0.eyJ1cG4iOiJhQHguY29tIn0.sig")
	f.Add("..")
	f.Fuzz(func(t *testing.T, tok string) {
		r := &resolved{provider: ProviderMicrosoft, cfg: AccountConfig{Mailbox: "a@x.com"}}
		id, err := checkIdentity("a", tok, r)
		if err == nil && !strings.EqualFold(strings.TrimSpace(id), "a@x.com") {
			t.Fatalf("accepted identity %q", id)
		}
	})
}

func FuzzCallbackQuery(f *testing.F) {
	f.Add("http://localhost:9191/oauth2/callback?code=c&state=s")
	f.Add("code=c&state=s#frag")
	f.Add("?error=access_denied&state=s")
	f.Fuzz(func(t *testing.T, s string) {
		q, err := callbackQuery(s)
		if err == nil && q.Get("state") == "" {
			t.Fatal("accepted without state")
		}
	})
}

func TestTokenTimeoutDefaultAndBounds(t *testing.T) {
	base := AccountConfig{Name: "a", Provider: "generic", ClientID: "c", Mailbox: "a@example.com",
		AuthURL: "https://idp.example/auth", TokenURL: "https://idp.example/token", Scopes: []string{"smtp"},
		RedirectURL: "http://localhost:9191/oauth2/callback"}
	r, ps := check(base)
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	// Issue 12: the old fixed 30 s lost answers of slow, rotating servers.
	if r.cfg.TokenTimeout != DefaultTokenTimeout || DefaultTokenTimeout < 2*time.Minute {
		t.Fatalf("default token timeout = %s", r.cfg.TokenTimeout)
	}
	for _, d := range []time.Duration{-time.Second, time.Millisecond, MaxTokenTimeout + time.Second} {
		c := base
		c.TokenTimeout = d
		if _, ps := check(c); len(ps) != 1 || ps[0].Key != "token_timeout" {
			t.Errorf("token_timeout %s: %v", d, ps)
		}
		if err := ValidateAccounts([]AccountConfig{c}); err == nil {
			t.Errorf("ValidateAccounts accepted token_timeout %s", d)
		}
	}
	for _, d := range []time.Duration{MinTokenTimeout, 5 * time.Minute, MaxTokenTimeout} {
		c := base
		c.TokenTimeout = d
		if r, ps := check(c); len(ps) > 0 || r.cfg.TokenTimeout != d {
			t.Errorf("token_timeout %s: %v", d, ps)
		}
	}
}
