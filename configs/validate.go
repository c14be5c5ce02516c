package configs

import (
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"text/template"

	"golang.org/x/crypto/bcrypt"
)

// validator runs the semantic checks after decoding, reporting at the line
// of the offending key (or of its section when the key is absent).
type validator struct {
	d   *decoder
	env func(string) (string, bool)
}

func (v *validator) problem(key, format string, args ...any) {
	// A key that already failed to decode (or whose section did) holds a
	// default, not what the user wrote: one complaint is enough.
	for k := key; k != ""; {
		if v.d.bad[k] {
			return
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	v.d.add(v.d.lineOf(key), key, format, args...)
}

func (v *validator) validate(c *Config) {
	if v.d.bad[""] {
		return // the document is not a mapping: nothing to check
	}
	if strings.TrimSpace(c.DataDir) == "" {
		v.problem("data_dir", "must not be empty")
	}
	if c.HTTP.Listen != "" {
		if reason := checkHostPort(c.HTTP.Listen); reason != "" {
			v.problem("http.listen", "%s", reason)
		}
	}
	// sun_path is 108 bytes on Linux including the terminating NUL.
	if len(c.Admin.Socket) > 107 {
		v.problem("admin.socket", "socket path is %d bytes, longer than the 107 a unix socket allows: use a shorter data_dir or set admin.socket", len(c.Admin.Socket))
	}
	v.positive("spool.lock_timeout", int64(c.Spool.LockTimeout))
	v.positive("spool.lease", int64(c.Spool.Lease))
	v.positive("delivery.workers", int64(c.Delivery.Workers))

	accounts := map[string]bool{}
	for i := range c.Accounts {
		a := &c.Accounts[i]
		key := fmt.Sprintf("accounts[%d]", i)
		if a.Name != "" {
			if accounts[a.Name] {
				v.problem(key+".name", "duplicate account name %q", a.Name)
			}
			accounts[a.Name] = true
		}
	}
	if len(c.Accounts) == 0 {
		v.problem("accounts", "at least one account is required")
	}
	ref := func(key, name string) {
		if name != "" && !accounts[name] && len(c.Accounts) > 0 {
			v.problem(key, "account %q is not defined in accounts", name)
		}
	}

	names := map[string]bool{}
	for i := range c.SMTPListeners {
		v.listener(&c.SMTPListeners[i], fmt.Sprintf("smtp_listeners[%d]", i), names, ref)
	}
	names = map[string]bool{}
	for i := range c.ScanFolders {
		v.folder(&c.ScanFolders[i], fmt.Sprintf("scan_folders[%d]", i), names, ref)
	}
	for i := range c.Accounts {
		v.account(&c.Accounts[i], fmt.Sprintf("accounts[%d]", i))
	}

	if c.Routes.Default == "" {
		v.problem("routes.default", "required: the account for mail no other route matches")
	} else {
		ref("routes.default", c.Routes.Default)
	}
	for dom, acc := range sortedMap(c.Routes.SenderDomains) {
		key := "routes.sender_domains." + dom
		if !validDomain(dom) {
			v.problem(key, "%q is not a domain name", clip(dom))
		}
		ref(key, acc)
	}
	for user, acc := range sortedMap(c.Routes.Users) {
		key := "routes.users." + user
		if user == "" {
			v.problem(key, "user name must not be empty")
		}
		ref(key, acc)
	}
}

func (v *validator) positive(key string, n int64) {
	if n <= 0 {
		v.problem(key, "must be greater than 0")
	}
}

func (v *validator) nonNegative(key string, n int64) {
	if n < 0 {
		v.problem(key, "must not be negative")
	}
}

func (v *validator) unique(key, name string, seen map[string]bool, what string) {
	if strings.TrimSpace(name) == "" {
		v.problem(key, "required: every %s needs a name", what)
		return
	}
	if seen[name] {
		v.problem(key, "duplicate %s name %q", what, name)
	}
	seen[name] = true
}

func (v *validator) listener(l *SMTPListener, key string, names map[string]bool, ref func(string, string)) {
	v.unique(key+".name", l.Name, names, "listener")
	if l.Listen == "" {
		v.problem(key+".listen", "required: host:port to listen on, e.g. 127.0.0.1:2525")
	} else if reason := checkHostPort(l.Listen); reason != "" {
		v.problem(key+".listen", "%s", reason)
	}
	if (l.CertFile == "") != (l.KeyFile == "") {
		if l.CertFile == "" {
			v.problem(key+".cert_file", "key_file is set without cert_file: set both, or neither for a self-signed certificate")
		} else {
			v.problem(key+".key_file", "cert_file is set without key_file: set both, or neither for a self-signed certificate")
		}
	}
	if l.TLS == ListenerTLSNone && (l.CertFile != "" || l.KeyFile != "") {
		v.problem(key+".tls", "cert_file/key_file are set but tls is none: set tls to starttls or implicit")
	}
	if l.CertFile != "" {
		if r := checkReadable(l.CertFile); r != "" {
			v.problem(key+".cert_file", "%s", r)
		}
	}
	if l.KeyFile != "" {
		if r := checkReadable(l.KeyFile); r != "" {
			v.problem(key+".key_file", "%s", r)
		}
	}
	if l.Legacy && len(l.AllowedNetworks) == 0 {
		v.problem(key+".legacy", "legacy (AUTH without TLS) requires allowed_networks to restrict who may use it")
	}
	if len(l.AllowedNetworks) == 0 && len(l.Users) == 0 {
		v.problem(key, "neither allowed_networks nor users is set: this listener would be an open relay")
	}
	if l.RequireAuth && len(l.Users) == 0 {
		v.problem(key+".require_auth", "require_auth is set but there are no users")
	}
	users := map[string]bool{}
	for i := range l.Users {
		u := &l.Users[i]
		ukey := fmt.Sprintf("%s.users[%d]", key, i)
		v.unique(ukey+".name", u.Name, users, "user")
		v.resolveSecret(&u.PasswordHash, u.PasswordHashFile, ukey+".password_hash", ukey+".password_hash_file")
		if u.PasswordHash == "" && u.PasswordHashFile == "" {
			v.problem(ukey+".password_hash", "required: a bcrypt hash (spoolctl hash-password or htpasswd -nbB) or password_hash_file")
		} else if u.PasswordHash != "" {
			if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
				hk := ukey + ".password_hash"
				if u.PasswordHashFile != "" {
					hk = ukey + ".password_hash_file"
				}
				v.problem(hk, "not a bcrypt hash: want $2a$, $2b$ or $2y$ followed by cost and salt")
			}
		}
		ref(ukey+".account", u.Account)
	}
	for i, dom := range l.AllowedSenderDomains {
		if !validDomain(dom) {
			v.problem(fmt.Sprintf("%s.allowed_sender_domains[%d]", key, i), "%q is not a domain name", clip(dom))
		}
	}
	for i, dom := range l.AllowedRecipientDomains {
		if !validDomain(dom) {
			v.problem(fmt.Sprintf("%s.allowed_recipient_domains[%d]", key, i), "%q is not a domain name", clip(dom))
		}
	}
	// Zero takes smtpd's default; smtpd validates the rest at -check too.
	v.nonNegative(key+".max_message_size", l.MaxMessageSize)
	v.nonNegative(key+".max_recipients", int64(l.MaxRecipients))
	v.nonNegative(key+".read_timeout", int64(l.ReadTimeout))
	v.nonNegative(key+".write_timeout", int64(l.WriteTimeout))
	v.nonNegative(key+".max_connections", int64(l.MaxConnections))
	v.nonNegative(key+".max_connections_per_ip", int64(l.MaxConnectionsPerIP))
	if l.MaxLineLength != 0 && l.MaxLineLength < 1000 {
		v.problem(key+".max_line_length", "must be at least 1000 (RFC 5321)")
	}
	v.nonNegative(key+".auth_failure_limit", int64(l.AuthFailureLimit))
	v.nonNegative(key+".auth_failure_window", int64(l.AuthFailureWindow))
	ref(key+".account", l.Account)
}

func (v *validator) folder(f *ScanFolder, key string, names map[string]bool, ref func(string, string)) {
	v.unique(key+".name", f.Name, names, "scan folder")
	if strings.TrimSpace(f.Path) == "" {
		v.problem(key+".path", "required: the directory to watch")
	}
	v.positive(key+".rescan_interval", int64(f.RescanInterval))
	v.nonNegative(key+".max_read_retries", int64(f.MaxReadRetries))
	ref(key+".account", f.Account)
	for name, u := range sortedMap(f.Users) {
		ukey := key + ".users." + name
		if name == "" || strings.ContainsAny(name, `/\`) {
			v.problem(ukey, "%q is not a subfolder name", clip(name))
		}
		if u.Address == "" {
			v.problem(ukey+".address", "required: the user's e-mail address")
		} else if !validAddress(u.Address) {
			v.problem(ukey+".address", "%q is not an e-mail address", clip(u.Address))
		}
	}
	for _, t := range []struct{ key, text string }{
		{key + ".subject_template", f.SubjectTemplate},
		{key + ".body_template", f.BodyTemplate},
	} {
		if t.text == "" {
			continue
		}
		if _, err := template.New(lastKey(t.key)).Option("missingkey=error").Parse(t.text); err != nil {
			v.problem(t.key, "template does not parse: %v", err)
		}
	}
}

func (v *validator) account(a *Account, key string) {
	if a.Name == "" {
		v.problem(key+".name", "required: every account needs a name")
	} else if !validName(a.Name) {
		v.problem(key+".name", "%q: use letters, digits, '.', '_' and '-' only", clip(a.Name))
	}
	v.resolveSecret(&a.ClientSecret, a.ClientSecretFile, key+".client_secret", key+".client_secret_file")
	v.resolveSecret(&a.Password, a.PasswordFile, key+".password", key+".password_file")
	if a.Mailbox != "" && !validAddress(a.Mailbox) {
		v.problem(key+".mailbox", "%q is not an e-mail address", clip(a.Mailbox))
	}
	if a.MaxMessageSize < 0 {
		v.problem(key+".max_message_size", "must not be negative")
	}
	v.retry(&a.Retry, key+".retry")
	// These keys decide which checks apply; if one did not decode, the
	// checks would judge a default rather than what was written.
	for _, k := range []string{"transport", "provider", "flow", "auth", "tls"} {
		if v.d.bad[key+"."+k] {
			return
		}
	}

	if a.Transport == TransportFile {
		if strings.TrimSpace(a.Dir) == "" {
			v.problem(key+".dir", "required for the file transport")
		}
		if a.Provider != ProviderNone {
			v.problem(key+".provider", "provider is only used with transport smtp")
		}
		if a.Host != "" {
			v.problem(key+".host", "host is only used with transport smtp")
		}
		return
	}
	if a.Dir != "" {
		v.problem(key+".dir", "dir is only used with transport file")
	}

	// Upstream connection.
	if a.Host == "" {
		v.problem(key+".host", "required: the upstream SMTP server (or set a provider)")
	} else if strings.ContainsAny(a.Host, " \t\r\n/:") {
		v.problem(key+".host", "%q is not a host name", clip(a.Host))
	}
	if a.Port < 0 || a.Port > 65535 {
		v.problem(key+".port", "%d is out of range 1-65535", a.Port)
	}
	if a.CAFile != "" {
		if r := checkReadable(a.CAFile); r != "" {
			v.problem(key+".ca_file", "%s", r)
		}
	}
	v.nonNegative(key+".max_connections", int64(a.MaxConnections))
	v.positive(key+".connect_timeout", int64(a.ConnectTimeout))
	v.positive(key+".command_timeout", int64(a.CommandTimeout))
	v.positive(key+".data_timeout", int64(a.DataTimeout))
	v.nonNegative(key+".max_messages_per_connection", int64(a.MaxMessagesPerConnection))
	if a.RatePerMinute < 0 && a.RatePerMinute != -1 {
		v.problem(key+".rate_per_minute", "must be positive, 0 (the default) or -1 (unlimited)")
	}
	if a.SenderRule == SenderRewrite && a.Mailbox == "" && !a.IsOAuth() {
		v.problem(key+".sender_rule", "sender_rule rewrite needs a mailbox")
	}

	switch a.Auth {
	case AuthXOAuth2:
		if a.Provider == ProviderNone {
			v.problem(key+".auth", "auth xoauth2 needs a provider (microsoft, microsoft-usgov, google or generic)")
		}
	case AuthPlain, AuthLogin:
		if a.Username == "" {
			v.problem(key+".username", "auth %s needs a username (or a mailbox to use as one)", a.Auth)
		}
		if a.Password == "" && a.PasswordFile == "" {
			v.problem(key+".password", "auth %s needs a password or password_file", a.Auth)
		}
		if a.TLS == UpstreamNone {
			v.problem(key+".tls", "auth %s would send the password in clear text: use starttls or implicit", a.Auth)
		}
	case AuthNone:
		if a.Password != "" || a.PasswordFile != "" {
			v.problem(key+".auth", "a password is set but auth is none: set auth to plain or login")
		}
	}
	if a.Provider == ProviderNone {
		if a.Flow != "" {
			v.problem(key+".flow", "flow needs a provider")
		}
		return
	}
	v.oauth(a, key)
}

func (v *validator) oauth(a *Account, key string) {
	if a.Auth != AuthXOAuth2 {
		v.problem(key+".auth", "provider %s authenticates with xoauth2, not %s", a.Provider, a.Auth)
	}
	if a.Mailbox == "" {
		v.problem(key+".mailbox", "required for OAuth accounts: the mailbox that sends (the signed-in user, or the user to impersonate)")
	}
	switch {
	case a.Provider.IsMicrosoft():
		if a.Tenant == "" {
			v.problem(key+".tenant", "required for provider %s: the directory (tenant) ID or domain, e.g. contoso.onmicrosoft.com", a.Provider)
		} else if !validTenant(a.Tenant) {
			v.problem(key+".tenant", "%q is not a tenant ID or domain", clip(a.Tenant))
		}
		if a.ClientID == "" {
			v.problem(key+".client_id", "required for provider %s: the application (client) ID of the app registration", a.Provider)
		}
		if a.Flow == FlowServiceAccount {
			v.problem(key+".flow", "flow service_account is for provider google; Microsoft app-only access uses client_credentials")
		}
	case a.Provider == ProviderGoogle:
		switch a.Flow {
		case FlowAuthCode:
			if a.ClientID == "" {
				v.problem(key+".client_id", "required for flow authcode: the OAuth client ID from the Google Cloud console")
			}
		case FlowDevice:
			v.problem(key+".flow", "Google does not allow the Gmail scope in the device flow: use authcode or service_account")
		case FlowClientCredentials:
			v.problem(key+".flow", "Google has no client_credentials grant: use service_account with domain-wide delegation")
		}
	case a.Provider == ProviderGeneric:
		if a.TokenURL == "" {
			v.problem(key+".token_url", "required for provider generic")
		}
		if a.Flow == FlowAuthCode && a.AuthURL == "" {
			v.problem(key+".auth_url", "required for provider generic with flow authcode")
		}
		if a.Flow == FlowDevice && a.DeviceAuthURL == "" {
			v.problem(key+".device_auth_url", "required for provider generic with flow device")
		}
		if len(a.Scopes) == 0 {
			v.problem(key+".scopes", "required for provider generic")
		}
		if a.Flow == FlowServiceAccount {
			v.problem(key+".flow", "flow service_account is for provider google")
		}
	}
	switch a.Flow {
	case FlowServiceAccount:
		if a.ServiceAccountFile == "" {
			v.problem(key+".service_account_file", "required for flow service_account: the JSON key of the service account")
		} else if r := checkPrivateFile(a.ServiceAccountFile); r != "" {
			v.problem(key+".service_account_file", "%s", r)
		}
	case FlowClientCredentials:
		hasCert := a.CertificateFile != "" || a.PrivateKeyFile != ""
		if a.ClientSecret == "" && a.ClientSecretFile == "" && !hasCert {
			v.problem(key+".client_secret", "flow client_credentials needs client_secret (or client_secret_file) or certificate_file and private_key_file")
		}
	}
	if (a.CertificateFile == "") != (a.PrivateKeyFile == "") {
		if a.CertificateFile == "" {
			v.problem(key+".certificate_file", "private_key_file is set without certificate_file: set both")
		} else {
			v.problem(key+".private_key_file", "certificate_file is set without private_key_file: set both")
		}
	}
	if a.CertificateFile != "" {
		if r := checkReadable(a.CertificateFile); r != "" {
			v.problem(key+".certificate_file", "%s", r)
		}
	}
	if a.PrivateKeyFile != "" {
		if r := checkPrivateFile(a.PrivateKeyFile); r != "" {
			v.problem(key+".private_key_file", "%s", r)
		}
	}
	for _, u := range []struct{ key, val string }{
		{key + ".auth_url", a.AuthURL}, {key + ".token_url", a.TokenURL},
		{key + ".device_auth_url", a.DeviceAuthURL}, {key + ".redirect_url", a.RedirectURL},
	} {
		if u.val == "" {
			continue
		}
		if p, err := url.Parse(u.val); err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			v.problem(u.key, "%q is not an http(s) URL", clip(u.val))
		}
	}
	v.positive(key+".refresh_before", int64(a.RefreshBefore))
}

func (v *validator) retry(r *Retry, key string) {
	v.positive(key+".first", int64(r.First))
	if r.Multiplier < 1 || r.Multiplier > 100 || r.Multiplier != r.Multiplier {
		v.problem(key+".multiplier", "must be between 1 and 100")
	}
	if r.Max < r.First {
		v.problem(key+".max", "must not be shorter than retry.first")
	}
	if r.Jitter < 0 || r.Jitter > 1 || r.Jitter != r.Jitter {
		v.problem(key+".jitter", "must be between 0 and 1")
	}
	v.positive(key+".lifetime", int64(r.Lifetime))
}

// checkHostPort validates a listen address host:port (port 0 = any free
// port, handy in tests).
func checkHostPort(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Sprintf("%q is not host:port, e.g. 127.0.0.1:2525 or [::1]:2525", clip(s))
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Sprintf("port %q is out of range 0-65535", clip(port))
	}
	if strings.ContainsAny(host, " \t\r\n/") {
		return fmt.Sprintf("%q is not a host", clip(host))
	}
	return ""
}

// validAddress accepts a bare addr-spec (no display name, no brackets).
func validAddress(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Name == "" && a.Address == s && strings.Contains(s, "@")
}

// validDomain accepts a DNS name of letters, digits and hyphens.
func validDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// validTenant accepts a GUID, a domain, or the special common/organizations.
func validTenant(s string) bool { return validDomain(s) }

// validName is the account name charset: it appears in metric labels,
// file names and URLs.
func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return s != "" && len(s) <= 64
}
