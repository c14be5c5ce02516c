package delivery

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoold/spoold/delivery/smtpfake"
	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/pgspool"
	"github.com/spoold/spoold/spool/pgspool/pgtest"
	"github.com/spoold/spoold/spool/spooltest"
)

// clusterEngines runs three engines, one per node, on one PostgreSQL spool.
func clusterEngines(t *testing.T, acct AccountConfig) []*pgspool.Spool {
	t.Helper()
	return clusterEnginesOn(t, pgtest.Start(t).NewSchema(t), acct, nil)
}

// clusterEnginesOn is clusterEngines on the spool at dsn; tune, if set,
// adjusts each node's spool and engine options.
func clusterEnginesOn(t *testing.T, dsn string, acct AccountConfig, tune func(po *pgspool.Options, eo *Options)) []*pgspool.Spool {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	eos := make([]Options, 3)
	sps := pgtest.Nodes(t, dsn, 3, func(i int, po *pgspool.Options) {
		eos[i] = Options{Owner: po.Node, ShutdownTimeout: time.Second, Logger: quiet, Hostname: "spoold.test"}
		if tune != nil {
			tune(po, &eos[i])
		}
	})
	// Registered after the spools' cleanups, so each engine stops before
	// its spool closes.
	for i, sp := range sps {
		eng, err := New([]AccountConfig{acct}, sp, newTokens(), eos[i])
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- eng.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	return sps
}

// Microsoft counts concurrent connections per mailbox: three nodes with a
// cap of 2 open at most 2 sessions together, and all mail still goes.
func TestClusterConnectionCapAcrossNodes(t *testing.T) {
	up := startUpstream(t, smtpfake.Options{Dir: t.TempDir(), SessionDelay: 50 * time.Millisecond})
	acct := testAccount(up)
	acct.MaxConnections, acct.MaxMessagesPerConnection = 2, 3 // short connections: many openings race
	sps := clusterEngines(t, acct)
	const n = 30
	for i := range n {
		if _, err := sps[i%3].Enqueue(context.Background(), spool.EnqueueRequest{Account: "m365", From: "a@example.com", To: []string{"b@example.com"}},
			strings.NewReader(fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i))); err != nil {
			t.Fatal(err)
		}
	}
	spooltest.WaitFor(t, "all delivered", 60*time.Second, func() bool { return up.Count() >= n })
	if c := up.MaxConcurrent(); c > 2 {
		t.Errorf("the upstream saw %d concurrent sessions of one mailbox from three nodes; the cap is 2", c)
	}
	if up.Sessions() < 2 {
		t.Errorf("only %d sessions: the test did not exercise the cap", up.Sessions())
	}
}

// The daily recipient budget is the mailbox's: three nodes together send
// no more than the limit, and the rest waits (held, not refused).
func TestClusterBudgetAcrossNodes(t *testing.T) {
	up := startUpstream(t, smtpfake.Options{Dir: t.TempDir()})
	acct := testAccount(up)
	acct.DailyRecipientLimit = 5
	sps := clusterEngines(t, acct)
	for i := range 12 {
		if _, err := sps[i%3].Enqueue(context.Background(), spool.EnqueueRequest{Account: "m365", From: "a@example.com", To: []string{"b@example.com"}},
			strings.NewReader(fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i))); err != nil {
			t.Fatal(err)
		}
	}
	spooltest.WaitFor(t, "the budget's 5 delivered", 30*time.Second, func() bool { return up.Count() >= 5 })
	// The others wait: postponed by the nodes that tried them.
	spooltest.WaitFor(t, "the rest waiting", 30*time.Second, func() bool {
		st, err := sps[0].Stats(context.Background())
		return err == nil && st[spool.StateQueued]+st[spool.StateDeferred] == 7 && st[spool.StateActive] == 0
	})
	if c := up.Count(); c != 5 {
		t.Errorf("three nodes delivered to %d recipients; the daily limit is 5", c)
	}
	if st, _ := sps[0].Stats(context.Background()); st[spool.StateDead] != 0 {
		t.Errorf("%d messages dead: past the budget mail must wait, not be refused", st[spool.StateDead])
	}
}

