package delivery

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/mail"
	"os"
	"strings"
	"time"

	"github.com/spoold/spoold/configs/field"
	"github.com/spoold/spoold/configs/secret"
)

// AccountConfig is one upstream account (route). Zero fields take the
// defaults noted (WithDefaults); Validate says what is wrong with the rest,
// keyed by the account's YAML names. Provider limits (Microsoft's 3
// connections and 30 messages a minute) are not delivery's: they come from
// auth's provider preset, which the daemon puts into MaxConnections and
// RatePerMinute.
type AccountConfig struct {
	Name      string
	Transport string // "smtp" (default), "graph" or "file"

	// Graph transport (graphtransport.go). CAFile, when set, holds the
	// roots its TLS trusts.
	GraphEndpoint string // Graph root without the version; default DefaultGraphEndpoint
	// GraphSendMailOnly turns the draft path off: messages too large for
	// one sendMail request are dead-lettered instead of sent as a draft
	// with uploaded attachments (which needs Mail.ReadWrite).
	GraphSendMailOnly bool

	// SMTP transport.
	Host       string
	Port       int           // default 587 (starttls), 465 (implicit), 25 (none)
	TLS        string        // "starttls" (default), "implicit", or "none" (internal relay only)
	CAFile     string        // PEM roots for an internal relay with its own CA; default system roots
	ServerName string        // certificate name to verify; default Host
	Auth       string        // "xoauth2", "plain", "login" or "none"; default plain with a Password, else none
	Username   string        // SASL user; default Mailbox
	Password   secret.Secret // plain/login; never printed or logged

	Mailbox    string // the account mailbox: envelope sender and From address under "rewrite"
	SenderRule string // "rewrite" (default with a Mailbox) or "keep" (default without)

	MaxConnections           int     // default 10 (smtp) or 4 (file)
	RatePerMinute            float64 // messages a minute; 0 = default (unlimited); -1 = unlimited
	MaxMessagesPerConnection int     // default 50
	MaxMessageSize           int64   // 0 = no local limit; larger messages are dead-lettered before dialing

	// NotifyOnFailure is the account's failure-notice policy: "" (default:
	// messages that asked for one and the sources in Options.NoticeForSources),
	// "always" (every dead-lettered message) or "never".
	NotifyOnFailure string

	// File transport.
	Dir string // writes <id>.eml atomically

	Retry RetryPolicy

	// IdleTimeout keeps a connection open this long after its last message
	// in case more mail comes (a trickle of scans then pays no new TLS
	// handshake and AUTH per message); 0 = the engine's Options.IdleTimeout.
	// The daemon sets it from auth's provider preset.
	IdleTimeout time.Duration

	// DailyRecipientLimit is how many recipients the account may send to
	// in a rolling 24 hours (budget.go): past it the account's mail waits
	// instead of being refused by the provider. 0 or -1: no limit here; the
	// daemon puts auth's provider preset (Microsoft 10,000, Google 2,000)
	// in its place unless the configuration says -1.
	DailyRecipientLimit int

	// Fallback names another account that sends this account's mail while
	// this one has been held (a budget, a blocked reply, a login) for
	// FallbackAfter; "" = none. The fallback's own limits, holds and
	// budget apply; it is not chained further.
	Fallback      string
	FallbackAfter time.Duration // default 30m

	ConnectTimeout time.Duration // dial, TLS, greeting, EHLO and AUTH together; default 30s
	CommandTimeout time.Duration // per command reply; default 2m
	DataTimeout    time.Duration // body transfer and the reply after the final dot; default 10m
}

// Account defaults that do not come from a provider preset.
const (
	defaultSMTPConnections   = 10
	defaultFileConnections   = 4
	defaultGraphConnections  = 4 // Graph's concurrent requests per mailbox (throttling-limits)
	defaultMessagesPerConn   = 50
	defaultConnectTimeout    = 30 * time.Second
	defaultCommandTimeout    = 2 * time.Minute
	defaultDataTimeout       = 10 * time.Minute
	unlimitedRate            = -1.0
	maxRatePerMinute         = 1e6 // beyond this a limiter is meaningless; catches unit mistakes
	maxMessagesPerConnection = 100000
	tlsSessionCacheSize      = 16 // sessions kept per account (one upstream host; a few for its load balancers)
	defaultFallbackAfter     = 30 * time.Minute
	noRecipientLimit         = -1
)

// String never shows the password.
func (a AccountConfig) String() string {
	return fmt.Sprintf("account %s (%s %s:%d auth=%s mailbox=%s)", a.Name, a.Transport, a.Host, a.Port, a.Auth, a.Mailbox)
}

// LogValue keeps the password out of structured logs.
func (a AccountConfig) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", a.Name), slog.String("transport", a.Transport),
		slog.String("host", a.Host), slog.Int("port", a.Port), slog.String("auth", a.Auth),
		slog.String("mailbox", a.Mailbox), slog.Bool("password_set", a.Password != ""))
}

