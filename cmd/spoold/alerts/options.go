package alerts

import (
	"fmt"
	"net/mail"
	"net/url"
	"path/filepath"
	"time"

	"github.com/spoold/spoold/configs/field"
	"github.com/spoold/spoold/configs/secret"
)

// Options is the alerts section as the alerter runs it. A nil pointer is
// "not set" (WithDefaults gives it the default); a zero value behind a
// pointer turns that condition off.
type Options struct {
	CheckInterval    time.Duration
	ReminderInterval *time.Duration // 0 = no reminders

	SecretExpiryWarning *time.Duration // client secret expiring within; 0 = off
	GrantExpiryWarning  *time.Duration // Google testing-app grant or idle Microsoft grant expiring within; 0 = off
	QueueAge            *time.Duration // oldest waiting message older than; 0 = off
	QueueDepth          *int           // waiting messages more than; 0 = off
	DiskFree            *int64         // free bytes of the data dir below; 0 = off
	PausedFor           *time.Duration // delivery paused longer than; 0 = off
	DeadLetterDigest    *time.Duration // at most one dead-letter digest per; 0 = off
	ScanFailures        *bool
	UncleanStop         *bool

	DelayWarning time.Duration // 0 = off

	Retry    Retry
	Email    EmailConfig
	Webhooks []WebhookConfig
	Commands []CommandConfig
}

// Retry is how a failed notification is retried on its channel.
type Retry struct {
	First  time.Duration // doubles after each failure
	Max    time.Duration
	GiveUp time.Duration // after this long the notification is dropped (and logged)
}

// EmailConfig is the e-mail channel; Account "" = none.
type EmailConfig struct {
	Account string
	To      []string
}

// WebhookConfig is one webhook channel.
type WebhookConfig struct {
	Name    string
	URL     secret.Secret
	Format  string // json, teams, slack
	Timeout time.Duration
}

// CommandConfig is one command channel.
type CommandConfig struct {
	Name    string
	Command []string
	Timeout time.Duration
}

// The defaults, in one place.
const (
	DefaultCheckInterval       = 30 * time.Second
	DefaultReminderInterval    = 24 * time.Hour
	DefaultSecretExpiryWarning = 14 * 24 * time.Hour
	DefaultGrantExpiryWarning  = 2 * 24 * time.Hour
	DefaultQueueAge            = 4 * time.Hour
	DefaultQueueDepth          = 1000
	DefaultDiskFree            = 1000 * 1000 * 1000 // 1GB
	DefaultPausedFor           = time.Hour
	DefaultDeadLetterDigest    = time.Hour
	DefaultRetryFirst          = 30 * time.Second
	DefaultRetryMax            = 30 * time.Minute
	DefaultRetryGiveUp         = 24 * time.Hour
	DefaultWebhookTimeout      = 10 * time.Second
	DefaultCommandTimeout      = 30 * time.Second
)

// Formats of a webhook's body.
const (
	FormatJSON  = "json"
	FormatTeams = "teams"
	FormatSlack = "slack"
)

func orDefault[T any](p *T, def T) *T {
	if p != nil {
		return p
	}
	return &def
}

// WithDefaults returns o with every unset value at its default. Lists are
// copied, so the result shares nothing with o.
func (o Options) WithDefaults() Options {
	if o.CheckInterval <= 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	o.ReminderInterval = orDefault(o.ReminderInterval, DefaultReminderInterval)
	o.SecretExpiryWarning = orDefault(o.SecretExpiryWarning, DefaultSecretExpiryWarning)
	o.GrantExpiryWarning = orDefault(o.GrantExpiryWarning, DefaultGrantExpiryWarning)
	o.QueueAge = orDefault(o.QueueAge, DefaultQueueAge)
	o.QueueDepth = orDefault(o.QueueDepth, DefaultQueueDepth)
	o.DiskFree = orDefault(o.DiskFree, int64(DefaultDiskFree))
	o.PausedFor = orDefault(o.PausedFor, DefaultPausedFor)
	o.DeadLetterDigest = orDefault(o.DeadLetterDigest, DefaultDeadLetterDigest)
	o.ScanFailures = orDefault(o.ScanFailures, true)
	o.UncleanStop = orDefault(o.UncleanStop, true)
	if o.Retry.First <= 0 {
		o.Retry.First = DefaultRetryFirst
	}
	if o.Retry.Max <= 0 {
		o.Retry.Max = DefaultRetryMax
	}
	if o.Retry.GiveUp <= 0 {
		o.Retry.GiveUp = DefaultRetryGiveUp
	}
	o.Email.To = append([]string(nil), o.Email.To...)
	o.Webhooks = append([]WebhookConfig(nil), o.Webhooks...)
	for i := range o.Webhooks {
		w := &o.Webhooks[i]
		if w.Name == "" {
			w.Name = fmt.Sprintf("webhook%d", i+1)
		}
		if w.Format == "" {
			w.Format = FormatJSON
		}
		if w.Timeout <= 0 {
			w.Timeout = DefaultWebhookTimeout
		}
	}
	o.Commands = append([]CommandConfig(nil), o.Commands...)
	for i := range o.Commands {
		c := &o.Commands[i]
		c.Command = append([]string(nil), c.Command...)
		if c.Name == "" {
			c.Name = fmt.Sprintf("command%d", i+1)
		}
		if c.Timeout <= 0 {
			c.Timeout = DefaultCommandTimeout
		}
	}
	return o
}