// budgetHook is a PostgreSQL spool that runs afterRecord once a send's
// recipients are recorded in the budget, before the engine goes on.
type budgetHook struct {
	*pgspool.Spool
	afterRecord func()
}

func (b *budgetHook) BudgetRecord(ctx context.Context, account, id, own string, at time.Time, n int, forgetBefore time.Time) error {
	err := b.Spool.BudgetRecord(ctx, account, id, own, at, n, forgetBefore)
	if b.afterRecord != nil {
		b.afterRecord()
	}
	return err
}

func (b *budgetHook) RecordReserved(ctx context.Context, account, reservationID, id, own string, at time.Time, n int, forgetBefore time.Time) error {
	err := b.Spool.RecordReserved(ctx, account, reservationID, id, own, at, n, forgetBefore)
	if b.afterRecord != nil {
		b.afterRecord()
	}
	return err
}

// sharedBudgetEngine is an engine on one PostgreSQL node with a daily limit of 2
// recipients, whose spool runs hook.afterRecord right after a send's
// recipients are recorded (the moment before the engine counts them).
func sharedBudgetEngine(t *testing.T, dsn string) (*Engine, *account, *budgetHook) {
	t.Helper()
	hook := &budgetHook{Spool: pgtest.Nodes(t, dsn, 1, nil)[0]}
	acct := AccountConfig{Name: "m365", Transport: "file", Dir: t.TempDir(), DailyRecipientLimit: 2}
	e, err := New([]AccountConfig{acct}, hook, newTokens(), Options{Owner: "node-0", Logger: slog.New(slog.DiscardHandler), Hostname: "spoold.test"})
	if err != nil {
		t.Fatal(err)
	}
	return e, e.accounts["m365"], hook
}

// oneRecipient is a message of account m365 with one pending recipient.
func oneRecipient(id string) *spool.Message {
	return &spool.Message{ID: id, Account: "m365", Recipients: []spool.Recipient{{Addr: "b@example.com", State: spool.RcptPending}}}
}

// A send is counted once in the budget, also in the moment between its
// record and the end of its attempt: the next message of an account with
// room left goes at once. Counted twice (as recorded and as reserved), the
// account waited for "sends in flight": a minute on the node, which on a
// shared spool parked every node's mail for the minute, or 5 s across the
// nodes. TestClusterBudgetAcrossNodes stopped at 4 of 5 on loaded
// machines, first for the moment after the attempt, then (about once in
// 30 runs) for the moment inside spend.
func TestClusterBudgetCountsEachSendOnce(t *testing.T) {
	cluster := pgtest.Start(t)
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)

	t.Run("re-read after the record", func(t *testing.T) {
		e, a, hook := sharedBudgetEngine(t, cluster.NewSchema(t))
		// The first message is sent: its recipient reserved, then
		// recorded. Another worker of this node reads the shared window
		// right after the record, before the first worker counts it.
		_, reason, over, release1 := e.overBudgetShared(ctx, a, oneRecipient("m1"), quiet)
		if over {
			t.Fatalf("the first message of an empty budget waits: %s", reason)
		}
		hook.afterRecord = func() { e.reloadSharedBudget(ctx, a, quiet) }
		e.spend(ctx, a, oneRecipient("m1"), 1, quiet)
		hook.afterRecord = nil
		e.mu.Lock()
		local := a.budget.trim(e.opts.Clock())
		e.mu.Unlock()
		if local != 1 {
			t.Errorf("this node counts %d recipients sent after one send of one recipient", local)
		}
		// The second message is decided before the first send's attempt ends.
		_, reason, over, release2 := e.overBudgetShared(ctx, a, oneRecipient("m2"), quiet)
		if over {
			t.Errorf("one of 2 recipients sent, and the next message waits: %s", reason)
		}
		release2()
		release1()
		// The budget is then full: a third waits.
		e.spend(ctx, a, oneRecipient("m2"), 1, quiet)
		if _, _, over, release := e.overBudgetShared(ctx, a, oneRecipient("m3"), quiet); !over {
			release()
			t.Error("2 of 2 recipients sent, and a third message goes")
		}
	})

	t.Run("decision between the record and the count", func(t *testing.T) {
		e, a, hook := sharedBudgetEngine(t, cluster.NewSchema(t))
		_, reason, over, release1 := e.overBudgetShared(ctx, a, oneRecipient("m1"), quiet)
		if over {
			t.Fatalf("the first message of an empty budget waits: %s", reason)
		}
		var (
			reason2  string
			over2    bool
			release2 = func() {}
		)
		hook.afterRecord = func() {
			_, reason2, over2, release2 = e.overBudgetShared(ctx, a, oneRecipient("m2"), quiet)
		}
		e.spend(ctx, a, oneRecipient("m1"), 1, quiet)
		hook.afterRecord = nil
		if over2 {
			t.Errorf("one of 2 recipients sent, and the next message, decided between the send's record and its count, waits: %s", reason2)
		}
		release2()
		release1()
		e.mu.Lock()
		reserved := a.budget.reserved
		e.mu.Unlock()
		if reserved != 0 {
			t.Errorf("%d recipients still reserved after both attempts ended", reserved)
		}
	})
}

