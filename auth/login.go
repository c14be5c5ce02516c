package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/spoold/spoold/configs/secret"
)

// LoginMode selects how a delegated login's user step happens.
type LoginMode string

const (
	LoginBrowser LoginMode = "browser" // open AuthURL; the daemon's /oauth2/callback completes it
	LoginPaste   LoginMode = "paste"   // open AuthURL elsewhere; paste the redirected URL back (headless hosts)
	LoginDevice  LoginMode = "device"  // enter UserCode at VerificationURL
)

// LoginStart tells the admin what to do next.
type LoginStart struct {
	ID              string        `json:"id"`
	Account         string        `json:"account"`
	Mode            LoginMode     `json:"mode,omitempty"`
	AuthURL         string        `json:"auth_url,omitempty"`     // browser, paste
	RedirectURL     string        `json:"redirect_url,omitempty"` // browser, paste
	UserCode        string        `json:"user_code,omitempty"`    // device
	VerificationURL string        `json:"verification_url,omitempty"`
	ExpiresAt       time.Time     `json:"expires_at"`
	Interval        time.Duration `json:"interval,omitempty"` // device polling interval
	// Done is true when no user step is needed (client_credentials,
	// service_account): Health is the result of obtaining a token.
	Done   bool    `json:"done,omitempty"`
	Health *Health `json:"health,omitempty"`
}

// pendingLogin is a started login waiting for its user step.
type pendingLogin struct {
	id, account string
	mode        LoginMode
	state       string
	verifier    secret.Secret
	redirectURL string
	expires     time.Time

	mu      sync.Mutex
	claimed bool // a code is being exchanged: one completion only
	once    sync.Once
	done    chan struct{}
	health  Health
	err     error
}

func (p *pendingLogin) finish(h Health, err error) {
	p.once.Do(func() {
		p.health, p.err = h, err
		close(p.done)
	})
}

func (p *pendingLogin) claim() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.claimed {
		return false
	}
	p.claimed = true
	return true
}

// StartLogin begins a login. Mode "" picks the account's flow: device for
// device, browser otherwise. For client_credentials and service_account it
// obtains a token at once (clearing needs_reauth/misconfigured on success)
// and returns Done with the Health.
func (m *Manager) StartLogin(ctx context.Context, name string, mode LoginMode) (LoginStart, error) {
	r, err := m.resolvedOf(name)
	if err != nil {
		return LoginStart{}, err
	}
	id, err := m.randomString(16)
	if err != nil {
		return LoginStart{}, err
	}
	now := m.now()
	m.pruneLogins(now)
	p := &pendingLogin{id: id, account: name, mode: mode, done: make(chan struct{}), expires: now.Add(m.opts.LoginTTL)}

	if !r.flow.Delegated() {
		_, _, terr := m.token(ctx, name, true, "", true)
		h, herr := m.Health(ctx, name)
		if terr == nil && herr != nil {
			terr = herr
		}
		p.finish(h, terr)
		m.addLogin(p)
		if terr != nil {
			return LoginStart{}, terr
		}
		return LoginStart{ID: id, Account: name, Done: true, Health: &h, ExpiresAt: p.expires}, nil
	}

	if mode == "" {
		mode = LoginBrowser
		if r.flow == FlowDevice {
			mode = LoginDevice
		}
	}
	p.mode = mode
	scopes := loginScopes(r)
	switch mode {
	case LoginBrowser, LoginPaste:
		if r.authURL == "" || r.cfg.RedirectURL == "" {
			if r.flow == FlowDevice {
				return LoginStart{}, acctErr(ErrLoginUnsupported, nil, "account %s uses the device flow, which has no redirect URL for a browser login: run `spoolctl auth login %s --device`", name, name)
			}
			return LoginStart{}, acctErr(ErrMisconfigured, nil, "account %s cannot start a browser login without auth_url and redirect_url: set them", name)
		}
		state, err := m.randomString(24)
		if err != nil {
			return LoginStart{}, err
		}
		verifier, err := m.randomBase64URL(32)
		if err != nil {
			return LoginStart{}, err
		}
		p.state, p.verifier, p.redirectURL = state, secret.Secret(verifier), r.cfg.RedirectURL
		authURL, err := authorizeURL(r, state, verifier, scopes)
		if err != nil {
			return LoginStart{}, acctErr(ErrMisconfigured, err, "account %s: %v: correct auth_url", name, err)
		}
		m.addLogin(p)
		m.log.Info("login started", "account", name, "mode", mode, "login_id", id)
		return LoginStart{ID: id, Account: name, Mode: mode, AuthURL: authURL, RedirectURL: r.cfg.RedirectURL, ExpiresAt: p.expires}, nil
	case LoginDevice:
		if r.provider == ProviderGoogle {
			// Google's device flow allows a short list of scopes, and
			// https://mail.google.com/ is not on it (developers.google.com/
			// identity/protocols/oauth2/limited-input-device#allowedscopes):
			// asking would only fail after the admin typed the code.
			return LoginStart{}, acctErr(ErrLoginUnsupported, nil, "account %s: Google does not allow the Gmail scope in the device flow: run `spoolctl auth login %s` and let the browser come back to the daemon's callback (through an SSH tunnel if need be), or `spoolctl auth login %s --paste` on a headless host; Google Workspace can use flow service_account with domain-wide delegation instead",
				name, name, name)
		}
		if r.devURL == "" {
			return LoginStart{}, acctErr(ErrMisconfigured, nil, "account %s has no device_auth_url for a device login: set it", name)
		}
		form := url.Values{"client_id": {r.cfg.ClientID}, "scope": {strings.Join(scopes, " ")}}
		da, err := requestDeviceAuth(ctx, m.hc, r.devURL, form, r.cfg.TokenTimeout)
		if err != nil {
			return LoginStart{}, loginErr(name, "starting the device login", m.scrubErr(err, r, nil), r)
		}
		p.expires = now.Add(da.ExpiresIn)
		if !m.goSafe() {
			return LoginStart{}, errShuttingDown(name)
		}
		m.addLogin(p)
		go m.pollDevice(p, r, da)
		m.log.Info("device login started", "account", name, "login_id", id, "verification_url", da.VerificationURL)
		return LoginStart{ID: id, Account: name, Mode: mode, UserCode: da.UserCode, VerificationURL: da.VerificationURL,
			ExpiresAt: p.expires, Interval: da.Interval * m.opts.PollUnit}, nil
	default:
		return LoginStart{}, acctErr(ErrLoginUnsupported, nil, "account %s: unknown login mode %q: use browser, paste or device", name, sanitize(string(mode), 32))
	}
}

