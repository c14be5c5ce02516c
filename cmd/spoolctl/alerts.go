package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
)

// alertsCmd lists the active alerts and the channels' health; its test
// subcommand sends a test alert through every channel.
func (a *app) alertsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "List the active alerts and the health of each alert channel",
		Long: "alerts lists what spoold's alerter has raised and not yet resolved (an account that needs\n" +
			"to sign in, an old or long queue, low disk space, failed scans, ...), each with its fix, and\n" +
			"for each channel (e-mail, webhooks, commands) what was sent, what failed and what waits for\n" +
			"a retry. 'spoolctl alerts test' sends a test alert through every channel.",
		Args: cobra.NoArgs,
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.RunE = request(a, &asJSON, func(ctx context.Context, c *wire.Client) (wire.AlertsResponse, error) { return c.Alerts(ctx) }, a.printAlerts, nil)
	cmd.AddCommand(a.alertsTestCmd())
	return cmd
}

func (a *app) printAlerts(w io.Writer, res wire.AlertsResponse) {
	now := a.localNow()
	if len(res.Active) == 0 {
		fmt.Fprintln(w, "no active alerts")
	} else {
		fmt.Fprintf(w, "%d active alert(s):\n", len(res.Active))
	}
	for _, al := range res.Active {
		fmt.Fprintf(w, "\n%s  %s  (%s, since %s", al.Severity, al.Title, al.Key, stamp(a.local(al.Since), now))
		if al.Reminders > 0 {
			fmt.Fprintf(w, ", %d reminder(s)", al.Reminders)
		}
		fmt.Fprintln(w, ")")
		fmt.Fprintf(w, "  %s\n", al.Text)
		if al.Fix != "" {
			fmt.Fprintf(w, "  fix: %s\n", al.Fix)
		}
	}
	fmt.Fprintln(w)
	if len(res.Channels) == 0 {
		fmt.Fprintln(w, "no alert channels: alerts are only logged (configure alerts.email, alerts.webhooks or alerts.commands)")
		return
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "CHANNEL\tKIND\tTARGET\tSENT\tFAILED\tPENDING\tLAST OK\tLAST ERROR")
	for _, ch := range res.Channels {
		lastOK := "-"
		if !ch.LastOK.IsZero() {
			lastOK = stamp(a.local(ch.LastOK), now)
		}
		lastErr := "-"
		if ch.LastError != "" {
			lastErr = stamp(a.local(ch.LastErrorTime), now) + ": " + short(ch.LastError, 100)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", ch.Name, ch.Kind, ch.Target, ch.Sent, ch.Failed, ch.Pending, lastOK, lastErr)
	}
	tw.Flush()
}

func (a *app) alertsTestCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "test",
		Short: "Send a test alert through every alert channel and print each result",
		Long: "test sends one test alert through every configured channel at once and prints what each\n" +
			"answered. E-mail is queued through its account like any message: 'ok' means queued, and the\n" +
			"message then shows in spoolctl list. The exit status is 1 when a channel failed.",
		Args: cobra.NoArgs,
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.RunE = request(a, &asJSON, func(ctx context.Context, c *wire.Client) (wire.AlertTestResponse, error) {
		return c.TestAlerts(ctx)
	}, printAlertTests, func(res wire.AlertTestResponse) bool {
		return slices.ContainsFunc(res.Results, func(r wire.AlertTestResult) bool { return !r.OK })
	})
	return cmd
}

func printAlertTests(w io.Writer, res wire.AlertTestResponse) {
	if len(res.Results) == 0 {
		fmt.Fprintln(w, "no alert channels configured (alerts.email, alerts.webhooks, alerts.commands): nothing to test")
	}
	for _, r := range res.Results {
		took := r.Duration.Round(time.Millisecond)
		if r.OK {
			fmt.Fprintf(w, "%s (%s): ok in %s: %s\n", r.Channel, r.Kind, took, r.Detail)
		} else {
			fmt.Fprintf(w, "%s (%s): FAILED after %s: %s\n", r.Channel, r.Kind, took, r.Error)
		}
	}
}
