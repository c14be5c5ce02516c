package wire

import (
	"context"
	"net/http"
	"time"
)

// ActiveAlert is one condition the alerter has raised and not yet resolved.
type ActiveAlert struct {
	Key       string    `json:"key"`  // condition instance, e.g. account_needs_reauth/m365
	Kind      string    `json:"kind"` // e.g. account_needs_reauth
	Severity  string    `json:"severity"`
	Title     string    `json:"title"`
	Text      string    `json:"text"`
	Fix       string    `json:"fix,omitempty"`
	Account   string    `json:"account,omitempty"`
	Folder    string    `json:"folder,omitempty"`
	Waiting   int       `json:"waiting"`
	Since     time.Time `json:"since"`
	LastSent  time.Time `json:"last_sent"` // the start or the last reminder
	Reminders int       `json:"reminders"`
}

// AlertChannel is one alert channel's health.
type AlertChannel struct {
	Name          string    `json:"name"` // email, or the webhook's or command's name
	Kind          string    `json:"kind"` // email, webhook, command
	Target        string    `json:"target"`
	Pending       int       `json:"pending"` // notifications waiting for a retry
	Sent          int       `json:"sent"`    // since the daemon started
	Failed        int       `json:"failed"`  // failed attempts since the daemon started
	LastOK        time.Time `json:"last_ok,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
	LastErrorTime time.Time `json:"last_error_time,omitzero"`
}

// AlertsResponse is GET /v1/alerts.
type AlertsResponse struct {
	Active   []ActiveAlert  `json:"active"`
	Channels []AlertChannel `json:"channels"`
}

// AlertTestResult is one channel's outcome of a test alert.
type AlertTestResult struct {
	Channel  string        `json:"channel"`
	Kind     string        `json:"kind"`
	OK       bool          `json:"ok"`
	Detail   string        `json:"detail,omitempty"` // e.g. "queued as 01J... through m365"
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration"`
}

// AlertTestResponse is POST /v1/alerts/test.
type AlertTestResponse struct {
	Results []AlertTestResult `json:"results"`
}

// Alerts lists the active alerts and the channels' health.
func (c *Client) Alerts(ctx context.Context) (AlertsResponse, error) {
	var out AlertsResponse
	err := c.call(ctx, http.MethodGet, "/v1/alerts", nil, &out)
	return out, err
}

// TestAlerts sends a test alert through every channel and waits for each
// channel's result.
func (c *Client) TestAlerts(ctx context.Context) (AlertTestResponse, error) {
	var out AlertTestResponse
	err := c.call(ctx, http.MethodPost, "/v1/alerts/test", struct{}{}, &out)
	return out, err
}