// authorizeURL is the authorization request (RFC 6749 4.1.1) with a PKCE
// S256 challenge (RFC 7636 4.2) for verifier. Parameters already in
// auth_url are kept.
func authorizeURL(r *resolved, state, verifier string, scopes []string) (string, error) {
	u, err := url.Parse(r.authURL)
	if err != nil {
		return "", fmt.Errorf("auth_url cannot be parsed (%w)", err)
	}
	sum := sha256.Sum256([]byte(verifier))
	q := u.Query()
	q.Set("response_type", "code")
	q.Set("client_id", r.cfg.ClientID)
	q.Set("redirect_uri", r.cfg.RedirectURL)
	q.Set("scope", strings.Join(scopes, " "))
	q.Set("state", state)
	q.Set("code_challenge", base64.RawURLEncoding.EncodeToString(sum[:]))
	q.Set("code_challenge_method", "S256")
	q.Set("login_hint", r.cfg.signInName())
	switch r.provider {
	case ProviderGoogle:
		// Google returns a refresh token only with offline access, and a
		// new one on re-login only with prompt=consent.
		q.Set("access_type", "offline")
		q.Set("prompt", "consent")
	case ProviderMicrosoft, ProviderMicrosoftUSGov:
		q.Set("prompt", "select_account")
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// loginScopes adds the identity scopes (ID token) to a delegated login.
func loginScopes(r *resolved) []string {
	s := append([]string(nil), r.scopes...)
	for _, id := range r.idScopes {
		found := false
		for _, have := range s {
			if have == id {
				found = true
			}
		}
		if !found {
			s = append(s, id)
		}
	}
	return s
}

func (m *Manager) addLogin(p *pendingLogin) {
	m.lmu.Lock()
	defer m.lmu.Unlock()
	m.logins[p.id] = p
	if p.state != "" {
		m.byState[p.state] = p
	}
}

// pruneLogins forgets logins well past their expiry (WaitLogin callers have
// had time to read the result).
func (m *Manager) pruneLogins(now time.Time) {
	m.lmu.Lock()
	defer m.lmu.Unlock()
	for id, p := range m.logins {
		if now.After(p.expires) {
			p.finish(Health{}, errLoginExpired(p.account))
		}
		if now.After(p.expires.Add(m.opts.LoginTTL)) {
			delete(m.logins, id)
			delete(m.byState, p.state)
		}
	}
}

func (m *Manager) findLogin(id string) (*pendingLogin, error) {
	m.lmu.Lock()
	p, ok := m.logins[id]
	m.lmu.Unlock()
	if !ok {
		return nil, acctErr(ErrLoginExpired, nil, "login %q is unknown or expired: start it again", sanitize(id, 64))
	}
	if m.now().After(p.expires) {
		p.finish(Health{}, errLoginExpired(p.account))
	}
	return p, nil
}

// WaitLogin waits until the login completes (callback, paste or device code)
// and returns the account's health, or the reason it failed.
func (m *Manager) WaitLogin(ctx context.Context, loginID string) (Health, error) {
	p, err := m.findLogin(loginID)
	if err != nil {
		return Health{}, err
	}
	select {
	case <-p.done:
		return p.health, p.err
	case <-ctx.Done():
		return Health{}, acctErr(nil, ctx.Err(), "account %s: stopped waiting for the login (%v); it stays open until it expires", p.account, ctx.Err())
	}
}

// CompletePaste completes a browser/paste login with the URL the browser was
// redirected to (or just its query string).
func (m *Manager) CompletePaste(ctx context.Context, loginID, redirectedURL string) (Health, error) {
	p, err := m.findLogin(loginID)
	if err != nil {
		return Health{}, err
	}
	if p.state == "" {
		return Health{}, acctErr(ErrLoginUnsupported, nil, "account %s: login %s is a %s login and takes no pasted URL: start a login with --paste", p.account, sanitize(loginID, 64), p.mode)
	}
	select {
	case <-p.done:
		if p.err != nil {
			return p.health, p.err
		}
		return p.health, nil
	default:
	}
	q, err := callbackQuery(redirectedURL)
	if err != nil {
		return Health{}, acctErr(nil, err, "account %s: %v", p.account, err)
	}
	return m.completeCallback(ctx, p, q)
}

// callbackQuery extracts the query from a pasted redirect URL.
func callbackQuery(s string) (url.Values, error) {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '?'); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	q, err := url.ParseQuery(s)
	if err != nil {
		return nil, fmt.Errorf("the pasted URL is not a redirect URL with code and state (%w): paste the whole address the browser ended on", err)
	}
	if q.Get("state") == "" || (q.Get("code") == "" && q.Get("error") == "") {
		return nil, errors.New("the pasted URL has no code and state: paste the whole address the browser ended on")
	}
	return q, nil
}

// completeCallback checks state and exchanges the code; one completion per login.
func (m *Manager) completeCallback(ctx context.Context, p *pendingLogin, q url.Values) (Health, error) {
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(p.state)) != 1 {
		return Health{}, acctErr(nil, nil, "account %s: the redirect's state does not match this login (an old or foreign URL?): use the URL of the login you started, or start it again", p.account)
	}
	if !p.claim() {
		<-p.done
		return p.health, p.err
	}
	if e := q.Get("error"); e != "" {
		desc := sanitize(q.Get("error_description"), 400)
		msg := fmt.Sprintf("account %s: sign-in refused: %s", p.account, sanitize(e, 64))
		if desc != "" {
			msg += ": " + desc
		}
		var kind error
		fix := "start the login again"
		if r, lerr := m.resolvedOf(p.account); lerr == nil {
			if f := findAADSTS(desc); f != nil {
				kind, fix = ErrMisconfigured, f.fix(r)
			}
		}
		err := acctErr(kind, nil, "%s: %s", msg, fix)
		p.finish(Health{}, err)
		return Health{}, err
	}
	h, err := m.exchangeCode(ctx, p, q.Get("code"))
	p.finish(h, err)
	return h, err
}

