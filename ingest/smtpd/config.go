package smtpd

import (
	"crypto/tls"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/spoold/spoold/configs/field"
)

// TLSMode says how a listener offers TLS.
type TLSMode string

const (
	TLSNone     TLSMode = "none"     // plain SMTP only
	TLSStartTLS TLSMode = "starttls" // plain SMTP with STARTTLS (port 587 style)
	TLSImplicit TLSMode = "implicit" // TLS from the first byte (port 465 style)
)

// BareLFPolicy says what a listener does with a bare LF (or bare CR) in DATA.
type BareLFPolicy string

const (
	// BareLFReject refuses the message (550 5.6.11). The default: a bare-LF
	// body is either an SMTP smuggling attempt or a broken device, and
	// Exchange Online would reject it later anyway, after we had said 250.
	BareLFReject BareLFPolicy = "reject"
	// BareLFNormalize rewrites bare LF and bare CR to CRLF, for legacy devices.
	BareLFNormalize BareLFPolicy = "normalize"
)

// User is one SMTP AUTH user of a listener.
type User struct {
	Name         string
	PasswordHash string // bcrypt ($2a$, $2b$ or $2y$; spoolctl hash-password makes one)
	Account      string // optional: route this user's mail to this account
}

// ListenerConfig configures one SMTP listener. Zero values take the defaults
// noted (WithDefaults); Validate reports problems under the YAML key names of
// smtp_listeners[] (Addr is "listen"). New applies both.
type ListenerConfig struct {
	Name     string // unique; used in logs, metrics and Source.Listener
	Addr     string // host:port
	Hostname string // greeting and Received: header; default os.Hostname()

	TLS               TLSMode // default none
	CertFile, KeyFile string  // both or neither; neither = self-signed cert in Options.DataDir
	MinTLSVersion     uint16  // tls.VersionTLS10..13; default TLS 1.2 unless TLS is none (then it must stay 0); below 1.2 is logged as a warning

	AllowedNetworks []netip.Prefix // clients here may send without AUTH (unless RequireAuth)
	Users           []User
	Legacy          bool // AUTH without TLS for clients in AllowedNetworks (needs AllowedNetworks)
	RequireAuth     bool // every client must authenticate, even from AllowedNetworks

	AllowedSenderDomains    []string // empty = any
	AllowedRecipientDomains []string // empty = any

	MaxMessageSize      int64         // bytes; default 35 MB (35·10⁶)
	MaxRecipients       int           // default 100
	ReadTimeout         time.Duration // per command and per DATA read; default 5m
	WriteTimeout        time.Duration // default 1m
	MaxConnections      int           // default 200
	MaxConnectionsPerIP int           // default 20
	MaxLineLength       int           // default 4000 (RFC 5321 allows 1000; old devices send longer)

	// DataMinRate is the lowest average rate, in bytes per second, at which
	// a client may send DATA or BDAT once DataRateGrace is used up: each
	// read may wait only for the credit left, which is DataRateGrace plus
	// one second per DataMinRate bytes received, minus the time spent
	// waiting for the client. Without it a client sending a byte just
	// inside ReadTimeout would hold its slot for as long as it likes (the
	// read deadline is renewed on every read). With it no transfer takes
	// longer than DataRateGrace + MaxMessageSize/DataMinRate of waiting on
	// the client. Default 4096 (32 kbit/s: an MFD on 10 Mbit/s sends at
	// hundreds of KiB/s); negative turns the check off.
	DataMinRate   int64
	DataRateGrace time.Duration // credit at the start of DATA; default ReadTimeout

	// StressThreshold is the connection count at which the listener goes
	// into stress mode (as Postfix's stress mode): while it is reached,
	// sessions waiting for a command get StressTimeout instead of
	// ReadTimeout, so idle connections cannot hold every slot and a real
	// client gets in. Default 80% of MaxConnections (at least 1); negative
	// turns stress mode off. Stress mode ends once the count is below 3/4 of
	// the threshold. Entering and leaving it is logged.
	StressThreshold int
	StressTimeout   time.Duration // default 10s; at most ReadTimeout

	// JunkCommandLimit is how many NOOP, RSET, VRFY, HELP and EXPN commands
	// a session may send (Postfix's smtpd_junk_command_limit): past it the
	// client gets 421 4.7.0 and is disconnected, so one connection cannot
	// be kept busy for ever. Default 100; an accepted message starts the
	// count afresh; negative turns the limit off.
	JunkCommandLimit int
	// HardErrorLimit is how many refused commands (bad addresses, domains
	// not allowed, failed AUTH, refused messages) a session may collect
	// without getting a message accepted (Postfix's smtpd_hard_error_limit):
	// the next command gets 421 4.7.0 and the client is disconnected.
	// Default 20; negative turns the limit off.
	HardErrorLimit int

	BareLF BareLFPolicy // default reject

	AuthFailureLimit  int           // failures per IP within the window before 421 and disconnect; default 5
	AuthFailureWindow time.Duration // default 5m

	Account string // route: mail on this listener goes to this account unless a user route applies
}