// stallLink dials the upstream through connections whose writes can be
// stalled (a slow or stuck link: a send stays mid-transfer for as long
// as the test likes) and counts the connections open at once from the
// client's side, as the provider would see them.
type stallLink struct {
	dial func(ctx context.Context, network, addr string) (net.Conn, error)

	mu            sync.Mutex
	gate          chan struct{} // closed: writes go
	open, maxOpen int
	dials         int
	blocked       int // writes waiting at the gate
}

func newStallLink() *stallLink {
	g := make(chan struct{})
	close(g)
	d := &net.Dialer{}
	return &stallLink{dial: d.DialContext, gate: g}
}

func (l *stallLink) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := l.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.dials++
	l.open++
	l.maxOpen = max(l.maxOpen, l.open)
	l.mu.Unlock()
	return &stallConn{Conn: c, l: l, closed: make(chan struct{})}, nil
}

// stall holds every write from now on; flow lets them go.
func (l *stallLink) stall() {
	l.mu.Lock()
	l.gate = make(chan struct{})
	l.mu.Unlock()
}

func (l *stallLink) flow() {
	l.mu.Lock()
	select {
	case <-l.gate:
	default:
		close(l.gate)
	}
	l.mu.Unlock()
}

func (l *stallLink) counts() (dials, open, maxOpen, blocked int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dials, l.open, l.maxOpen, l.blocked
}

type stallConn struct {
	net.Conn
	l      *stallLink
	once   sync.Once
	closed chan struct{}
}

func (c *stallConn) Write(b []byte) (int, error) {
	c.l.mu.Lock()
	gate := c.l.gate
	c.l.blocked++
	c.l.mu.Unlock()
	defer func() {
		c.l.mu.Lock()
		c.l.blocked--
		c.l.mu.Unlock()
	}()
	select {
	case <-gate:
	case <-c.closed:
		return 0, net.ErrClosed
	}
	return c.Conn.Write(b)
}

