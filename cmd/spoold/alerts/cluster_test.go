package alerts

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/configs/secret"
	"github.com/spoold/spoold/spool/pgspool"
	"github.com/spoold/spoold/spool/pgspool/pgtest"
	"github.com/spoold/spoold/spool/spooltest"
)

// A PostgreSQL spool is what makes the alerter share its work (a change
// there that drops these methods would silently make every node alert).
var _ leaderStore = (*pgspool.Spool)(nil)

// cluster is several alerters, each on its own spool node of one
// PostgreSQL database, all posting to one webhook, with the real clock and
// their own loops running, as spoold's nodes do.
type cluster struct {
	t     *testing.T
	pg    *pgtest.Cluster
	dsn   string
	world *world
	hook  *receiver
	opts  Options
	nodes map[string]*Alerter
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	pg := pgtest.Start(t)
	c := &cluster{t: t, pg: pg, dsn: pg.NewSchema(t), world: &world{diskFree: 50e9}, hook: newReceiver(t),
		nodes: map[string]*Alerter{}}
	// Not Validate'd: the check interval is far below the 1s an admin may
	// set, so a handover takes milliseconds in the test.
	c.opts = Options{CheckInterval: 20 * time.Millisecond, Retry: Retry{First: 20 * time.Millisecond, Max: 50 * time.Millisecond},
		Webhooks: []WebhookConfig{{Name: "hook", URL: secret.Secret(c.hook.srv.URL + "/hook")}}}.WithDefaults()
	return c
}