func (m *Manager) exchangeCode(ctx context.Context, p *pendingLogin, code string) (Health, error) {
	r, err := m.resolvedOf(p.account)
	if err != nil {
		return Health{}, err
	}
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {p.redirectURL},
		"client_id":     {r.cfg.ClientID},
		"code_verifier": {p.verifier.Reveal()},
	}
	if r.cfg.ClientSecret != "" {
		form.Set("client_secret", r.cfg.ClientSecret.Reveal())
	}
	// One attempt only: a code is single-use, so a retry after a lost answer
	// would fail anyway.
	resp, err := requestToken(ctx, m.hc, r.tokenURL, form, r.cfg.TokenTimeout)
	if err != nil {
		return Health{}, loginErr(p.account, "exchanging the authorization code", m.scrubErr(err, r, nil), r)
	}
	return m.acceptGrant(ctx, p.account, resp)
}

// acceptGrant checks the signed-in identity and stores a new delegated grant.
func (m *Manager) acceptGrant(ctx context.Context, name string, resp *tokenResponse) (Health, error) {
	r, err := m.resolvedOf(name)
	if err != nil {
		return Health{}, err
	}
	if resp.RefreshToken == "" {
		hint := "request offline access"
		if r.provider == ProviderMicrosoft || r.provider == ProviderMicrosoftUSGov {
			hint = "add the offline_access scope"
		}
		return Health{}, acctErr(ErrMisconfigured, nil, "account %s: the token endpoint returned no refresh token: %s", name, hint)
	}
	identity, err := checkIdentity(name, resp.IDToken, r)
	if err != nil {
		m.log.Warn("login refused", "account", name, "error", err)
		return Health{}, err
	}
	now := m.now()
	rec := &tokenRecord{RefreshToken: secret.Secret(resp.RefreshToken), AccessToken: secret.Secret(resp.AccessToken), TokenType: resp.TokenType,
		Expiry: now.Add(resp.ExpiresIn), GrantedAt: now, Identity: identity, Flow: r.flow, ClientID: r.cfg.ClientID}

	// The new grant is stored under the grant lock (cluster.go), so that
	// on a shared spool a refresh of the old grant by another node lands
	// before it, not over it.
	var h Health
	var prev Status
	var saveErr error
	wrote := false
	commitErr := m.underGrantLock(ctx, name, func(ctx context.Context) error {
		a, err := m.lockLoaded(ctx, name)
		if err != nil {
			return err
		}
		defer a.mu.Unlock()
		wrote = true
		a.gen++
		a.lostAnswer = false // a new grant (or none): earlier timeouts say nothing about it
		if err := m.putToken(ctx, name, rec); err != nil {
			a.tok, a.dirty = rec, true
			m.log.Error("could not save the new grant; it is kept in memory and saved before the next refresh", "account", name, "error", err)
			h = m.healthLocked(a)
			saveErr = acctErr(ErrTransient, err, "account %s: saving the new grant to the spool failed (%v); it stays in memory and the save is retried before the next refresh", name, err)
			return nil
		}
		prev, _ = m.statusLocked(a)
		a.tok, a.dirty = rec, false
		a.hr.LastRefresh, a.hr.Failures = now, 0
		m.setStatusLocked(a, StatusOK, "")
		m.saveHealthLocked(ctx, a)
		h = m.healthLocked(a)
		return nil
	})
	if commitErr != nil {
		if !wrote {
			var ae *accountError
			if errors.As(commitErr, &ae) {
				return Health{}, commitErr // the account could not be read: nothing changed
			}
			return Health{}, acctErr(ErrTransient, commitErr, "account %s: the new grant could not be stored (%v); sign in again once the spool's database answers", name, commitErr)
		}
		// The grant lock's transaction failed: the new grant is only in
		// memory. It is used once saved, which the next refresh tries first.
		a, err := m.lookup(name)
		if err != nil {
			return Health{}, err
		}
		a.mu.Lock()
		if a.tok == rec {
			a.dirty = true
		}
		h = m.healthLocked(a)
		a.mu.Unlock()
		m.log.Error("could not save the new grant; it is kept in memory and saved before the next refresh", "account", name, "error", commitErr)
		return h, acctErr(ErrTransient, commitErr, "account %s: saving the new grant to the spool failed (%v); it stays in memory and the save is retried before the next refresh", name, commitErr)
	}
	if saveErr != nil {
		return h, saveErr
	}
	m.log.Info("signed in", "account", name, "identity", identity)
	// Before the caller reports the login (WaitLogin, the callback page):
	// consumers clear their holds first, so no stale hold is shown after it.
	if prev != StatusOK {
		m.signalRecovered(name)
	}
	return h, nil
}

