package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/configs/units"
)

func (a *app) accountsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "accounts",
		Short: "List upstream accounts and their health",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.RunE = request(a, &asJSON, func(ctx context.Context, c *wire.Client) (wire.AccountsResponse, error) {
		return c.Accounts(ctx)
	}, func(w io.Writer, res wire.AccountsResponse) {
		if len(res.Accounts) == 0 {
			fmt.Fprintln(w, "no accounts configured")
			return
		}
		printAccountsTable(w, res.Accounts, a.local(res.Now), "")
		printSignInHints(w, res.Accounts)
	}, nil)
	return cmd
}

// printAccountsTable prints one line per account, then each problem's reason
// and warnings so the fix is on screen.
func printAccountsTable(w io.Writer, accs []wire.AccountInfo, now time.Time, indent string) {
	tw := newTable(w)
	fmt.Fprintf(tw, "%sNAME\tTRANSPORT\tPROVIDER\tMAILBOX\tSTATUS\tTOKEN EXPIRES\tGRANT AGE\tLAST DELIVERY\tLAST ERROR\n", indent)
	for _, ac := range accs {
		grant := "-"
		if !ac.GrantedAt.IsZero() {
			grant = age(now.Sub(ac.GrantedAt))
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", indent, ac.Name, orDash(ac.Transport),
			orDash(ac.Provider), orDash(ac.Mailbox), ac.Status, until2(ac.TokenExpiry, now), grant,
			since(ac.LastDelivery, now), orDash(short(ac.LastError, 50)))
	}
	tw.Flush()
	for _, ac := range accs {
		if ac.Reason != "" {
			fmt.Fprintf(w, "%s%s: %s\n", indent, ac.Name, ac.Reason)
		}
		if ac.FallbackVia != "" {
			fmt.Fprintf(w, "%s%s: its mail goes through the fallback account %s while it is held\n", indent, ac.Name, ac.FallbackVia)
		}
		for _, warn := range ac.Warnings {
			fmt.Fprintf(w, "%s%s: warning: %s\n", indent, ac.Name, warn)
		}
	}
}

// printSignInHints names the sign-in command of each account signed in by
// a person, with --device where the provider allows the device flow.
func printSignInHints(w io.Writer, accs []wire.AccountInfo) {
	first := true
	for _, ac := range accs {
		if ac.Flow != flowAuthCode && ac.Flow != flowDevice {
			continue
		}
		if first {
			fmt.Fprintln(w, "\nSign in:")
			first = false
		}
		how := "browser; --paste on a headless host"
		switch {
		case ac.Flow == flowDevice:
			how = "a code to enter on any device"
		case allowsDevice(ac.Provider):
			how = "browser; --device for a code to enter on another device, --paste on a headless host"
		}
		fmt.Fprintf(w, "  spoolctl auth login %s  (%s)\n", ac.Name, how)
	}
}

// until2 is until for expiries: a past time is "expired".
func until2(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	if !t.After(now) {
		return "expired " + age(now.Sub(t)) + " ago"
	}
	return "in " + age(t.Sub(now))
}

func printAccount(w io.Writer, ac wire.AccountInfo, now time.Time) {
	tw := newTable(w)
	fmt.Fprintf(tw, "Account:\t%s\n", ac.Name)
	fmt.Fprintf(tw, "Status:\t%s\n", ac.Status)
	if ac.Reason != "" {
		fmt.Fprintf(tw, "Reason:\t%s\n", ac.Reason)
	}
	fmt.Fprintf(tw, "Transport:\t%s\n", orDash(ac.Transport))
	fmt.Fprintf(tw, "Provider:\t%s\n", orDash(ac.Provider))
	fmt.Fprintf(tw, "Flow:\t%s\n", orDash(ac.Flow))
	fmt.Fprintf(tw, "Mailbox:\t%s\n", orDash(ac.Mailbox))
	if ac.Identity != "" {
		fmt.Fprintf(tw, "Signed in as:\t%s\n", ac.Identity)
	}
	fmt.Fprintf(tw, "Token expires:\t%s\n", stamp(ac.TokenExpiry, now))
	fmt.Fprintf(tw, "Granted:\t%s\n", stamp(ac.GrantedAt, now))
	fmt.Fprintf(tw, "Last refresh:\t%s\n", stamp(ac.LastRefresh, now))
	fmt.Fprintf(tw, "Last delivery:\t%s\n", stamp(ac.LastDelivery, now))
	if ac.DailyRecipientLimit > 0 {
		fmt.Fprintf(tw, "Recipients (24 h):\t%d of %d\n", ac.RecipientsToday, ac.DailyRecipientLimit)
	}
	if ac.FallbackVia != "" {
		fmt.Fprintf(tw, "Sending through:\t%s (fallback, while held)\n", ac.FallbackVia)
	}
	if !ac.UpstreamDownSince.IsZero() {
		fmt.Fprintf(tw, "Upstream down since:\t%s\n", stamp(ac.UpstreamDownSince, now))
		next := until(ac.NextProbe, now)
		if ac.NextProbe.IsZero() {
			next = "connecting now"
		}
		fmt.Fprintf(tw, "Next probe:\t%s\n", next)
	}
	if ac.LastError != "" {
		fmt.Fprintf(tw, "Last error:\t%s (%s)\n", ac.LastError, since(ac.LastErrorTime, now))
	}
	if !ac.ClientSecretExpires.IsZero() {
		fmt.Fprintf(tw, "Client secret expires:\t%s\n", stamp(ac.ClientSecretExpires, now))
	}
	for _, warn := range ac.Warnings {
		fmt.Fprintf(tw, "Warning:\t%s\n", warn)
	}
	tw.Flush()
}