// Routes maps messages to upstream accounts: user route > sender-domain route >
// listener account > Default.
type Routes struct {
	ByUser         map[string]string // AUTH user -> account
	BySenderDomain map[string]string // envelope sender domain -> account
	Default        string
	// AccountMaxSize is each account's upstream message size limit; the
	// effective limit of a message is min(listener, account).
	AccountMaxSize map[string]int64
}

const (
	defaultMaxMessageSize = 35 * 1000 * 1000 // the 35 MB Microsoft 365 and Gmail accept
	defaultMaxRecipients  = 100
	defaultReadTimeout    = 5 * time.Minute
	defaultWriteTimeout   = time.Minute
	defaultMaxConns       = 200
	defaultMaxConnsPerIP  = 20
	defaultMaxLineLength  = 4000
	minLineLength         = 1000 // RFC 5321 section 4.5.3.1.6
	defaultAuthFailLimit  = 5
	defaultAuthFailWindow = 5 * time.Minute
	defaultDataMinRate    = 4096
	defaultJunkLimit      = 100
	defaultStressTimeout  = 10 * time.Second
	defaultHardErrorLimit = 20
)

// WithDefaults returns c with every zero field set to its default (noted on
// the field) and the "off" values (any negative DataMinRate,
// JunkCommandLimit, HardErrorLimit, StressThreshold) set to -1. Domains are
// trimmed and lower-cased. It never fails and is idempotent; Validate judges
// the result.
func (c ListenerConfig) WithDefaults() ListenerConfig {
	if c.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		c.Hostname = h
	}
	if c.TLS == "" {
		c.TLS = TLSNone
	}
	// A plain listener keeps 0, so Validate can tell a min_tls_version that
	// was set (and would have no effect) from a default.
	if c.MinTLSVersion == 0 && c.TLS != TLSNone {
		c.MinTLSVersion = tls.VersionTLS12
	}
	if c.BareLF == "" {
		c.BareLF = BareLFReject
	}
	c.AllowedSenderDomains = lowerDomains(c.AllowedSenderDomains)
	c.AllowedRecipientDomains = lowerDomains(c.AllowedRecipientDomains)
	for _, d := range []struct {
		v   *int
		def int
	}{
		{&c.MaxRecipients, defaultMaxRecipients},
		{&c.MaxConnections, defaultMaxConns},
		{&c.MaxConnectionsPerIP, defaultMaxConnsPerIP},
		{&c.MaxLineLength, defaultMaxLineLength},
		{&c.AuthFailureLimit, defaultAuthFailLimit},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = defaultMaxMessageSize
	}
	for _, d := range []struct {
		v   *int
		def int
	}{{&c.JunkCommandLimit, defaultJunkLimit}, {&c.HardErrorLimit, defaultHardErrorLimit}} {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v < 0:
			*d.v = -1 // off
		}
	}
	switch {
	case c.DataMinRate == 0:
		c.DataMinRate = defaultDataMinRate
	case c.DataMinRate < 0:
		c.DataMinRate = -1 // off
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = defaultReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = defaultWriteTimeout
	}
	if c.AuthFailureWindow == 0 {
		c.AuthFailureWindow = defaultAuthFailWindow
	}
	// The defaults derived from ReadTimeout and MaxConnections are only
	// derived from valid values: Validate reports the bad base once, not
	// again through what was derived from it.
	if c.DataRateGrace == 0 && c.ReadTimeout > 0 {
		// As Postfix's smtpd_min_data_rate starts from smtpd_timeout: a
		// device may pause as long as it always could before the rate
		// starts to count.
		c.DataRateGrace = c.ReadTimeout
	}
	switch {
	case c.StressThreshold == 0 && c.MaxConnections > 0:
		c.StressThreshold = max(c.MaxConnections*8/10, 1)
	case c.StressThreshold < 0:
		c.StressThreshold = -1 // off
	}
	if c.StressTimeout == 0 {
		c.StressTimeout = defaultStressTimeout
		if c.ReadTimeout > 0 {
			c.StressTimeout = min(defaultStressTimeout, c.ReadTimeout)
		}
	}
	return c
}

