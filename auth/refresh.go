package auth

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/spoold/spoold/configs/secret"
)

// stillUsable is how long before expiry an old access token is still handed
// out when a refresh fails transiently.
const stillUsable = 30 * time.Second

// configError marks a local configuration problem (e.g. a key that cannot sign).
type configError struct{ err error }

func (e configError) Error() string { return e.err.Error() }
func (e configError) Unwrap() error { return e.err }

// refreshOnce obtains a new access token for a (the flight leader's work,
// under the grant lock of cluster.go when the store has one).
func (m *Manager) refreshOnce(ctx context.Context, a *account, force bool) (secret.Secret, time.Time, error) {
	a.mu.Lock()
	r, gen, dirty, lostAnswer := a.r, a.gen, a.dirty, a.lostAnswer
	var cur *tokenRecord
	if a.tok != nil {
		c := *a.tok
		cur = &c
	}
	a.mu.Unlock()
	name := a.name

	if dirty && cur != nil {
		// A rotated token is only in memory: the store failed last time. Save
		// it before anything else; the old refresh token may be dead already.
		if err := m.putToken(ctx, name, cur); err != nil {
			m.met.refresh(name, resultStoreError)
			return "", time.Time{}, acctErr(ErrTransient, err, "account %s: saving its rotated token to the spool still fails (%v); it stays in memory and the save is retried first", name, err)
		}
		a.mu.Lock()
		if a.gen == gen {
			a.dirty = false
		}
		a.mu.Unlock()
		m.log.Info("saved the token that could not be saved before", "account", name)
		if !force && fresh(cur, m.now(), r.cfg.RefreshBefore) {
			return cur.AccessToken, cur.Expiry, nil
		}
	}
	if r.flow.Delegated() && (cur == nil || cur.RefreshToken == "") {
		reason := fmt.Sprintf("not signed in yet: run `spoolctl auth login %s` and sign in as %s", name, r.cfg.signInName())
		m.setStatusAndSave(ctx, a, gen, StatusNeedsReauth, reason)
		return "", time.Time{}, acctErr(ErrNeedsReauth, nil, "account %s needs re-authorization: %s", name, reason)
	}

	resp, timedOut, err := m.fetchWithRetry(ctx, name, r, cur, func() (url.Values, error) { return m.grantForm(r, cur) })
	now := m.now()
	if timedOut || err == nil {
		a.mu.Lock()
		if a.gen == gen {
			a.lostAnswer = timedOut && err != nil
		}
		a.mu.Unlock()
	}
	if err != nil {
		err = m.scrubErr(err, r, cur)
		switch classify(err) {
		case kindReauth:
			if (lostAnswer || timedOut) && r.flow.Delegated() {
				// An unanswered request probably rotated the refresh token,
				// and a retry with the old one looked like reuse to the server.
				err = fmt.Errorf("%w (an earlier token request got no answer within token_timeout %s: the server may have rotated the refresh token then and revoked the grant when the old one was retried; raise token_timeout)", err, r.cfg.TokenTimeout)
			}
			m.met.refresh(name, resultNeedsReauth)
			reason := fmt.Sprintf("the token endpoint refused the grant (%v): run `spoolctl auth login %s` and sign in as %s", err, name, r.cfg.signInName())
			if !r.flow.Delegated() {
				reason = fmt.Sprintf("the token endpoint refused the app's assertion (%v): check the app's permissions/delegation, then run `spoolctl auth login %s`", err, name)
			}
			m.setStatusAndSave(ctx, a, gen, StatusNeedsReauth, reason)
			return "", time.Time{}, acctErr(ErrNeedsReauth, err, "account %s needs re-authorization: %s", name, reason)
		case kindConfig:
			m.met.refresh(name, resultMisconfigured)
			reason := configReason(err, r)
			m.setStatusAndSave(ctx, a, gen, StatusMisconfigured, reason)
			return "", time.Time{}, acctErr(ErrMisconfigured, err, "account %s is misconfigured: %s", name, reason)
		default:
			m.met.refresh(name, resultTransient)
			a.mu.Lock()
			if a.gen == gen {
				a.hr.Failures++
				a.hr.LastError = now
				if a.hr.Status == StatusOK || a.hr.Status == StatusRefreshFailing {
					m.setStatusLocked(a, StatusRefreshFailing, fmt.Sprintf("token endpoint failing (%d rounds): %v; retrying with backoff", a.hr.Failures, err))
				}
				m.saveHealthLocked(ctx, a)
			}
			a.mu.Unlock()
			if !force && cur != nil && cur.AccessToken != "" && now.Before(cur.Expiry.Add(-stillUsable)) {
				m.log.Warn("token refresh failed; using the current access token until it expires", "account", name, "expiry", cur.Expiry, "error", err)
				return cur.AccessToken, cur.Expiry, nil
			}
			return "", time.Time{}, acctErr(ErrTransient, err, "account %s: the token endpoint failed (%v); spoold will retry with backoff", name, err)
		}
	}

	next := &tokenRecord{AccessToken: secret.Secret(resp.AccessToken), TokenType: resp.TokenType, Expiry: now.Add(resp.ExpiresIn),
		Flow: r.flow, ClientID: r.cfg.ClientID, GrantedAt: now, ConfigHash: r.fingerprint()}
	rotated := false
	if cur != nil {
		next.GrantedAt, next.Identity, next.Rotations, next.RefreshToken = cur.GrantedAt, cur.Identity, cur.Rotations, cur.RefreshToken
		if next.GrantedAt.IsZero() {
			next.GrantedAt = now
		}
	}
	if r.flow.Delegated() && resp.RefreshToken != "" && resp.RefreshToken != next.RefreshToken.Reveal() {
		next.RefreshToken = secret.Secret(resp.RefreshToken) // rotated; a missing one keeps the old
		next.Rotations++
		rotated = true
	}
	if r.flow == FlowServiceAccount {
		next.Identity = r.cfg.Mailbox // sub of the assertion
	}

	a.mu.Lock()
	if a.gen != gen {
		// A login or logout replaced the grant while we refreshed the old one.
		a.mu.Unlock()
		return "", time.Time{}, acctErr(ErrTransient, nil, "account %s: a login or logout replaced the grant during the refresh; retry", name)
	}
	// Commit before handing out the token: after a rotation the old refresh
	// token may already be revoked.
	if err := m.putToken(ctx, name, next); err != nil {
		a.tok, a.dirty = next, true
		a.mu.Unlock()
		m.met.refresh(name, resultStoreError)
		m.log.Error("could not save the new token; keeping it in memory and retrying the save before the next refresh", "account", name, "rotated", rotated, "error", err)
		return "", time.Time{}, acctErr(ErrTransient, err, "account %s: saving the new token to the spool failed (%v); it stays in memory and the save is retried before the next refresh", name, err)
	}
	prev := a.hr.Status
	a.tok, a.dirty = next, false
	a.hr.LastRefresh, a.hr.Failures = now, 0
	m.setStatusLocked(a, StatusOK, "")
	m.saveHealthLocked(ctx, a)
	a.mu.Unlock()
	m.met.refresh(name, resultOK)
	m.log.Debug("token refreshed", "account", name, "expiry", next.Expiry, "rotated", rotated)
	if prev != StatusOK {
		m.signalRecovered(name)
	}
	return next.AccessToken, next.Expiry, nil
}