func (a *app) authCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "Sign accounts in and out, show their token state",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(a.authLoginCmd(), a.authStatusCmd(), a.authLogoutCmd())
	return cmd
}

func (a *app) authLoginCmd() *cobra.Command {
	var device, paste, asJSON bool
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "login ACCOUNT",
		Short: "Authorize an account with its configured flow (browser; --paste for headless hosts; --device for a code)",
		Args:  exactArgs(1, "an account name"),
	}
	f := cmd.Flags()
	f.BoolVar(&device, "device", false, "device code flow: print a code to enter on another device (Microsoft; the default for flow: device accounts)")
	f.BoolVar(&paste, "paste", false, "paste the redirected URL here instead of using the daemon's callback")
	f.BoolVar(&asJSON, "json", false, "print the resulting account as JSON")
	wait = 15 * time.Minute
	f.Var(units.DurationFlag{D: &wait}, "wait", "how long to wait for the sign-in to finish")
	cmd.MarkFlagsMutuallyExclusive("device", "paste")
	cmd.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		name := args[0]
		c, err := a.client(cmd, false)
		if err != nil {
			return err
		}
		ctx, cancel := a.ctx(cmd)
		acct, err := c.Account(ctx, name)
		cancel()
		if err != nil {
			return err
		}
		mode, err := loginMode(acct, device, paste)
		if err != nil {
			return err
		}
		ctx, cancel = a.ctx(cmd)
		ls, err := c.StartLogin(ctx, name, mode)
		cancel()
		if err != nil {
			return err
		}
		// Instructions go to stderr so --json output stays clean.
		msgw, out := cmd.ErrOrStderr(), cmd.OutOrStdout()
		if !asJSON {
			msgw = out
		}
		if ls.Message != "" {
			fmt.Fprintln(msgw, ls.Message)
		}
		signInAs := "the account's mailbox"
		if acct.Mailbox != "" {
			signInAs = acct.Mailbox
		}
		var ai wire.AccountInfo
		switch mode {
		case wire.LoginDevice:
			fmt.Fprintf(msgw, "To sign in account %s, open %s on any device, enter the code %s and sign in as %s.\n",
				name, ls.VerificationURI, ls.UserCode, signInAs)
			if !ls.ExpiresAt.IsZero() {
				fmt.Fprintf(msgw, "The code expires at %s.\n", clockTime(ls.ExpiresAt, a.localNow()))
			}
			fmt.Fprintln(msgw, "Waiting for the sign-in to finish (Ctrl-C to stop waiting)...")
			ai, err = a.waitLogin(cmd, c, name, ls.LoginID, wait)
		case wire.LoginPaste:
			fmt.Fprintf(msgw, "Open this URL in a browser on any machine and sign in as %s:\n\n  %s\n\n", signInAs, ls.URL)
			fmt.Fprintln(msgw, "Your browser is then sent to a page that may fail to load: copy that page's full address")
			fmt.Fprint(msgw, "from the address bar and paste it here: ")
			line, rerr := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			line = strings.TrimSpace(line)
			if line == "" {
				if rerr != nil && rerr != io.EOF {
					return fmt.Errorf("reading the redirected URL: %w", rerr)
				}
				return fmt.Errorf("no URL pasted: login for account %s not completed", name)
			}
			fmt.Fprintln(msgw)
			ctx, cancel := a.ctx(cmd)
			ai, err = c.CompletePaste(ctx, ls.LoginID, line)
			cancel()
		default:
			fmt.Fprintf(msgw, "Open this URL in a browser and sign in as %s:\n\n  %s\n\n", signInAs, ls.URL)
			a.callbackHint(msgw, ls.URL, name)
			fmt.Fprintln(msgw, "Waiting for the sign-in to finish (Ctrl-C to stop waiting)...")
			ai, err = a.waitLogin(cmd, c, name, ls.LoginID, wait)
		}
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(out, ai)
		}
		who := ai.Identity
		if who == "" {
			who = ai.Mailbox
		}
		fmt.Fprintf(out, "account %s signed in as %s; status %s\n", orDash(ai.Name), orDash(who), ai.Status)
		if ai.Reason != "" {
			fmt.Fprintf(out, "%s\n", ai.Reason)
		}
		return nil
	})
	return cmd
}

