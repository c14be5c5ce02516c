// Package authtest is an in-process fake OAuth2 authorization server for
// tests of auth, delivery and the daemon: authorize with PKCE, token
// (authorization_code, refresh_token with rotation and reuse detection,
// client_credentials with secret or client assertion, JWT bearer, device
// code), device authorization, failure injection and call counters. It runs
// on httptest (loopback) and needs no network.
package authtest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Grant types as counted by Calls("token:<grant type>").
const (
	GrantAuthCode          = "authorization_code"
	GrantRefresh           = "refresh_token"
	GrantClientCredentials = "client_credentials"
	GrantJWTBearer         = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	GrantDeviceCode        = "urn:ietf:params:oauth:grant-type:device_code"
)

// Server is the fake. Exported fields may be set before use; change them
// later only through the setters (they lock).
type Server struct {
	srv *httptest.Server

	mu sync.Mutex
	// ClientID is the only client accepted; ClientSecret, when set, must be
	// sent by confidential grants (client_credentials always needs a secret or an assertion).
	clientID, clientSecret string
	identity               string // preferred_username and email in ID tokens ("" omits the ID token)
	ttl                    time.Duration
	rotate                 bool
	deviceInterval         int
	deviceExpires          time.Duration
	slowDowns              int // answer slow_down this many times before pending
	invalidGrant           string
	failNext               int
	failStatus             int
	tokenErr               *tokenError // answer every token request with it
	delay                  time.Duration
	answerDelay            time.Duration
	clientCert             *x509.Certificate
	saKeys                 map[string]*rsa.PublicKey // service account email -> key
	lastSubject            string
	now                    func() time.Time

	codes    map[string]*codeGrant
	refresh  map[string]*rtEntry
	revoked  map[string]bool // families
	devices  map[string]*device
	byUser   map[string]*device
	calls    map[string]int
	issued   []string
	families int
	scopes   map[string]string // access token -> the scope it was issued for
}

type codeGrant struct {
	clientID, redirectURI, challenge, scope string
	used                                    bool
}

type rtEntry struct {
	family string
	used   bool
	scope  string
}

type device struct {
	code, userCode string
	approved       bool
	denied         bool
	expires        time.Time
	slowDowns      int
	scope          string
}