// Validate checks o after WithDefaults; keys are relative to alerts:.
func (o Options) Validate() field.Problems {
	var ps field.Problems
	if o.CheckInterval < time.Second || o.CheckInterval > time.Hour {
		ps.Add("check_interval", "%s is out of range: use 1s to 1h", o.CheckInterval)
	}
	if r := *o.ReminderInterval; r != 0 && r < time.Minute {
		ps.Add("reminder_interval", "%s is too short: use at least 1m, or 0 for no reminders", r)
	}
	for _, d := range []struct {
		key string
		p   *time.Duration
	}{{"queue_age", o.QueueAge}, {"paused_for", o.PausedFor}, {"dead_letter_digest", o.DeadLetterDigest}} {
		if *d.p != 0 && *d.p < time.Minute {
			ps.Add(d.key, "%s is too short: use at least 1m, or 0 to turn it off", *d.p)
		}
	}
	if *o.QueueDepth < 0 {
		ps.Add("queue_depth", "must not be negative (0 turns it off)")
	}
	if *o.DiskFree < 0 {
		ps.Add("disk_free", "must not be negative (0 turns it off)")
	}
	if o.DelayWarning != 0 && o.DelayWarning < time.Minute {
		ps.Add("delay_warning", "%s is too short: use at least 1m, or 0 for no delay warnings", o.DelayWarning)
	}
	if o.Retry.First < time.Second {
		ps.Add("retry.first", "%s is too short: use at least 1s", o.Retry.First)
	}
	if o.Retry.Max < o.Retry.First {
		ps.Add("retry.max", "%s is shorter than retry.first (%s)", o.Retry.Max, o.Retry.First)
	}
	if o.Retry.GiveUp < o.Retry.First {
		ps.Add("retry.give_up", "%s is shorter than retry.first (%s)", o.Retry.GiveUp, o.Retry.First)
	}

	names := map[string]bool{}
	name := func(key, n string) {
		switch {
		case !validName(n):
			ps.Add(key, "%q: use letters, digits, '.', '_' and '-' only", field.Clip(n))
		case names[n] || n == ChannelEmail:
			ps.Add(key, "channel name %q is used twice (\"email\" is the e-mail channel's)", n)
		}
		names[n] = true
	}
	switch {
	case o.Email.Account == "" && len(o.Email.To) > 0:
		ps.Add("email.account", "required with email.to: the account the alert mail is sent through")
	case o.Email.Account != "" && len(o.Email.To) == 0:
		ps.Add("email.to", "required with email.account: the admin addresses alerts go to")
	}
	for i, to := range o.Email.To {
		if a, err := mail.ParseAddress(to); err != nil || a.Address != to {
			ps.Add(field.Index("email.to", i), "%q is not a plain e-mail address like admin@example.com", field.Clip(to))
		}
	}
	for i, w := range o.Webhooks {
		key := field.Index("webhooks", i)
		name(key+".name", w.Name)
		u, err := url.Parse(w.URL.Reveal())
		switch {
		case w.URL == "":
			ps.Add(key+".url", "required: the webhook's URL (or url_file)")
		case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
			// The URL is a secret: the reason never quotes it.
			ps.Add(key+".url", "is not an http:// or https:// URL")
		}
		switch w.Format {
		case FormatJSON, FormatTeams, FormatSlack:
		default:
			ps.Add(key+".format", "%q is not valid: want json, teams or slack", field.Clip(w.Format))
		}
		if w.Timeout > 5*time.Minute {
			ps.Add(key+".timeout", "%s is too long: use at most 5m", w.Timeout)
		}
	}
	for i, c := range o.Commands {
		key := field.Index("commands", i)
		name(key+".name", c.Name)
		switch {
		case len(c.Command) == 0 || c.Command[0] == "":
			ps.Add(key+".command", "required: the program and its arguments, e.g. [/usr/local/bin/notify, --urgent]")
		case !filepath.IsAbs(c.Command[0]):
			ps.Add(key+".command", "%q is not an absolute path: spoold runs the program without a shell or PATH search", field.Clip(c.Command[0]))
		}
		if c.Timeout > 10*time.Minute {
			ps.Add(key+".timeout", "%s is too long: use at most 10m", c.Timeout)
		}
	}
	return ps
}

// ChannelEmail is the e-mail channel's name (in metrics and spoolctl alerts).
const ChannelEmail = "email"

func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return s != "" && len(s) <= 64
}
