package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/configs/units"
)

// opResult is one ID's outcome of a multi-ID command (--json).
type opResult struct {
	ID    string         `json:"id"`
	OK    bool           `json:"ok"`
	State wire.State     `json:"state,omitempty"`
	Error *wire.APIError `json:"error,omitempty"`
}

// perID runs op for each ID, prints "<verb> <id>" or the error, and fails
// (exit 1) if any ID failed. Errors for one ID do not stop the others.
func (a *app) perID(cmd *cobra.Command, ids []string, asJSON bool, verb string,
	op func(c *wire.Client, id string) (wire.State, error)) error {
	c, err := a.client(cmd, false)
	if err != nil {
		return err
	}
	out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
	var results []opResult
	failed := 0
	for _, id := range ids {
		st, err := op(c, id)
		if err != nil {
			var de *wire.DialError
			if errors.As(err, &de) {
				return err // the daemon is down: no point in trying the others
			}
			failed++
			r := opResult{ID: id, Error: asAPIError(err)}
			results = append(results, r)
			if !asJSON {
				fmt.Fprintf(errw, "spoolctl: %v\n", humanError(err))
			}
			continue
		}
		results = append(results, opResult{ID: id, OK: true, State: st})
		if !asJSON {
			if st != "" {
				fmt.Fprintf(out, "%s %s (now %s)\n", verb, id, st)
			} else {
				fmt.Fprintf(out, "%s %s\n", verb, id)
			}
		}
	}
	if asJSON {
		if err := printJSON(out, results); err != nil {
			return err
		}
	}
	if failed > 0 {
		if asJSON || len(ids) == 1 {
			return errReportedf()
		}
		return fmt.Errorf("%d of %d messages failed", failed, len(ids))
	}
	return nil
}

func errReportedf() error { return fmt.Errorf("%w", errReported) }

func asAPIError(err error) *wire.APIError {
	var ae *wire.APIError
	if errors.As(err, &ae) {
		return ae
	}
	return &wire.APIError{Code: wire.CodeInternal, Message: err.Error()}
}

// msgAction builds hold/release/requeue/flush style per-ID commands.
func (a *app) msgCmd(use, short, verb string, op func(cmd *cobra.Command, c *wire.Client, id string) (wire.MessageView, error)) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{Use: use, Short: short, Args: minArgs("at least one message ID")}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		return a.perID(cmd, args, asJSON, verb, func(c *wire.Client, id string) (wire.State, error) {
			m, err := op(cmd, c, id)
			return m.State, err
		})
	})
	return cmd
}

func (a *app) holdCmd() *cobra.Command {
	var reason string
	cmd := a.msgCmd("hold ID...", "Hold messages (queued, deferred or dead) until released", "held",
		func(cmd *cobra.Command, c *wire.Client, id string) (wire.MessageView, error) {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			return c.Hold(ctx, id, reason)
		})
	cmd.Flags().StringVar(&reason, "reason", "", "why the message is held (shown by list and show)")
	return cmd
}

func (a *app) releaseCmd() *cobra.Command {
	cmd := a.msgCmd("release ID...", "Release held messages: they are queued, due now", "released",
		func(cmd *cobra.Command, c *wire.Client, id string) (wire.MessageView, error) {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			return c.Release(ctx, id)
		})
	return cmd
}

func (a *app) flushCmd() *cobra.Command {
	var asJSON bool
	var account string
	cmd := &cobra.Command{
		Use:   "flush [ID...]",
		Short: "Make deferred messages due now (all, or the given IDs)",
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVar(&account, "account", "", "only messages of `ACCOUNT` (without IDs)")
	cmd.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			if account != "" {
				return usagef("--account cannot be combined with message IDs")
			}
			return a.perID(cmd, args, asJSON, "flushed", func(c *wire.Client, id string) (wire.State, error) {
				ctx, cancel := a.ctx(cmd)
				defer cancel()
				m, err := c.Flush(ctx, id)
				return m.State, err
			})
		}
		c, err := a.client(cmd, false)
		if err != nil {
			return err
		}
		ctx, cancel := a.ctx(cmd)
		defer cancel()
		n, err := c.FlushAll(ctx, account)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(cmd.OutOrStdout(), n)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "flushed %d %s (due now)\n", n.Count, plural(n.Count, "message"))
		return nil
	})
	return cmd
}