// checkIdentity reads the ID token's claims and requires one of
// preferred_username, upn, email to equal the expected sign-in identity
// (sign_in_as, else the mailbox; case-insensitively). The signature is not
// verified: the ID token came straight from the token endpoint over TLS in
// answer to our own code exchange (OIDC Core 3.1.3.7 allows skipping it
// then), so nobody else could have inserted it. Errors name the account.
func checkIdentity(name, idToken string, r *resolved) (string, error) {
	want := r.cfg.signInName()
	if idToken == "" {
		if r.provider == ProviderGeneric {
			return "", nil // the Health shows "identity not verified"
		}
		return "", acctErr(ErrMisconfigured, nil, "account %s: the token endpoint returned no ID token, so the signed-in user cannot be checked against %s: keep the openid scope", name, want)
	}
	claims, err := idTokenClaims(idToken)
	if err != nil {
		return "", acctErr(ErrMisconfigured, err, "account %s: %v, so the signed-in user cannot be checked against %s", name, err, want)
	}
	var seen []string
	for _, c := range []string{claims.PreferredUsername, claims.UPN, claims.Email} {
		if c == "" {
			continue
		}
		if strings.EqualFold(strings.TrimSpace(c), want) {
			return c, nil
		}
		seen = append(seen, c)
	}
	if len(seen) == 0 {
		return "", acctErr(ErrMisconfigured, nil, "account %s: the ID token names no user (no preferred_username, upn or email): add the email and profile scopes", name)
	}
	got := sanitize(seen[0], 320)
	if r.cfg.SignInAs != "" {
		return "", acctErr(ErrIdentityMismatch, nil, "account %s: signed in as %s, but sign_in_as is %s: sign in as %s (a private browser window helps), or correct sign_in_as",
			name, got, want, want)
	}
	return "", acctErr(ErrIdentityMismatch, nil, "account %s: signed in as %s, but the mailbox is %s: sign in as %s (a private browser window helps), or, if %s is the mailbox's sign-in name or the mailbox is its alias, set sign_in_as: %s for the account",
		name, got, want, want, got, got)
}

