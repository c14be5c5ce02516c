package configs

import (
	"fmt"
	"time"

	"github.com/spoold/spoold/configs/secret"
)

// Alerts is the alerts section: which conditions make spoold tell a person,
// and through which channels (e-mail to admins, webhooks, commands). The
// alerter (cmd/spoold/alerts) owns the defaults and validation; here a nil
// pointer means "not set" (the alerter's default) and 0 turns a condition
// off.
type Alerts struct {
	CheckInterval    time.Duration  `yaml:"check_interval" json:"check_interval"`       // default 30s
	ReminderInterval *time.Duration `yaml:"reminder_interval" json:"reminder_interval"` // default 24h; 0 = no reminders

	// Conditions.
	SecretExpiryWarning *time.Duration `yaml:"secret_expiry_warning" json:"secret_expiry_warning"` // default 14d; 0 = off
	GrantExpiryWarning  *time.Duration `yaml:"grant_expiry_warning" json:"grant_expiry_warning"`   // default 2d; 0 = off
	QueueAge            *time.Duration `yaml:"queue_age" json:"queue_age"`                         // default 4h; 0 = off
	QueueDepth          *int           `yaml:"queue_depth" json:"queue_depth"`                     // default 1000; 0 = off
	DiskFree            *int64         `yaml:"disk_free" json:"disk_free"`                         // bytes; default 1GB; 0 = off
	PausedFor           *time.Duration `yaml:"paused_for" json:"paused_for"`                       // default 1h; 0 = off
	DeadLetterDigest    *time.Duration `yaml:"dead_letter_digest" json:"dead_letter_digest"`       // default 1h; 0 = off
	ScanFailures        *bool          `yaml:"scan_failures" json:"scan_failures"`                 // default true
	UncleanStop         *bool          `yaml:"unclean_stop" json:"unclean_stop"`                   // default true

	// DelayWarning tells a message's sender that it is still undelivered
	// after this long, once per message; 0 (the default) = off.
	DelayWarning time.Duration `yaml:"delay_warning" json:"delay_warning"`

	Retry    AlertRetry     `yaml:"retry" json:"retry"`
	Email    AlertEmail     `yaml:"email" json:"email"`
	Webhooks []AlertWebhook `yaml:"webhooks" json:"webhooks"`
	Commands []AlertCommand `yaml:"commands" json:"commands"`
}

// AlertRetry is how a channel that failed is retried.
type AlertRetry struct {
	First  time.Duration `yaml:"first" json:"first"`     // default 30s, doubling
	Max    time.Duration `yaml:"max" json:"max"`         // default 30m
	GiveUp time.Duration `yaml:"give_up" json:"give_up"` // default 24h
}

// AlertEmail sends alerts as mail to admins, queued like any message
// through Account.
type AlertEmail struct {
	Account string   `yaml:"account" json:"account"` // "" = no e-mail channel
	To      []string `yaml:"to" json:"to"`
}

// AlertWebhook POSTs alerts as JSON.
type AlertWebhook struct {
	Name    string        `yaml:"name" json:"name"` // default webhook<N>
	URL     secret.Secret `yaml:"url" json:"url"`   // a secret: Slack and Teams URLs carry their key
	URLFile string        `yaml:"url_file" json:"url_file"`
	Format  AlertFormat   `yaml:"format" json:"format"`   // default json
	Timeout time.Duration `yaml:"timeout" json:"timeout"` // default 10s
}

// AlertCommand runs a program with the alert as JSON on stdin.
type AlertCommand struct {
	Name    string        `yaml:"name" json:"name"` // default command<N>
	Command []string      `yaml:"command" json:"command"`
	Timeout time.Duration `yaml:"timeout" json:"timeout"` // default 30s
}

// AlertFormat is alerts.webhooks[].format.
type AlertFormat string

// Webhook formats.
const (
	AlertFormatJSON  AlertFormat = "json"  // spoold's own schema
	AlertFormatTeams AlertFormat = "teams" // an Adaptive Card for a Teams workflow
	AlertFormatSlack AlertFormat = "slack" // a Slack incoming webhook message
)

func (AlertFormat) values() []string { return []string{"", "json", "teams", "slack"} }

// alerts resolves the webhook URLs (secrets) and checks the e-mail
// account's reference; the alerter validates the rest.
func (v *validator) alerts(a *Alerts, ref func(key, name string)) {
	for i := range a.Webhooks {
		w := &a.Webhooks[i]
		key := fmt.Sprintf("alerts.webhooks[%d]", i)
		v.resolveSecret(&w.URL, w.URLFile, key+".url", key+".url_file")
	}
	ref("alerts.email.account", a.Email.Account)
}
