package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/configs/units"
)

func (a *app) statusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Daemon version and uptime, queue depth, account health, listeners, scan folders",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.RunE = a.run(func(cmd *cobra.Command, _ []string) error {
		c, err := a.client(cmd, true)
		if err != nil {
			return err
		}
		ctx, cancel := a.ctx(cmd)
		defer cancel()
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(cmd.OutOrStdout(), st)
		}
		st.Now = a.local(st.Now)
		printStatus(cmd.OutOrStdout(), st, a.spoolDir)
		return nil
	})
	return cmd
}

func printStatus(w io.Writer, st wire.StatusResponse, spoolDir string) {
	now := st.Now
	if st.Offline {
		fmt.Fprintf(w, "spool %s (offline, read-only: the daemon is not running)\n", spoolDir)
	} else {
		fmt.Fprintf(w, "spoold %s", orDash(st.Version))
		if !st.Started.IsZero() {
			fmt.Fprintf(w, ", up %s (since %s)", age(time.Duration(st.UptimeSeconds)*time.Second), clockTime(st.Started, now))
		}
		fmt.Fprintln(w)
		if st.DeliveryPaused {
			fmt.Fprintln(w, "delivery is PAUSED: mail is accepted and queued but not sent (spoolctl resume)")
		}
	}
	fmt.Fprintln(w, "\nQueue:")
	tw := newTable(w)
	total := 0
	for _, s := range wire.States {
		fmt.Fprintf(tw, "  %s\t%d\n", s, st.Queue[s])
		total += st.Queue[s]
	}
	fmt.Fprintf(tw, "  total\t%d\n", total)
	tw.Flush()
	if st.Offline {
		return
	}
	printNodes(w, st, now) // nodes.go
	if st.LastReload != nil {
		fmt.Fprintln(w, "\nLast reload:")
		printReload(w, *st.LastReload, now, "  ")
	}
	fmt.Fprintln(w, "\nAccounts:")
	if st.AccountsError != "" {
		fmt.Fprintf(w, "  cannot read accounts: %s\n", st.AccountsError)
	}
	if len(st.Accounts) > 0 {
		printAccountsTable(w, st.Accounts, now, "  ")
	} else if st.AccountsError == "" {
		fmt.Fprintln(w, "  none configured")
	}
	fmt.Fprintln(w, "\nListeners:")
	if len(st.Listeners) == 0 {
		fmt.Fprintln(w, "  none")
	} else {
		tw = newTable(w)
		fmt.Fprintln(tw, "  NAME\tKIND\tADDRESS\tTLS\tERROR")
		for _, l := range st.Listeners {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", l.Name, l.Kind, l.Addr, orDash(l.TLS), orDash(short(l.Error, 60)))
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "\nScan folders:")
	if len(st.ScanFolders) == 0 {
		fmt.Fprintln(w, "  none")
		return
	}
	tw = newTable(w)
	fmt.Fprintln(tw, "  NAME\tPATH\tMODE\tPENDING\tLAST SCAN\tLAST ERROR")
	for _, f := range st.ScanFolders {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\n", f.Name, f.Path, f.Mode, f.Pending,
			since(f.LastScan, now), orDash(short(f.LastError, 60)))
	}
	tw.Flush()
}

// listPage is how many messages list asks for per request.
const listPage = 500

