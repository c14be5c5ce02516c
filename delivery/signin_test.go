package delivery

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/delivery/smtpfake"
	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/pgspool"
	"github.com/spoold/spoold/spool/pgspool/pgtest"
	"github.com/spoold/spoold/spool/spooltest"
)

// recoverOnPark is the spool with a hook run just before the next park
// for a long hold commits: the moment a node learns of a sign-in (on a
// shared spool, through another node) while it is parking a message for
// the authorization hold.
type recoverOnPark struct {
	*spool.Spool
	mu     sync.Mutex
	before func()
}

func (s *recoverOnPark) arm(f func()) {
	s.mu.Lock()
	s.before = f
	s.mu.Unlock()
}

func (s *recoverOnPark) Postpone(ctx context.Context, id, owner string, next time.Time, reason string) error {
	s.mu.Lock()
	f := s.before
	if next.After(time.Now().Add(time.Minute)) {
		s.before = nil
	} else {
		f = nil
	}
	s.mu.Unlock()
	if f != nil {
		f()
	}
	return s.Spool.Postpone(ctx, id, owner, next, reason)
}

// signInHarness runs the engine on the wrapped real spool with an account
// that needs authorization.
func signInHarness(t *testing.T) (*recoverOnPark, *smtpfake.Server, *fakeTokens) {
	t.Helper()
	srv := startUpstream(t, smtpfake.Options{Dir: t.TempDir()})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	sp := &recoverOnPark{Spool: spooltest.OpenTemp(t, spool.Options{Logger: quiet})}
	tok := newTokens()
	tok.set("", auth.ErrNeedsReauth)
	eng, err := New([]AccountConfig{testAccount(srv)}, sp, tok, Options{Owner: "node-1", ShutdownTimeout: time.Second,
		Logger: quiet, Hostname: "spoold.test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return sp, srv, tok
}

// signIn is the sign-in as the engine sees it: tokens work and the token
// source reports the account recovered.
func signIn(tok *fakeTokens) func() {
	return func() {
		tok.set("tok-ok", nil)
		tok.recover("m365")
	}
}

// waitSent waits for id to be delivered, and fails if it is not within
// 30 s: it waits out the authorization hold (15 minutes) although the
// account was signed in. The bound is far below the hold and far above a
// delivery on a loaded machine.
func waitSent(t *testing.T, sp *recoverOnPark, id string) {
	t.Helper()
	var m *spool.Message
	if !spooltest.Poll(30*time.Second, func() bool {
		var err error
		m, err = sp.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
		return m.State == spool.StateDelivered
	}) {
		t.Fatalf("message %s is %s until %s (%q) although the account was signed in: it waits out the authorization hold",
			id, m.State, m.NextAttempt.Format(time.TimeOnly), m.Reason)
	}
}

// A sign-in reported while a connection worker parks its message for the
// authorization hold (its token call said "needs re-authorization" just
// before) must not leave that message waiting for the hold: the
// recovery's flush skips a message still claimed, so the park itself
// looks again once committed.
func TestSignInWhileWorkerParksReleasesMessage(t *testing.T) {
	sp, srv, tok := signInHarness(t)
	sp.arm(signIn(tok))
	id := realEnqueue(t, sp.Spool, spool.EnqueueRequest{From: "a@office.example", To: []string{"b@dest.example"}}, simpleBody)
	waitSent(t, sp, id)
	if srv.Count() != 1 {
		t.Errorf("the upstream got %d messages; want 1", srv.Count())
	}
}

// The same while the scheduler parks new mail of an account already on
// hold (parkAll): on a shared spool every node that still holds the
// account parks the mail enqueued through any node until it learns of
// the sign-in.
func TestSignInWhileSchedulerParksReleasesMessage(t *testing.T) {
	sp, srv, tok := signInHarness(t)
	first := realEnqueue(t, sp.Spool, spool.EnqueueRequest{From: "a@office.example", To: []string{"b@dest.example"}}, simpleBody)
	realWait(t, sp.Spool, first, func(m *spool.Message) bool {
		return m.State == spool.StateDeferred && m.NextAttempt.After(time.Now().Add(time.Minute))
	})
	sp.arm(signIn(tok))
	second := realEnqueue(t, sp.Spool, spool.EnqueueRequest{From: "a@office.example", To: []string{"c@dest.example"}}, simpleBody)
	waitSent(t, sp, second)
	waitSent(t, sp, first)
	if srv.Count() != 2 {
		t.Errorf("the upstream got %d messages; want 2", srv.Count())
	}
}

// On a shared spool a node whose account is held for a sign-in asks the
// token source before it parks new mail: the sign-in may have happened
// through another node, which this node has not heard of (no recovery
// reported). Before, the new mail was parked until this node's next
// re-read of the account record, or, for mail parked in that moment,
// for the whole authorization hold.
func TestSignedInElsewhereSendsNewMailAtOnce(t *testing.T) {
	up := startUpstream(t, smtpfake.Options{Dir: t.TempDir()})
	dsn := pgtest.Start(t).NewSchema(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	sp := pgtest.Nodes(t, dsn, 1, func(_ int, o *pgspool.Options) { o.Node = "node-1" })[0]
	tok := newTokens()
	tok.set("", auth.ErrNeedsReauth)
	eng, err := New([]AccountConfig{testAccount(up)}, sp, tok, Options{Owner: "node-1", ShutdownTimeout: time.Second, Logger: quiet, Hostname: "spoold.test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	enqueue := func(to string) string {
		id, err := sp.Enqueue(context.Background(), spool.EnqueueRequest{Account: "m365", From: "a@office.example", To: []string{to}}, strings.NewReader(simpleBody))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	get := func(id string) *spool.Message {
		m, err := sp.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
		return m
	}
	first := enqueue("b@dest.example")
	spooltest.WaitFor(t, "the first message parked for the authorization hold", 30*time.Second, func() bool {
		m := get(first)
		return m.State == spool.StateDeferred && m.NextAttempt.After(time.Now().Add(time.Minute))
	})
	tok.set("tok-ok", nil) // signed in through another node; no recovery reported here
	second := enqueue("c@dest.example")
	for _, id := range []string{second, first} {
		var m *spool.Message
		if !spooltest.Poll(30*time.Second, func() bool { m = get(id); return m.State == spool.StateDelivered }) {
			t.Fatalf("message %s is %s until %s (%q) although the account was signed in through another node",
				id, m.State, m.NextAttempt.Format(time.TimeOnly), m.Reason)
		}
	}
	if up.Count() != 2 {
		t.Errorf("the upstream got %d messages; want 2", up.Count())
	}
}