func (m *Manager) setStatusAndSave(ctx context.Context, a *account, gen uint64, st Status, reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gen != gen {
		return
	}
	m.setStatusLocked(a, st, reason)
	m.saveHealthLocked(ctx, a)
}

func (m *Manager) putToken(ctx context.Context, name string, t *tokenRecord) error {
	b, err := t.marshal()
	if err != nil {
		return fmt.Errorf("encoding token record: %w", err)
	}
	if w := lockedWriteFrom(ctx); w != nil {
		return m.putLocked(w, name, b) // committed by RefreshLocked (cluster.go)
	}
	if err := m.store.AccountPut(ctx, name, TokenKey, b); err != nil {
		return fmt.Errorf("storing token record: %w", err)
	}
	return nil
}

// configReason turns a configuration error into a fix-it message: the
// endpoint's answer, then the fix.
func configReason(err error, r *resolved) string {
	return fmt.Sprintf("%v: %s", err, configFix(err, r))
}

// configFix says how to fix a configuration error (Microsoft's error codes
// first: they say exactly what is wrong).
func configFix(err error, r *resolved) string {
	if fix, ok := aadstsHint(err, r); ok {
		return fix
	}
	var ee *EndpointError
	if errors.As(err, &ee) {
		switch ee.Code {
		case "invalid_client":
			return "the token endpoint rejected the client credentials: check client_id and client_secret or the certificate"
		case "unauthorized_client":
			return "the app may not use this flow: allow it in the app registration (Authentication > Allow public client flows, for the device flow)"
		case "invalid_scope":
			return fmt.Sprintf("the scopes %q were refused: check scopes and the app's API permissions", strings.Join(r.scopes, " "))
		case "invalid_response":
			return fmt.Sprintf("check token_url %s", redactURL(r.tokenURL))
		}
	}
	return "check the account's configuration and app registration"
}

// kindSentinel is the exported error matching an errKind.
func kindSentinel(k errKind) error {
	switch k {
	case kindReauth:
		return ErrNeedsReauth
	case kindConfig:
		return ErrMisconfigured
	}
	return ErrTransient
}