type idClaims struct {
	PreferredUsername string `json:"preferred_username"`
	UPN               string `json:"upn"`
	Email             string `json:"email"`
}

// idTokenClaims decodes a JWT's payload without verifying it (see checkIdentity).
func idTokenClaims(tok string) (idClaims, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return idClaims{}, errors.New("the ID token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return idClaims{}, errors.New("the ID token's payload is not base64url")
	}
	var c idClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return idClaims{}, errors.New("the ID token's payload is not JSON")
	}
	return c, nil
}

// pollDevice polls the token endpoint for a device login (RFC 8628 3.4-3.5).
func (m *Manager) pollDevice(p *pendingLogin, r *resolved, da *deviceAuth) {
	defer m.wg.Done()
	// Real time bounds the poll: the code's lifetime is the server's.
	ctx, cancel := context.WithTimeout(m.base, da.ExpiresIn)
	defer cancel()
	interval := da.Interval
	form := url.Values{
		"grant_type":  {"urn:ietf:params:oauth:grant-type:device_code"},
		"device_code": {da.DeviceCode},
		"client_id":   {r.cfg.ClientID},
	}
	if r.cfg.ClientSecret != "" {
		form.Set("client_secret", r.cfg.ClientSecret.Reveal())
	}
	timer := time.NewTimer(interval * m.opts.PollUnit)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			if m.base.Err() != nil {
				p.finish(Health{}, errShuttingDown(p.account))
			} else {
				p.finish(Health{}, errDeviceExpired(p.account))
			}
			return
		case <-p.done:
			return
		case <-timer.C:
		}
		resp, err := requestToken(ctx, m.hc, r.tokenURL, form, r.cfg.TokenTimeout)
		if err == nil {
			h, err := m.acceptGrant(ctx, p.account, resp)
			p.finish(h, err)
			return
		}
		var ee *EndpointError
		if errors.As(err, &ee) {
			switch ee.Code {
			case "authorization_pending":
			case "slow_down":
				interval += 5 // RFC 8628 3.5: for this and all later requests
				m.log.Debug("device login slowing down", "account", p.account, "interval", interval*m.opts.PollUnit)
			case "expired_token":
				p.finish(Health{}, errDeviceExpired(p.account))
				return
			case "access_denied":
				p.finish(Health{}, acctErr(nil, nil, "account %s: sign-in was declined: start the login again and approve it", p.account))
				return
			default:
				if classify(err) != kindTransient {
					p.finish(Health{}, loginErr(p.account, "the device login", m.scrubErr(err, r, nil), r))
					return
				}
				m.log.Warn("token endpoint failing during a device login; still polling", "account", p.account, "error", err)
			}
		} else {
			m.log.Warn("token endpoint unreachable during a device login; still polling", "account", p.account, "error", err)
		}
		timer.Reset(interval * m.opts.PollUnit)
	}
}

