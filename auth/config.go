package auth

import (
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spoold/spoold/configs/secret"
)

// Defaults for AccountConfig fields left zero.
const (
	DefaultRedirectURL   = "http://localhost:9191/oauth2/callback"
	DefaultRefreshBefore = 5 * time.Minute
	DefaultKeepAlive     = 24 * time.Hour
	// DefaultTokenTimeout bounds one request to a token or device
	// authorization endpoint. It is generous on purpose: a server that
	// rotates refresh tokens may answer slowly after it has already retired
	// the old one, and giving up early means retrying with that old token,
	// which reuse-detecting servers punish by revoking the whole grant.
	DefaultTokenTimeout = 2 * time.Minute
	// MinTokenTimeout and MaxTokenTimeout bound token_timeout: shorter makes
	// the lost-rotation case above likely; longer holds a refresh (and the
	// messages waiting on it) for no benefit.
	MinTokenTimeout = time.Second
	MaxTokenTimeout = 10 * time.Minute
	// SecretExpiryWarning is how far ahead a configured client-secret expiry is warned about.
	SecretExpiryWarning = 14 * 24 * time.Hour
	// GoogleTestingGrantWarning: Google apps in "testing" publishing status lose
	// refresh tokens after 7 days; warn one day ahead.
	GoogleTestingGrantWarning = 6 * 24 * time.Hour
)

// AccountConfig is one OAuth account as the daemon's config gives it (plain
// Go values; the YAML layer converts and resolves *_file and ${ENV}).
type AccountConfig struct {
	Name     string
	Provider string // microsoft, microsoft-usgov, google, generic
	Flow     string // authcode (default), device, client_credentials, service_account
	Tenant   string
	ClientID string
	// ClientSecret is already resolved from *_file or ${ENV} by the config layer.
	ClientSecret secret.Secret
	// ClientSecretExpires is optional; Health warns SecretExpiryWarning ahead.
	ClientSecretExpires time.Time
	// CertificateFile and PrivateKeyFile (PEM) select a signed JWT client
	// assertion for client_credentials instead of a secret. The certificate
	// may also sit in PrivateKeyFile.
	CertificateFile, PrivateKeyFile string
	// ServiceAccountJSON is a Google service account key file's contents.
	ServiceAccountJSON secret.Secret
	// Mailbox holds the grant and is the XOAUTH2 user.
	Mailbox string
	// Scopes, AuthURL, TokenURL and DeviceAuthURL override the preset.
	Scopes                           []string
	AuthURL, TokenURL, DeviceAuthURL string
	RedirectURL                      string        // default DefaultRedirectURL
	RefreshBefore                    time.Duration // default 5m
	KeepAlive                        time.Duration // default 24h
	// TokenTimeout bounds each token/device endpoint request (default
	// DefaultTokenTimeout, at least MinTokenTimeout, at most MaxTokenTimeout).
	TokenTimeout time.Duration
}

// resolved is a validated account: config with defaults plus parsed keys.
type resolved struct {
	cfg      AccountConfig
	provider Provider
	flow     Flow
	authURL  string
	tokenURL string
	devURL   string
	scopes   []string // requested on token calls
	idScopes []string // added to delegated logins
	smtpAddr string
	cert     *clientCert // client_credentials with certificate
	sa       *serviceAccountKey
}

type clientCert struct {
	key        *rsa.PrivateKey
	thumbprint string // x5t: base64url SHA-1 of the DER certificate
}

type serviceAccountKey struct {
	ClientEmail  string `json:"client_email"`
	PrivateKey   string `json:"private_key"`
	PrivateKeyID string `json:"private_key_id"`
	TokenURI     string `json:"token_uri"`
	key          *rsa.PrivateKey
}