// New starts a fake server for clientID (stop it with Close, e.g. t.Cleanup).
// Defaults: ID tokens name identity, access tokens live 1h, refresh tokens
// rotate, device interval 1 (second, or the client's poll unit).
func New(clientID, identity string) *Server {
	s := &Server{clientID: clientID, identity: identity, ttl: time.Hour, rotate: true, deviceInterval: 1,
		deviceExpires: 10 * time.Minute, now: time.Now, failStatus: http.StatusServiceUnavailable,
		saKeys: map[string]*rsa.PublicKey{}, codes: map[string]*codeGrant{}, refresh: map[string]*rtEntry{},
		revoked: map[string]bool{}, devices: map[string]*device{}, byUser: map[string]*device{}, calls: map[string]int{},
		scopes: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/authorize", s.authorize)
	mux.HandleFunc("/token", s.token)
	mux.HandleFunc("/devicecode", s.deviceCode)
	s.srv = httptest.NewServer(mux)
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.CloseClientConnections(); s.srv.Close() }

// URL is the server's base URL.
func (s *Server) URL() string { return s.srv.URL }

// AuthURL, TokenURL and DeviceAuthURL are the endpoints.
func (s *Server) AuthURL() string       { return s.srv.URL + "/authorize" }
func (s *Server) TokenURL() string      { return s.srv.URL + "/token" }
func (s *Server) DeviceAuthURL() string { return s.srv.URL + "/devicecode" }

// SetClientSecret requires secret from confidential grants.
func (s *Server) SetClientSecret(secret string) { s.mu.Lock(); s.clientSecret = secret; s.mu.Unlock() }

// SetIdentity changes who "signs in" ("" sends no ID token).
func (s *Server) SetIdentity(id string) { s.mu.Lock(); s.identity = id; s.mu.Unlock() }

// SetClock sets the clock that checks assertion and device-code lifetimes
// (give it the client's injected clock).
func (s *Server) SetClock(now func() time.Time) { s.mu.Lock(); s.now = now; s.mu.Unlock() }

// SetAccessTTL sets expires_in of issued access tokens.
func (s *Server) SetAccessTTL(d time.Duration) { s.mu.Lock(); s.ttl = d; s.mu.Unlock() }

// SetRotate chooses whether refresh answers carry a new refresh token.
func (s *Server) SetRotate(on bool) { s.mu.Lock(); s.rotate = on; s.mu.Unlock() }

// SetDevice sets the device flow's interval (seconds/poll units), code
// lifetime and how many polls answer slow_down first.
func (s *Server) SetDevice(interval int, expires time.Duration, slowDowns int) {
	s.mu.Lock()
	s.deviceInterval, s.deviceExpires, s.slowDowns = interval, expires, slowDowns
	s.mu.Unlock()
}

// SetInvalidGrant makes every refresh and JWT bearer request answer
// invalid_grant with description (e.g. "AADSTS700082: ..."); "" turns it off.
func (s *Server) SetInvalidGrant(description string) {
	s.mu.Lock()
	s.invalidGrant = description
	s.mu.Unlock()
}

type tokenError struct {
	status            int
	code, description string
}

// SetTokenError makes every token request answer an OAuth error (RFC 6749
// 5.2) with status, code and description, as Microsoft sends its AADSTS
// codes (e.g. 400, "invalid_grant", "AADSTS53003: Access has been blocked
// by Conditional Access policies."); status 0 turns it off.
func (s *Server) SetTokenError(status int, code, description string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenErr = nil
	if status != 0 {
		s.tokenErr = &tokenError{status: status, code: code, description: description}
	}
}

// FailNext makes the next n token requests answer status (e.g. 503, 429).
func (s *Server) FailNext(n, status int) {
	s.mu.Lock()
	s.failNext, s.failStatus = n, status
	s.mu.Unlock()
}

// SetDelay delays every token answer (to test timeouts). The request is
// handled after the delay: a client that gives up first changes nothing.
func (s *Server) SetDelay(d time.Duration) { s.mu.Lock(); s.delay = d; s.mu.Unlock() }

// SetAnswerDelay makes the token endpoint handle each request at once (a
// refresh token is rotated, a code redeemed) and hold the answer back for d.
// A client that gives up meanwhile never sees the new tokens, as with a slow
// real server; retrying with the old refresh token is then reuse.
func (s *Server) SetAnswerDelay(d time.Duration) { s.mu.Lock(); s.answerDelay = d; s.mu.Unlock() }

// Calls counts requests: "authorize", "devicecode", "token:<grant type>".
func (s *Server) Calls(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[key]
}

// Issued returns every code, token and device code the server handed out
// (for asserting none leaks into logs).
func (s *Server) Issued() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

// TokenScope says whether the server issued access token and for which
// scope (space-separated, as requested): a resource server fake (Graph)
// checks tokens with it.
func (s *Server) TokenScope(token string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc, ok := s.scopes[token]
	return sc, ok
}

// LastSubject is the sub of the last accepted JWT bearer assertion.
func (s *Server) LastSubject() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSubject
}

// RevokeAll revokes every refresh token family (an admin revoked sessions).
func (s *Server) RevokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.refresh {
		s.revoked[e.family] = true
	}
}

// ApproveDevice completes the user's step of a device login.
func (s *Server) ApproveDevice(userCode string) error { return s.decideDevice(userCode, true) }

// DenyDevice declines a device login.
func (s *Server) DenyDevice(userCode string) error { return s.decideDevice(userCode, false) }

func (s *Server) decideDevice(userCode string, ok bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.byUser[userCode]
	if d == nil {
		return fmt.Errorf("authtest: unknown user code %q", userCode)
	}
	d.approved, d.denied = ok, !ok
	return nil
}