// start opens a spool node named node and starts an alerter on it;
// lowDisk makes that node's data directory nearly full.
func (c *cluster) start(node string, lowDisk ...bool) *Alerter {
	c.t.Helper()
	sp := pgtest.Nodes(c.t, c.dsn, 1, func(_ int, o *pgspool.Options) { o.Node = node })[0]
	src := c.world.sources(c.t.TempDir())
	if len(lowDisk) > 0 && lowDisk[0] {
		src.DiskFree = func(string) (uint64, error) { return 1, nil }
	}
	a, err := New(c.opts, Deps{Queue: sp, Store: sp, Sources: src, Logger: quiet(), Hostname: "host-" + node})
	if err != nil {
		c.t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(a.Stop)
	c.nodes[node] = a
	return a
}

// settled waits until every running node has finished two checks since
// now (so each has seen the world as it is), sees the condition keys
// active (nil: any) and nothing is owed to the webhook by any node.
func (c *cluster) settled(keys ...string) {
	c.t.Helper()
	mark := map[*Alerter]int64{}
	for _, a := range c.nodes {
		mark[a] = a.ticks.Load()
	}
	spooltest.WaitFor(c.t, "every node to check twice, see "+strings.Join(keys, ", ")+" active and owe nothing", 20*time.Second, func() bool {
		for _, a := range c.nodes {
			if a.ticks.Load() < mark[a]+2 {
				return false
			}
			st := a.Status()
			var active []string
			for _, x := range st.Active {
				active = append(active, x.Key)
			}
			for _, k := range keys {
				if !slices.Contains(active, k) {
					return false
				}
			}
			if st.Channels[0].Pending != 0 {
				return false
			}
		}
		return true
	})
}

// stop stops one node cleanly.
func (c *cluster) stop(node string) {
	c.nodes[node].Stop()
	delete(c.nodes, node)
}

// crash ends one node as a kill -9 would: its loops stop and its database
// sessions (the leadership with them) end, but nothing is recorded.
func (c *cluster) crash(node string) {
	c.nodes[node].halt()
	delete(c.nodes, node)
}

func (c *cluster) leader() string {
	c.t.Helper()
	var name string
	spooltest.WaitFor(c.t, "one node to lead the alerts", 20*time.Second, func() bool {
		var leading []string
		for n, a := range c.nodes {
			if a.Leading() {
				leading = append(leading, n)
			}
		}
		if len(leading) > 1 {
			c.t.Fatalf("nodes %v all lead the alerts at once", leading)
		}
		if len(leading) == 1 {
			name = leading[0]
		}
		return name != ""
	})
	return name
}

// events counts the notifications the webhook got by "event key".
func (c *cluster) events() map[string]int {
	out := map[string]int{}
	for _, a := range c.hook.alerts(c.t) {
		out[string(a.Event)+" "+a.Key]++
	}
	return out
}

func (c *cluster) wantEvents(want map[string]int) {
	c.t.Helper()
	if got := c.events(); fmt.Sprint(got) != fmt.Sprint(want) {
		c.t.Fatalf("webhook got %v, want %v", got, want)
	}
}

func needsReauth(accounts ...string) []auth.Health {
	var hs []auth.Health
	for _, a := range accounts {
		hs = append(hs, auth.Health{Account: a, Provider: "microsoft", Flow: "authcode", Status: auth.StatusNeedsReauth, Reason: "invalid_grant"})
	}
	return hs
}

// TestClusterAlertsOnce: three nodes see the same account needing sign-in;
// the webhook gets one "started" and, when it ends, one "resolved".
func TestClusterAlertsOnce(t *testing.T) {
	c := newCluster(t)
	for i := range 3 {
		c.start(fmt.Sprintf("node-%d", i))
	}
	c.leader()
	c.world.set(func(w *world) { w.health = needsReauth("m365") })
	c.settled("account_needs_reauth/m365")
	c.wantEvents(map[string]int{"started account_needs_reauth/m365": 1})

	c.world.set(func(w *world) { w.health = nil })
	c.settled()
	c.wantEvents(map[string]int{"started account_needs_reauth/m365": 1, "resolved account_needs_reauth/m365": 1})
}

// TestClusterHandover: the leader stops while a notification is still owed
// (the webhook fails); another node takes over, sends it once, and alerts a
// new condition once.
func TestClusterHandover(t *testing.T) {
	c := newCluster(t)
	c.start("node-0")
	c.start("node-1")
	c.start("node-2")
	first := c.leader()

	c.hook.mu.Lock()
	c.hook.fail = 1 << 30
	c.hook.mu.Unlock()
	c.world.set(func(w *world) { w.health = needsReauth("m365") })
	spooltest.WaitFor(t, "the leader to fail sending the alert", 20*time.Second, func() bool {
		return c.nodes[first].Status().Channels[0].Failed > 0
	})
	c.stop(first)
	c.hook.mu.Lock()
	c.hook.fail = 0
	c.hook.mu.Unlock()
	second := c.leader()
	if second == first {
		t.Fatalf("the stopped node %s still leads", first)
	}
	c.settled("account_needs_reauth/m365")
	c.wantEvents(map[string]int{"started account_needs_reauth/m365": 1})

	// A leader that dies (no clean stop) hands over too.
	c.crash(second)
	third := c.leader()
	if third == first || third == second {
		t.Fatalf("node %s leads after %s stopped and %s crashed", third, first, second)
	}
	c.world.set(func(w *world) { w.health = needsReauth("m365", "gmail") })
	c.settled("account_needs_reauth/m365", "account_needs_reauth/gmail")
	c.wantEvents(map[string]int{"started account_needs_reauth/m365": 1, "started account_needs_reauth/gmail": 1})
}

// TestClusterUncleanStop: a node started while another runs reports
// nothing; a node whose own previous run crashed reports that, by name,
// once, and a clean stop of one node does not hide another's crash.
func TestClusterUncleanStop(t *testing.T) {
	c := newCluster(t)
	c.start("node-0")
	c.start("node-1")
	c.settled()
	c.wantEvents(map[string]int{})

	c.stop("node-0")
	c.start("node-0")
	c.settled()
	c.wantEvents(map[string]int{})

	c.crash("node-1")
	c.stop("node-0") // clears only its own run marker
	c.start("node-0")
	c.start("node-1")
	c.settled()
	c.wantEvents(map[string]int{"notice unclean_stop/node-1": 1})
	for _, al := range c.hook.alerts(t) {
		if !strings.Contains(al.Title, "node-1") || !strings.Contains(al.Text, "node-1") {
			t.Errorf("the unclean-stop notice does not name the node: %q / %q", al.Title, al.Text)
		}
	}
}

// TestClusterLocalConditions: free disk space is each node's own: a node
// low on disk is alerted once, under its name, by the leader's channels,
// while the others are not.
func TestClusterLocalConditions(t *testing.T) {
	c := newCluster(t)
	c.start("node-0")
	c.leader() // node-0: the only one yet
	c.start("node-1", true)
	c.start("node-2")
	c.settled(KindDiskFree + "/node-1")
	c.wantEvents(map[string]int{"started " + KindDiskFree + "/node-1": 1})
	if al := c.hook.alerts(t)[0]; !strings.Contains(al.Title, "node-1") {
		t.Errorf("the disk alert does not name the node: %q", al.Title)
	}
}

// TestClusterDatabaseRestart: a database restart ends the leader's session
// and with it the leadership; the leader stops, one node (the same or
// another) leads again once the database is back, and a condition raised
// then is alerted once.
func TestClusterDatabaseRestart(t *testing.T) {
	c := newCluster(t)
	c.start("node-0")
	c.start("node-1")
	c.leader()
	c.pg.Stop(t)
	spooltest.WaitFor(t, "the leader to see its database session end and stop leading", 20*time.Second, func() bool {
		for _, a := range c.nodes {
			if a.Leading() {
				return false
			}
		}
		return true
	})
	c.pg.Restart(t)
	c.leader()
	c.world.set(func(w *world) { w.health = needsReauth("m365") })
	c.settled("account_needs_reauth/m365")
	c.wantEvents(map[string]int{"started account_needs_reauth/m365": 1})
}
