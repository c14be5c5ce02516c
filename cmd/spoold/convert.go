package main

import (
	"cmp"
	"path/filepath"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/configs"
	"github.com/spoold/spoold/delivery"
	"github.com/spoold/spoold/ingest/scanfolder"
	"github.com/spoold/spoold/ingest/smtpd"
)

// The config layer owns the YAML schema and validation; each subsystem owns
// its own option structs. These functions are the only place that knows both,
// so a subsystem never depends on the YAML layout.

func smtpListener(l configs.SMTPListener) smtpd.ListenerConfig {
	return smtpd.ListenerConfig{
		Name:                    l.Name,
		Addr:                    l.Listen,
		Hostname:                l.Hostname,
		TLS:                     smtpd.TLSMode(l.TLS),
		CertFile:                l.CertFile,
		KeyFile:                 l.KeyFile,
		MinTLSVersion:           l.MinTLSVersion.Uint16(),
		AllowedNetworks:         l.AllowedNetworks,
		Users:                   smtpUsers(l.Users),
		Legacy:                  l.Legacy,
		RequireAuth:             l.RequireAuth,
		AllowedSenderDomains:    l.AllowedSenderDomains,
		AllowedRecipientDomains: l.AllowedRecipientDomains,
		MaxMessageSize:          l.MaxMessageSize,
		MaxRecipients:           l.MaxRecipients,
		ReadTimeout:             l.ReadTimeout,
		WriteTimeout:            l.WriteTimeout,
		MaxConnections:          l.MaxConnections,
		MaxConnectionsPerIP:     l.MaxConnectionsPerIP,
		MaxLineLength:           l.MaxLineLength,
		BareLF:                  smtpd.BareLFPolicy(l.BareLF),
		AuthFailureLimit:        l.AuthFailureLimit,
		AuthFailureWindow:       l.AuthFailureWindow,
		DataMinRate:             l.DataMinRate,
		DataRateGrace:           l.DataRateGrace,
		StressThreshold:         l.StressThreshold,
		StressTimeout:           l.StressTimeout,
		JunkCommandLimit:        l.JunkCommandLimit,
		HardErrorLimit:          l.HardErrorLimit,
		Account:                 l.Account,
	}
}

func smtpUsers(us []configs.SMTPUser) []smtpd.User {
	out := make([]smtpd.User, 0, len(us))
	for _, u := range us {
		out = append(out, smtpd.User{Name: u.Name, PasswordHash: u.PasswordHash.Reveal(), Account: u.Account})
	}
	return out
}

// smtpRoutes is the listener's routing table; each account's size limit is
// the one delivery runs with, so SIZE never promises more than it sends.
func smtpRoutes(c *configs.Config, accounts []delivery.AccountConfig) smtpd.Routes {
	r := smtpd.Routes{
		ByUser:         map[string]string{},
		BySenderDomain: map[string]string{},
		Default:        c.Routes.Default,
		AccountMaxSize: map[string]int64{},
	}
	for k, v := range c.Routes.Users {
		r.ByUser[k] = v
	}
	for k, v := range c.Routes.SenderDomains {
		r.BySenderDomain[k] = v
	}
	for _, a := range accounts {
		if a.MaxMessageSize > 0 {
			r.AccountMaxSize[a.Name] = a.MaxMessageSize
		}
	}
	return r
}

// scanFolder converts one folder; its account defaults to routes.default
// (routing is the daemon's), and the caller sets the account's size limit.
func scanFolder(f configs.ScanFolder, defaultAccount string) scanfolder.FolderConfig {
	users := make(map[string]scanfolder.User, len(f.Users))
	for k, u := range f.Users {
		users[k] = scanfolder.User{Name: u.Name, Address: u.Address}
	}
	account := f.Account
	if account == "" {
		account = defaultAccount
	}
	return scanfolder.FolderConfig{
		Name:            f.Name,
		Path:            f.Path,
		Mode:            string(f.Mode),
		RescanInterval:  f.RescanInterval,
		QuietPeriod:     f.QuietPeriod,
		AfterSuccess:    string(f.AfterSuccess),
		Account:         account,
		Users:           users,
		SubjectTemplate: f.SubjectTemplate,
		BodyTemplate:    f.BodyTemplate,
		FailureNotice:   f.FailureNotice,
		MaxReadRetries:  f.MaxReadRetries,
		IncompleteLimit: f.IncompleteLimit,
		EmptyGrace:      f.EmptyGrace,
		WriterCheck:     f.WriterCheck,
		DirMode:         f.DirMode,
		FileMode:        f.FileMode,
		Group:           f.Group,
		TimeZone:        f.TimeZone,
	}
}

