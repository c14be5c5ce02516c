package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/configs/units"
)

// auditCmd lists the admin audit log: every state-changing action taken
// through the admin socket or the web console, who took it and how it ended.
func (a *app) auditCmd() *cobra.Command {
	var asJSON bool
	var since string
	limit := 100
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "List who held, released, deleted, purged, signed in ... what, and how it ended",
		Long: "audit lists the admin actions spoold recorded, newest first: hold, release, requeue, delete,\n" +
			"purge, flush, pause, resume, auth login/logout, test-send, reload, alerts test and keys rotate,\n" +
			"from the admin socket (the local user, known from the socket) or the web console (its user),\n" +
			"with the messages or account concerned and the result. Entries are kept for\n" +
			"admin.audit_retention (default 90d). Needs the admin group.",
		Args: cobra.NoArgs,
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVar(&since, "since", "", "only entries from the last `DURATION` (24h, 7d) or since a time (2026-01-31T08:00:00Z)")
	cmd.Flags().IntVar(&limit, "limit", limit, "at most `N` entries (0 = all kept)")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		req := wire.AuditRequest{Limit: limit}
		if since != "" {
			t, err := a.parseSince(since)
			if err != nil {
				return &usageError{err}
			}
			req.Since = t
		}
		if limit < 0 {
			return &usageError{fmt.Errorf("--limit %d: want 0 (all) or more", limit)}
		}
		if limit == 0 {
			req.Limit = -1
		}
		return request(a, &asJSON, func(ctx context.Context, cl *wire.Client) (wire.AuditResponse, error) {
			return cl.Audit(ctx, req)
		}, a.printAudit, nil)(c, args)
	}
	return cmd
}

// parseSince reads --since: a duration back from now or an RFC 3339 time.
func (a *app) parseSince(s string) (time.Time, error) {
	if d, err := units.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--since %s: want a positive duration", s)
		}
		return a.localNow().Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want a duration such as 24h or 7d, or a time such as 2026-01-31T08:00:00Z", s)
}

func (a *app) printAudit(w io.Writer, res wire.AuditResponse) {
	if len(res.Entries) == 0 {
		fmt.Fprintln(w, "no audit entries")
		return
	}
	now := a.localNow()
	tw := newTable(w)
	fmt.Fprintln(tw, "TIME\tWHO\tACTION\tTARGET\tRESULT\tDETAIL")
	for _, e := range res.Entries {
		who := e.User
		if who == "" {
			who = "?"
		}
		if e.Via == "socket" && e.UID >= 0 {
			who += fmt.Sprintf(" (uid %d)", e.UID)
		} else if e.Via != "" {
			who += " via " + e.Via
		}
		result := e.Result
		if e.Code != "" {
			result = e.Code + ": " + result
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", stamp(a.local(e.Time), now), who, e.Action, dash(e.Target),
			short(strings.ReplaceAll(result, "\n", " "), 100), dash(e.Detail))
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