func (a *app) requeueCmd() *cobra.Command {
	var asJSON bool
	var account string
	var state wire.State
	cmd := &cobra.Command{
		Use:   "requeue ID... | --state dead [--account A]",
		Short: "Move dead or held messages back to the queue with attempts reset",
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().Var(stateFlag{&state}, "state", "requeue every message in `STATE` (dead or held)")
	cmd.Flags().StringVar(&account, "account", "", "with --state: only messages of `ACCOUNT`")
	cmd.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) > 0 && state != "":
			return usagef("give message IDs or --state, not both")
		case len(args) > 0 && account != "":
			return usagef("--account only works with --state")
		case len(args) == 0 && state == "":
			return usagef("requeue needs message IDs or --state dead")
		case state != "" && state != wire.StateDead && state != wire.StateHeld:
			return usagef("--state must be dead or held, not %s", state)
		}
		if len(args) > 0 {
			return a.perID(cmd, args, asJSON, "requeued", func(c *wire.Client, id string) (wire.State, error) {
				ctx, cancel := a.ctx(cmd)
				defer cancel()
				m, err := c.Requeue(ctx, id)
				return m.State, err
			})
		}
		c, err := a.client(cmd, false)
		if err != nil {
			return err
		}
		ctx, cancel := a.ctx(cmd)
		defer cancel()
		n, err := c.RequeueAll(ctx, state, account)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(cmd.OutOrStdout(), n)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "requeued %d %s %s", n.Count, state, plural(n.Count, "message"))
		if n.Skipped > 0 {
			fmt.Fprintf(cmd.OutOrStdout(), " (%d skipped: they changed state meanwhile)", n.Skipped)
		}
		fmt.Fprintln(cmd.OutOrStdout())
		return nil
	})
	return cmd
}

func (a *app) deleteCmd() *cobra.Command {
	var asJSON, yes bool
	cmd := &cobra.Command{
		Use:   "delete ID...",
		Short: "Delete messages and their bodies (asks first on a terminal unless --yes)",
		Args:  minArgs("at least one message ID"),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if !yes {
			ok, err := a.confirm(cmd, fmt.Sprintf("Delete %d %s (%s)? This cannot be undone.",
				len(args), plural(len(args), "message"), short(strings.Join(args, " "), 60)))
			if err != nil || !ok {
				return err
			}
		}
		return a.perID(cmd, args, asJSON, "deleted", func(c *wire.Client, id string) (wire.State, error) {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			return "", c.Delete(ctx, id)
		})
	})
	return cmd
}

func (a *app) purgeCmd() *cobra.Command {
	var asJSON, yes bool
	var state wire.State
	var olderThan time.Duration
	cmd := &cobra.Command{
		Use:   "purge --state dead --older-than 7d",
		Short: "Delete dead (or delivered) messages last changed more than a while ago",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().Var(stateFlag{&state}, "state", "purge messages in `STATE` (dead or delivered)")
	cmd.Flags().Var(units.DurationFlag{D: &olderThan}, "older-than", "only messages last changed more than `D` ago (e.g. 7d; 0 = all)")
	_ = cmd.MarkFlagRequired("state")
	_ = cmd.MarkFlagRequired("older-than")
	cmd.RunE = a.run(func(cmd *cobra.Command, _ []string) error {
		if state != wire.StateDead && state != wire.StateDelivered {
			return usagef("--state must be dead or delivered, not %s", state)
		}
		c, err := a.client(cmd, false)
		if err != nil {
			return err
		}
		if !yes && a.d.StdinIsTTY() {
			// Like delete, the question says how many: count first.
			ctx, cancel := a.ctx(cmd)
			cnt, err := c.PurgeCount(ctx, state, olderThan)
			cancel()
			if err != nil {
				return err
			}
			if cnt.Count == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "no %s messages older than %s: nothing to purge\n", state, units.FormatDuration(olderThan))
				return nil
			}
			ok, err := a.confirm(cmd, fmt.Sprintf("Purge %d %s %s older than %s? This cannot be undone.",
				cnt.Count, state, plural(cnt.Count, "message"), units.FormatDuration(olderThan)))
			if err != nil || !ok {
				return err
			}
		}
		ctx, cancel := a.ctx(cmd)
		defer cancel()
		n, err := c.Purge(ctx, state, olderThan)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(cmd.OutOrStdout(), n)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "purged %d %s %s\n", n.Count, state, plural(n.Count, "message"))
		return nil
	})
	return cmd
}

// confirm asks on a terminal; without one it proceeds (scripts, pipes).
// A refusal is a runtime failure so scripts notice.
func (a *app) confirm(cmd *cobra.Command, question string) (bool, error) {
	if !a.d.StdinIsTTY() {
		return true, nil
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s [y/N] ", question)
	line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
	if err != nil && err != io.EOF {
		return false, fmt.Errorf("reading the answer: %w", err)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, fmt.Errorf("aborted: nothing changed")
}

func plural(n int, noun string) string {
	if n == 1 {
		return noun
	}
	return noun + "s"
}