// deliveryAccount converts one account. What the provider implies (its SMTP
// host and sending limits) comes from auth's preset, the one home of
// provider facts, for delivery's defaults to start from.
func deliveryAccount(a configs.Account, dataDir string) delivery.AccountConfig {
	d := delivery.AccountConfig{
		Name:                     a.Name,
		Transport:                string(a.Transport),
		Host:                     a.Host,
		Port:                     a.Port,
		TLS:                      string(a.TLS),
		CAFile:                   a.CAFile,
		ServerName:               a.ServerName,
		Auth:                     string(a.Auth),
		Username:                 a.Username,
		Password:                 a.Password,
		Mailbox:                  a.Mailbox,
		SenderRule:               string(a.SenderRule),
		MaxConnections:           a.MaxConnections,
		RatePerMinute:            a.RatePerMinute,
		MaxMessagesPerConnection: a.MaxMessagesPerConnection,
		MaxMessageSize:           a.MaxMessageSize,
		NotifyOnFailure:          string(a.NotifyOnFailure),
		Dir:                      a.Dir,
		ConnectTimeout:           a.ConnectTimeout,
		CommandTimeout:           a.CommandTimeout,
		DataTimeout:              a.DataTimeout,
		DailyRecipientLimit:      a.DailyRecipientLimit,
		Fallback:                 a.Fallback,
		FallbackAfter:            a.FallbackAfter,
		Retry: delivery.RetryPolicy{
			First:      a.Retry.First,
			Multiplier: a.Retry.Multiplier,
			Max:        a.Retry.Max,
			Jitter:     a.Retry.Jitter,
			Lifetime:   a.Retry.Lifetime,
		},
	}
	if d.Transport == "file" && d.Dir == "" {
		d.Dir = filepath.Join(dataDir, "outbox") // the data dir is the daemon's
	}
	if !a.IsOAuth() {
		return d
	}
	if a.Transport == configs.TransportGraph {
		return graphDeliveryAccount(a, d)
	}
	if d.Auth == "" {
		d.Auth = "xoauth2" // auth holds this account's tokens
	}
	if p, err := auth.Preset(auth.Provider(a.Provider), a.Tenant); err == nil {
		d.Host = cmp.Or(d.Host, p.SMTPHost)
		d.MaxConnections = cmp.Or(d.MaxConnections, p.MaxConnections)
		d.RatePerMinute = cmp.Or(d.RatePerMinute, p.RatePerMinute)
		d.MaxMessageSize = cmp.Or(d.MaxMessageSize, p.MaxMessageSize)
		d.IdleTimeout = cmp.Or(d.IdleTimeout, p.IdleTimeout)
		d.DailyRecipientLimit = cmp.Or(d.DailyRecipientLimit, p.DailyRecipients) // -1 stays: no limit
	}
	return d
}

// authAccount converts one OAuth account. The redirect URL defaults to the
// daemon's own HTTP listener, which serves the callback.
func authAccount(a configs.Account, http configs.HTTP) auth.AccountConfig {
	ac := auth.AccountConfig{
		Name:                a.Name,
		Provider:            string(a.Provider),
		Flow:                string(a.Flow),
		Tenant:              a.Tenant,
		ClientID:            a.ClientID,
		ClientSecret:        a.ClientSecret,
		ClientSecretExpires: a.ClientSecretExpires,
		CertificateFile:     a.CertificateFile,
		PrivateKeyFile:      a.PrivateKeyFile,
		Mailbox:             a.Mailbox,
		SignInAs:            a.SignInAs,
		Scopes:              a.Scopes,
		AuthURL:             a.AuthURL,
		TokenURL:            a.TokenURL,
		DeviceAuthURL:       a.DeviceAuthURL,
		RedirectURL:         a.RedirectURL,
		RefreshBefore:       a.RefreshBefore,
		KeepAlive:           a.KeepAlive,
		TokenTimeout:        a.TokenTimeout,
		ServiceAccountFile:  a.ServiceAccountFile,
	}
	if a.Transport == configs.TransportGraph {
		ac.Graph, ac.GraphReadWrite, ac.GraphEndpoint = true, graphLarge(a), a.GraphEndpoint
	}
	// Every delegated account gets the callback, device-flow ones too: an
	// admin may still sign in through the browser or with --paste.
	if ac.RedirectURL == "" && (ac.Flow == "" || auth.Flow(ac.Flow).Delegated()) {
		ac.RedirectURL = defaultRedirect(http)
	}
	return ac
}

func outagePolicy(c *configs.Config) delivery.OutagePolicy {
	o := c.Delivery.Outage
	return delivery.OutagePolicy{After: o.After, First: o.FirstProbe, Max: o.MaxProbe, Multiplier: o.Multiplier, Jitter: o.Jitter}
}