// ExpireDevices makes every device code expired.
func (s *Server) ExpireDevices() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.devices {
		d.expires = time.Time{}
	}
}

// NewClientCertificate creates a self-signed certificate and RSA key (PEM)
// and makes the server accept client assertions signed by it.
func (s *Server) NewClientCertificate() (certPEM, keyPEM []byte, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "spoold test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	s.clientCert = cert
	s.mu.Unlock()
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	return certPEM, keyPEM, nil
}

// NewServiceAccount creates a Google-style service account key file whose
// token_uri is this server, and accepts its JWT bearer assertions.
func (s *Server) NewServiceAccount(email string) ([]byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.saKeys[email] = &key.PublicKey
	s.mu.Unlock()
	return json.Marshal(map[string]string{
		"type": "service_account", "client_email": email, "private_key_id": "kid1",
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"token_uri":   s.TokenURL(),
	})
}

func (s *Server) newSecret(prefix string) string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	v := prefix + hex.EncodeToString(b)
	s.issued = append(s.issued, v)
	return v
}

// authorize signs the configured identity in at once and redirects back
// with a code, after checking the client and the PKCE challenge.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls["authorize"]++
	q := r.URL.Query()
	redirect := q.Get("redirect_uri")
	ru, err := url.Parse(redirect)
	if redirect == "" || err != nil || q.Get("client_id") != s.clientID {
		http.Error(w, "unknown client or bad redirect_uri", http.StatusBadRequest)
		return
	}
	back := ru.Query()
	back.Set("state", q.Get("state"))
	switch {
	case q.Get("response_type") != "code":
		back.Set("error", "unsupported_response_type")
	case q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256":
		back.Set("error", "invalid_request")
		back.Set("error_description", "PKCE S256 code_challenge required")
	default:
		code := s.newSecret("code-")
		s.codes[code] = &codeGrant{clientID: s.clientID, redirectURI: redirect, challenge: q.Get("code_challenge"), scope: q.Get("scope")}
		back.Set("code", code)
	}
	ru.RawQuery = back.Encode()
	http.Redirect(w, r, ru.String(), http.StatusFound)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// sleepCtx waits d (the injected delays of a slow token endpoint) unless
