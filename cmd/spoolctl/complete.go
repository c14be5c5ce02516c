package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
)

// completionTimeout bounds a completion's question to the daemon: a shell
// waiting on Tab must not hang when spoold does.
const completionTimeout = 3 * time.Second

// maxCompletions bounds the message IDs offered.
const maxCompletions = 2000

// completionCtx is the command's context with completionTimeout.
func completionCtx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, completionTimeout)
}

// completeIDs offers the daemon's message IDs (any letter case typed so
// far), each described by its state, sender and subject.
func (a *app) completeIDs(states ...wire.State) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		defer a.cleanup()
		c, err := a.client(cmd, true)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		ctx, cancel := completionCtx(cmd)
		defer cancel()
		var out []cobra.Completion
		req := wire.ListRequest{Limit: listPage}
		for len(out) < maxCompletions {
			page, err := c.List(ctx, req)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
			}
			for _, m := range page.Messages {
				if len(states) > 0 && !containsState(states, m.State) {
					continue
				}
				if !strings.HasPrefix(strings.ToUpper(m.ID), strings.ToUpper(toComplete)) || containsString(args, m.ID) {
					continue
				}
				desc := string(m.State) + " " + sender(m.From)
				if m.Subject != "" {
					desc += " " + short(m.Subject, 40)
				}
				out = append(out, cobra.CompletionWithDesc(m.ID, desc))
			}
			if page.Next == "" {
				break
			}
			req.Cursor = page.Next
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeAccounts offers the configured account names.
func (a *app) completeAccounts(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	defer a.cleanup()
	if a.spoolDir != "" {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	c, err := a.client(cmd, false)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
	}
	ctx, cancel := completionCtx(cmd)
	defer cancel()
	res, err := c.Accounts(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
	}
	var out []cobra.Completion
	for _, ac := range res.Accounts {
		if strings.HasPrefix(ac.Name, toComplete) {
			out = append(out, cobra.CompletionWithDesc(ac.Name, strings.TrimSpace(ac.Provider+" "+ac.Mailbox+" "+ac.Status)))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeAccountArg completes the first argument with an account name.
func (a *app) completeAccountArg(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return a.completeAccounts(cmd, args, toComplete)
}

// completeStates offers the given states (all when none are given).
func completeStates(states ...wire.State) cobra.CompletionFunc {
	if len(states) == 0 {
		states = wire.States
	}
	return func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		out := make([]cobra.Completion, len(states))
		for i, s := range states {
			out[i] = string(s)
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func containsState(states []wire.State, s wire.State) bool {
	for _, x := range states {
		if x == s {
			return true
		}
	}
	return false
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// registerCompletions wires completion into the command tree after it is
// built: IDs for the per-message commands, accounts and states for flags.
func (a *app) registerCompletions(root *cobra.Command) {
	idStates := map[string][]wire.State{
		"show": nil, "hold": {wire.StateQueued, wire.StateDeferred, wire.StateDead},
		"release": {wire.StateHeld}, "flush": {wire.StateQueued, wire.StateDeferred},
		"requeue": {wire.StateDead, wire.StateHeld}, "delete": nil,
	}
	flagStates := map[string][]wire.State{
		"list": nil, "requeue": {wire.StateDead, wire.StateHeld}, "purge": {wire.StateDead, wire.StateDelivered},
	}
	for _, cmd := range root.Commands() {
		name := cmd.Name()
		if states, ok := idStates[name]; ok {
			cmd.ValidArgsFunction = a.completeIDs(states...)
		}
		if cmd.Flags().Lookup("account") != nil {
			_ = cmd.RegisterFlagCompletionFunc("account", a.completeAccounts)
		}
		if states, ok := flagStates[name]; ok && cmd.Flags().Lookup("state") != nil {
			_ = cmd.RegisterFlagCompletionFunc("state", completeStates(states...))
		}
		switch name {
		case "test-send":
			cmd.ValidArgsFunction = a.completeAccountArg
		case "auth":
			for _, sub := range cmd.Commands() {
				sub.ValidArgsFunction = a.completeAccountArg
			}
		}
	}
}