// WithDefaults returns a with every zero field set to its default and the
// enumerations lower-cased. It is idempotent and never fails: values that
// are out of range are left for Validate to report. SMTP-only fields stay
// empty for a file account.
func (a AccountConfig) WithDefaults() AccountConfig {
	a.Transport = strings.ToLower(a.Transport)
	if a.Transport == "" {
		a.Transport = "smtp"
	}
	a.SenderRule = strings.ToLower(a.SenderRule)
	if a.SenderRule == "" {
		// The sender rule needs the account's mailbox; without one (a
		// plain relay or a file outbox) messages go as received.
		a.SenderRule = "rewrite"
		if a.Mailbox == "" {
			a.SenderRule = "keep"
		}
	}
	if a.MaxMessagesPerConnection == 0 {
		a.MaxMessagesPerConnection = defaultMessagesPerConn
	}
	if a.RatePerMinute == 0 {
		a.RatePerMinute = unlimitedRate
	}
	if a.ConnectTimeout == 0 {
		a.ConnectTimeout = defaultConnectTimeout
	}
	if a.CommandTimeout == 0 {
		a.CommandTimeout = defaultCommandTimeout
	}
	if a.DataTimeout == 0 {
		a.DataTimeout = defaultDataTimeout
	}
	a.Retry = a.Retry.WithDefaults()
	if a.FallbackAfter == 0 {
		a.FallbackAfter = defaultFallbackAfter
	}
	if a.Transport == "file" {
		if a.MaxConnections == 0 {
			a.MaxConnections = defaultFileConnections
		}
		return a
	}
	if a.Transport == "graph" {
		if a.MaxConnections == 0 {
			a.MaxConnections = defaultGraphConnections
		}
		if a.GraphEndpoint == "" {
			a.GraphEndpoint = DefaultGraphEndpoint
		}
		return a
	}
	if a.MaxConnections == 0 {
		a.MaxConnections = defaultSMTPConnections
	}
	a.TLS = strings.ToLower(a.TLS)
	if a.TLS == "" {
		a.TLS = "starttls"
	}
	a.Auth = strings.ToLower(a.Auth)
	if a.Auth == "" {
		// A password without a mechanism means PLAIN (over TLS) rather
		// than silently not authenticating; xoauth2 is stated by whoever
		// holds the tokens (the daemon, for a provider account).
		a.Auth = "none"
		if a.Password != "" {
			a.Auth = "plain"
		}
	}
	if a.Port == 0 {
		switch a.TLS {
		case "starttls":
			a.Port = 587
		case "implicit":
			a.Port = 465
		case "none":
			a.Port = 25
		}
	}
	if a.Username == "" {
		a.Username = a.Mailbox
	}
	return a
}

