package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// maxEndpointBody bounds what is read from a token or device endpoint.
const maxEndpointBody = 1 << 20

// EndpointError is an error answer from a token or device-authorization
// endpoint. It keeps the OAuth error code and description (Microsoft's
// AADSTS codes live there) but never the raw body, which could echo a token.
type EndpointError struct {
	Status      int    // HTTP status
	Code        string // RFC 6749 "error"
	Description string // "error_description", sanitized and shortened
}

func (e *EndpointError) Error() string {
	s := fmt.Sprintf("token endpoint answered %d", e.Status)
	if e.Code != "" {
		s += ": " + e.Code
	}
	if d := strings.TrimSuffix(e.Description, "."); d != "" {
		s += ": " + d // a fix may follow after a colon
	}
	return s
}

// tokenResponse is a successful token endpoint answer.
type tokenResponse struct {
	AccessToken  string
	TokenType    string
	RefreshToken string
	ExpiresIn    time.Duration
	IDToken      string
}

// LogValue keeps tokens out of debug logs.
func (t *tokenResponse) LogValue() slog.Value {
	return slog.GroupValue(slog.String("token_type", t.TokenType), slog.Duration("expires_in", t.ExpiresIn),
		slog.Bool("refresh_token", t.RefreshToken != ""), slog.Bool("id_token", t.IDToken != ""))
}

// postForm sends a form to an endpoint under its own timeout and returns the
// status and (bounded) body. Network errors never include the form.
func postForm(ctx context.Context, hc *http.Client, endpoint string, form url.Values, timeout time.Duration) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, fmt.Errorf("building request to %s: %w", redactURL(endpoint), err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL; we add it once below
		}
		if ctx.Err() == context.DeadlineExceeded && errors.Is(err, context.DeadlineExceeded) {
			return 0, nil, fmt.Errorf("POST %s: no answer within %s: %w", redactURL(endpoint), timeout, err)
		}
		return 0, nil, fmt.Errorf("POST %s: %w", redactURL(endpoint), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxEndpointBody))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("POST %s: reading answer: %w", redactURL(endpoint), err)
	}
	return resp.StatusCode, body, nil
}

// redactURL drops query and user info: endpoints are configured, but keep
// errors safe if someone put a key in one.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	u.RawQuery = ""
	u.Fragment = ""
	return u.String()
}

// parseEndpointError turns a non-2xx answer into an *EndpointError.
func parseEndpointError(status int, body []byte) *EndpointError {
	e := &EndpointError{Status: status}
	var v struct {
		Error            any    `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if json.Unmarshal(body, &v) == nil {
		if s, ok := v.Error.(string); ok {
			e.Code = sanitize(s, 64)
		}
		e.Description = sanitize(v.ErrorDescription, 400)
	} else if vals, err := url.ParseQuery(string(body)); err == nil && vals.Get("error") != "" {
		// Some old servers answer form-encoded errors.
		e.Code = sanitize(vals.Get("error"), 64)
		e.Description = sanitize(vals.Get("error_description"), 400)
	}
	return e
}

// sanitize keeps printable text, one line, at most n runes.
func sanitize(s string, n int) string {
	var b strings.Builder
	count := 0
	for _, r := range s {
		if count >= n {
			b.WriteString("...")
			break
		}
		if r == '\n' || r == '\r' || r == '\t' {
			r = ' '
		}
		if r == ' ' && strings.HasSuffix(b.String(), " ") {
			continue // one line: "\r\n" and runs of blanks become one space
		}
		if !unicode.IsPrint(r) {
			continue
		}
		b.WriteRune(r)
		count++
	}
	return strings.TrimSpace(b.String())
}

// parseTokenResponse decodes a 2xx token answer.
func parseTokenResponse(status int, body []byte) (*tokenResponse, error) {
	var v struct {
		AccessToken  string          `json:"access_token"`
		TokenType    string          `json:"token_type"`
		RefreshToken string          `json:"refresh_token"`
		ExpiresIn    json.RawMessage `json:"expires_in"`
		IDToken      string          `json:"id_token"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, &EndpointError{Status: status, Code: "invalid_response", Description: "answer is not a JSON token response (is token_url right?)"}
	}
	if v.AccessToken == "" {
		return nil, &EndpointError{Status: status, Code: "invalid_response", Description: "answer has no access_token"}
	}
	t := &tokenResponse{AccessToken: v.AccessToken, TokenType: v.TokenType, RefreshToken: v.RefreshToken, IDToken: v.IDToken}
	if t.TokenType == "" {
		t.TokenType = "Bearer"
	}
	if secs := parseSeconds(v.ExpiresIn); secs > 0 {
		t.ExpiresIn = time.Duration(secs) * time.Second
	} else {
		t.ExpiresIn = time.Hour // RFC 6749 leaves it optional; assume the common hour
	}
	return t, nil
}

