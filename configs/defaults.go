package configs

import (
	"net"
	"os"
	"path/filepath"
	"time"
)

// Defaults that do not depend on other keys are set before decoding (so an
// explicit zero wins); those derived from other keys are filled afterwards by
// derive. spoold.example.yaml documents every one of them.

const (
	// DefaultHTTPListen is http.listen when absent.
	DefaultHTTPListen = "127.0.0.1:9191"
	// DefaultRedirectPath is the OAuth2 callback path on the HTTP listener.
	DefaultRedirectPath = "/oauth2/callback"
	// MB is 10^6 bytes, the unit providers state their limits in.
	MB = 1000 * 1000
)

func (c *Config) setDefaults() {
	c.DataDir = "./data"
	c.Log = Log{Level: LogInfo, Format: LogFormatAuto}
	c.HTTP.Listen = DefaultHTTPListen
	c.Spool = Spool{LockTimeout: 2 * time.Second, Lease: 5 * time.Minute, DeliveredRetention: 24 * time.Hour}
	c.Delivery = Delivery{Workers: 16, ShutdownTimeout: 30 * time.Second}
}

// setDefaults sets only the listener's enums, which the cross-checks here
// read; the limits and timeouts are smtpd's (ListenerConfig), where zero
// means its default, so the two can no longer disagree.
func (l *SMTPListener) setDefaults() {
	l.TLS = ListenerTLSNone
	l.BareLF = BareLFReject
}

func (f *ScanFolder) setDefaults() {
	f.Mode = ScanWatch
	f.RescanInterval = 30 * time.Second
	f.AfterSuccess = AfterMove
	f.FailureNotice = true
	f.MaxReadRetries = 5
	f.WriterCheck = true
}

func (a *Account) setDefaults() {
	a.Transport = TransportSMTP
	a.RefreshBefore = 5 * time.Minute
	a.KeepAlive = 24 * time.Hour
	a.ConnectTimeout = 30 * time.Second
	a.CommandTimeout = 2 * time.Minute
	a.DataTimeout = 10 * time.Minute
	a.Retry = Retry{First: time.Minute, Multiplier: 2, Max: time.Hour, Jitter: 0.2, Lifetime: 5 * 24 * time.Hour}
}

// preset is what a provider implies (DESIGN.md section 6).
type preset struct {
	authURL, tokenURL, deviceURL string
	host                         string
	delegated, appOnly           []string // scopes
	maxConns                     int
	rate                         float64
	maxSize                      int64
}

func providerPreset(p Provider, tenant string) (preset, bool) {
	switch p {
	case ProviderMicrosoft:
		base := "https://login.microsoftonline.com/" + tenant + "/oauth2/v2.0/"
		return preset{
			authURL: base + "authorize", tokenURL: base + "token", deviceURL: base + "devicecode",
			host:      "smtp.office365.com",
			delegated: []string{"https://outlook.office.com/SMTP.Send", "offline_access"},
			appOnly:   []string{"https://outlook.office365.com/.default"},
			maxConns:  3, rate: 30, maxSize: 35 * MB,
		}, true
	case ProviderMicrosoftUSGov:
		base := "https://login.microsoftonline.us/" + tenant + "/oauth2/v2.0/"
		return preset{
			authURL: base + "authorize", tokenURL: base + "token", deviceURL: base + "devicecode",
			host:      "smtp.office365.us",
			delegated: []string{"https://outlook.office365.us/SMTP.Send", "offline_access"},
			appOnly:   []string{"https://outlook.office365.us/.default"},
			maxConns:  3, rate: 30, maxSize: 35 * MB,
		}, true
	case ProviderGoogle:
		return preset{
			authURL: "https://accounts.google.com/o/oauth2/v2/auth", tokenURL: "https://oauth2.googleapis.com/token",
			host:      "smtp.gmail.com",
			delegated: []string{"https://mail.google.com/"},
			appOnly:   []string{"https://mail.google.com/"},
			maxSize:   35 * MB,
		}, true
	}
	return preset{}, false
}