// Validate reports every problem of c with its defaults filled (as New
// runs it), as field.Problems keyed by the YAML names of
// smtp_listeners[] ("listen" for Addr, "users[1].name", "" for the
// listener as a whole). It checks that cert_file and key_file can be read
// but not that they hold a key pair (ValidateListeners does), and not what
// needs the data dir. Whether Account names a configured account is the
// caller's check.
func (c ListenerConfig) Validate() error {
	return c.WithDefaults().problems().Err()
}

// problems validates a config that has its defaults filled.
func (c ListenerConfig) problems() field.Problems {
	var ps field.Problems
	if strings.TrimSpace(c.Name) == "" {
		ps.Add("name", "required: every listener needs a name")
	}
	if c.Addr == "" {
		ps.Add("listen", "required: host:port to listen on, e.g. 127.0.0.1:2525")
	} else if reason := field.HostPort(c.Addr); reason != "" {
		ps.Add("listen", "%s", reason)
	}
	if strings.ContainsAny(c.Hostname, " \t\r\n") {
		ps.Add("hostname", "%q contains white space", field.Clip(c.Hostname))
	}
	switch c.TLS {
	case TLSNone, TLSStartTLS, TLSImplicit:
	default:
		ps.Add("tls", "tls mode %q is not one of none, starttls, implicit", field.Clip(string(c.TLS)))
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		if c.CertFile == "" {
			ps.Add("cert_file", "key_file is set without cert_file: set both, or neither for a self-signed certificate")
		} else {
			ps.Add("key_file", "cert_file is set without key_file: set both, or neither for a self-signed certificate")
		}
	}
	if c.TLS == TLSNone && (c.CertFile != "" || c.KeyFile != "") {
		ps.Add("tls", "cert_file/key_file are set but tls is none: set tls to starttls or implicit")
	}
	for _, f := range []struct{ key, path string }{{"cert_file", c.CertFile}, {"key_file", c.KeyFile}} {
		if f.path == "" {
			continue
		}
		if r := field.ReadableFile(f.path); r != "" {
			ps.Add(f.key, "%s", r)
		}
	}
	switch {
	case c.TLS == TLSNone && c.MinTLSVersion != 0:
		ps.Add("min_tls_version", "has no effect because tls is none: remove it, or set tls to starttls or implicit")
	case c.TLS == TLSNone:
	case c.MinTLSVersion < tls.VersionTLS10 || c.MinTLSVersion > tls.VersionTLS13:
		ps.Add("min_tls_version", "min tls version %#04x is not between TLS 1.0 and TLS 1.3", c.MinTLSVersion)
	}
	if c.Legacy && len(c.AllowedNetworks) == 0 {
		ps.Add("legacy", "legacy (AUTH without TLS) requires allowed_networks to restrict who may use it")
	}
	for i, p := range c.AllowedNetworks {
		if !p.IsValid() {
			ps.Add(field.Index("allowed_networks", i), "invalid network %v", p)
		}
	}
	c.accessProblems(&ps, c.Users)
	userProblems(&ps, c.Users)
	for _, l := range []struct {
		key  string
		doms []string
	}{{"allowed_sender_domains", c.AllowedSenderDomains}, {"allowed_recipient_domains", c.AllowedRecipientDomains}} {
		for i, d := range l.doms {
			if checkDomain(d) != nil {
				ps.Add(field.Index(l.key, i), "%q is not a domain name", field.Clip(d))
			}
		}
	}
	for _, n := range []struct {
		key string
		v   int64
	}{
		{"max_message_size", c.MaxMessageSize},
		{"max_recipients", int64(c.MaxRecipients)},
		{"read_timeout", int64(c.ReadTimeout)},
		{"write_timeout", int64(c.WriteTimeout)},
		{"max_connections", int64(c.MaxConnections)},
		{"max_connections_per_ip", int64(c.MaxConnectionsPerIP)},
		{"auth_failure_limit", int64(c.AuthFailureLimit)},
		{"auth_failure_window", int64(c.AuthFailureWindow)},
		{"data_rate_grace", int64(c.DataRateGrace)},
		{"stress_timeout", int64(c.StressTimeout)},
	} {
		if n.v < 0 {
			ps.Add(n.key, "must not be negative")
		}
	}
	if c.MaxLineLength < minLineLength {
		ps.Add("max_line_length", "must be at least %d (RFC 5321)", minLineLength)
	}
	if c.MaxConnections > 0 && c.StressThreshold > c.MaxConnections {
		ps.Add("stress_threshold", "stress threshold %d is above max connections %d: stress mode could never start",
			c.StressThreshold, c.MaxConnections)
	}
	if c.ReadTimeout > 0 && c.StressTimeout > c.ReadTimeout {
		ps.Add("stress_timeout", "stress timeout %v is longer than read timeout %v", c.StressTimeout, c.ReadTimeout)
	}
	switch c.BareLF {
	case BareLFReject, BareLFNormalize:
	default:
		ps.Add("bare_lf", "bare_lf policy %q is not reject or normalize", field.Clip(string(c.BareLF)))
	}
	return ps
}

