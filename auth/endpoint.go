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
	if e.Description != "" {
		s += ": " + e.Description
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
	for _, c := range reauthAADSTS {
		if strings.Contains(ee.Description, c) {
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