// derive fills the defaults that depend on other keys. It runs after
// decoding and before validation; hostname is injected for tests.
func (c *Config) derive(hostname func() (string, error)) {
	if c.Admin.Socket == "" {
		c.Admin.Socket = filepath.Join(c.DataDir, "spoold.sock")
	}
	for i := range c.SMTPListeners {
		l := &c.SMTPListeners[i]
		if l.Hostname == "" {
			if h, err := hostname(); err == nil && h != "" {
				l.Hostname = h
			} else {
				l.Hostname = "localhost"
			}
		}
	}
	for i := range c.ScanFolders {
		f := &c.ScanFolders[i]
		if f.Name == "" && f.Path != "" {
			f.Name = filepath.Base(filepath.Clean(f.Path))
		}
		if f.Account == "" {
			f.Account = c.Routes.Default
		}
	}
	for i := range c.Accounts {
		c.Accounts[i].derive(c)
	}
}

func (a *Account) derive(c *Config) {
	if a.Transport == TransportFile {
		if a.Dir == "" {
			a.Dir = filepath.Join(c.DataDir, "outbox")
		}
		if a.SenderRule == "" {
			if a.Mailbox != "" {
				a.SenderRule = SenderRewrite
			} else {
				a.SenderRule = SenderKeep
			}
		}
		return
	}
	if a.Provider != ProviderNone && a.Flow == "" {
		a.Flow = FlowAuthCode
	}
	if p, ok := providerPreset(a.Provider, a.Tenant); ok {
		if a.AuthURL == "" {
			a.AuthURL = p.authURL
		}
		if a.TokenURL == "" {
			a.TokenURL = p.tokenURL
		}
		if a.DeviceAuthURL == "" {
			a.DeviceAuthURL = p.deviceURL
		}
		if a.Host == "" {
			a.Host = p.host
		}
		if len(a.Scopes) == 0 {
			if a.Flow == FlowClientCredentials || a.Flow == FlowServiceAccount {
				a.Scopes = append([]string(nil), p.appOnly...)
			} else {
				a.Scopes = append([]string(nil), p.delegated...)
			}
		}
		if a.MaxConnections == 0 {
			a.MaxConnections = p.maxConns
		}
		if a.RatePerMinute == 0 {
			a.RatePerMinute = p.rate
		}
		if a.MaxMessageSize == 0 {
			a.MaxMessageSize = p.maxSize
		}
	}
	if a.TLS == "" {
		a.TLS = UpstreamStartTLS
	}
	if a.Port == 0 {
		switch a.TLS {
		case UpstreamImplicit:
			a.Port = 465
		case UpstreamNone:
			a.Port = 25
		default:
			a.Port = 587
		}
	}
	if a.Auth == "" {
		switch {
		case a.Provider != ProviderNone:
			a.Auth = AuthXOAuth2
		case a.Password != "" || a.PasswordFile != "":
			// A relay password without an explicit mechanism means PLAIN
			// (over TLS), rather than silently not authenticating.
			a.Auth = AuthPlain
		default:
			a.Auth = AuthNone
		}
	}
	if (a.Auth == AuthPlain || a.Auth == AuthLogin) && a.Username == "" {
		a.Username = a.Mailbox
	}
	if a.SenderRule == "" {
		if a.Mailbox != "" || a.IsOAuth() {
			a.SenderRule = SenderRewrite
		} else {
			a.SenderRule = SenderKeep
		}
	}
	if a.IsOAuth() && a.Flow == FlowAuthCode && a.RedirectURL == "" {
		a.RedirectURL = defaultRedirect(c.HTTP.Listen)
	}
}

// defaultRedirect is http://localhost:<http port>/oauth2/callback; the
// provider app registration must list it.
func defaultRedirect(listen string) string {
	port := "9191"
	if _, p, err := net.SplitHostPort(listen); err == nil && p != "" && p != "0" {
		port = p
	}
	return "http://localhost:" + port + DefaultRedirectPath
}

// osHostname is the production hostname source.
func osHostname() (string, error) { return os.Hostname() }