// errLoginExpired: a login ran out of time.
func errLoginExpired(account string) error {
	return acctErr(ErrLoginExpired, nil, "account %s: the login expired before it finished: start it again", account)
}

func errDeviceExpired(account string) error {
	return acctErr(nil, nil, "account %s: the device code expired before sign-in finished: start the login again", account)
}

// loginErr words a failed token or device request of a login: what failed,
// the endpoint's answer and the fix (Microsoft's error codes have their
// own). It matches the sentinel of the answer's kind.
func loginErr(account, doing string, err error, r *resolved) error {
	kind := classify(err)
	fix := "start the login again"
	switch kind {
	case kindTransient:
		fix = "the token endpoint is failing or unreachable (behind an outbound proxy, set HTTPS_PROXY for spoold): start the login again later"
	case kindConfig:
		fix = configFix(err, r)
	}
	return acctErr(kindSentinel(kind), err, "account %s: %s failed: %v: %s", account, doing, err, fix)
}

// Logout forgets the account's tokens (an explicit admin action) and puts a
// delegated account in needs_reauth.
func (m *Manager) Logout(ctx context.Context, name string) error {
	// Under the grant lock (cluster.go): a refresh on another node either
	// commits before the delete or finds the grant gone.
	err := m.underGrantLock(ctx, name, func(ctx context.Context) error {
		a, err := m.lockLoaded(ctx, name)
		if err != nil {
			return err
		}
		defer a.mu.Unlock()
		if err := m.store.AccountDelete(ctx, name, TokenKey); err != nil {
			return acctErr(nil, err, "account %s: deleting the grant from the spool failed (%v); retry", name, err)
		}
		a.gen++
		a.lostAnswer = false // a new grant (or none): earlier timeouts say nothing about it
		a.tok, a.dirty = nil, false
		if a.r.flow.Delegated() {
			m.setStatusLocked(a, StatusNeedsReauth, fmt.Sprintf("logged out: run `spoolctl auth login %s` and sign in as %s", name, a.r.cfg.signInName()))
		}
		m.saveHealthLocked(ctx, a)
		m.log.Info("logged out", "account", name)
		return nil
	})
	var ae *accountError
	if err != nil && !errors.As(err, &ae) {
		return acctErr(nil, err, "account %s: signing out failed (%v); retry", name, err)
	}
	return err
}

var callbackPage = template.Must(template.New("cb").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>spoold sign-in</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:3em auto">
<h1>{{.Title}}</h1><p>{{.Text}}</p></body></html>
`))

// CallbackHandler serves the OAuth2 redirect (/oauth2/callback): it checks
// state, exchanges the code (with the PKCE verifier), checks the identity,
// completes the pending login and shows a short page.
func (m *Manager) CallbackHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		page := func(status int, title, text string) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Referrer-Policy", "no-referrer")
			w.WriteHeader(status)
			_ = callbackPage.Execute(w, struct{ Title, Text string }{title, text})
		}
		if req.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			page(http.StatusMethodNotAllowed, "Method not allowed", "The sign-in callback only accepts GET.")
			return
		}
		q := req.URL.Query()
		state := q.Get("state")
		m.lmu.Lock()
		p := m.byState[state]
		m.lmu.Unlock()
		if state == "" || p == nil || m.now().After(p.expires) {
			page(http.StatusBadRequest, "Unknown or expired sign-in", "This sign-in link is unknown or has expired. Run spoolctl auth login again.")
			return
		}
		// Detached: the browser going away must not abort storing the grant.
		// Bounded by the account's token timeout, plus time to store it.
		timeout := DefaultTokenTimeout
		if r, err := m.resolvedOf(p.account); err == nil {
			timeout = r.cfg.TokenTimeout
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(req.Context()), timeout+30*time.Second)
		defer cancel()
		h, err := m.completeCallback(ctx, p, q)
		if err != nil {
			page(http.StatusBadRequest, "Sign-in failed", err.Error())
			return
		}
		who := h.Identity
		if who == "" {
			who = h.Mailbox
		}
		page(http.StatusOK, "Signed in", fmt.Sprintf("spoold account %s is authorized as %s. You can close this window.", h.Account, who))
	})
}
