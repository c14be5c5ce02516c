package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
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
	cmd.RunE = request(a, &asJSON, func(ctx context.Context, c *wire.Client) (wire.DeliveryState, error) {
		return c.SetDeliveryPaused(ctx, paused)
	}, func(w io.Writer, st wire.DeliveryState) {
		if st.Paused {
			fmt.Fprintln(w, "delivery paused: mail is accepted and queued but not sent (spoolctl resume)")
		} else {
			fmt.Fprintln(w, "delivery resumed")
		}
	}, nil)
	return cmd
}