func (a *app) listCmd() *cobra.Command {
	var (
		asJSON    bool
		req       wire.ListRequest
		olderThan time.Duration
		limit     int
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List queued messages (like postqueue -p)",
		Args:  cobra.NoArgs,
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.Var(stateFlag{&req.State}, "state", "only messages in `STATE` (queued, active, deferred, held, dead, delivered)")
	f.StringVar(&req.Account, "account", "", "only messages routed to `ACCOUNT`")
	f.Var(units.DurationFlag{D: &olderThan}, "older-than", "only messages created more than `D` ago (e.g. 30m, 12h, 7d)")
	f.IntVar(&limit, "limit", 0, "show at most `N` messages (0 = all)")
	cmd.RunE = a.run(func(cmd *cobra.Command, _ []string) error {
		if limit < 0 {
			return usagef("--limit must not be negative")
		}
		c, err := a.client(cmd, true)
		if err != nil {
			return err
		}
		ctx, cancel := a.ctx(cmd)
		defer cancel()
		req.OlderThan = olderThan
		all := wire.ListResponse{Messages: []wire.MessageView{}}
		for {
			req.Limit = listPage
			if limit > 0 && limit-len(all.Messages) < listPage {
				req.Limit = limit - len(all.Messages)
			}
			page, err := c.List(ctx, req)
			if err != nil {
				return err
			}
			all.Now = page.Now
			all.Messages = append(all.Messages, page.Messages...)
			all.Next = page.Next
			if page.Next == "" || (limit > 0 && len(all.Messages) >= limit) {
				break
			}
			req.Cursor = page.Next
		}
		if asJSON {
			return printJSON(cmd.OutOrStdout(), all)
		}
		filtered := req.State != "" || req.Account != "" || olderThan > 0
		printList(cmd.OutOrStdout(), all, filtered)
		return nil
	})
	return cmd
}

// printList prints the table; filtered says whether --state, --account or
// --older-than narrowed it, so an empty result is not called an empty queue.
func printList(w io.Writer, l wire.ListResponse, filtered bool) {
	if len(l.Messages) == 0 {
		if filtered {
			fmt.Fprintln(w, "no messages match")
		} else {
			fmt.Fprintln(w, "Mail queue is empty")
		}
		return
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tSTATE\tAGE\tATTEMPTS\tNEXT\tFROM\tTO\tSUBJECT\tSIZE\tLAST ERROR")
	var total int64
	for _, m := range l.Messages {
		next := "-"
		if m.State == wire.StateQueued || m.State == wire.StateDeferred {
			next = until(m.NextAttempt, l.Now)
		}
		last := errLine(m.LastError)
		if last == "" {
			last = m.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.State,
			age(time.Duration(m.AgeSeconds)*time.Second), m.Attempts, next, short(sender(m.From), 40),
			short(recipients(m.Recipients), 40), orDash(short(m.Subject, 30)), size(m.Size), orDash(short(last, 50)))
		total += m.Size
	}
	tw.Flush()
	more := ""
	if l.Next != "" {
		more = " (more not shown)"
	}
	fmt.Fprintf(w, "-- %d %s, %s%s\n", len(l.Messages), plural(len(l.Messages), "message"), size(total), more)
}

func (a *app) showCmd() *cobra.Command {
	var asJSON, headers, body, raw bool
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a message: envelope, recipients, source, attempt history",
		Args:  exactArgs(1, "a message ID"),
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.BoolVar(&headers, "headers", false, "print the message's header section")
	f.BoolVar(&body, "body", false, "print the message's body (after the headers)")
	f.BoolVar(&raw, "raw", false, "print the raw RFC 5322 message")
	cmd.MarkFlagsMutuallyExclusive("headers", "body", "raw")
	cmd.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		id := args[0]
		if asJSON && (body || raw) {
			return usagef("--json cannot be combined with --body or --raw")
		}
		c, err := a.client(cmd, true)
		if err != nil {
			return err
		}
		ctx, cancel := a.ctx(cmd)
		defer cancel()
		out := cmd.OutOrStdout()
		if headers || body || raw {
			rc, err := c.Body(ctx, id)
			if err != nil {
				return err
			}
			defer rc.Close()
			switch {
			case raw:
				_, err = io.Copy(out, rc)
			case body:
				err = copyBody(out, rc)
			case asJSON:
				var msg *mail.Message
				msg, err = mail.ReadMessage(rc)
				if err == nil {
					err = printJSON(out, map[string]any{"id": id, "headers": msg.Header})
				}
			default:
				err = copyHeaders(out, rc)
			}
			if err != nil {
				return fmt.Errorf("reading message %s: %w", id, err)
			}
			return nil
		}
		m, err := c.Get(ctx, id)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(out, m)
		}
		// The daemon's clock, recovered from the age it computed.
		now := a.localNow()
		if !m.Created.IsZero() {
			now = a.local(m.Created.Add(time.Duration(m.AgeSeconds) * time.Second))
		}
		printMessage(out, m, now)
		return nil
	})
	return cmd
}

