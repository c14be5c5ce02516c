package smtpd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
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
	PasswordHash string // bcrypt, see HashPassword
	Account      string // optional: route this user's mail to this account
}

// ListenerConfig configures one SMTP listener. Zero values take the defaults
// noted; New validates everything.
type ListenerConfig struct {
	Name     string // unique; used in logs, metrics and Source.Listener
	Addr     string // host:port
	Hostname string // greeting and Received: header; default os.Hostname()

	TLS               TLSMode // default none
	CertFile, KeyFile string  // both or neither; neither = self-signed cert in Options.DataDir
	MinTLSVersion     uint16  // tls.VersionTLS10..13; default TLS 1.2; below 1.2 is logged as a warning

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

// normalize fills defaults and validates one listener config.
func (c ListenerConfig) normalize(dataDir string) (ListenerConfig, error) {
	if c.Name == "" {
		return c, errors.New("smtpd: listener without a name")
	}
	fail := func(format string, a ...any) (ListenerConfig, error) {
		return c, fmt.Errorf("smtpd: listener %q: "+format, append([]any{c.Name}, a...)...)
	}
	if c.Addr == "" {
		return fail("addr is required")
	}
	if c.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		c.Hostname = h
	}
	if strings.ContainsAny(c.Hostname, " \t\r\n") {
		return fail("hostname %q contains white space", c.Hostname)
	}
	switch c.TLS {
	case "":
		c.TLS = TLSNone
	case TLSNone, TLSStartTLS, TLSImplicit:
	default:
		return fail("tls mode %q is not one of none, starttls, implicit", c.TLS)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fail("cert_file and key_file must be set together")
	}
	if c.TLS == TLSNone && c.CertFile != "" {
		return fail("cert_file is set but tls is none")
	}
	if c.TLS != TLSNone && c.CertFile == "" && dataDir == "" {
		return fail("tls %s without cert_file needs a data dir for the self-signed certificate", c.TLS)
	}
	switch {
	case c.MinTLSVersion == 0:
		c.MinTLSVersion = tls.VersionTLS12
	case c.MinTLSVersion < tls.VersionTLS10 || c.MinTLSVersion > tls.VersionTLS13:
		return fail("min tls version %#04x is not between TLS 1.0 and TLS 1.3", c.MinTLSVersion)
	}
	if c.Legacy && len(c.AllowedNetworks) == 0 {
		return fail("legacy (AUTH without TLS) is only allowed together with allowed networks")
	}
	for _, p := range c.AllowedNetworks {
		if !p.IsValid() {
			return fail("invalid allowed network %v", p)
		}
	}
	if err := checkUsers(c.Users); err != nil {
		return fail("%w", err)
	}
	if err := c.checkAccess(c.Users); err != nil {
		return fail("%w", err)
	}
	var err error
	if c.AllowedSenderDomains, err = normDomains(c.AllowedSenderDomains); err != nil {
		return fail("allowed sender domains: %w", err)
	}
	if c.AllowedRecipientDomains, err = normDomains(c.AllowedRecipientDomains); err != nil {
		return fail("allowed recipient domains: %w", err)
	}
	type intDefault struct {
		v   *int
		def int
		nm  string
	}
	for _, d := range []intDefault{
		{&c.MaxRecipients, defaultMaxRecipients, "max recipients"},
		{&c.MaxConnections, defaultMaxConns, "max connections"},
		{&c.MaxConnectionsPerIP, defaultMaxConnsPerIP, "max connections per ip"},
		{&c.MaxLineLength, defaultMaxLineLength, "max line length"},
		{&c.AuthFailureLimit, defaultAuthFailLimit, "auth failure limit"},
	} {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v < 0:
			return fail("%s must not be negative", d.nm)
		}
	}
	if c.MaxLineLength < minLineLength {
		return fail("max line length %d is below the RFC 5321 minimum of %d", c.MaxLineLength, minLineLength)
	}
	switch {
	case c.MaxMessageSize == 0:
		c.MaxMessageSize = defaultMaxMessageSize
	case c.MaxMessageSize < 0:
		return fail("max message size must not be negative")
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
	for _, d := range []*time.Duration{&c.ReadTimeout, &c.WriteTimeout, &c.AuthFailureWindow, &c.DataRateGrace, &c.StressTimeout} {
		if *d < 0 {
			return fail("timeouts and windows must not be negative")
		}
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
	if c.DataRateGrace == 0 {
		// As Postfix's smtpd_min_data_rate starts from smtpd_timeout: a
		// device may pause as long as it always could before the rate
		// starts to count.
		c.DataRateGrace = c.ReadTimeout
	}
	switch {
	case c.StressThreshold == 0:
		c.StressThreshold = max(c.MaxConnections*8/10, 1)
	case c.StressThreshold < 0:
		c.StressThreshold = -1 // off
	case c.StressThreshold > c.MaxConnections:
		return fail("stress threshold %d is above max connections %d: stress mode could never start",
			c.StressThreshold, c.MaxConnections)
	}
	switch {
	case c.StressTimeout == 0:
		c.StressTimeout = min(defaultStressTimeout, c.ReadTimeout)
	case c.StressTimeout > c.ReadTimeout:
		return fail("stress timeout %v is longer than read timeout %v", c.StressTimeout, c.ReadTimeout)
	}
	switch c.BareLF {
	case "":
		c.BareLF = BareLFReject
	case BareLFReject, BareLFNormalize:
	default:
		return fail("bare_lf policy %q is not reject or normalize", c.BareLF)
	}
	return c, nil
}

// checkAccess enforces "never an open relay" and that configured users can
// actually authenticate.
func (c ListenerConfig) checkAccess(users []User) error {
	if len(c.AllowedNetworks) == 0 && len(users) == 0 {
		return errors.New("neither allowed networks nor users: refusing to run an open relay")
	}
	if c.RequireAuth && len(users) == 0 {
		return errors.New("require_auth without users: nobody could send")
	}
	if len(users) > 0 && c.TLS == TLSNone && !c.Legacy {
		return errors.New("users without TLS: AUTH is only offered after TLS unless the listener is legacy")
	}
	return nil
}

func checkUsers(users []User) error {
	seen := make(map[string]bool, len(users))
	for _, u := range users {
		if u.Name == "" {
			return errors.New("user without a name")
		}
		if seen[u.Name] {
			return fmt.Errorf("user %q listed twice", u.Name)
		}
		seen[u.Name] = true
		if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			// The hash itself is not secret-free enough to print; the name is.
			return fmt.Errorf("user %q: password hash is not a bcrypt hash: %w", u.Name, err)
		}
	}
	return nil
}

func normDomains(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, d := range in {
		d = strings.ToLower(strings.TrimSpace(d))
		if err := checkDomain(d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// HashPassword returns a bcrypt hash of pw for User.PasswordHash.
func HashPassword(pw string) (string, error) {
	if pw == "" {
		return "", errors.New("smtpd: hashing password: empty password")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("smtpd: hashing password: %w", err)
	}
	return string(h), nil
}
