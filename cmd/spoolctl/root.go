package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/configs/units"
)

// app is one invocation's state: global flags and the open connection.
type app struct {
	d        *deps
	socket   string
	tried    []string // where findSocket looked, for dialHelp
	spoolDir string
	timeout  time.Duration
	closers  []io.Closer
}

func newRootCmd(d *deps) *cobra.Command {
	a := &app{d: d}
	root := &cobra.Command{
		Use:   "spoolctl",
		Short: "Inspect and repair spoold's mail queue",
		Long: "spoolctl talks to the running spoold over its admin socket.\n" +
			"With --spool DIR it reads a stopped daemon's spool directly (read-only: list, show, status).",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(d.Stdin)
	root.SetOut(d.Stdout)
	root.SetErr(d.Stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	pf := root.PersistentFlags()
	// Empty: client() looks for the socket (findSocket) only when a command
	// needs it, so --help and the man pages show no machine-dependent default.
	pf.StringVar(&a.socket, "socket", "", socketHelp)
	pf.StringVar(&a.spoolDir, "spool", "", "read the spool in `DIR` directly while the daemon is stopped (read-only)")
	a.timeout = 30 * time.Second
	pf.Var(units.DurationFlag{D: &a.timeout}, "timeout", "how long to wait for the daemon's answer, e.g. 90s, 5m, 1d (0 = no limit)")

	root.AddCommand(
		a.statusCmd(), a.listCmd(), a.showCmd(),
		a.flushCmd(), a.requeueCmd(), a.holdCmd(), a.releaseCmd(), a.deleteCmd(), a.purgeCmd(), a.pauseCmd(), a.resumeCmd(),
		a.accountsCmd(), a.authCmd(), a.reloadCmd(), a.testSendCmd(), a.hashPasswordCmd(), a.salvageCmd(), a.versionCmd(), a.verifySpoolCmd(),
		a.manCmd(), a.alertsCmd(), a.auditCmd(), a.keysCmd(), a.migrateCmd(),
	)
	a.registerCompletions(root)
	return root
}

// run wraps a command body: errors it returns are runtime failures (exit 1)
// unless marked as usage errors, and the connection is closed afterwards.
func (a *app) run(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		defer a.cleanup()
		err := fn(cmd, args)
		if err == nil {
			return nil
		}
		var ue *usageError
		if errors.As(err, &ue) {
			return err
		}
		var de *wire.DialError
		if errors.As(err, &de) {
			return &runtimeError{a.dialHelp(de)}
		}
		return &runtimeError{humanError(err)}
	}
}

func (a *app) cleanup() {
	for _, c := range a.closers {
		c.Close()
	}
	a.closers = nil
}

// ctx applies --timeout to the command's context.
// request is the RunE of a command that makes one admin API request: it
// dials the daemon, bounds the request by --timeout, and prints the answer
// as JSON with --json, else through show. failed (may be nil) says whether
// the answer reports a failure, which makes the exit status 1 either way.
func request[T any](a *app, asJSON *bool, req func(context.Context, *wire.Client) (T, error), show func(io.Writer, T), failed func(T) bool) func(*cobra.Command, []string) error {
	return a.run(func(cmd *cobra.Command, _ []string) error {
		c, err := a.client(cmd, false)
		if err != nil {
			return err
		}
		ctx, cancel := a.ctx(cmd)
		defer cancel()
		v, err := req(ctx, c)
		if err != nil {
			return err
		}
		if *asJSON {
			if err := printJSON(cmd.OutOrStdout(), v); err != nil {
				return err
			}
		} else {
			show(cmd.OutOrStdout(), v)
		}
		if failed != nil && failed(v) {
			return errReportedf()
		}
		return nil
	})
}

func (a *app) ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	if a.timeout > 0 {
		return context.WithTimeout(ctx, a.timeout)
	}
	return context.WithCancel(ctx)
}

// client connects to the daemon, or with --spool opens the spool read-only
// and serves the same API in-process. Only list, show and status may run
// offline (offlineOK).
func (a *app) client(cmd *cobra.Command, offlineOK bool) (*wire.Client, error) {
	if a.spoolDir == "" {
		if a.socket == "" {
			a.socket, a.tried = findSocket(a.d.Getenv, pathExists)
		}
		var c *wire.Client
		if a.d.Dial != nil {
			c = wire.NewClientDialer(a.socket, a.d.Dial)
		} else {
			c = wire.NewClient(a.socket)
		}
		a.closers = append(a.closers, closeIdle{c})
		return c, nil
	}
	if !offlineOK {
		return nil, usagef("%s changes state or needs the daemon; --spool is read-only and only supports list, show and status: use the socket (--socket PATH)", cmd.CommandPath())
	}
	return a.offlineClient()
}

type closeIdle struct{ c *wire.Client }

func (c closeIdle) Close() error { c.c.CloseIdleConnections(); return nil }

// local moves t into the zone times are shown in (deps.Location).
func (a *app) local(t time.Time) time.Time { return t.In(a.d.Location) }

// localNow is the current time in the display zone.
func (a *app) localNow() time.Time {
	if a.d.Clock != nil {
		return a.local(a.d.Clock())
	}
	return a.local(time.Now())
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// stateFlag validates a queue state name.
type stateFlag struct{ s *wire.State }

func (f stateFlag) String() string { return string(*f.s) }
func (f stateFlag) Set(v string) error {
	st := wire.State(v)
	if !st.Valid() {
		return fmt.Errorf("unknown state %q (want one of queued, active, deferred, held, dead, delivered)", v)
	}
	*f.s = st
	return nil
}
func (f stateFlag) Type() string { return "state" }
