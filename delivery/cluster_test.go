package delivery

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
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
	dsn := pgtest.Start(t).NewSchema(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var sps []*pgspool.Spool
	for i := range 3 {
		sp, err := pgspool.Open(context.Background(), pgspool.Options{DSN: dsn, Node: fmt.Sprintf("node-%d", i), Logger: quiet, RescueInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sp.Close() })
		eng, err := New([]AccountConfig{acct}, sp, newTokens(), Options{Owner: fmt.Sprintf("node-%d", i), ShutdownTimeout: time.Second,
			Logger: quiet, Hostname: "spoold.test"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- eng.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		sps = append(sps, sp)
	}
	return sps
}

// Microsoft counts concurrent connections per mailbox: three nodes with a
// cap of 2 open at most 2 sessions together, and all mail still goes.
func TestClusterConnectionCapAcrossNodes(t *testing.T) {
	up, err := smtpfake.Start(smtpfake.Options{Dir: t.TempDir(), SessionDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
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
	up, err := smtpfake.Start(smtpfake.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
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

// A send is counted once in the budget, also in the moment between its
// record and the end of its attempt: the next message of an account with
// room left goes at once. (Counted twice, the account waited a minute for
// "sends in flight", and on a shared spool that node parked every node's
// mail for the minute: TestClusterBudgetAcrossNodes then stopped at 4 of
// 5 on a loaded machine.)
func TestClusterBudgetCountsEachSendOnce(t *testing.T) {
	dsn := pgtest.Start(t).NewSchema(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	sp, err := pgspool.Open(context.Background(), pgspool.Options{DSN: dsn, Node: "node-0", Logger: quiet, RescueInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	hook := &budgetHook{Spool: sp}
	acct := AccountConfig{Name: "m365", Transport: "file", Dir: t.TempDir(), DailyRecipientLimit: 2}
	e, err := New([]AccountConfig{acct}, hook, newTokens(), Options{Owner: "node-0", Logger: quiet, Hostname: "spoold.test"})
	if err != nil {
		t.Fatal(err)
	}
	a := e.accounts["m365"]
	ctx := context.Background()
	msg := func(id string) *spool.Message {
		return &spool.Message{ID: id, Account: "m365", Recipients: []spool.Recipient{{Addr: "b@example.com", State: spool.RcptPending}}}
	}
	// The first message is sent: its recipient reserved, then recorded.
	// Another worker of this node reads the shared window right after the
	// record, before the first worker counts it locally.
	_, reason, over, release1 := e.overBudgetShared(ctx, a, msg("m1"), quiet)
	if over {
		t.Fatalf("the first message of an empty budget waits: %s", reason)
	}
	hook.afterRecord = func() { e.reloadSharedBudget(ctx, a, quiet) }
	e.spend(ctx, a, msg("m1"), 1, quiet)
	hook.afterRecord = nil
	e.mu.Lock()
	local := a.budget.trim(e.opts.Clock())
	e.mu.Unlock()
	if local != 1 {
		t.Errorf("this node counts %d recipients sent after one send of one recipient", local)
	}
	// The second message is decided before the first send's attempt ends.
	_, reason, over, release2 := e.overBudgetShared(ctx, a, msg("m2"), quiet)
	if over {
		t.Errorf("one of 2 recipients sent, and the next message waits: %s", reason)
	}
	release2()
	release1()
	// The budget is then full: a third waits.
	e.spend(ctx, a, msg("m2"), 1, quiet)
	if _, _, over, release := e.overBudgetShared(ctx, a, msg("m3"), quiet); !over {
		release()
		t.Error("2 of 2 recipients sent, and a third message goes")
	}
}
