package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// pauseCmd and resumeCmd stop and restart delivery on the running daemon, as
// an admin does during a provider outage or maintenance; ingest keeps
// accepting and queueing mail meanwhile. The state lasts until the daemon
// restarts (delivery.paused in the config sets it at start).
func (a *app) pauseCmd() *cobra.Command  { return a.pauseResumeCmd(true) }
func (a *app) resumeCmd() *cobra.Command { return a.pauseResumeCmd(false) }

func (a *app) pauseResumeCmd(paused bool) *cobra.Command {
	var asJSON bool
	use, short := "resume", "Resume delivery after spoolctl pause (or delivery.paused in the config)"
	if paused {
		use, short = "pause", "Pause delivery: mail is still accepted and queued, nothing is sent until resume"
	}
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.RunE = a.run(func(cmd *cobra.Command, _ []string) error {
		c, err := a.client(cmd, false)
		if err != nil {
			return err
		}
		ctx, cancel := a.ctx(cmd)
		defer cancel()
		st, err := c.SetDeliveryPaused(ctx, paused)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(cmd.OutOrStdout(), st)
		}
		if st.Paused {
			fmt.Fprintln(cmd.OutOrStdout(), "delivery paused: mail is accepted and queued but not sent (spoolctl resume)")
		} else {
			fmt.Fprintln(cmd.OutOrStdout(), "delivery resumed")
		}
		return nil
	})
	return cmd
}