// resolve validates c, fills defaults and preset values, and loads key
// material. Every problem is listed in one error.
func resolve(c AccountConfig) (*resolved, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Name == "" {
		return nil, errors.New("auth: account config: name is empty")
	}
	r := &resolved{cfg: c}
	r.provider = Provider(strings.ToLower(strings.TrimSpace(c.Provider)))
	if r.provider == "" {
		r.provider = ProviderMicrosoft
	}
	r.flow = Flow(strings.ToLower(strings.TrimSpace(c.Flow)))
	if r.flow == "" {
		r.flow = FlowAuthCode
	}
	switch r.flow {
	case FlowAuthCode, FlowDevice, FlowClientCredentials, FlowServiceAccount:
	default:
		bad("flow %q is unknown (want authcode, device, client_credentials or service_account)", c.Flow)
	}
	p, err := Preset(r.provider, c.Tenant)
	if err != nil {
		bad("%v", strings.TrimPrefix(err.Error(), "auth: "))
	}
	r.authURL = firstNonEmpty(c.AuthURL, p.AuthURL)
	r.tokenURL = firstNonEmpty(c.TokenURL, p.TokenURL)
	r.devURL = firstNonEmpty(c.DeviceAuthURL, p.DeviceAuthURL)
	r.smtpAddr = p.SMTPAddr()
	r.idScopes = p.IdentityScopes
	switch {
	case len(c.Scopes) > 0:
		r.scopes = slices.Clone(c.Scopes)
	case r.flow.Delegated():
		r.scopes = slices.Clone(p.Scopes)
	default:
		r.scopes = slices.Clone(p.AppScopes)
	}
	if r.cfg.RedirectURL == "" {
		r.cfg.RedirectURL = DefaultRedirectURL
	}
	if r.cfg.RefreshBefore <= 0 {
		r.cfg.RefreshBefore = DefaultRefreshBefore
	}
	if r.cfg.KeepAlive <= 0 {
		r.cfg.KeepAlive = DefaultKeepAlive
	}
	switch t := r.cfg.TokenTimeout; {
	case t == 0:
		r.cfg.TokenTimeout = DefaultTokenTimeout
	case t < MinTokenTimeout || t > MaxTokenTimeout:
		bad("token_timeout %s is out of range (%s to %s; default %s): a token endpoint that answers after spoold gave up may have rotated the refresh token already",
			t, MinTokenTimeout, MaxTokenTimeout, DefaultTokenTimeout)
	}
	r.cfg.Mailbox = strings.TrimSpace(c.Mailbox)
	if r.cfg.Mailbox == "" {
		bad("mailbox is empty (it is the XOAUTH2 user and the identity that must sign in)")
	} else if !strings.Contains(r.cfg.Mailbox, "@") || strings.ContainsAny(r.cfg.Mailbox, " \t\r\n\x00\x01") {
		bad("mailbox %q is not an e-mail address", r.cfg.Mailbox)
	}
	checkURL := func(field, v string) {
		if v == "" {
			bad("%s is empty (required for provider %s, flow %s)", field, r.provider, r.flow)
			return
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("%s %q is not an http(s) URL", field, v)
		}
	}
	checkURL("token_url", r.tokenURL)
	if len(r.scopes) == 0 {
		bad("scopes are empty (required for provider %s)", r.provider)
	}
	switch r.flow {
	case FlowAuthCode:
		checkURL("auth_url", r.authURL)
		checkURL("redirect_url", r.cfg.RedirectURL)
	case FlowDevice:
		checkURL("device_auth_url", r.devURL)
	case FlowClientCredentials:
		if r.provider == ProviderMicrosoft || r.provider == ProviderMicrosoftUSGov {
			switch strings.ToLower(c.Tenant) {
			case "", "common", "organizations", "consumers":
				bad("client_credentials needs a specific tenant ID or domain, not %q", c.Tenant)
			}
		}
		switch {
		case c.PrivateKeyFile != "":
			cc, err := loadClientCert(c.CertificateFile, c.PrivateKeyFile)
			if err != nil {
				bad("%v", err)
			}
			r.cert = cc
		case c.ClientSecret == "":
			bad("client_credentials needs client_secret or certificate_file + private_key_file")
		}
	case FlowServiceAccount:
		if c.ServiceAccountJSON == "" {
			bad("service_account needs service_account_json (the key file)")
		} else {
			sa, err := parseServiceAccount([]byte(c.ServiceAccountJSON.Reveal()))
			if err != nil {
				bad("%v", err)
			}
			r.sa = sa
			if sa != nil && c.TokenURL == "" && sa.TokenURI != "" {
				r.tokenURL = sa.TokenURI
			}
		}
	}
	if r.flow != FlowServiceAccount && strings.TrimSpace(c.ClientID) == "" {
		bad("client_id is empty")
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("auth: account %s: %w", c.Name, errors.Join(errs...))
	}
	return r, nil
}