// accessProblems enforces "never an open relay" and that configured users
// can actually authenticate; users is passed separately for SetUsers.
func (c ListenerConfig) accessProblems(ps *field.Problems, users []User) {
	if len(c.AllowedNetworks) == 0 && len(users) == 0 {
		ps.Add("", "neither allowed_networks nor users is set: this listener would be an open relay")
	}
	if c.RequireAuth && len(users) == 0 {
		ps.Add("require_auth", "require_auth is set but there are no users")
	}
	if len(users) > 0 && c.TLS == TLSNone && !c.Legacy {
		ps.Add("tls", "users without TLS: AUTH is only offered after TLS unless the listener is legacy")
	}
}

// userProblems checks names and password hashes, keyed users[i].
func userProblems(ps *field.Problems, users []User) {
	seen := make(map[string]bool, len(users))
	for i, u := range users {
		key := field.Index("users", i)
		switch {
		case strings.TrimSpace(u.Name) == "":
			ps.Add(key+".name", "required: every user needs a name")
		case seen[u.Name]:
			ps.Add(key+".name", "duplicate user name %q", field.Clip(u.Name))
		}
		seen[u.Name] = true
		// The hash itself is not secret-free enough to print; the name is.
		if u.PasswordHash == "" {
			ps.Add(key+".password_hash", "required: a bcrypt hash (spoolctl hash-password or htpasswd -nbB) or password_hash_file")
		} else if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			ps.Add(key+".password_hash", "not a bcrypt hash: want $2a$, $2b$ or $2y$ followed by cost and salt")
		}
	}
}

// lowerDomains trims and lower-cases domains (a new slice: the caller's is
// not touched).
func lowerDomains(in []string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, d := range in {
		out[i] = strings.ToLower(strings.TrimSpace(d))
	}
	return out
}
