package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
)

func (a *app) reloadCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Make the daemon re-read its configuration file (like SIGHUP) and print the outcome",
		Long: "reload makes the running spoold re-read its configuration file, as SIGHUP does, and prints\n" +
			"what happened: a configuration with problems is refused (the running one stays) and each\n" +
			"problem is printed as file:line: key: why, with exit status 1.",
		Args: cobra.NoArgs,
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.RunE = request(a, &asJSON, func(ctx context.Context, c *wire.Client) (wire.ReloadInfo, error) {
		return c.Reload(ctx)
	}, func(w io.Writer, ri wire.ReloadInfo) {
		printReload(w, ri, a.localNow(), "")
	}, func(ri wire.ReloadInfo) bool { return !ri.OK })
	return cmd
}

// printReload prints a reload's outcome: what was read, whether it was
// applied, then each problem and warning on its own line.
func printReload(w io.Writer, ri wire.ReloadInfo, now time.Time, indent string) {
	what := "the configuration"
	if ri.Config != "" {
		what = ri.Config
	}
	if ri.OK {
		fmt.Fprintf(w, "%sreloaded %s at %s\n", indent, what, stamp(ri.Time, now))
	} else {
		fmt.Fprintf(w, "%sreload of %s REFUSED at %s; spoold keeps its running configuration:\n", indent, what, stamp(ri.Time, now))
	}
	for _, p := range ri.Problems {
		fmt.Fprintf(w, "%s  %s\n", indent, p)
	}
	for _, wn := range ri.Warnings {
		fmt.Fprintf(w, "%s  warning: %s\n", indent, wn)
	}
}