// fingerprint identifies the settings that decide whether token requests can
// work. Secrets enter only through a truncated hash.
func (r *resolved) fingerprint() string {
	h := sha256.New()
	for _, v := range []string{string(r.provider), string(r.flow), r.cfg.Tenant, r.cfg.ClientID, r.cfg.ClientSecret.Reveal(),
		r.cfg.CertificateFile, r.cfg.PrivateKeyFile, r.cfg.ServiceAccountJSON.Reveal(), r.cfg.Mailbox,
		strings.Join(r.scopes, " "), r.authURL, r.tokenURL, r.devURL, r.cfg.RedirectURL} {
		h.Write([]byte(v))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

// loadClientCert reads the certificate and RSA key for a JWT client assertion.
// Errors name the files, never their contents.
func loadClientCert(certFile, keyFile string) (*clientCert, error) {
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("reading private_key_file: %w", err)
	}
	certPEM := keyPEM
	if certFile != "" && certFile != keyFile {
		if certPEM, err = os.ReadFile(certFile); err != nil {
			return nil, fmt.Errorf("reading certificate_file: %w", err)
		}
	}
	var certDER []byte
	for rest := certPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			certDER = b.Bytes
			break
		}
	}
	if certDER == nil {
		return nil, fmt.Errorf("no PEM CERTIFICATE block in %s", firstNonEmpty(certFile, keyFile))
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("parsing certificate in %s: %w", firstNonEmpty(certFile, keyFile), err)
	}
	key, err := parseRSAKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("private_key_file %s: %w", keyFile, err)
	}
	if pub, ok := cert.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, fmt.Errorf("private_key_file %s does not match the certificate", keyFile)
	}
	sum := sha1.Sum(cert.Raw) // x5t is defined as the SHA-1 thumbprint (RFC 7515 4.1.7).
	return &clientCert{key: key, thumbprint: base64.RawURLEncoding.EncodeToString(sum[:])}, nil
}

// parseRSAKey finds the first RSA private key (PKCS#1 or PKCS#8) in PEM data.
func parseRSAKey(data []byte) (*rsa.PrivateKey, error) {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no PEM private key block (PKCS#1 or PKCS#8 RSA, unencrypted)")
		}
		switch b.Type {
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parsing PKCS#1 key: %w", err)
			}
			return k, nil
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parsing PKCS#8 key: %w", err)
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("key is %T, want RSA (RS256)", k)
			}
			return rk, nil
		}
	}
}

// parseServiceAccount parses a Google service account key file. Errors never
// quote the file (it holds the private key).
func parseServiceAccount(data []byte) (*serviceAccountKey, error) {
	var sa serviceAccountKey
	if err := json.Unmarshal(data, &sa); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("service_account_json is not valid JSON (offset %d)", se.Offset)
		}
		return nil, errors.New("service_account_json is not a service account key file")
	}
	if sa.ClientEmail == "" || sa.PrivateKey == "" {
		return nil, errors.New("service_account_json lacks client_email or private_key")
	}
	k, err := parseRSAKey([]byte(sa.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("service_account_json private_key: %w", err)
	}
	sa.key = k
	sa.PrivateKey = ""
	return &sa, nil
}
