package main

import (
	"crypto/tls"
	"fmt"
	"slices"

	"github.com/spoold/spoold/configs"
)

// effective is the config as the daemon runs it: the decoded file with every
// value the plan's subsystems filled in written back, for -print-config. It
// reads the values from the plan (never re-deriving a default here), so what
// it prints is what runs.
func (p *plan) effective() *configs.Config {
	c := *p.cfg
	c.SMTPListeners = slices.Clone(c.SMTPListeners)
	for i := range c.SMTPListeners {
		l, run := &c.SMTPListeners[i], p.listeners[i]
		l.Hostname = run.Hostname
		l.TLS = configs.ListenerTLS(run.TLS)
		l.MinTLSVersion = tlsVersionName(run.MinTLSVersion)
		l.BareLF = configs.BareLF(run.BareLF)
		l.AllowedSenderDomains, l.AllowedRecipientDomains = run.AllowedSenderDomains, run.AllowedRecipientDomains
		l.MaxMessageSize, l.MaxRecipients = run.MaxMessageSize, run.MaxRecipients
		l.ReadTimeout, l.WriteTimeout = run.ReadTimeout, run.WriteTimeout
		l.MaxConnections, l.MaxConnectionsPerIP, l.MaxLineLength = run.MaxConnections, run.MaxConnectionsPerIP, run.MaxLineLength
		l.AuthFailureLimit, l.AuthFailureWindow = run.AuthFailureLimit, run.AuthFailureWindow
		l.DataMinRate, l.DataRateGrace = run.DataMinRate, run.DataRateGrace
		l.StressThreshold, l.StressTimeout = run.StressThreshold, run.StressTimeout
		l.JunkCommandLimit, l.HardErrorLimit = run.JunkCommandLimit, run.HardErrorLimit
	}

	c.ScanFolders = slices.Clone(c.ScanFolders)
	for i := range c.ScanFolders {
		f, run := &c.ScanFolders[i], p.folders[i]
		f.Name, f.Account = run.Name, run.Account
		f.Mode, f.AfterSuccess = configs.ScanMode(run.Mode), configs.AfterSuccess(run.AfterSuccess)
		f.RescanInterval, f.QuietPeriod = run.RescanInterval, run.QuietPeriod
		f.IncompleteLimit, f.EmptyGrace = run.IncompleteLimit, run.EmptyGrace
		f.MaxReadRetries = run.MaxReadRetries
		f.FailureNotice, f.WriterCheck = run.FailureNotice, run.WriterCheck
	}

	c.Accounts = slices.Clone(c.Accounts)
	oauth := map[string]int{}
	for i, a := range p.oauth {
		oauth[a.Name] = i
	}
	for i := range c.Accounts {
		a, run := &c.Accounts[i], p.accounts[i]
		a.Transport, a.Dir = configs.Transport(run.Transport), run.Dir
		large := !run.GraphSendMailOnly // used by transport graph only
		a.GraphEndpoint, a.GraphLargeMessages = run.GraphEndpoint, &large
		a.Host, a.Port, a.TLS, a.ServerName = run.Host, run.Port, configs.UpstreamTLS(run.TLS), run.ServerName
		a.Auth, a.Username = configs.AuthMech(run.Auth), run.Username
		a.SenderRule = configs.SenderRule(run.SenderRule)
		a.MaxConnections, a.RatePerMinute = run.MaxConnections, run.RatePerMinute
		a.MaxMessagesPerConnection, a.MaxMessageSize = run.MaxMessagesPerConnection, run.MaxMessageSize
		a.NotifyOnFailure = configs.NotifyPolicy(run.NotifyOnFailure)
		a.ConnectTimeout, a.CommandTimeout, a.DataTimeout = run.ConnectTimeout, run.CommandTimeout, run.DataTimeout
		a.DailyRecipientLimit, a.Fallback, a.FallbackAfter = run.DailyRecipientLimit, run.Fallback, run.FallbackAfter
		a.Retry = configs.Retry{First: run.Retry.First, Multiplier: run.Retry.Multiplier, Max: run.Retry.Max, Jitter: run.Retry.Jitter, Lifetime: run.Retry.Lifetime}
		if k, ok := oauth[a.Name]; ok {
			o := p.oauth[k]
			a.Flow = configs.Flow(o.Flow)
			a.Scopes = o.Scopes
			a.AuthURL, a.TokenURL, a.DeviceAuthURL, a.RedirectURL = o.AuthURL, o.TokenURL, o.DeviceAuthURL, o.RedirectURL
			a.RefreshBefore, a.KeepAlive, a.TokenTimeout = o.RefreshBefore, o.KeepAlive, o.TokenTimeout
		}
	}

	c.Spool = configs.Spool{LockTimeout: p.spool.LockTimeout, Lease: p.spool.LeaseDuration, DeliveredRetention: p.spool.DeliveredRetention,
		Backend: p.backend.kind, DSN: c.Spool.DSN, DSNFile: c.Spool.DSNFile, Node: p.backend.pg.Node}
	c.Delivery.Workers, c.Delivery.ShutdownTimeout = p.engine.Workers, p.engine.ShutdownTimeout
	o := p.engine.Outage
	c.Delivery.Outage = configs.Outage{After: o.After, FirstProbe: o.First, MaxProbe: o.Max, Multiplier: o.Multiplier, Jitter: o.Jitter}
	c.Alerts = p.effectiveAlerts()
	c.HTTP.Console = p.console.Enabled
	c.Secrets = configs.Secrets{Key: p.secrets.Key, PreviousKeys: p.secrets.PreviousKeys}
	c.Admin.ReadGroup, c.Admin.AdminGroup, c.Admin.AuditRetention = p.access.ReadGroup, p.access.AdminGroup, p.access.AuditRetention
	return &c
}

func tlsVersionName(v uint16) configs.TLSVersion {
	switch v {
	case 0:
		return "" // not set: a listener without TLS has no minimum
	case tls.VersionTLS10:
		return "1.0"
	case tls.VersionTLS11:
		return "1.1"
	case tls.VersionTLS12:
		return "1.2"
	case tls.VersionTLS13:
		return "1.3"
	}
	return configs.TLSVersion(fmt.Sprintf("0x%04x", v))
}
