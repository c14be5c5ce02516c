package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
)

// staleHeartbeat is when a node's heartbeat (every 30 s) counts as
// missed: the node is stopped, hung or cut off from the database.
const staleHeartbeat = 2 * time.Minute

// printNodes lists the nodes sharing a PostgreSQL spool, if any.
func printNodes(w io.Writer, st wire.StatusResponse, now time.Time) {
	if len(st.Nodes) == 0 && st.NodesError == "" {
		return // the embedded spool: one node
	}
	fmt.Fprintln(w, "\nNodes sharing the spool:")
	if st.NodesError != "" {
		fmt.Fprintf(w, "  cannot read the nodes: %s\n", st.NodesError)
		return
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "  NODE\tSTARTED\tLAST HEARTBEAT\tSTATE")
	for _, n := range st.Nodes {
		state := "up"
		if now.Sub(n.Heartbeat) > staleHeartbeat {
			state = "not seen for " + age(now.Sub(n.Heartbeat))
		}
		name := n.Name
		if n.Self {
			name += " (this node)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", name, clockTime(n.Started, now), since(n.Heartbeat, now), state)
	}
	tw.Flush()
}
