package main

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/spoold/spoold/spool/pgspool/pgtest"
	"github.com/spoold/spoold/spool/spooltest"
)

type fakeEngine struct {
	mu     sync.Mutex
	paused bool
}

func (f *fakeEngine) Pause(p bool) { f.mu.Lock(); f.paused = p; f.mu.Unlock() }
func (f *fakeEngine) Paused() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.paused }

// TestPauseActsOnEveryNode: on a shared spool, a pause sent to one node
// stops delivery on all of them and a resume sent to another starts it
// again everywhere; a node that starts while the cluster is paused starts
// paused, and one configured paused stays paused although the last action
// recorded was a resume. Before, a pause reached only the node that got
// the request and the others went on delivering.
//
// Each step syncs the nodes by hand; the last one waits for a node's own
// loop.
func TestPauseActsOnEveryNode(t *testing.T) {
	cluster := pgtest.Start(t)
	sps := pgtest.Nodes(t, cluster.NewSchema(t), 4, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)
	var engines []*fakeEngine
	var nodes []*sharedPause
	for _, sp := range sps[:3] {
		e := &fakeEngine{}
		engines = append(engines, e)
		nodes = append(nodes, newSharedPause(ctx, sp, e, quiet))
	}
	syncAll := func() {
		for _, n := range nodes {
			n.sync(ctx, false)
		}
	}
	want := func(step string, paused bool) {
		t.Helper()
		for i, e := range engines {
			if e.Paused() != paused {
				t.Errorf("%s: node-%d paused=%v, want %v", step, i, e.Paused(), paused)
			}
		}
	}

	if err := nodes[0].set(ctx, true); err != nil {
		t.Fatal(err)
	}
	syncAll()
	want("after a pause on node-0", true)

	if err := nodes[2].set(ctx, false); err != nil {
		t.Fatal(err)
	}
	syncAll()
	want("after a resume on node-2", false)

	// A re-read of the same record changes nothing a node did since.
	engines[1].Pause(true)
	syncAll()
	if !engines[1].Paused() {
		t.Error("a record already applied was applied again")
	}
	engines[1].Pause(false)

	if err := nodes[1].set(ctx, true); err != nil {
		t.Fatal(err)
	}
	late := &fakeEngine{}
	newSharedPause(ctx, sps[3], late, quiet)
	if !late.Paused() {
		t.Error("a node started while the cluster is paused delivers")
	}
	if err := nodes[1].set(ctx, false); err != nil {
		t.Fatal(err)
	}
	configured := &fakeEngine{paused: true} // delivery.paused: true
	newSharedPause(ctx, sps[3], configured, quiet)
	if !configured.Paused() {
		t.Error("an earlier resume overrode delivery.paused: true at start")
	}

	// Each node's own loop picks a pause up within sharedAuthEvery,
	// without the admin touching that node.
	if err := nodes[0].set(ctx, true); err != nil {
		t.Fatal(err)
	}
	spooltest.WaitFor(t, "node-2 to follow node-0's pause by itself", 4*sharedAuthEvery, engines[2].Paused)
}
