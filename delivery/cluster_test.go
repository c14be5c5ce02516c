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