// fetchWithRetry posts the grant, retrying transient failures with backoff a
// bounded number of times. build runs per attempt (assertions are fresh).
// timedOut reports that an attempt got no answer within the token timeout.
func (m *Manager) fetchWithRetry(ctx context.Context, name string, r *resolved, cur *tokenRecord, build func() (url.Values, error)) (resp *tokenResponse, timedOut bool, _ error) {
	eb := backoff.NewExponentialBackOff()
	eb.InitialInterval = m.opts.RetryInitial
	eb.MaxInterval = m.opts.RetryMax
	eb.MaxElapsedTime = 0 // bounded by the attempt count instead
	eb.Reset()
	b := backoff.WithContext(backoff.WithMaxRetries(eb, uint64(m.opts.RefreshAttempts-1)), ctx)
	var last error
	attempt := 0
	err := backoff.Retry(func() error {
		attempt++
		form, err := build()
		if err != nil {
			last = configError{err}
			return backoff.Permanent(last)
		}
		resp, err = requestToken(ctx, m.hc, r.tokenURL, form, r.cfg.TokenTimeout)
		if err == nil {
			return nil
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			timedOut = true
		}
		last = err
		if classify(err) != kindTransient {
			return backoff.Permanent(err)
		}
		m.log.Debug("token request failed", "account", name, "attempt", attempt, "error", m.scrubErr(err, r, cur))
		return err
	}, b)
	if err != nil {
		if last != nil && !errors.Is(err, last) {
			return nil, timedOut, fmt.Errorf("%w (last attempt: %w)", err, last)
		}
		return nil, timedOut, err
	}
	return resp, timedOut, nil
}

// grantForm builds the token request for the account's flow.
func (m *Manager) grantForm(r *resolved, cur *tokenRecord) (url.Values, error) {
	v := url.Values{}
	scope := strings.Join(r.scopes, " ")
	switch r.flow {
	case FlowAuthCode, FlowDevice:
		v.Set("grant_type", "refresh_token")
		v.Set("refresh_token", cur.RefreshToken.Reveal())
		v.Set("client_id", r.cfg.ClientID)
		v.Set("scope", scope)
		if r.cfg.ClientSecret != "" {
			v.Set("client_secret", r.cfg.ClientSecret.Reveal())
		}
	case FlowClientCredentials:
		v.Set("grant_type", "client_credentials")
		v.Set("client_id", r.cfg.ClientID)
		v.Set("scope", scope)
		if r.cert != nil {
			a, err := m.clientAssertion(r)
			if err != nil {
				return nil, err
			}
			v.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
			v.Set("client_assertion", a)
		} else {
			v.Set("client_secret", r.cfg.ClientSecret.Reveal())
		}
	case FlowServiceAccount:
		a, err := m.serviceAssertion(r)
		if err != nil {
			return nil, err
		}
		v.Set("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
		v.Set("assertion", a)
	default:
		return nil, fmt.Errorf("flow %q cannot refresh", r.flow)
	}
	return v, nil
}

// clientAssertion signs an RS256 client assertion (RFC 7523, as Entra ID
// expects for certificate credentials): x5t names the certificate.
func (m *Manager) clientAssertion(r *resolved) (string, error) {
	jti, err := m.randomString(16)
	if err != nil {
		return "", err
	}
	now := m.now()
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"aud": r.tokenURL,
		"iss": r.cfg.ClientID,
		"sub": r.cfg.ClientID,
		"jti": jti,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(10 * time.Minute).Unix(),
	})
	t.Header["x5t"] = r.cert.thumbprint
	s, err := t.SignedString(r.cert.key)
	if err != nil {
		return "", fmt.Errorf("signing client assertion: %w", err)
	}
	return s, nil
}

// serviceAssertion signs a Google service-account JWT bearer assertion with
// sub = mailbox (domain-wide delegation). Built here rather than through
// x/oauth2/jwt so the injected clock, per-request timeouts and our error
// classification apply.
func (m *Manager) serviceAssertion(r *resolved) (string, error) {
	now := m.now()
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss":   r.sa.ClientEmail,
		"sub":   r.cfg.Mailbox,
		"scope": strings.Join(r.scopes, " "),
		"aud":   r.tokenURL,
		"iat":   now.Unix(),
		"exp":   now.Add(time.Hour).Unix(),
	})
	if r.sa.PrivateKeyID != "" {
		t.Header["kid"] = r.sa.PrivateKeyID
	}
	s, err := t.SignedString(r.sa.key)
	if err != nil {
		return "", fmt.Errorf("signing service account assertion: %w", err)
	}
	return s, nil
}

// scrubErr removes any configured secret or token that an endpoint echoed
// into an error description.
func (m *Manager) scrubErr(err error, r *resolved, cur *tokenRecord) error {
	var ee *EndpointError
	if errors.As(err, &ee) {
		secrets := []secret.Secret{r.cfg.ClientSecret}
		if cur != nil {
			secrets = append(secrets, cur.RefreshToken, cur.AccessToken)
		}
		ee.Description = scrub(ee.Description, secrets...)
	}
	return err
}

func scrub(s string, secrets ...secret.Secret) string {
	for _, sec := range secrets {
		if v := sec.Reveal(); len(v) >= 4 {
			s = strings.ReplaceAll(s, v, secret.Redacted)
		}
	}
	return s
}