// copyHeaders prints the header section as stored (order kept), without the
// blank line that ends it.
func copyHeaders(w io.Writer, r io.Reader) error {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		text := strings.TrimRight(line, "\r\n")
		if text == "" {
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			return nil
		}
		if _, werr := io.WriteString(w, text+"\n"); werr != nil {
			return werr
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// copyBody skips the header section and streams the rest.
func copyBody(w io.Writer, r io.Reader) error {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if strings.TrimRight(line, "\r\n") == "" {
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			break
		}
		if errors.Is(err, io.EOF) {
			return nil // headers only
		}
		if err != nil {
			return err
		}
	}
	_, err := io.Copy(w, br)
	return err
}

func printMessage(w io.Writer, m wire.MessageView, now time.Time) {
	tw := newTable(w)
	fmt.Fprintf(tw, "Message:\t%s\n", m.ID)
	state := string(m.State)
	if m.Reason != "" {
		state += " (" + m.Reason + ")"
	}
	fmt.Fprintf(tw, "State:\t%s\n", state)
	fmt.Fprintf(tw, "Account:\t%s\n", orDash(m.Account))
	fmt.Fprintf(tw, "From:\t<%s>\n", m.From)
	fmt.Fprintf(tw, "Subject:\t%s\n", orDash(short(m.Subject, 200)))
	fmt.Fprintf(tw, "Size:\t%s (%d bytes)\n", size(m.Size), m.Size)
	fmt.Fprintf(tw, "Created:\t%s\n", stamp(m.Created, now))
	fmt.Fprintf(tw, "Updated:\t%s\n", stamp(m.Updated, now))
	fmt.Fprintf(tw, "Attempts:\t%d\n", m.Attempts)
	if m.State == wire.StateQueued || m.State == wire.StateDeferred {
		next := stamp(m.NextAttempt, now)
		if !m.NextAttempt.IsZero() && !m.NextAttempt.After(now) {
			next = clockTime(m.NextAttempt, now) + " (due now)"
		}
		fmt.Fprintf(tw, "Next attempt:\t%s\n", next)
	}
	if m.State == wire.StateActive {
		fmt.Fprintf(tw, "Lease:\t%s until %s\n", m.LeaseOwner, stamp(m.LeaseUntil, now))
	}
	if !m.DeliveredAt.IsZero() {
		fmt.Fprintf(tw, "Delivered:\t%s\n", stamp(m.DeliveredAt, now))
	}
	if m.DeliveredVia != "" {
		fmt.Fprintf(tw, "Delivered via:\t%s (fallback for %s)\n", m.DeliveredVia, m.Account)
	}
	if m.LastError != nil {
		le := errLine(m.LastError)
		if m.LastError.Class != "" {
			le += " [" + m.LastError.Class + "]"
		}
		fmt.Fprintf(tw, "Last error:\t%s\n", le)
	}
	fmt.Fprintf(tw, "Source:\t%s\n", sourceLine(m.Source))
	tw.Flush()

	fmt.Fprintln(w, "\nRecipients:")
	tw = newTable(w)
	for _, r := range m.Recipients {
		detail := errLine(r.Error)
		if r.State == "delivered" && !r.DeliveredAt.IsZero() {
			detail = "at " + clockTime(r.DeliveredAt, now)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", r.Addr, r.State, orDash(detail))
	}
	tw.Flush()

	fmt.Fprintln(w, "\nHistory:")
	if len(m.History) == 0 {
		fmt.Fprintln(w, "  no delivery attempts yet")
		return
	}
	tw = newTable(w)
	fmt.Fprintln(tw, "  START\tDURATION\tOWNER\tRESULT\tERROR")
	for _, h := range m.History {
		dur := "open"
		if !h.End.IsZero() {
			dur = h.End.Sub(h.Start).Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", clockTime(h.Start, now), dur,
			orDash(h.Owner), orDash(h.Result), orDash(errLine(h.Error)))
	}
	tw.Flush()
}

func sourceLine(s wire.SourceInfo) string {
	var b strings.Builder
	b.WriteString(orDash(s.Kind))
	add := func(label, v string) {
		if v != "" {
			fmt.Fprintf(&b, " %s=%s", label, v)
		}
	}
	add("listener", s.Listener)
	add("peer", s.PeerIP)
	add("auth", s.AuthUser)
	add("helo", s.HELO)
	add("folder", s.Folder)
	add("path", s.Path)
	add("sha256", s.SHA256)
	add("notice-for", s.NoticeFor)
	return b.String()
}

// exactArgs is cobra.ExactArgs with a message naming what is missing.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%s needs %s, got %d arguments", cmd.CommandPath(), what, len(args))
		}
		return nil
	}
}

// minArgs requires at least one argument.
func minArgs(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return fmt.Errorf("%s needs %s", cmd.CommandPath(), what)
		}
		return nil
	}
}