func (c *stallConn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		c.l.mu.Lock()
		c.l.open--
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// The connection cap holds across a database restart: the restart frees
// every slot at once, and the connections those slots guarded (here stuck
// mid-transfer on a stalled link) are closed before the database is back
// and the nodes take the slots again. Nothing is lost.
func TestClusterConnectionCapAcrossDatabaseRestart(t *testing.T) {
	up := startUpstream(t, smtpfake.Options{Dir: t.TempDir(), SessionDelay: 20 * time.Millisecond})
	link := newStallLink()
	t.Cleanup(link.flow) // never leave a send stuck past the test
	acct := testAccount(up)
	acct.MaxConnections = 2
	acct.Retry = RetryPolicy{First: time.Second, Jitter: NoJitter}
	pg := pgtest.Start(t)
	sps := clusterEnginesOn(t, pg.NewSchema(t), acct, func(po *pgspool.Options, eo *Options) {
		// Sends cut while the database is down are committed by no one:
		// their leases run out and the rescuer gives them back.
		po.LeaseDuration, po.RescueInterval = 4*time.Second, 500*time.Millisecond
		eo.LeaseDuration, eo.Dial = 4*time.Second, link.Dial
	})
	const n = 40
	subject := func(i int) string { return fmt.Sprintf("Subject: restart %d", i) }
	enqueue := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := sps[i%3].Enqueue(context.Background(), spool.EnqueueRequest{Account: "m365", From: "a@example.com", To: []string{"b@example.com"}},
				strings.NewReader(subject(i)+"\r\n\r\nbody\r\n")); err != nil {
				t.Fatal(err)
			}
		}
	}
	enqueue(0, n/2)
	spooltest.WaitFor(t, "the first deliveries", 60*time.Second, func() bool { return up.Count() >= 4 })
	// The link stalls: the sends under way stay open mid-transfer.
	link.stall()
	spooltest.WaitFor(t, "a send stuck on the link", 30*time.Second, func() bool {
		_, _, _, blocked := link.counts()
		return blocked > 0
	})
	_, openBefore, _, _ := link.counts()
	pg.Stop(t)
	// The slots' sessions ended with the server: their connections close
	// while the database is still down.
	if !spooltest.Poll(10*time.Second, func() bool {
		_, open, _, _ := link.counts()
		return open == 0
	}) {
		_, open, _, _ := link.counts()
		t.Errorf("%d connections of slots lost with the database still open 10 s later", open)
	}
	pg.Restart(t)
	dialsAtRestart, _, _, _ := link.counts()
	enqueue(n/2, n)
	// The nodes take the slots again and connect (still stalled), all
	// while any connection that survived the restart would be open too.
	spooltest.WaitFor(t, "new connections after the restart", 60*time.Second, func() bool {
		dials, open, _, _ := link.counts()
		return dials >= dialsAtRestart+2 && open >= 2
	})
	link.flow()
	spooltest.WaitFor(t, "every message delivered", 120*time.Second, func() bool {
		seen := map[string]bool{}
		for _, m := range up.Messages() {
			seen[strings.SplitN(string(m.Data), "\r\n", 2)[0]] = true
		}
		for i := range n {
			if !seen[subject(i)] {
				return false
			}
		}
		return true
	})
	_, _, maxOpen, _ := link.counts()
	t.Logf("%d connections open when the database stopped; %d messages accepted for %d queued (duplicates: sends cut after the final dot)", openBefore, up.Count(), n)
	if c := up.MaxConcurrent(); c > 2 {
		t.Errorf("the upstream saw %d concurrent sessions of one mailbox across the database restart; the cap is 2", c)
	}
	if maxOpen > 2 {
		t.Errorf("the nodes had %d connections of one mailbox open at once across the database restart; the cap is 2", maxOpen)
	}
	st, err := sps[0].Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st[spool.StateDead] != 0 {
		t.Errorf("%d messages dead after a database restart; they must be retried", st[spool.StateDead])
	}
}

// A test send is a connection to the mailbox like the others: on a shared
// spool it takes one of the account's slots, and says so when none is free.
func TestClusterTestSendTakesASlot(t *testing.T) {
	up := startUpstream(t, smtpfake.Options{Dir: t.TempDir()})
	dsn := pgtest.Start(t).NewSchema(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	sp := pgtest.Nodes(t, dsn, 1, nil)[0]
	acct := testAccount(up)
	acct.MaxConnections = 2
	e, err := New([]AccountConfig{acct}, sp, newTokens(), Options{Owner: "node-0", Logger: quiet, Hostname: "spoold.test"})
	if err != nil {
		t.Fatal(err)
	}
	// Another node's two connections hold both slots.
	ctx := context.Background()
	var held []*pgspool.Slot
	for range 2 {
		sl, err := sp.AcquireSlot(ctx, "m365", 2)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, sl)
	}
	if _, err := e.TestSend(ctx, "m365", "b@example.com"); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("test send with every slot taken: %v; want a refusal naming the slots in use", err)
	}
	if n := up.Sessions(); n != 0 {
		t.Fatalf("the upstream saw %d sessions while every slot was taken", n)
	}
	held[0].Release()
	if res, err := e.TestSend(ctx, "m365", "b@example.com"); err != nil || res.Code != 250 {
		t.Fatalf("test send with a slot free: %+v, %v", res, err)
	}
	// The test send gave its slot back.
	sl, err := sp.AcquireSlot(ctx, "m365", 2)
	if err != nil {
		t.Fatalf("the test send kept its slot: %v", err)
	}
	sl.Release()
	held[1].Release()
}