// parseSeconds accepts a JSON number or a numeric string (Microsoft's older
// endpoints send strings).
func parseSeconds(raw json.RawMessage) int64 {
	s := strings.Trim(strings.TrimSpace(string(raw)), `"`)
	if s == "" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > 10*365*24*3600 {
		return 0
	}
	return n
}

// requestToken posts a grant to the token endpoint.
func requestToken(ctx context.Context, hc *http.Client, endpoint string, form url.Values, timeout time.Duration) (*tokenResponse, error) {
	status, body, err := postForm(ctx, hc, endpoint, form, timeout)
	if err != nil {
		return nil, err
	}
	if status < 200 || status > 299 {
		return nil, parseEndpointError(status, body)
	}
	return parseTokenResponse(status, body)
}

// deviceAuth is a device authorization answer (RFC 8628 3.2).
type deviceAuth struct {
	DeviceCode      string
	UserCode        string
	VerificationURL string
	ExpiresIn       time.Duration
	Interval        time.Duration // in poll units
}

func requestDeviceAuth(ctx context.Context, hc *http.Client, endpoint string, form url.Values, timeout time.Duration) (*deviceAuth, error) {
	status, body, err := postForm(ctx, hc, endpoint, form, timeout)
	if err != nil {
		return nil, err
	}
	if status < 200 || status > 299 {
		return nil, parseEndpointError(status, body)
	}
	var v struct {
		DeviceCode      string          `json:"device_code"`
		UserCode        string          `json:"user_code"`
		VerificationURI string          `json:"verification_uri"`
		VerificationURL string          `json:"verification_url"` // Google's spelling
		ExpiresIn       json.RawMessage `json:"expires_in"`
		Interval        json.RawMessage `json:"interval"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.DeviceCode == "" || v.UserCode == "" {
		return nil, &EndpointError{Status: status, Code: "invalid_response", Description: "answer is not a device authorization response (is device_auth_url right?)"}
	}
	d := &deviceAuth{DeviceCode: v.DeviceCode, UserCode: sanitize(v.UserCode, 64), VerificationURL: sanitize(firstNonEmpty(v.VerificationURI, v.VerificationURL), 512)}
	d.ExpiresIn = time.Duration(parseSeconds(v.ExpiresIn)) * time.Second
	if d.ExpiresIn <= 0 {
		d.ExpiresIn = 15 * time.Minute
	}
	d.Interval = time.Duration(parseSeconds(v.Interval))
	if d.Interval <= 0 {
		d.Interval = 5 // RFC 8628: default 5 seconds
	}
	return d, nil
}

// errKind says what a failed token call means for the account.
type errKind int

const (
	kindTransient errKind = iota // retry with backoff
	kindReauth                   // grant gone: needs_reauth
	kindConfig                   // misconfigured
)

// reauthAADSTS are Microsoft error codes that mean the grant is gone
// although some arrive with other OAuth error codes.
var reauthAADSTS = []string{"AADSTS700082", "AADSTS50173", "AADSTS70043", "AADSTS700084", "AADSTS50076", "AADSTS50079"}

// aadstsFix is what a Microsoft Entra error code means for an account and
// the fix an admin applies. The meanings are Microsoft's:
// https://learn.microsoft.com/entra/identity-platform/reference-error-codes
// (the AADSTS table), with the fixes from
// https://learn.microsoft.com/troubleshoot/entra/entra-id/app-integration/error-code-aadsts50011-redirect-uri-mismatch,
// https://learn.microsoft.com/entra/identity/enterprise-apps/application-sign-in-unexpected-user-consent-error
// (AADSTS65001, AADSTS90094) and
// https://learn.microsoft.com/entra/identity/conditional-access/troubleshoot-conditional-access
// (AADSTS53003). Each one is a setting in the tenant or app registration,
// so the account is misconfigured until the admin changed it (a reload,
// `spoolctl accounts resume` or a login tries again).
type aadstsFix struct {
	code string
	fix  func(r *resolved) string
}

var aadstsFixes = []aadstsFix{
	// InvalidReplyTo: the redirect_uri is not registered for the app.
	{"AADSTS50011", func(r *resolved) string {
		u := r.cfg.RedirectURL
		if u == "" {
			u = "http://localhost:<http port>/oauth2/callback"
		}
		return fmt.Sprintf("the redirect URI is not registered: add %s to the app registration (Authentication > Add a platform > Mobile and desktop applications), exactly as written", u)
	}},
	// The user or administrator has not consented to the app.
	{"AADSTS65001", consentFix},
	// AdminConsentRequired: only an administrator can grant the permission.
	{"AADSTS90094", consentFix},
	// UnauthorizedClient: no application with this client ID in the tenant.
	{"AADSTS700016", func(r *resolved) string {
		return fmt.Sprintf("no application with client_id %s is registered in tenant %s: check tenant and client_id (the app registration's Overview shows both: Directory (tenant) ID and Application (client) ID)",
			sanitize(r.cfg.ClientID, 64), sanitize(r.cfg.Tenant, 253))
	}},
	// BlockedByConditionalAccess.
	{"AADSTS53003", func(r *resolved) string {
		who := "the signed-in user"
		if !r.flow.Delegated() {
			who = "the app (a Conditional Access policy for workload identities)"
		}
		return fmt.Sprintf("a Conditional Access policy blocked the sign-in: the Entra sign-in log (Conditional Access tab) names the policy; exclude %s from it or allow this host's location or device", who)
	}},
	// InvalidClientSecretExpiredKeysProvided.
	{"AADSTS7000222", func(*resolved) string {
		return "the client secret has expired: create a new one in the app registration (Certificates & secrets) and update client_secret"
	}},
	// InvalidClientSecret.
	{"AADSTS7000215", func(*resolved) string {
		return "client_secret is not a valid secret of the app registration: copy the secret's Value, not its Secret ID (Certificates & secrets; the Value is shown once, so create a new secret if it is lost)"
	}},
}

func consentFix(r *resolved) string {
	if r.flow.Delegated() {
		return fmt.Sprintf("the app lacks consent for %s: an administrator grants it (app registration > API permissions > add %s if missing > Grant admin consent), then sign in again",
			"SMTP.Send", "Office 365 Exchange Online SMTP.Send (delegated)")
	}
	return "the app lacks admin consent for its application permission: an administrator grants it (app registration > API permissions > Office 365 Exchange Online SMTP.SendAsApp > Grant admin consent)"
}

var aadstsCode = regexp.MustCompile(`AADSTS[0-9]+`)

// findAADSTS returns the entry for the first Microsoft error code in desc
// that spoold knows a fix for, or nil.
func findAADSTS(desc string) *aadstsFix {
	for _, code := range aadstsCode.FindAllString(desc, -1) {
		for i := range aadstsFixes {
			if aadstsFixes[i].code == code {
				return &aadstsFixes[i]
			}
		}
	}
	return nil
}

// aadstsHint returns the fix for the Microsoft error code in an endpoint
// error's description, if spoold knows one.
func aadstsHint(err error, r *resolved) (string, bool) {
	var ee *EndpointError
	if !errors.As(err, &ee) {
		return "", false
	}
	if f := findAADSTS(ee.Description); f != nil {
		return f.fix(r), true
	}
	return "", false
}

// classify maps a token call error to what it means for the account.
func classify(err error) errKind {
	var ce configError
	if errors.As(err, &ce) {
		return kindConfig
	}
	var ee *EndpointError
	if !errors.As(err, &ee) {
		return kindTransient // network, timeout, TLS, decode
	}
	if findAADSTS(ee.Description) != nil && ee.Status != http.StatusTooManyRequests && ee.Status < 500 {
		// Some arrive as invalid_grant (consent, Conditional Access): a new
		// sign-in does not help until the setting is fixed.
		return kindConfig
	}
	for _, c := range aadstsCode.FindAllString(ee.Description, -1) {
		if slices.Contains(reauthAADSTS, c) {
			return kindReauth
		}
	}
	switch ee.Code {
	case "invalid_grant", "interaction_required", "consent_required", "login_required":
		return kindReauth
	case "invalid_client", "unauthorized_client", "invalid_scope", "unsupported_grant_type", "invalid_request", "access_denied":
		if ee.Status == http.StatusTooManyRequests || ee.Status >= 500 {
			return kindTransient
		}
		return kindConfig
	}
	if ee.Status == http.StatusTooManyRequests || ee.Status == http.StatusRequestTimeout || ee.Status >= 500 {
		return kindTransient
	}
	if ee.Code == "invalid_response" {
		return kindConfig
	}
	return kindTransient
}
