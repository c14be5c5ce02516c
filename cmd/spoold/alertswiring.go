package main

import (
	"cmp"
	"context"
	"fmt"
	"os"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/cmd/spoold/alerts"
	"github.com/spoold/spoold/configs"
	"github.com/spoold/spoold/configs/secret"
	"github.com/spoold/spoold/delivery"
	"github.com/spoold/spoold/ingest/scanfolder"
)

// alertOptions converts the alerts: section into the alerter's options.
func alertOptions(a configs.Alerts) alerts.Options {
	o := alerts.Options{
		CheckInterval: a.CheckInterval, ReminderInterval: a.ReminderInterval,
		SecretExpiryWarning: a.SecretExpiryWarning, GrantExpiryWarning: a.GrantExpiryWarning,
		QueueAge: a.QueueAge, QueueDepth: a.QueueDepth, DiskFree: a.DiskFree, PausedFor: a.PausedFor,
		DeadLetterDigest: a.DeadLetterDigest, ScanFailures: a.ScanFailures, UncleanStop: a.UncleanStop,
		DelayWarning: a.DelayWarning,
		Retry:        alerts.Retry{First: a.Retry.First, Max: a.Retry.Max, GiveUp: a.Retry.GiveUp},
		Email:        alerts.EmailConfig{Account: a.Email.Account, To: a.Email.To},
	}
	for _, w := range a.Webhooks {
		o.Webhooks = append(o.Webhooks, alerts.WebhookConfig{Name: w.Name, URL: w.URL, Format: string(w.Format), Timeout: w.Timeout})
	}
	for _, c := range a.Commands {
		o.Commands = append(o.Commands, alerts.CommandConfig{Name: c.Name, Command: c.Command, Timeout: c.Timeout})
	}
	return o
}

// effectiveAlerts is the alerts: section as the alerter runs it, for
// -print-config.
func (p *plan) effectiveAlerts() configs.Alerts {
	c, o := p.cfg.Alerts, p.alerts
	c.CheckInterval, c.ReminderInterval = o.CheckInterval, o.ReminderInterval
	c.SecretExpiryWarning, c.GrantExpiryWarning = o.SecretExpiryWarning, o.GrantExpiryWarning
	c.QueueAge, c.QueueDepth, c.DiskFree, c.PausedFor = o.QueueAge, o.QueueDepth, o.DiskFree, o.PausedFor
	c.DeadLetterDigest, c.ScanFailures, c.UncleanStop = o.DeadLetterDigest, o.ScanFailures, o.UncleanStop
	c.DelayWarning = o.DelayWarning
	c.Retry = configs.AlertRetry{First: o.Retry.First, Max: o.Retry.Max, GiveUp: o.Retry.GiveUp}
	c.Webhooks = append([]configs.AlertWebhook(nil), c.Webhooks...)
	for i := range c.Webhooks {
		w := o.Webhooks[i]
		c.Webhooks[i].Name, c.Webhooks[i].Format, c.Webhooks[i].Timeout = w.Name, configs.AlertFormat(w.Format), w.Timeout
	}
	c.Commands = append([]configs.AlertCommand(nil), c.Commands...)
	for i := range c.Commands {
		c.Commands[i].Name, c.Commands[i].Timeout = o.Commands[i].Name, o.Commands[i].Timeout
	}
	return c
}

// configSecrets lists every secret in cfg: the alerter scrubs them from
// alerts as a second line of defence.
func configSecrets(cfg *configs.Config) []secret.Secret {
	var out []secret.Secret
	for _, a := range cfg.Accounts {
		out = append(out, a.ClientSecret, a.Password)
	}
	for _, l := range cfg.SMTPListeners {
		for _, u := range l.Users {
			out = append(out, u.PasswordHash)
		}
	}
	for _, w := range cfg.Alerts.Webhooks {
		out = append(out, w.URL)
	}
	return out
}

// startAlerter runs the alerter over the running subsystems. It only reads
// them, so nothing it does (or a channel that hangs) slows delivery.
func (d *daemon) startAlerter(ctx context.Context, p *plan) error {
	senders := map[string]string{}
	for _, a := range p.accounts {
		senders[a.Name] = cmp.Or(a.Mailbox, a.Username)
	}
	host, _ := os.Hostname()
	src := alerts.Sources{
		Health:   d.auth.AllHealth,
		Accounts: d.engine.AccountStates,
		Paused:   d.engine.Paused,
		DataDir:  p.cfg.DataDir,
	}
	if d.scans != nil {
		src.Folders = d.scans.Folders
	}
	var err error
	d.alerter, err = alerts.New(p.alerts, alerts.Deps{Queue: d.spool, Store: d.spool, Sources: src, Logger: d.log,
		Registerer: d.reg, Hostname: host, Senders: senders, Secrets: configSecrets(p.cfg)})
	if err != nil {
		return err
	}
	if err := d.alerter.Start(ctx); err != nil {
		return fmt.Errorf("starting the alerter: %w", err)
	}
	return nil
}

// Alerts implements adminapi.AlertControl.
func (i daemonInfo) Alerts() wire.AlertsResponse {
	if i.d.alerter == nil {
		return wire.AlertsResponse{Active: []wire.ActiveAlert{}, Channels: []wire.AlertChannel{}}
	}
	return i.d.alerter.Status()
}

// TestAlerts implements adminapi.AlertControl.
func (i daemonInfo) TestAlerts(ctx context.Context) wire.AlertTestResponse {
	if i.d.alerter == nil {
		return wire.AlertTestResponse{Results: []wire.AlertTestResult{}}
	}
	return i.d.alerter.Test(ctx)
}

// The alerter reads these through function values; keep the types honest.
var (
	_ func(context.Context) []auth.Health = (*auth.Manager)(nil).AllHealth
	_ func() []delivery.AccountState      = (*delivery.Engine)(nil).AccountStates
	_ func() []scanfolder.FolderStatus    = (*scanfolder.Watcher)(nil).Folders
)