// Validate reports what is wrong with the account as it would run (with
// WithDefaults applied), as field.Problems keyed by the account's YAML names
// ("host", "retry.first"). It reads ca_file to check that it holds PEM
// certificates, so that -check refuses what start-up would.
func (a AccountConfig) Validate() error {
	a = a.WithDefaults()
	var ps field.Problems
	if strings.TrimSpace(a.Name) == "" {
		ps.Add("name", "required: every account needs a name")
	}
	switch a.NotifyOnFailure {
	case "", "always", "never":
	default:
		ps.Add("notify_on_failure", "%q: want always, never or empty", a.NotifyOnFailure)
	}
	if a.Mailbox != "" {
		addr, err := mail.ParseAddress(a.Mailbox)
		if err != nil || addr.Name != "" || strings.ContainsAny(a.Mailbox, "<> \t\r\n") {
			ps.Add("mailbox", "%q is not a plain e-mail address", a.Mailbox)
		}
	}
	switch {
	case a.SenderRule != "rewrite" && a.SenderRule != "keep":
		ps.Add("sender_rule", "%q: want rewrite or keep", a.SenderRule)
	case a.SenderRule == "rewrite" && a.Mailbox == "":
		ps.Add("sender_rule", "rewrite needs a mailbox (the address to send as); set mailbox or use keep")
	}
	if a.MaxConnections < 0 {
		ps.Add("max_connections", "%d is negative: want at least 1, or 0 for the default", a.MaxConnections)
	}
	if a.RatePerMinute != unlimitedRate && (a.RatePerMinute < 0 || a.RatePerMinute > maxRatePerMinute || math.IsNaN(a.RatePerMinute)) {
		ps.Add("rate_per_minute", "%v: want a positive rate up to %v, 0 (the default: unlimited) or -1 (unlimited)", a.RatePerMinute, maxRatePerMinute)
	}
	if a.MaxMessagesPerConnection < 0 || a.MaxMessagesPerConnection > maxMessagesPerConnection {
		ps.Add("max_messages_per_connection", "%d: want 1 to %d, or 0 for the default %d", a.MaxMessagesPerConnection,
			maxMessagesPerConnection, defaultMessagesPerConn)
	}
	if a.MaxMessageSize < 0 {
		ps.Add("max_message_size", "%d is negative: want a size in bytes, or 0 for no local limit", a.MaxMessageSize)
	}
	if a.DailyRecipientLimit < noRecipientLimit {
		ps.Add("daily_recipient_limit", "%d: want a number of recipients, 0 for the provider's budget or -1 for no limit", a.DailyRecipientLimit)
	}
	if a.Fallback != "" && a.Fallback == a.Name {
		ps.Add("fallback", "%q is this account: name another account, or leave fallback out", a.Fallback)
	}
	for _, t := range []struct {
		key string
		d   time.Duration
	}{{"connect_timeout", a.ConnectTimeout}, {"command_timeout", a.CommandTimeout}, {"data_timeout", a.DataTimeout},
		{"fallback_after", a.FallbackAfter}} {
		if t.d < 0 {
			ps.Add(t.key, "%s is negative: want a duration, or 0 for the default", t.d)
		}
	}
	ps.MergeErr("retry", a.Retry.Validate())
	switch a.Transport {
	case "file":
		if strings.TrimSpace(a.Dir) == "" {
			ps.Add("dir", "required for the file transport: the directory the .eml files are written to")
		}
		return ps.Err()
	case "graph":
		validateGraph(a, &ps)
		return ps.Err()
	case "smtp":
	default:
		ps.Add("transport", "%q: want smtp, graph or file", a.Transport)
		return ps.Err()
	}
	if a.Host == "" {
		ps.Add("host", "required: the upstream SMTP server")
	} else if strings.ContainsAny(a.Host, " \t\r\n/") {
		ps.Add("host", "%q is not a host name", a.Host)
	}
	if strings.ContainsAny(a.ServerName, " \t\r\n/") {
		ps.Add("server_name", "%q is not a host name", a.ServerName)
	}
	tlsOK := true
	switch a.TLS {
	case "starttls", "implicit", "none":
	default:
		tlsOK = false
		ps.Add("tls", "%q: want starttls, implicit or none", a.TLS)
	}
	if (a.Port < 1 || a.Port > 65535) && (a.Port != 0 || tlsOK) { // no default port for an unknown tls
		ps.Add("port", "%d is out of range 1-65535", a.Port)
	}
	switch a.Auth {
	case "xoauth2":
		if a.Mailbox == "" && a.Username == "" {
			ps.Add("mailbox", "required with auth xoauth2: the mailbox the token is for")
		}
	case "plain", "login":
		if a.Password == "" {
			ps.Add("password", "auth %s needs a password", a.Auth)
		}
		if a.Username == "" {
			ps.Add("username", "auth %s needs a username (or a mailbox to use as one)", a.Auth)
		}
	case "none":
	default:
		ps.Add("auth", "%q: want xoauth2, plain, login or none", a.Auth)
	}
	if a.Auth != "none" && a.TLS == "none" {
		// Credentials never cross the network in clear text.
		ps.Add("tls", "auth %s would send credentials in clear text: use starttls or implicit", a.Auth)
	}
	if a.CAFile != "" && tlsOK && a.TLS != "none" {
		if _, err := loadCAFile(a.CAFile); err != nil {
			ps.Add("ca_file", "%v", err)
		}
	}
	return ps.Err()
}

// tlsConfig builds the account's TLS settings, loading ca_file; nil for
// tls none. a has its defaults and passed Validate. The engine calls it at
// start and reload, so a CA file replaced on disk is read again then.
func (a AccountConfig) tlsConfig() (*tls.Config, error) {
	if a.Transport != "smtp" || a.TLS == "none" {
		return nil, nil
	}
	// The session cache lets the next connection resume the TLS session
	// (an abbreviated handshake: no certificate chain, one round trip
	// fewer in TLS 1.2) instead of a full handshake per connection.
	tc := &tls.Config{ServerName: a.ServerName, MinVersion: tls.VersionTLS12,
		ClientSessionCache: tls.NewLRUClientSessionCache(tlsSessionCacheSize)}
	if tc.ServerName == "" {
		tc.ServerName = a.Host
	}
	if a.CAFile != "" {
		pool, err := loadCAFile(a.CAFile)
		if err != nil {
			return nil, fmt.Errorf("delivery: account %q: %w", a.Name, err)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// loadCAFile reads PEM certificates into a pool.
func loadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s: %w", path, errors.New("no PEM certificates found"))
	}
	return pool, nil
}

// ValidateAccounts checks accounts exactly as New and Reload do, without
// starting anything, so that spoold -check refuses what start-up would and
// a reload can validate every subsystem before it applies any. Keys are
// relative to the list ("[2].host"); the caller merges them under
// "accounts". A name used twice is a problem of the later entry.
func ValidateAccounts(cfgs []AccountConfig) error {
	var ps field.Problems
	first := map[string]int{}
	for i, c := range cfgs {
		at := field.Index("", i)
		ps.MergeErr(at, c.Validate())
		if c.Name == "" {
			continue
		}
		if j, ok := first[c.Name]; ok {
			ps.Add(field.Join(at, "name"), "account %q is defined twice (first at [%d])", c.Name, j)
			continue
		}
		first[c.Name] = i
	}
	for i, c := range cfgs {
		if c.Fallback != "" && c.Fallback != c.Name {
			if _, ok := first[c.Fallback]; !ok {
				ps.Add(field.Join(field.Index("", i), "fallback"), "account %q is not configured: name one of the accounts", c.Fallback)
			}
		}
	}
	return ps.Err()
}
