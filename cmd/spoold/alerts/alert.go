// Package alerts is spoold's alerter: it watches what spoold already knows
// (account health and expiry dates, the queue, dead letters, free disk
// space, scan folder failures, a paused delivery, an unclean stop) and tells
// a person through e-mail, webhooks (spoold's JSON, a Microsoft Teams
// workflow card or a Slack message) and commands.
//
// Each condition instance (a key such as "account_needs_reauth/m365") sends
// one "started" notification, a "reminder" every reminder interval while it
// lasts and one "resolved" when it ends. One-off events (a dead-letter
// digest, an unclean stop, a test) send a "notice". The alerter's state (the
// active alerts, the notifications each channel still owes, the run marker)
// lives in the spool database and every change is committed before anything
// is sent, so a restart or a kill -9 sends nothing twice (except the one
// notification that was being sent at the moment of a kill, as with any
// at-least-once delivery). On a spool several nodes share, one node at a
// time leads the alerts and the others only report their own disk, pause
// and unclean stop through it (see cluster.go).
//
// A channel that fails is retried with backoff (Options.Retry) on its own
// goroutine, counted in spoold_alerts_failed_total{channel}; neither a slow
// channel nor the alerter ever holds up delivery, which it only reads.
//
// # The webhook JSON schema (format json), version 1
//
//	{
//	  "schema": 1,
//	  "id": "account_needs_reauth/m365@1714032000000000000/started",  // unique per notification
//	  "key": "account_needs_reauth/m365",  // the condition instance; started/reminder/resolved share it
//	  "kind": "account_needs_reauth",      // see Kinds
//	  "event": "started",                  // started | reminder | resolved | notice | test
//	  "severity": "critical",              // critical | warning | info
//	  "title": "Account m365 needs sign-in",
//	  "text": "what happened, in sentences",
//	  "fix": "the exact fix, e.g. run: spoolctl auth login m365",
//	  "since": "2024-04-25T08:00:00Z",     // when the condition started
//	  "time": "2024-04-25T08:00:30Z",      // when this notification was made
//	  "account": "m365",                   // when it concerns an account
//	  "folder": "scans",                   // when it concerns a scan folder
//	  "waiting": 12,                       // messages waiting that it holds up
//	  "host": "printhost"
//	}
//
// No alert carries a secret: texts come from health reasons and counts that
// never hold one, and every body is scrubbed of the configured secrets
// before it leaves (Deps.Secrets) as a second line of defence.
package alerts

import (
	"fmt"
	"time"
)

// Schema is the version of the JSON alert.
const Schema = 1

// Event is what a notification says about its condition.
type Event string

// Events.
const (
	EventStarted  Event = "started"
	EventReminder Event = "reminder"
	EventResolved Event = "resolved"
	EventNotice   Event = "notice" // a one-off: dead-letter digest, unclean stop
	EventTest     Event = "test"   // spoolctl alerts test
)

// Kinds of alert.
const (
	KindNeedsReauth    = "account_needs_reauth"
	KindMisconfigured  = "account_misconfigured"
	KindRefreshFailing = "account_refresh_failing"
	KindAccountHeld    = "account_held" // delivery holds the account: daily budget, a blocked-account reply
	KindSecretExpiring = "client_secret_expiring"
	KindGrantExpiring  = "grant_expiring"
	KindDeadLetters    = "dead_letters"
	KindQueueAge       = "queue_age"
	KindQueueDepth     = "queue_depth"
	KindDiskFree       = "disk_free"
	KindScanFailures   = "scan_failures"
	KindPaused         = "delivery_paused"
	KindUncleanStop    = "unclean_stop"
	KindTest           = "test"
)

// Severities.
const (
	SeverityCritical = "critical"
	SeverityWarning  = "warning"
	SeverityInfo     = "info"
)

// Alert is one notification, as every channel sends it.
type Alert struct {
	Schema   int       `json:"schema"`
	ID       string    `json:"id"`
	Key      string    `json:"key"`
	Kind     string    `json:"kind"`
	Event    Event     `json:"event"`
	Severity string    `json:"severity"`
	Title    string    `json:"title"`
	Text     string    `json:"text"`
	Fix      string    `json:"fix,omitempty"`
	Since    time.Time `json:"since"`
	Time     time.Time `json:"time"`
	Account  string    `json:"account,omitempty"`
	Folder   string    `json:"folder,omitempty"`
	Waiting  int       `json:"waiting"`
	Host     string    `json:"host"`
}

// finding is a condition found active by one check.
type finding struct {
	Key      string    `json:"key"`
	Kind     string    `json:"kind"`
	Severity string    `json:"severity"`
	Title    string    `json:"title"`
	Text     string    `json:"text"`
	Fix      string    `json:"fix,omitempty"`
	Account  string    `json:"account,omitempty"`
	Folder   string    `json:"folder,omitempty"`
	Waiting  int       `json:"waiting"`
	Since    time.Time `json:"since,omitzero"` // when the source knows it; else first seen
}

// Headline is the one-line summary channels lead with: "PROBLEM: ...",
// "REMINDER: ...", "RESOLVED: ...".
func (a Alert) Headline() string {
	prefix := map[Event]string{EventStarted: "PROBLEM", EventReminder: "REMINDER", EventResolved: "RESOLVED", EventNotice: "NOTICE", EventTest: "TEST"}[a.Event]
	if prefix == "" {
		prefix = string(a.Event)
	}
	return fmt.Sprintf("%s: %s", prefix, a.Title)
}

// Facts are the alert's details as label/value pairs, in the order every
// format shows them.
func (a Alert) Facts() [][2]string {
	var out [][2]string
	add := func(k, v string) {
		if v != "" {
			out = append(out, [2]string{k, v})
		}
	}
	add("Since", a.Since.Format(time.RFC3339))
	if a.Event == EventResolved {
		add("Resolved", a.Time.Format(time.RFC3339))
	}
	add("Account", a.Account)
	add("Scan folder", a.Folder)
	if a.Waiting > 0 {
		add("Messages waiting", fmt.Sprint(a.Waiting))
	}
	add("Host", a.Host)
	add("Alert", a.Key)
	return out
}
