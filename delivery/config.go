package delivery

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"os"
	"strings"
	"time"
)

// AccountConfig is one upstream account (route). Zero fields take defaults.
type AccountConfig struct {
	Name      string
	Transport string // "smtp" (default) or "file"

	// SMTP transport.
	Host       string
	Port       int    // default 587 (starttls), 465 (implicit), 25 (none)
	TLS        string // "starttls" (default), "implicit", or "none" (internal relay only)
	CAFile     string // PEM roots for an internal relay with its own CA; default system roots
	ServerName string // certificate name to verify; default Host
	Auth       string // "xoauth2", "plain", "login" or "none"; default xoauth2
	Username   string // SASL user; default Mailbox
	Password   string // plain/login; never logged

	Mailbox    string // the account mailbox: envelope sender and From address under "rewrite"
	SenderRule string // "rewrite" (default when Mailbox is set) or "keep"

	MaxConnections           int     // default 3 for xoauth2 (Microsoft thread limit) else 10
	RatePerMinute            float64 // 0 = default (30 for xoauth2, else unlimited); <0 = unlimited
	MaxMessagesPerConnection int     // default 50
	MaxMessageSize           int64   // 0 = no local limit; larger messages are dead-lettered before dialing

	// NotifyOnFailure is the account's failure-notice policy: "" (default:
	// messages that asked for one and the sources in Options.NoticeForSources),
	// "always" (every dead-lettered message) or "never".
	NotifyOnFailure string

	// File transport.
	Dir string // writes <id>.eml atomically

	Retry RetryPolicy

	ConnectTimeout time.Duration // dial, TLS, greeting, EHLO and AUTH together; default 30s
	CommandTimeout time.Duration // per command reply; default 2m
	DataTimeout    time.Duration // body transfer and the reply after the final dot; default 10m
}

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

// normalize fills defaults and validates; it also loads the CA file.
func (a AccountConfig) normalize() (AccountConfig, *tls.Config, error) {
	fail := func(format string, args ...any) (AccountConfig, *tls.Config, error) {
		return a, nil, fmt.Errorf("delivery: account %q: %s", a.Name, fmt.Sprintf(format, args...))
	}
	if strings.TrimSpace(a.Name) == "" {
		return fail("name is required")
	}
	a.Transport = strings.ToLower(a.Transport)
	if a.Transport == "" {
		a.Transport = "smtp"
	}
	a.SenderRule = strings.ToLower(a.SenderRule)
	if a.SenderRule == "" {
		if a.Mailbox == "" && a.Transport == "file" {
			a.SenderRule = "keep"
		} else {
			a.SenderRule = "rewrite"
		}
	}
	switch a.NotifyOnFailure {
	case "", "always", "never":
	default:
		return fail("notify on failure %q: want always, never or empty", a.NotifyOnFailure)
	}
	if a.SenderRule != "rewrite" && a.SenderRule != "keep" {
		return fail("sender rule %q: want rewrite or keep", a.SenderRule)
	}
	if a.Mailbox != "" {
		addr, err := mail.ParseAddress(a.Mailbox)
		if err != nil || addr.Name != "" || strings.ContainsAny(a.Mailbox, "<> \t\r\n") {
			return fail("mailbox %q is not a plain address", a.Mailbox)
		}
	}
	if a.SenderRule == "rewrite" && a.Mailbox == "" {
		return fail("sender rule rewrite needs a mailbox")
	}
	if a.MaxMessagesPerConnection <= 0 {
		a.MaxMessagesPerConnection = 50
	}
	if a.MaxMessageSize < 0 {
		return fail("max message size is negative")
	}
	a.Retry = a.Retry.withDefaults()
	if a.ConnectTimeout <= 0 {
		a.ConnectTimeout = 30 * time.Second
	}
	if a.CommandTimeout <= 0 {
		a.CommandTimeout = 2 * time.Minute
	}
	if a.DataTimeout <= 0 {
		a.DataTimeout = 10 * time.Minute
	}
	switch a.Transport {
	case "file":
		if a.Dir == "" {
			return fail("file transport needs a dir")
		}
		if a.MaxConnections <= 0 {
			a.MaxConnections = 4
		}
		if a.RatePerMinute == 0 {
			a.RatePerMinute = -1
		}
		return a, nil, nil
	case "smtp":
	default:
		return fail("transport %q: want smtp or file", a.Transport)
	}
	if a.Host == "" || strings.ContainsAny(a.Host, " \t\r\n/") {
		return fail("host %q is invalid", a.Host)
	}
	a.TLS = strings.ToLower(a.TLS)
	if a.TLS == "" {
		a.TLS = "starttls"
	}
	a.Auth = strings.ToLower(a.Auth)
	if a.Auth == "" {
		a.Auth = "xoauth2"
	}
	switch a.TLS {
	case "starttls":
		if a.Port == 0 {
			a.Port = 587
		}
	case "implicit":
		if a.Port == 0 {
			a.Port = 465
		}
	case "none":
		if a.Port == 0 {
			a.Port = 25
		}
	default:
		return fail("tls %q: want starttls, implicit or none", a.TLS)
	}
	if a.Port < 1 || a.Port > 65535 {
		return fail("port %d out of range", a.Port)
	}
	switch a.Auth {
	case "xoauth2":
		if a.Mailbox == "" && a.Username == "" {
			return fail("xoauth2 needs a mailbox")
		}
	case "plain", "login":
		if a.Password == "" {
			return fail("auth %s needs a password", a.Auth)
		}
	case "none":
	default:
		return fail("auth %q: want xoauth2, plain, login or none", a.Auth)
	}
	if a.Auth != "none" && a.TLS == "none" {
		// Credentials never cross the network in clear text.
		return fail("auth %s needs TLS (starttls or implicit)", a.Auth)
	}
	if a.Username == "" {
		a.Username = a.Mailbox
	}
	if a.Auth != "none" && a.Username == "" {
		return fail("auth %s needs a username or mailbox", a.Auth)
	}
	if a.MaxConnections <= 0 {
		if a.Auth == "xoauth2" {
			a.MaxConnections = 3
		} else {
			a.MaxConnections = 10
		}
	}
	if a.RatePerMinute == 0 {
		if a.Auth == "xoauth2" {
			a.RatePerMinute = 30
		} else {
			a.RatePerMinute = -1
		}
	}
	if a.TLS == "none" {
		return a, nil, nil
	}
	tc := &tls.Config{ServerName: a.ServerName, MinVersion: tls.VersionTLS12}
	if tc.ServerName == "" {
		tc.ServerName = a.Host
	}
	if a.CAFile != "" {
		pem, err := os.ReadFile(a.CAFile)
		if err != nil {
			return a, nil, fmt.Errorf("delivery: account %q: reading CA file: %w", a.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return a, nil, fmt.Errorf("delivery: account %q: CA file %s: %w", a.Name, a.CAFile, errors.New("no PEM certificates found"))
		}
		tc.RootCAs = pool
	}
	return a, tc, nil
}