// Flows as AccountInfo.Flow names them.
const (
	flowAuthCode          = "authcode"
	flowDevice            = "device"
	flowClientCredentials = "client_credentials"
	flowServiceAccount    = "service_account"
	flowPassword          = "password"
	flowNone              = "none"
)

// allowsDevice reports whether the provider offers the device flow for
// sending mail. Google does not for Gmail's scope (https://mail.google.com/).
func allowsDevice(provider string) bool {
	return strings.HasPrefix(provider, "microsoft")
}

// loginMode picks the sign-in for an account: its configured flow unless
// --device or --paste says otherwise, refusing what cannot work before
// anything is sent to a provider.
func loginMode(ac wire.AccountInfo, device, paste bool) (string, error) {
	switch ac.Flow {
	case flowClientCredentials, flowServiceAccount:
		return "", fmt.Errorf("account %s signs in by itself (flow %s): there is nothing to log in; "+
			"spoolctl auth status %s shows whether it got a token", ac.Name, ac.Flow, ac.Name)
	case flowPassword:
		return "", fmt.Errorf("account %s uses a password, not a sign-in: set it in the configuration", ac.Name)
	case flowNone:
		return "", fmt.Errorf("account %s relays without authentication: there is nothing to log in", ac.Name)
	}
	if ac.Transport != "" && ac.Transport != "smtp" && ac.Provider == "" {
		return "", fmt.Errorf("account %s (transport %s) needs no sign-in", ac.Name, ac.Transport)
	}
	switch {
	case device && !allowsDevice(ac.Provider):
		return "", usagef("account %s (provider %s) cannot use --device: Google does not allow the device flow for "+
			"Gmail's scope. Sign in with the browser instead: `spoolctl auth login %s` on the daemon's host (or through "+
			"an SSH tunnel), or `spoolctl auth login %s --paste` from any browser", ac.Name, orDash(ac.Provider), ac.Name, ac.Name)
	case device:
		return wire.LoginDevice, nil
	case paste:
		return wire.LoginPaste, nil
	case ac.Flow == flowDevice:
		return wire.LoginDevice, nil
	}
	return wire.LoginBrowser, nil
}

// callbackHint says how the browser reaches the daemon's callback: the
// redirect URI is usually http://localhost:PORT/..., which only works in a
// browser on the daemon's host, or through an SSH tunnel to it.
func (a *app) callbackHint(w io.Writer, authURL, account string) {
	u, err := url.Parse(authURL)
	if err != nil {
		return
	}
	ru, err := url.Parse(u.Query().Get("redirect_uri"))
	if err != nil || ru.Host == "" {
		return
	}
	host, port := ru.Hostname(), ru.Port()
	if port == "" {
		port = "80"
		if ru.Scheme == "https" {
			port = "443"
		}
	}
	if host != "localhost" && host != "127.0.0.1" && host != "::1" {
		fmt.Fprintf(w, "After sign-in the browser is sent to %s, which must reach spoold's HTTP listener.\n", ru.Redacted())
		return
	}
	me, err := a.d.Hostname()
	if err != nil || me == "" {
		me = "THIS-HOST"
	}
	fmt.Fprintf(w, "After sign-in the browser is sent to %s, which only reaches spoold from a browser on this host.\n", ru.Redacted())
	fmt.Fprintf(w, "From another machine, first open an SSH tunnel there:  ssh -L %s:localhost:%s %s\n", port, port, me)
	fmt.Fprintf(w, "or use `spoolctl auth login %s --paste` and paste the address the browser ends on.\n\n", account)
}

