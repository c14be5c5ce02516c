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
	"io"
	"net/mail"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spoold/spoold/configs/field"
	"github.com/spoold/spoold/configs/secret"
)

// Defaults for AccountConfig fields left zero (WithDefaults).
const (
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

// maxKeyFile bounds what is read from a service account key file.
const maxKeyFile = 1 << 20

// AccountConfig is one OAuth account as the daemon's config gives it (plain
// Go values; the YAML layer resolves client_secret's ${ENV} and
// client_secret_file). Zero fields take the defaults WithDefaults fills;
// Validate reports the rest keyed by the account's YAML names.
type AccountConfig struct {
	Name     string
	Provider string // microsoft, microsoft-usgov, google or generic; required
	Flow     string // authcode (default), device, client_credentials, service_account
	// Tenant is the Entra ID directory (ID or domain); required for Microsoft.
	Tenant   string
	ClientID string
	// ClientSecret is already resolved from client_secret_file or ${ENV}.
	ClientSecret secret.Secret
	// ClientSecretExpires is optional; Health warns SecretExpiryWarning ahead.
	ClientSecretExpires time.Time
	// CertificateFile and PrivateKeyFile (PEM) select a signed JWT client
	// assertion for client_credentials instead of a secret. The certificate
	// may also sit in PrivateKeyFile, which must be private (mode 0600).
	CertificateFile, PrivateKeyFile string
	// ServiceAccountFile is a Google service account key file (JSON, mode
	// 0600). It is read when the account is validated and (re)loaded.
	ServiceAccountFile string
	// Mailbox holds the grant and is the XOAUTH2 user.
	Mailbox string
	// SignInAs (YAML sign_in_as) is who must sign in for a delegated flow
	// when that is not the mailbox's address: a user principal name that
	// differs from the address, or the user whose alias the mailbox is.
	// The signed-in identity is checked against it (case-insensitively)
	// instead of Mailbox; the XOAUTH2 user stays Mailbox. Empty: Mailbox.
	SignInAs string
	// Scopes, AuthURL, TokenURL and DeviceAuthURL default to the preset's
	// (scopes by flow: delegated or app-only). A service account without
	// token_url uses its key file's token_uri.
	Scopes                           []string
	AuthURL, TokenURL, DeviceAuthURL string
	// Graph: the account sends through Microsoft Graph (transport graph),
	// so its default scopes are Graph's (GraphScopes) for the audience of
	// GraphEndpoint ("" = the provider's Graph root). GraphReadWrite adds
	// Mail.ReadWrite to the delegated scopes (large messages go as drafts).
	Graph          bool
	GraphReadWrite bool
	GraphEndpoint  string
	// RedirectURL is the OAuth callback the browser returns to; required for
	// flow authcode. It has no default here: it names the daemon's HTTP
	// listener, which the daemon owns and fills in.
	RedirectURL   string
	RefreshBefore time.Duration // default DefaultRefreshBefore
	KeepAlive     time.Duration // default DefaultKeepAlive
	// TokenTimeout bounds each token/device endpoint request (default
	// DefaultTokenTimeout, at least MinTokenTimeout, at most MaxTokenTimeout).
	TokenTimeout time.Duration
}

// WithDefaults returns c with provider and flow lower-cased, the mailbox
// trimmed and every zero field that auth owns set: flow authcode when a
// provider is set; the preset's endpoints (delegated flows get the
// authorize and device endpoints too, for `spoolctl auth login --device`)
// and its scopes for the flow; refresh_before, keep_alive and
// token_timeout. It is idempotent and never fails; what is wrong is left for
// Validate. RedirectURL stays as given.
func (c AccountConfig) WithDefaults() AccountConfig {
	c.Provider = strings.ToLower(strings.TrimSpace(c.Provider))
	c.Flow = strings.ToLower(strings.TrimSpace(c.Flow))
	c.Mailbox = strings.TrimSpace(c.Mailbox)
	c.SignInAs = strings.TrimSpace(c.SignInAs)
	if c.Provider != "" && c.Flow == "" {
		c.Flow = string(FlowAuthCode)
	}
	if c.RefreshBefore == 0 {
		c.RefreshBefore = DefaultRefreshBefore
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.TokenTimeout == 0 {
		c.TokenTimeout = DefaultTokenTimeout
	}
	p, err := Preset(Provider(c.Provider), c.Tenant)
	if err != nil {
		return c // unknown provider or bad tenant: Validate says so
	}
	flow := Flow(c.Flow)
	if flow != FlowServiceAccount && c.TokenURL == "" {
		// A service account's key file names its token endpoint (token_uri);
		// the preset's is the fallback when the key is loaded.
		c.TokenURL = p.TokenURL
	}
	if flow.Delegated() {
		if c.AuthURL == "" {
			c.AuthURL = p.AuthURL
		}
		if c.DeviceAuthURL == "" {
			c.DeviceAuthURL = p.DeviceAuthURL
		}
	}
	if len(c.Scopes) == 0 && c.Graph {
		c.Scopes = GraphScopes(GraphResource(p.Provider, c.GraphEndpoint), flow.Delegated(), c.GraphReadWrite)
	}
	if len(c.Scopes) == 0 {
		switch {
		case flow.Delegated():
			c.Scopes = slices.Clone(p.Scopes)
		case flow == FlowClientCredentials || flow == FlowServiceAccount:
			c.Scopes = slices.Clone(p.AppScopes)
		}
	}
	return c
}

// Validate reports what is wrong with the account as it would run (with
// WithDefaults applied) as field.Problems keyed by the account's YAML names
// ("mailbox", "token_timeout"). It reads the key files (certificate,
// private key, service account) to check that they load, so that -check
// refuses what start-up would; it writes nothing.
func (c AccountConfig) Validate() error {
	_, ps := check(c)
	return ps.Err()
}

// ValidateAccounts validates each account and the set: a name used twice is
// a problem of the later entry. Keys are relative to the list ("[2].tenant",
// i being the position in accounts); the caller merges them under the
// list's key, mapping positions back if it passed a subset of its accounts.
func ValidateAccounts(accounts []AccountConfig) error {
	_, ps := checkAll(accounts)
	return ps.Err()
}

// resolved is a validated account: config with defaults plus parsed keys.
type resolved struct {
	cfg      AccountConfig
	provider Provider
	flow     Flow
	authURL  string
	tokenURL string
	devURL   string
	scopes   []string    // requested on token calls
	idScopes []string    // added to delegated logins
	cert     *clientCert // client_credentials with certificate
	sa       *serviceAccountKey
	fp       string // fingerprint, set by check
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

// checkAll checks every account and the set; it returns the resolved
// accounts only when there is no problem.
func checkAll(accounts []AccountConfig) ([]*resolved, field.Problems) {
	var ps field.Problems
	first := map[string]int{}
	rs := make([]*resolved, 0, len(accounts))
	for i, c := range accounts {
		at := field.Index("", i)
		r, cps := check(c)
		ps.Merge(at, cps)
		rs = append(rs, r)
		if c.Name == "" {
			continue
		}
		if j, ok := first[c.Name]; ok {
			ps.Add(field.Join(at, "name"), "account %q is defined twice (also [%d])", c.Name, j)
			continue
		}
		first[c.Name] = i
	}
	if len(ps) > 0 {
		return nil, ps
	}
	return rs, nil
}

// check is Validate and the Manager's loading in one: it applies the
// defaults, checks every key and loads the key material. r is usable only
// when there is no problem.
func check(c AccountConfig) (*resolved, field.Problems) {
	c = c.WithDefaults()
	var ps field.Problems
	r := &resolved{cfg: c, provider: Provider(c.Provider), flow: Flow(c.Flow),
		authURL: c.AuthURL, tokenURL: c.TokenURL, devURL: c.DeviceAuthURL, scopes: slices.Clone(c.Scopes)}
	if strings.TrimSpace(c.Name) == "" {
		ps.Add("name", "required: every account needs a name")
	}
	known := true
	switch r.provider {
	case ProviderMicrosoft, ProviderMicrosoftUSGov, ProviderGoogle, ProviderGeneric:
	case "":
		known = false
		ps.Add("provider", "required for OAuth accounts: microsoft, microsoft-usgov, google or generic")
	default:
		known = false
		ps.Add("provider", "%q is unknown (want microsoft, microsoft-usgov, google or generic)", c.Provider)
	}
	if c.Graph && known && r.provider != ProviderMicrosoft && r.provider != ProviderMicrosoftUSGov {
		ps.Add("transport", "graph is Microsoft Graph: it needs provider microsoft or microsoft-usgov, not %s", c.Provider)
	}
	switch r.flow {
	case FlowAuthCode, FlowDevice, FlowClientCredentials, FlowServiceAccount:
	case "": // no provider, reported above
	default:
		known = false
		ps.Add("flow", "%q is unknown (want authcode, device, client_credentials or service_account)", c.Flow)
	}
	switch {
	case c.Mailbox == "":
		ps.Add("mailbox", "required for OAuth accounts: the mailbox that sends (the signed-in user, or the user to impersonate)")
	case !validAddress(c.Mailbox):
		ps.Add("mailbox", "%q is not an e-mail address", sanitize(c.Mailbox, 320))
	}
	switch {
	case c.SignInAs == "":
	case !validAddress(c.SignInAs):
		ps.Add("sign_in_as", "%q is not an e-mail address: want the user principal name to sign in as, e.g. scanner@contoso.onmicrosoft.com", sanitize(c.SignInAs, 320))
	case r.flow != "" && !r.flow.Delegated():
		ps.Add("sign_in_as", "flow %s signs no user in: remove sign_in_as (it is for authcode and device)", r.flow)
	}
	if known {
		checkProvider(c, r, &ps)
		checkFlow(c, r, &ps)
	}
	for _, u := range []struct{ key, val string }{
		{"auth_url", c.AuthURL}, {"token_url", c.TokenURL}, {"device_auth_url", c.DeviceAuthURL}, {"redirect_url", c.RedirectURL},
	} {
		if u.val == "" {
			continue
		}
		if p, err := url.Parse(u.val); err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			ps.Add(u.key, "%q is not an http(s) URL", sanitize(u.val, 200))
		}
	}
	if c.RefreshBefore < 0 {
		ps.Add("refresh_before", "%s is negative: want a duration, or 0 for the default %s", c.RefreshBefore, DefaultRefreshBefore)
	}
	if c.KeepAlive < 0 {
		ps.Add("keep_alive", "%s is negative: want a duration, or 0 for the default %s", c.KeepAlive, DefaultKeepAlive)
	}
	if t := c.TokenTimeout; t < MinTokenTimeout || t > MaxTokenTimeout {
		ps.Add("token_timeout", "%s is out of range (%s to %s; default %s): a token endpoint that answers after spoold gave up may have rotated the refresh token already",
			t, MinTokenTimeout, MaxTokenTimeout, DefaultTokenTimeout)
	}
	if p, err := Preset(r.provider, c.Tenant); err == nil {
		r.idScopes = p.IdentityScopes
		if r.tokenURL == "" {
			r.tokenURL = p.TokenURL // a service account whose key names no token_uri
		}
	}
	r.fp = r.fingerprint()
	return r, ps
}

// checkProvider checks what the provider requires.
func checkProvider(c AccountConfig, r *resolved, ps *field.Problems) {
	switch r.provider {
	case ProviderMicrosoft, ProviderMicrosoftUSGov:
		switch {
		case c.Tenant == "":
			ps.Add("tenant", "required for provider %s: the directory (tenant) ID or domain, e.g. contoso.onmicrosoft.com", r.provider)
		case !field.ValidDomain(c.Tenant):
			ps.Add("tenant", "%q is not a tenant ID or domain", sanitize(c.Tenant, 253))
		case r.flow == FlowClientCredentials && slices.Contains([]string{"common", "organizations", "consumers"}, strings.ToLower(c.Tenant)):
			ps.Add("tenant", "client_credentials needs a specific tenant ID or domain, not %q", c.Tenant)
		}
		if strings.TrimSpace(c.ClientID) == "" {
			ps.Add("client_id", "required for provider %s: the application (client) ID of the app registration", r.provider)
		}
		if r.flow == FlowServiceAccount {
			ps.Add("flow", "flow service_account is for provider google; Microsoft app-only access uses client_credentials")
		}
	case ProviderGoogle:
		switch r.flow {
		case FlowAuthCode:
			if strings.TrimSpace(c.ClientID) == "" {
				ps.Add("client_id", "required for flow authcode: the OAuth client ID from the Google Cloud console")
			}
		case FlowDevice:
			ps.Add("flow", "Google does not allow the Gmail scope in the device flow: use authcode or service_account")
		case FlowClientCredentials:
			ps.Add("flow", "Google has no client_credentials grant: use service_account with domain-wide delegation")
		}
	case ProviderGeneric:
		if c.TokenURL == "" {
			ps.Add("token_url", "required for provider generic")
		}
		if r.flow == FlowAuthCode && c.AuthURL == "" {
			ps.Add("auth_url", "required for provider generic with flow authcode")
		}
		if r.flow == FlowDevice && c.DeviceAuthURL == "" {
			ps.Add("device_auth_url", "required for provider generic with flow device")
		}
		if len(c.Scopes) == 0 {
			ps.Add("scopes", "required for provider generic")
		}
		if r.flow == FlowServiceAccount {
			ps.Add("flow", "flow service_account is for provider google")
		} else if strings.TrimSpace(c.ClientID) == "" {
			ps.Add("client_id", "required for provider generic: the client ID the authorization server issued")
		}
	}
}

// checkFlow checks what the flow requires and loads its key material.
func checkFlow(c AccountConfig, r *resolved, ps *field.Problems) {
	if r.flow == FlowAuthCode && c.RedirectURL == "" {
		ps.Add("redirect_url", "required for flow authcode: the callback the browser returns to, http://localhost:<http port>/oauth2/callback, as registered in the app registration")
	}
	// Key files are checked whenever they are set; they are loaded for the
	// flow that uses them.
	certOK, keyOK := true, true
	if c.CertificateFile != "" {
		if why := field.ReadableFile(c.CertificateFile); why != "" {
			ps.Add("certificate_file", "%s", why)
			certOK = false
		}
		if c.PrivateKeyFile == "" {
			ps.Add("private_key_file", "certificate_file is set without private_key_file: set both")
		}
	}
	if c.PrivateKeyFile != "" {
		if why := field.PrivateFile(c.PrivateKeyFile); why != "" {
			ps.Add("private_key_file", "%s", why)
			keyOK = false
		}
	}
	switch r.flow {
	case FlowClientCredentials:
		switch {
		case c.PrivateKeyFile != "":
			if certOK && keyOK {
				cc, key, err := loadClientCert(c.CertificateFile, c.PrivateKeyFile)
				if err != nil {
					ps.Add(key, "%v", err)
				}
				r.cert = cc
			}
		case c.ClientSecret == "" && c.CertificateFile == "":
			ps.Add("client_secret", "flow client_credentials needs client_secret (or client_secret_file) or certificate_file and private_key_file")
		}
	case FlowServiceAccount:
		if c.ServiceAccountFile == "" {
			ps.Add("service_account_file", "required for flow service_account: the JSON key of the service account")
			return
		}
		sa, err := loadServiceAccount(c.ServiceAccountFile)
		if err != nil {
			ps.Add("service_account_file", "%v", err)
			return
		}
		r.sa = sa
		if c.TokenURL == "" && sa.TokenURI != "" {
			if u, err := url.Parse(sa.TokenURI); err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
				ps.Add("service_account_file", "the key's token_uri is not an http(s) URL: set token_url")
			} else {
				r.tokenURL = sa.TokenURI
			}
		}
	}
}

// signInName is who must sign in: sign_in_as, else the mailbox.
func (c AccountConfig) signInName() string {
	if c.SignInAs != "" {
		return c.SignInAs
	}
	return c.Mailbox
}

// validAddress accepts a bare addr-spec (no display name, no brackets).
func validAddress(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Name == "" && a.Address == s && strings.Contains(s, "@") && !strings.ContainsAny(s, "\x00\x01")
}

// fingerprint identifies the settings that decide whether token requests can
// work. Secrets enter only through a truncated hash; key files through the
// identity of the key they held when loaded. It is computed once (check sets
// fp): token calls compare it.
func (r *resolved) fingerprint() string {
	if r.fp != "" {
		return r.fp
	}
	h := sha256.New()
	vals := []string{string(r.provider), string(r.flow), r.cfg.Tenant, r.cfg.ClientID, r.cfg.ClientSecret.Reveal(),
		r.cfg.CertificateFile, r.cfg.PrivateKeyFile, r.cfg.ServiceAccountFile, r.cfg.Mailbox,
		strings.Join(r.scopes, " "), r.authURL, r.tokenURL, r.devURL, r.cfg.RedirectURL}
	if r.cert != nil {
		vals = append(vals, r.cert.thumbprint)
	}
	if r.sa != nil {
		vals = append(vals, r.sa.ClientEmail, r.sa.PrivateKeyID)
	}
	for _, v := range vals {
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

// loadClientCert reads the certificate and RSA key for a JWT client
// assertion; key is the config key a failure belongs to. Errors name the
// files, never their contents.
func loadClientCert(certFile, keyFile string) (_ *clientCert, key string, _ error) {
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, "private_key_file", fmt.Errorf("cannot read %s: %v", keyFile, field.UnwrapPathErr(err))
	}
	certPEM := keyPEM
	if certFile != "" && certFile != keyFile {
		if certPEM, err = os.ReadFile(certFile); err != nil {
			return nil, "certificate_file", fmt.Errorf("cannot read %s: %v", certFile, field.UnwrapPathErr(err))
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
		if certFile == "" {
			return nil, "certificate_file", fmt.Errorf("private_key_file is set without certificate_file, and %s holds no PEM CERTIFICATE block: set both, or put the certificate in private_key_file", keyFile)
		}
		return nil, "certificate_file", fmt.Errorf("no PEM CERTIFICATE block in %s", certFile)
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, "certificate_file", fmt.Errorf("parsing certificate in %s: %w", firstNonEmpty(certFile, keyFile), err)
	}
	rk, err := parseRSAKey(keyPEM)
	if err != nil {
		return nil, "private_key_file", fmt.Errorf("%s: %w", keyFile, err)
	}
	if pub, ok := cert.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(&rk.PublicKey) {
		return nil, "private_key_file", fmt.Errorf("%s does not match the certificate", keyFile)
	}
	sum := sha1.Sum(cert.Raw) // x5t is defined as the SHA-1 thumbprint (RFC 7515 4.1.7).
	return &clientCert{key: rk, thumbprint: base64.RawURLEncoding.EncodeToString(sum[:])}, "", nil
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

// loadServiceAccount reads and parses a Google service account key file,
// which must be private. Errors never quote the file (it holds the private
// key).
func loadServiceAccount(path string) (*serviceAccountKey, error) {
	if why := field.PrivateFile(path); why != "" {
		return nil, errors.New(why)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %v", path, field.UnwrapPathErr(err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %v", path, field.UnwrapPathErr(err))
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("%s is larger than 1 MiB: not a service account key", path)
	}
	return parseServiceAccount(data)
}

// parseServiceAccount parses a Google service account key file's contents.
func parseServiceAccount(data []byte) (*serviceAccountKey, error) {
	var sa serviceAccountKey
	if err := json.Unmarshal(data, &sa); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("the key file is not valid JSON (offset %d)", se.Offset)
		}
		return nil, errors.New("the file is not a service account key file")
	}
	if sa.ClientEmail == "" || sa.PrivateKey == "" {
		return nil, errors.New("the key file lacks client_email or private_key")
	}
	k, err := parseRSAKey([]byte(sa.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("the key file's private_key: %w", err)
	}
	sa.key = k
	sa.PrivateKey = ""
	return &sa, nil
}
