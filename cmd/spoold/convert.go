package main

import (
	"fmt"
	"io/fs"
	"os"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/configs"
	"github.com/spoold/spoold/configs/secret"
	"github.com/spoold/spoold/delivery"
	"github.com/spoold/spoold/ingest/scanfolder"
	"github.com/spoold/spoold/ingest/smtpd"
)

// The config layer owns the YAML schema and validation; each subsystem owns
// its own option structs. These functions are the only place that knows both,
// so a subsystem never depends on the YAML layout.

func smtpListeners(c *configs.Config) []smtpd.ListenerConfig {
	out := make([]smtpd.ListenerConfig, 0, len(c.SMTPListeners))
	for _, l := range c.SMTPListeners {
		out = append(out, smtpd.ListenerConfig{
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
		})
	}
	return out
}

func smtpUsers(us []configs.SMTPUser) []smtpd.User {
	out := make([]smtpd.User, 0, len(us))
	for _, u := range us {
		out = append(out, smtpd.User{Name: u.Name, PasswordHash: u.PasswordHash.Reveal(), Account: u.Account})
	}
	return out
}

func smtpRoutes(c *configs.Config) smtpd.Routes {
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
	for _, a := range c.Accounts {
		if a.MaxMessageSize > 0 {
			r.AccountMaxSize[a.Name] = a.MaxMessageSize
		}
	}
	return r
}

func scanFolders(c *configs.Config) ([]scanfolder.FolderConfig, error) {
	out := make([]scanfolder.FolderConfig, 0, len(c.ScanFolders))
	for i, f := range c.ScanFolders {
		users := make(map[string]scanfolder.User, len(f.Users))
		for k, u := range f.Users {
			users[k] = scanfolder.User{Name: u.Name, Address: u.Address}
		}
		notice, writerCheck := f.FailureNotice, f.WriterCheck
		var modes [2]fs.FileMode
		for k, m := range []struct{ key, val string }{{"dir_mode", f.DirMode}, {"file_mode", f.FileMode}} {
			if m.val == "" {
				continue
			}
			mode, err := scanfolder.ParseMode(m.val)
			if err != nil {
				return nil, fmt.Errorf("scan_folders[%d].%s: %w", i, m.key, err)
			}
			modes[k] = mode
		}
		var maxSize int64
		if a, ok := c.Account(f.Account); ok {
			maxSize = a.MaxMessageSize
		}
		out = append(out, scanfolder.FolderConfig{
			Name:            f.Name,
			Path:            f.Path,
			Mode:            string(f.Mode),
			RescanInterval:  f.RescanInterval,
			QuietPeriod:     f.QuietPeriod,
			AfterSuccess:    string(f.AfterSuccess),
			Account:         f.Account,
			MaxMessageSize:  maxSize,
			Users:           users,
			SubjectTemplate: f.SubjectTemplate,
			BodyTemplate:    f.BodyTemplate,
			FailureNotice:   &notice,
			MaxReadRetries:  f.MaxReadRetries,
			IncompleteLimit: f.IncompleteLimit,
			EmptyGrace:      f.EmptyGrace,
			WriterCheck:     &writerCheck,
			DirMode:         modes[0],
			FileMode:        modes[1],
			Group:           f.Group,
			TimeZone:        f.TimeZone,
		})
	}
	return out, nil
}

func deliveryAccounts(c *configs.Config) []delivery.AccountConfig {
	out := make([]delivery.AccountConfig, 0, len(c.Accounts))
	for _, a := range c.Accounts {
		out = append(out, delivery.AccountConfig{
			Name:                     a.Name,
			Transport:                string(a.Transport),
			Host:                     a.Host,
			Port:                     a.Port,
			TLS:                      string(a.TLS),
			CAFile:                   a.CAFile,
			ServerName:               a.ServerName,
			Auth:                     string(a.Auth),
			Username:                 a.Username,
			Password:                 a.Password.Reveal(),
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
			Retry: delivery.RetryPolicy{
				First:      a.Retry.First,
				Multiplier: a.Retry.Multiplier,
				Max:        a.Retry.Max,
				Jitter:     a.Retry.Jitter,
				Lifetime:   a.Retry.Lifetime,
			},
		})
	}
	return out
}

// authAccounts returns the OAuth accounts; password and file accounts have no
// tokens to manage.
func authAccounts(c *configs.Config) ([]auth.AccountConfig, error) {
	var out []auth.AccountConfig
	for _, a := range c.Accounts {
		if !a.IsOAuth() {
			continue
		}
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
			Scopes:              a.Scopes,
			AuthURL:             a.AuthURL,
			TokenURL:            a.TokenURL,
			DeviceAuthURL:       a.DeviceAuthURL,
			RedirectURL:         a.RedirectURL,
			RefreshBefore:       a.RefreshBefore,
			KeepAlive:           a.KeepAlive,
			TokenTimeout:        a.TokenTimeout,
		}
		if a.ServiceAccountFile != "" {
			key, err := os.ReadFile(a.ServiceAccountFile)
			if err != nil {
				return nil, fmt.Errorf("account %s: reading service account key: %w", a.Name, err)
			}
			ac.ServiceAccountJSON = secret.Secret(key)
		}
		out = append(out, ac)
	}
	return out, nil
}

func outagePolicy(c *configs.Config) delivery.OutagePolicy {
	o := c.Delivery.Outage
	return delivery.OutagePolicy{After: o.After, First: o.FirstProbe, Max: o.MaxProbe, Multiplier: o.Multiplier, Jitter: o.Jitter}
}