// waitLogin long-polls with its own deadline: a person is typing a password.
func (a *app) waitLogin(cmd *cobra.Command, c *wire.Client, account, id string, wait time.Duration) (wire.AccountInfo, error) {
	parent := cmd.Context()
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := parent, context.CancelFunc(func() {})
	if wait > 0 {
		ctx, cancel = context.WithTimeout(parent, wait)
	}
	defer cancel()
	ai, err := c.WaitLogin(ctx, id)
	if err != nil && parent.Err() != nil {
		return ai, fmt.Errorf("sign-in interrupted: account %s is not signed in; run `spoolctl auth login %s` again", account, account)
	}
	if err != nil && ctx.Err() != nil {
		return ai, fmt.Errorf("gave up waiting for the sign-in after %s: account %s is not signed in; "+
			"run `spoolctl auth login %s` again (--wait for longer)", wait, account, account)
	}
	return ai, err
}

func (a *app) authStatusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status ACCOUNT",
		Short: "Show an account's token state and health",
		Args:  exactArgs(1, "an account name"),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		c, err := a.client(cmd, false)
		if err != nil {
			return err
		}
		ctx, cancel := a.ctx(cmd)
		defer cancel()
		ai, err := c.Account(ctx, args[0])
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(cmd.OutOrStdout(), ai)
		}
		st, err := c.Status(ctx)
		now := a.local(st.Now)
		if err != nil || st.Now.IsZero() {
			now = a.localNow()
		}
		printAccount(cmd.OutOrStdout(), ai, now)
		return nil
	})
	return cmd
}

func (a *app) authLogoutCmd() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "logout ACCOUNT",
		Short: "Forget an account's grant (its messages wait until the next login; asks first on a terminal unless --yes)",
		Args:  exactArgs(1, "an account name"),
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if !yes {
			ok, err := a.confirm(cmd, fmt.Sprintf("Sign out account %s? Its mail waits until someone signs it in again "+
				"(spoolctl auth login %s).", args[0], args[0]))
			if err != nil || !ok {
				return err
			}
		}
		c, err := a.client(cmd, false)
		if err != nil {
			return err
		}
		ctx, cancel := a.ctx(cmd)
		defer cancel()
		if err := c.Logout(ctx, args[0]); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "account %s logged out: its messages wait until `spoolctl auth login %s`\n", args[0], args[0])
		return nil
	})
	return cmd
}

// testSendTimeout is test-send's default deadline.
const testSendTimeout = 2 * time.Minute

func (a *app) testSendCmd() *cobra.Command {
	var asJSON bool
	var to string
	cmd := &cobra.Command{
		Use:   "test-send ACCOUNT --to ADDR",
		Short: "Send a test message now through an account and print the upstream's reply",
		Args:  exactArgs(1, "an account name"),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVar(&to, "to", "", "recipient `ADDR` of the test message")
	_ = cmd.MarkFlagRequired("to")
	cmd.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if !strings.Contains(to, "@") {
			return usagef("--to %q is not an e-mail address", to)
		}
		c, err := a.client(cmd, false)
		if err != nil {
			return err
		}
		// A real send (dial, TLS, token refresh, DATA) can outlast the
		// default timeout; an explicit --timeout still wins.
		if !cmd.Flag("timeout").Changed && a.timeout < testSendTimeout {
			a.timeout = testSendTimeout
		}
		ctx, cancel := a.ctx(cmd)
		defer cancel()
		res, err := c.TestSend(ctx, args[0], to)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(cmd.OutOrStdout(), res)
		}
		reply := fmt.Sprintf("%d", res.Code)
		if res.Enhanced != "" {
			reply += " " + res.Enhanced
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s answered: %s %s (in %s)\n", args[0], reply, res.Text,
			(time.Duration(res.DurationMS) * time.Millisecond).String())
		if res.MessageID != "" {
			fmt.Fprintf(cmd.OutOrStdout(), "Message-ID: %s\n", res.MessageID)
		}
		if res.Code/100 != 2 {
			return fmt.Errorf("test message to %s was not accepted", to)
		}
		return nil
	})
	return cmd
}
