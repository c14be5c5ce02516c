package configs

import (
	"fmt"
	"strings"

	"github.com/spoold/spoold/configs/field"
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
		if reason := field.HostPort(c.HTTP.Listen); reason != "" {
			v.problem("http.listen", "%s", reason)
		}
	}
	v.httpSection(&c.HTTP)
	// sun_path is 108 bytes on Linux including the terminating NUL.
	if len(c.Admin.Socket) > 107 {
		v.problem("admin.socket", "socket path is %d bytes, longer than the 107 a unix socket allows: use a shorter data_dir or set admin.socket", len(c.Admin.Socket))
	}

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

	for i := range c.SMTPListeners {
		v.listener(&c.SMTPListeners[i], fmt.Sprintf("smtp_listeners[%d]", i), ref)
	}
	for i := range c.ScanFolders {
		ref(fmt.Sprintf("scan_folders[%d].account", i), c.ScanFolders[i].Account)
	}
	for i := range c.Accounts {
		v.account(&c.Accounts[i], fmt.Sprintf("accounts[%d]", i))
	}
	v.alerts(&c.Alerts, ref)
	v.resolveSecret(&c.Spool.DSN, c.Spool.DSNFile, "spool.dsn", "spool.dsn_file")

	if c.Routes.Default == "" {
		v.problem("routes.default", "required: the account for mail no other route matches")
	} else {
		ref("routes.default", c.Routes.Default)
	}
	for dom, acc := range sortedMap(c.Routes.SenderDomains) {
		key := "routes.sender_domains." + dom
		if !field.ValidDomain(dom) {
			v.problem(key, "%q is not a domain name", field.Clip(dom))
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

// listener resolves the AUTH users' password hashes and checks the
// references to accounts; smtpd validates everything else about a listener.
func (v *validator) listener(l *SMTPListener, key string, ref func(string, string)) {
	for i := range l.Users {
		u := &l.Users[i]
		ukey := fmt.Sprintf("%s.users[%d]", key, i)
		v.resolveSecret(&u.PasswordHash, u.PasswordHashFile, ukey+".password_hash", ukey+".password_hash_file")
		ref(ukey+".account", u.Account)
	}
	ref(key+".account", l.Account)
}

// account checks the name (it names files, metric labels and URLs) and
// resolves the account's secrets; auth and delivery validate the rest.
func (v *validator) account(a *Account, key string) {
	if a.Name == "" {
		v.problem(key+".name", "required: every account needs a name")
	} else if !validName(a.Name) {
		v.problem(key+".name", "%q: use letters, digits, '.', '_' and '-' only", field.Clip(a.Name))
	}
	v.resolveSecret(&a.ClientSecret, a.ClientSecretFile, key+".client_secret", key+".client_secret_file")
	v.resolveSecret(&a.Password, a.PasswordFile, key+".password", key+".password_file")
}

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
