package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
)

// status on a PostgreSQL spool lists the nodes, marks the one answering
// and says which has missed its heartbeats; the embedded spool has no
// such section.
func TestStatusListsNodes(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	st := wire.StatusResponse{Now: now, Queue: map[wire.State]int{}, Nodes: []wire.NodeInfo{
		{Name: "relay-a", Started: now.Add(-time.Hour), Heartbeat: now.Add(-10 * time.Second), Self: true},
		{Name: "relay-b", Started: now.Add(-2 * time.Hour), Heartbeat: now.Add(-20 * time.Minute)},
	}}
	var b bytes.Buffer
	printStatus(&b, st, "")
	out := b.String()
	for _, want := range []string{"Nodes sharing the spool:", "relay-a (this node)", "relay-b", "not seen for 20m"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out[strings.Index(out, "relay-a"):strings.Index(out, "relay-b")], "not seen") {
		t.Errorf("a node with a fresh heartbeat is shown as not seen:\n%s", out)
	}
	b.Reset()
	st.Nodes = nil
	printStatus(&b, st, "")
	if strings.Contains(b.String(), "Nodes") {
		t.Errorf("a single-node spool shows a nodes section:\n%s", b.String())
	}
}
