package console

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/spoold/spoold/configs/field"
	"github.com/spoold/spoold/configs/secret"
)

// User is a console login; PasswordHash is a bcrypt hash.
type User struct {
	Name         string
	PasswordHash secret.Secret
}

// Options configures the console and the HTTP listener it is served on.
// Validate's keys are those of the config's http section.
type Options struct {
	// Listen is the HTTP listener's address: a listener beyond loopback
	// needs TLS and users.
	Listen string
	// Enabled serves the console at /; nil means the default, true.
	Enabled *bool
	// TLS serves HTTPS; without CertFile/KeyFile the daemon uses its
	// persisted self-signed certificate.
	TLS               bool
	CertFile, KeyFile string
	Users             []User
	// MetricsToken, if set, is the bearer token /metrics requires from a
	// client that is not on loopback.
	MetricsToken secret.Secret

	// Not from the config.
	SessionTTL time.Duration    // default 12h
	Logger     *slog.Logger     // default slog.Default()
	Clock      func() time.Time // default time.Now
	// LoginEvery and LoginBurst throttle login attempts per client address;
	// a user name gets UserBurst attempts, one more each UserEvery.
	LoginEvery, UserEvery time.Duration // defaults 12s, 1m
	LoginBurst, UserBurst int           // defaults 5, 10
}

// WithDefaults fills the zero fields.
func (o Options) WithDefaults() Options {
	if o.Enabled == nil {
		on := true
		o.Enabled = &on
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.LoginEvery <= 0 {
		o.LoginEvery = 12 * time.Second
	}
	if o.UserEvery <= 0 {
		o.UserEvery = time.Minute
	}
	if o.LoginBurst <= 0 {
		o.LoginBurst = 5
	}
	if o.UserBurst <= 0 {
		o.UserBurst = 10
	}
	return o
}

// On reports whether the console is served.
func (o Options) On() bool { return o.Enabled == nil || *o.Enabled }

// Loopback reports whether listen (host:port) only accepts connections from
// this host: a loopback IP or "localhost". An empty host (all interfaces)
// or any other name is not loopback.
func Loopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// LoginRequired reports whether the console asks for a login: always
// beyond loopback, and on loopback when users are configured (then the
// admin chose to keep other local users out).
func (o Options) LoginRequired() bool { return !Loopback(o.Listen) || len(o.Users) > 0 }

// Validate checks the options; keys are relative to the config's http
// section.
func (o Options) Validate() field.Problems {
	var ps field.Problems
	if o.CertFile != "" || o.KeyFile != "" {
		switch {
		case !o.TLS:
			ps.Add("tls", "cert_file and key_file are only used with tls: true")
		case o.CertFile == "":
			ps.Add("cert_file", "key_file is set but cert_file is not: set both, or neither for a self-signed certificate")
		case o.KeyFile == "":
			ps.Add("key_file", "cert_file is set but key_file is not: set both, or neither for a self-signed certificate")
		default:
			if r := field.ReadableFile(o.CertFile); r != "" {
				ps.Add("cert_file", "%s", r)
			}
			if r := field.PrivateFile(o.KeyFile); r != "" {
				ps.Add("key_file", "%s", r)
			}
		}
	}
	seen := map[string]bool{}
	for i, u := range o.Users {
		key := field.Index("console_users", i)
		switch {
		case u.Name == "":
			ps.Add(key+".name", "required: the name the admin signs in with")
		case len(u.Name) > 64:
			ps.Add(key+".name", "longer than 64 characters")
		case seen[u.Name]:
			ps.Add(key+".name", "duplicate console user %q", field.Clip(u.Name))
		}
		seen[u.Name] = true
		if u.PasswordHash == "" {
			ps.Add(key+".password_hash", "required: a bcrypt hash from `spoolctl hash-password` (or password_hash_file)")
		} else if _, err := bcrypt.Cost([]byte(u.PasswordHash.Reveal())); err != nil {
			ps.Add(key+".password_hash", "not a bcrypt hash: make one with `spoolctl hash-password`")
		}
	}
	_, _, listenErr := net.SplitHostPort(o.Listen) // a bad address is http.listen's problem
	if o.On() && o.Listen != "" && listenErr == nil && !Loopback(o.Listen) {
		if !o.TLS {
			ps.Add("tls", "the web console listens beyond loopback (%s): set tls: true (with cert_file and key_file, or a self-signed certificate), or console: false, or listen on 127.0.0.1", o.Listen)
		}
		if len(o.Users) == 0 {
			ps.Add("console_users", "the web console listens beyond loopback (%s): add console_users (a name and a bcrypt hash from `spoolctl hash-password`), or set console: false", o.Listen)
		}
	}
	return ps
}

// String describes the console's access for the start-up log.
func (o Options) String() string {
	if !o.On() {
		return "off"
	}
	scheme := "http"
	if o.TLS {
		scheme = "https"
	}
	login := "no login (loopback)"
	if o.LoginRequired() {
		login = fmt.Sprintf("login (%d users)", len(o.Users))
	}
	return scheme + ", " + login
}