// the client goes away first; it reports whether the wait ran out.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func oauthErr(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func (s *Server) deviceCode(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		oauthErr(w, http.StatusBadRequest, "invalid_request", "POST form expected")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls["devicecode"]++
	if r.PostForm.Get("client_id") != s.clientID {
		oauthErr(w, http.StatusBadRequest, "invalid_client", "unknown client")
		return
	}
	d := &device{code: s.newSecret("dev-"), userCode: strings.ToUpper(s.newSecret("")[:8]), expires: s.now().Add(s.deviceExpires),
		slowDowns: s.slowDowns, scope: r.PostForm.Get("scope")}
	s.devices[d.code] = d
	s.byUser[d.userCode] = d
	writeJSON(w, http.StatusOK, map[string]any{"device_code": d.code, "user_code": d.userCode,
		"verification_uri": s.srv.URL + "/device", "expires_in": int(s.deviceExpires.Seconds()), "interval": s.deviceInterval})
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		oauthErr(w, http.StatusBadRequest, "invalid_request", "POST form expected")
		return
	}
	f := r.PostForm
	gt := f.Get("grant_type")
	s.mu.Lock()
	s.calls["token:"+gt]++
	delay := s.delay
	s.mu.Unlock()
	if !sleepCtx(r.Context(), delay) {
		return
	}
	rec := httptest.NewRecorder()
	s.mu.Lock()
	s.handleGrant(rec, gt, f)
	answerDelay := s.answerDelay
	s.mu.Unlock()
	if !sleepCtx(r.Context(), answerDelay) {
		return // the answer is lost; what the request did stands
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// handleGrant answers one token request; s.mu is held.
func (s *Server) handleGrant(w http.ResponseWriter, gt string, f url.Values) {
	if e := s.tokenErr; e != nil {
		oauthErr(w, e.status, e.code, e.description)
		return
	}
	if s.failNext > 0 {
		s.failNext--
		oauthErr(w, s.failStatus, "temporarily_unavailable", "injected failure")
		return
	}
	switch gt {
	case GrantAuthCode:
		s.grantCode(w, f)
	case GrantRefresh:
		s.grantRefresh(w, f)
	case GrantClientCredentials:
		s.grantClientCredentials(w, f)
	case GrantJWTBearer:
		s.grantJWTBearer(w, f)
	case GrantDeviceCode:
		s.grantDevice(w, f)
	default:
		oauthErr(w, http.StatusBadRequest, "unsupported_grant_type", "grant type not supported")
	}
}

func (s *Server) checkClient(w http.ResponseWriter, f url.Values) bool {
	if f.Get("client_id") != s.clientID {
		oauthErr(w, http.StatusUnauthorized, "invalid_client", "AADSTS700016: unknown client")
		return false
	}
	if s.clientSecret != "" && f.Get("client_secret") != s.clientSecret {
		oauthErr(w, http.StatusUnauthorized, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
		return false
	}
	return true
}

// issue answers with a fresh access token and, for delegated grants, a
// refresh token in family (new family when "").
func (s *Server) issue(w http.ResponseWriter, family, scope string, delegated, withRefresh bool) {
	at := s.newSecret("at-")
	s.scopes[at] = scope
	resp := map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": int(s.ttl.Seconds()), "scope": scope}
	if delegated {
		if withRefresh {
			if family == "" {
				s.families++
				family = fmt.Sprintf("fam%d", s.families)
			}
			rt := s.newSecret("rt-")
			s.refresh[rt] = &rtEntry{family: family, scope: scope}
			resp["refresh_token"] = rt
		}
		if s.identity != "" {
			resp["id_token"] = idToken(s.identity, s.clientID)
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// idToken is an unsigned-looking JWT with the identity claims (the client
// does not verify signatures of ID tokens it fetched itself).
func idToken(identity, aud string) string {
	enc := base64.RawURLEncoding
	h := enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))
	p, _ := json.Marshal(map[string]any{"preferred_username": identity, "email": identity, "aud": aud, "iss": "authtest",
		"exp": time.Now().Add(time.Hour).Unix()})
	return h + "." + enc.EncodeToString(p) + "." + enc.EncodeToString([]byte("not-a-signature"))
}

func (s *Server) grantCode(w http.ResponseWriter, f url.Values) {
	if !s.checkClient(w, f) {
		return
	}
	c := s.codes[f.Get("code")]
	if c == nil || c.used {
		oauthErr(w, http.StatusBadRequest, "invalid_grant", "AADSTS54005: authorization code unknown or already redeemed")
		return
	}
	c.used = true
	if c.redirectURI != f.Get("redirect_uri") {
		oauthErr(w, http.StatusBadRequest, "invalid_grant", "redirect_uri does not match")
		return
	}
	sum := sha256.Sum256([]byte(f.Get("code_verifier")))
	if base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
		oauthErr(w, http.StatusBadRequest, "invalid_grant", "AADSTS501481: code_verifier does not match code_challenge")
		return
	}
	s.issue(w, "", c.scope, true, true)
}

func (s *Server) grantRefresh(w http.ResponseWriter, f url.Values) {
	if !s.checkClient(w, f) {
		return
	}
	if s.invalidGrant != "" {
		oauthErr(w, http.StatusBadRequest, "invalid_grant", s.invalidGrant)
		return
	}
	e := s.refresh[f.Get("refresh_token")]
	switch {
	case e == nil:
		oauthErr(w, http.StatusBadRequest, "invalid_grant", "AADSTS9002313: refresh token unknown")
	case s.revoked[e.family]:
		oauthErr(w, http.StatusBadRequest, "invalid_grant", "AADSTS50173: the grant was revoked")
	case e.used:
		// Reuse of a rotated token: assume theft and revoke the whole family.
		s.revoked[e.family] = true
		oauthErr(w, http.StatusBadRequest, "invalid_grant", "refresh token reuse detected; token family revoked")
	default:
		if s.rotate {
			e.used = true
		}
		s.issue(w, e.family, e.scope, true, s.rotate)
	}
}

func (s *Server) grantClientCredentials(w http.ResponseWriter, f url.Values) {
	if f.Get("client_id") != s.clientID {
		oauthErr(w, http.StatusUnauthorized, "invalid_client", "AADSTS700016: unknown client")
		return
	}
	if a := f.Get("client_assertion"); a != "" {
		if f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			oauthErr(w, http.StatusBadRequest, "invalid_request", "bad client_assertion_type")
			return
		}
		if err := s.verifyClientAssertion(a); err != nil {
			oauthErr(w, http.StatusUnauthorized, "invalid_client", "AADSTS700027: client assertion invalid: "+err.Error())
			return
		}
	} else if s.clientSecret == "" || f.Get("client_secret") != s.clientSecret {
		oauthErr(w, http.StatusUnauthorized, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
		return
	}
	s.issue(w, "", f.Get("scope"), false, false)
}

func (s *Server) verifyClientAssertion(a string) error {
	if s.clientCert == nil {
		return fmt.Errorf("no certificate registered")
	}
	sum := sha1.Sum(s.clientCert.Raw)
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(a, claims, func(t *jwt.Token) (any, error) {
		if t.Header["x5t"] != base64.RawURLEncoding.EncodeToString(sum[:]) {
			return nil, fmt.Errorf("x5t does not name the registered certificate")
		}
		return s.clientCert.PublicKey, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience(s.TokenURL()), jwt.WithIssuer(s.clientID), jwt.WithSubject(s.clientID), jwt.WithExpirationRequired(), jwt.WithTimeFunc(s.now))
	return err
}

func (s *Server) grantJWTBearer(w http.ResponseWriter, f url.Values) {
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(f.Get("assertion"), claims, func(t *jwt.Token) (any, error) {
		iss, _ := t.Claims.(jwt.MapClaims)["iss"].(string)
		k := s.saKeys[iss]
		if k == nil {
			return nil, fmt.Errorf("unknown service account")
		}
		return k, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience(s.TokenURL()), jwt.WithExpirationRequired(), jwt.WithTimeFunc(s.now))
	if err != nil {
		oauthErr(w, http.StatusBadRequest, "invalid_grant", "Invalid JWT Signature or claims")
		return
	}
	if s.invalidGrant != "" {
		oauthErr(w, http.StatusBadRequest, "invalid_grant", s.invalidGrant)
		return
	}
	s.lastSubject, _ = claims["sub"].(string)
	scope, _ := claims["scope"].(string)
	s.issue(w, "", scope, false, false)
}

func (s *Server) grantDevice(w http.ResponseWriter, f url.Values) {
	if f.Get("client_id") != s.clientID {
		oauthErr(w, http.StatusUnauthorized, "invalid_client", "unknown client")
		return
	}
	d := s.devices[f.Get("device_code")]
	switch {
	case d == nil:
		oauthErr(w, http.StatusBadRequest, "invalid_grant", "unknown device code")
	case s.now().After(d.expires):
		oauthErr(w, http.StatusBadRequest, "expired_token", "AADSTS70020: device code expired")
	case d.denied:
		oauthErr(w, http.StatusBadRequest, "access_denied", "the user declined")
	case d.slowDowns > 0:
		d.slowDowns--
		oauthErr(w, http.StatusBadRequest, "slow_down", "polling too fast")
	case !d.approved:
		oauthErr(w, http.StatusBadRequest, "authorization_pending", "AADSTS70016: pending")
	default:
		delete(s.devices, d.code)
		delete(s.byUser, d.userCode)
		s.issue(w, "", d.scope, true, true)
	}
}
