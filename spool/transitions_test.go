package spool

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// makeInState returns the ID of a fresh message brought into state st by the
// legal path; active messages are leased by "w1".
func makeInState(t *testing.T, s *Spool, clk *fakeClock, st State) string {
	t.Helper()
	ctx := context.Background()
	id := mustEnqueue(t, s, req("acct", "a@example.com", "b@example.com"), "body of "+string(st))
	if st == StateQueued {
		return id
	}
	if st == StateHeld {
		if err := s.Hold(ctx, id, "admin"); err != nil {
			t.Fatal(err)
		}
		return id
	}
	ms, err := s.ClaimAccount(ctx, "acct", clk.Now(), 1, "w1")
	if err != nil || len(ms) != 1 || ms[0].ID != id {
		t.Fatalf("claim for setup: %v %v", ms, err)
	}
	switch st {
	case StateActive:
	case StateDeferred:
		err = s.Defer(ctx, id, "w1", clk.Now().Add(time.Hour), Result{Error: &ErrorRecord{Code: 451, Text: "try later"}})
	case StateDead:
		err = s.Dead(ctx, id, "w1", Result{Reason: "550 no such user"})
	case StateDelivered:
		err = s.Delivered(ctx, id, "w1", Result{})
	}
	if err != nil {
		t.Fatalf("setup %s: %v", st, err)
	}
	if m := mustGet(t, s, id); m.State != st {
		t.Fatalf("setup: got %s want %s", m.State, st)
	}
	return id
}

func TestTransitionsTable(t *testing.T) {
	ctx := context.Background()
	type op struct {
		name string
		do   func(s *Spool, id string, now time.Time) error
		// ok maps the legal source states to the resulting state; every
		// other state must fail with errFor.
		ok     map[State]State
		errFor error
	}
	ops := []op{
		{"RenewLease", func(s *Spool, id string, now time.Time) error { return s.RenewLease(ctx, id, "w1", now.Add(time.Hour)) },
			map[State]State{StateActive: StateActive}, ErrLeaseLost},
		{"RenewLease/other owner", func(s *Spool, id string, now time.Time) error { return s.RenewLease(ctx, id, "w2", now.Add(time.Hour)) },
			nil, ErrLeaseLost},
		{"StartAttempt", func(s *Spool, id string, now time.Time) error {
			return s.StartAttempt(ctx, id, "w1", now, now.Add(time.Minute))
		},
			map[State]State{StateActive: StateActive}, ErrLeaseLost},
		{"Delivered", func(s *Spool, id string, now time.Time) error { return s.Delivered(ctx, id, "w1", Result{}) },
			map[State]State{StateActive: StateDelivered}, ErrLeaseLost},
		{"Delivered/other owner", func(s *Spool, id string, now time.Time) error { return s.Delivered(ctx, id, "w2", Result{}) },
			nil, ErrLeaseLost},
		{"Defer", func(s *Spool, id string, now time.Time) error {
			return s.Defer(ctx, id, "w1", now.Add(time.Minute), Result{})
		},
			map[State]State{StateActive: StateDeferred}, ErrLeaseLost},
		{"Dead", func(s *Spool, id string, now time.Time) error { return s.Dead(ctx, id, "w1", Result{Reason: "bad"}) },
			map[State]State{StateActive: StateDead}, ErrLeaseLost},
		{"Postpone", func(s *Spool, id string, now time.Time) error { return s.Postpone(ctx, id, "w1", now, "needs_reauth") },
			map[State]State{StateActive: StateDeferred}, ErrLeaseLost},
		{"Hold", func(s *Spool, id string, now time.Time) error { return s.Hold(ctx, id, "why") },
			map[State]State{StateQueued: StateHeld, StateDeferred: StateHeld, StateDead: StateHeld}, ErrWrongState},
		{"Release", func(s *Spool, id string, now time.Time) error { return s.Release(ctx, id) },
			map[State]State{StateHeld: StateQueued}, ErrWrongState},
		{"Requeue", func(s *Spool, id string, now time.Time) error { return s.Requeue(ctx, id) },
			map[State]State{StateDead: StateQueued, StateHeld: StateQueued}, ErrWrongState},
		{"Flush", func(s *Spool, id string, now time.Time) error { return s.Flush(ctx, id) },
			map[State]State{StateQueued: StateQueued, StateDeferred: StateDeferred}, ErrWrongState},
		{"Delete", func(s *Spool, id string, now time.Time) error { return s.Delete(ctx, id) },
			map[State]State{StateQueued: "", StateDeferred: "", StateHeld: "", StateDead: "", StateDelivered: ""}, ErrWrongState},
	}
	for _, o := range ops {
		for _, from := range States {
			t.Run(o.name+"/from_"+string(from), func(t *testing.T) {
				clk := newFakeClock()
				s := openTest(t, t.TempDir(), testOpts(clk))
				id := makeInState(t, s, clk, from)
				err := o.do(s, id, clk.Now())
				want, legal := o.ok[from]
				if !legal {
					if !errors.Is(err, o.errFor) {
						t.Fatalf("err = %v, want %v", err, o.errFor)
					}
					if !strings.Contains(err.Error(), id) {
						t.Fatalf("error %q does not name the message", err)
					}
					if m := mustGet(t, s, id); m.State != from {
						t.Fatalf("failed op changed state to %s", m.State)
					}
					return
				}
				if err != nil {
					t.Fatalf("legal op failed: %v", err)
				}
				if want == "" {
					if _, err := s.Get(ctx, id); !errors.Is(err, ErrNotFound) {
						t.Fatalf("after Delete Get err = %v, want ErrNotFound", err)
					}
					if bodyStored(s, id) {
						t.Fatal("body file left after Delete")
					}
					return
				}
				m := mustGet(t, s, id)
				if m.State != want {
					t.Fatalf("state = %s, want %s", m.State, want)
				}
				if want != StateActive && (m.LeaseOwner != "" || !m.LeaseUntil.IsZero()) {
					t.Fatalf("lease not cleared: %s", describe(m))
				}
				if want == StateDelivered && bodyStored(s, id) {
					t.Fatal("delivered body not removed")
				}
				if (want == StateDead || want == StateQueued || want == StateHeld) && !bodyStored(s, id) {
					t.Fatal("body removed too early")
				}
			})
		}
	}
	t.Run("unknown id", func(t *testing.T) {
		clk := newFakeClock()
		s := openTest(t, t.TempDir(), testOpts(clk))
		for _, o := range ops {
			if err := o.do(s, "01NOSUCHMESSAGE0000000000", clk.Now()); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: err = %v, want ErrNotFound", o.name, err)
			}
		}
	})
}

func TestActiveTransitionErrorsMentionLease(t *testing.T) {
	clk := newFakeClock()
	s := openTest(t, t.TempDir(), testOpts(clk))
	id := makeInState(t, s, clk, StateQueued)
	err := s.Defer(context.Background(), id, "w1", clk.Now(), Result{})
	if !errors.Is(err, ErrLeaseLost) || !errors.Is(err, ErrWrongState) {
		t.Fatalf("Defer of a queued message: %v; want ErrLeaseLost and ErrWrongState", err)
	}
	if !strings.HasPrefix(err.Error(), "spool: defer "+id+": ") {
		t.Fatalf("error text %q lacks context", err)
	}
}

func TestRecipientsAndHistory(t *testing.T) {
	clk := newFakeClock()
	opts := testOpts(clk)
	opts.HistoryLimit = 3
	s := openTest(t, t.TempDir(), opts)
	ctx := context.Background()
	id := mustEnqueue(t, s, req("acct", "a@x", "b@x", "c@x"), "x")

	// Five deferred attempts: the history keeps the last three, the count all.
	for i := 0; i < 5; i++ {
		now := clk.Now()
		ms, err := s.Claim(ctx, now, 5, "w1")
		if err != nil || len(ms) != 1 {
			t.Fatalf("attempt %d claim: %v %v", i, ms, err)
		}
		if err := s.StartAttempt(ctx, id, "w1", now, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		res := Result{Error: &ErrorRecord{Code: 451, Enhanced: "4.3.0", Text: "busy"}}
		if i == 0 {
			res.Recipients = []RecipientResult{{Addr: "a@x", State: RcptDelivered}}
		}
		if err := s.Defer(ctx, id, "w1", now.Add(time.Minute), res); err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Minute)
	}
	m := mustGet(t, s, id)
	if m.Attempts != 5 || len(m.History) != 3 || m.LastError == nil || m.LastError.Code != 451 {
		t.Fatalf("after 5 defers: %s history=%d lastErr=%+v", describe(m), len(m.History), m.LastError)
	}
	for _, h := range m.History {
		if h.Result != "deferred" || h.End.IsZero() || h.Owner != "w1" {
			t.Fatalf("history entry %+v", h)
		}
	}

	// Final attempt: b refused, c delivered implicitly -> dead naming b.
	now := clk.Now()
	if _, err := s.Claim(ctx, now, 1, "w1"); err != nil {
		t.Fatal(err)
	}
	err := s.Delivered(ctx, id, "w1", Result{Recipients: []RecipientResult{
		{Addr: "b@x", State: RcptFailed, Error: &ErrorRecord{Code: 550, Enhanced: "5.1.1", Text: "no such user"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	m = mustGet(t, s, id)
	want := map[string]RcptState{"a@x": RcptDelivered, "b@x": RcptFailed, "c@x": RcptDelivered}
	for _, r := range m.Recipients {
		if r.State != want[r.Addr] {
			t.Fatalf("recipient %s = %s, want %s", r.Addr, r.State, want[r.Addr])
		}
	}
	if m.State != StateDead || !strings.Contains(m.Reason, "b@x") || !bodyStored(s, id) {
		t.Fatalf("partial failure: %s reason=%q body=%v", describe(m), m.Reason, bodyStored(s, id))
	}

	// Requeue: attempts reset, b pending again, a and c stay delivered.
	if err := s.Requeue(ctx, id); err != nil {
		t.Fatal(err)
	}
	m = mustGet(t, s, id)
	if m.State != StateQueued || m.Attempts != 0 || m.Reason != "" {
		t.Fatalf("after requeue: %s", describe(m))
	}
	want["b@x"] = RcptPending
	for _, r := range m.Recipients {
		if r.State != want[r.Addr] {
			t.Fatalf("after requeue recipient %s = %s, want %s", r.Addr, r.State, want[r.Addr])
		}
	}

	// Unknown recipient in a result is refused without changing anything.
	if _, err := s.Claim(ctx, clk.Now(), 1, "w1"); err != nil {
		t.Fatal(err)
	}
	err = s.Defer(ctx, id, "w1", clk.Now(), Result{Recipients: []RecipientResult{{Addr: "zz@x", State: RcptFailed}}})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown recipient: %v", err)
	}
	if m := mustGet(t, s, id); m.State != StateActive {
		t.Fatalf("state after refused Defer: %s", m.State)
	}
}

func TestPostponeUncountsAttempt(t *testing.T) {
	clk := newFakeClock()
	s := openTest(t, t.TempDir(), testOpts(clk))
	ctx := context.Background()
	id := makeInState(t, s, clk, StateActive)
	now := clk.Now()
	if err := s.StartAttempt(ctx, id, "w1", now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if m := mustGet(t, s, id); m.Attempts != 1 || len(m.History) != 1 || !m.NextAttempt.Equal(now.Add(time.Minute)) {
		t.Fatalf("after StartAttempt: %s", describe(m))
	}
	next := now.Add(10 * time.Minute)
	if err := s.Postpone(ctx, id, "w1", next, "account needs_reauth"); err != nil {
		t.Fatal(err)
	}
	m := mustGet(t, s, id)
	if m.State != StateDeferred || m.Attempts != 0 || len(m.History) != 0 || !m.NextAttempt.Equal(next) || m.Reason != "account needs_reauth" {
		t.Fatalf("after Postpone: %s history=%v reason=%q", describe(m), m.History, m.Reason)
	}
	if due, ok, err := s.NextDue(ctx, "acct"); err != nil || !ok || !due.Equal(next) {
		t.Fatalf("NextDue = %v %v %v, want %v", due, ok, err, next)
	}
}

func TestClaimOrderAndDueQueries(t *testing.T) {
	clk := newFakeClock()
	s := openTest(t, t.TempDir(), testOpts(clk))
	ctx := context.Background()
	base := clk.Now()
	// Enqueue a1, b1, a2 at increasing times, then defer a1 into the future.
	a1 := mustEnqueue(t, s, req("a"), "1")
	clk.Add(time.Second)
	b1 := mustEnqueue(t, s, req("b"), "2")
	clk.Add(time.Second)
	a2 := mustEnqueue(t, s, req("a"), "3")

	if accts, err := s.DueAccounts(ctx, base); err != nil || len(accts) != 1 || accts[0] != "a" {
		t.Fatalf("DueAccounts(base) = %v %v, want [a]", accts, err)
	}
	if accts, err := s.DueAccounts(ctx, clk.Now()); err != nil || len(accts) != 2 {
		t.Fatalf("DueAccounts(now) = %v %v, want [a b]", accts, err)
	}
	if due, ok, err := s.NextDue(ctx, ""); err != nil || !ok || !due.Equal(base) {
		t.Fatalf("NextDue = %v %v %v", due, ok, err)
	}
	if due, ok, _ := s.NextDue(ctx, "b"); !ok || !due.Equal(base.Add(time.Second)) {
		t.Fatalf("NextDue(b) = %v %v", due, ok)
	}
	if _, ok, _ := s.NextDue(ctx, "nobody"); ok {
		t.Fatal("NextDue(nobody) ok")
	}
	// Not yet due at base+1s: a2.
	ms, err := s.Claim(ctx, base.Add(time.Second), 10, "w")
	if err != nil || len(ms) != 2 || ms[0].ID != a1 || ms[1].ID != b1 {
		t.Fatalf("Claim(base+1s) = %v %v; want [a1 b1]", ids(ms), err)
	}
	if err := s.Defer(ctx, a1, "w", base.Add(time.Hour), Result{}); err != nil {
		t.Fatal(err)
	}
	ms, err = s.ClaimAccount(ctx, "a", clk.Now(), 10, "w")
	if err != nil || len(ms) != 1 || ms[0].ID != a2 {
		t.Fatalf("ClaimAccount(a) = %v %v; want [a2]", ids(ms), err)
	}
	ms, err = s.Claim(ctx, base.Add(2*time.Hour), 10, "w")
	if err != nil || len(ms) != 1 || ms[0].ID != a1 {
		t.Fatalf("Claim(+2h) = %v %v; want [a1]", ids(ms), err)
	}
	if _, ok, _ := s.NextDue(ctx, ""); ok {
		t.Fatal("NextDue ok with everything active")
	}
}

func TestFlushAndFlushAll(t *testing.T) {
	clk := newFakeClock()
	s := openTest(t, t.TempDir(), testOpts(clk))
	ctx := context.Background()
	var deferred []string
	for _, acct := range []string{"a", "a", "b"} {
		id := mustEnqueue(t, s, req(acct), "x")
		if _, err := s.ClaimAccount(ctx, acct, clk.Now(), 1, "w"); err != nil {
			t.Fatal(err)
		}
		if err := s.Defer(ctx, id, "w", clk.Now().Add(time.Hour), Result{}); err != nil {
			t.Fatal(err)
		}
		deferred = append(deferred, id)
	}
	<-s.Notify() // drain the enqueue signal
	if err := s.Flush(ctx, deferred[0]); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Notify():
	default:
		t.Fatal("Flush did not signal")
	}
	if m := mustGet(t, s, deferred[0]); !m.NextAttempt.Equal(clk.Now()) || m.State != StateDeferred {
		t.Fatalf("after Flush: %s", describe(m))
	}
	n, err := s.FlushAll(ctx, "a")
	if err != nil || n != 1 {
		t.Fatalf("FlushAll(a) = %d %v, want 1", n, err)
	}
	n, err = s.FlushAll(ctx, "")
	if err != nil || n != 1 {
		t.Fatalf("FlushAll() = %d %v, want 1 (only b left)", n, err)
	}
	ms, err := s.Claim(ctx, clk.Now(), 10, "w")
	if err != nil || len(ms) != 3 {
		t.Fatalf("Claim after flush = %d %v, want 3", len(ms), err)
	}
}

func TestPurge(t *testing.T) {
	clk := newFakeClock()
	s := openTest(t, t.TempDir(), testOpts(clk))
	ctx := context.Background()
	dead := makeInState(t, s, clk, StateDead)
	delivered := makeInState(t, s, clk, StateDelivered)
	clk.Add(time.Hour)
	dead2 := makeInState(t, s, clk, StateDead)
	if _, err := s.Purge(ctx, StateQueued, clk.Now()); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Purge(queued) err = %v", err)
	}
	n, err := s.Purge(ctx, StateDead, clk.Now().Add(-time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("Purge(dead) = %d %v, want 1", n, err)
	}
	if _, err := s.Get(ctx, dead); !errors.Is(err, ErrNotFound) || bodyStored(s, dead) {
		t.Fatalf("purged dead message still there: %v", err)
	}
	mustGet(t, s, dead2)
	mustGet(t, s, delivered)
	st, _ := s.Stats(ctx)
	if st[StateDead] != 1 || st[StateDelivered] != 1 {
		t.Fatalf("stats after purge %v", st)
	}
}

func TestDeliveredRetentionByRescuer(t *testing.T) {
	clk := newFakeClock()
	opts := testOpts(clk)
	opts.DeliveredRetention = time.Hour
	s := openTest(t, t.TempDir(), opts)
	id := makeInState(t, s, clk, StateDelivered)
	clk.Add(30 * time.Minute)
	if _, err := s.rescueNow(); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, id)
	clk.Add(31 * time.Minute)
	if _, err := s.rescueNow(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(context.Background(), id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delivered record past retention: %v", err)
	}
}

func TestLeaseExpiryAndRescue(t *testing.T) {
	clk := newFakeClock()
	s := openTest(t, t.TempDir(), testOpts(clk))
	ctx := context.Background()
	id := makeInState(t, s, clk, StateActive)
	start := clk.Now()
	if err := s.StartAttempt(ctx, id, "w1", start, start.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Expired but not rescued: still w1's.
	clk.Add(6 * time.Minute)
	if err := s.RenewLease(ctx, id, "w1", clk.Now().Add(time.Minute)); err != nil {
		t.Fatalf("renew of expired, unrescued lease: %v", err)
	}
	clk.Add(2 * time.Minute)
	n, err := s.rescueNow()
	if err != nil || n != 1 {
		t.Fatalf("Rescue = %d %v, want 1", n, err)
	}
	m := mustGet(t, s, id)
	if m.State != StateQueued || m.Attempts != 1 || !m.NextAttempt.Equal(start.Add(10*time.Minute)) {
		t.Fatalf("rescued: %s", describe(m))
	}
	if h := m.History[len(m.History)-1]; h.Result != "interrupted" || h.End.IsZero() {
		t.Fatalf("history after rescue: %+v", h)
	}
	if err := s.Delivered(ctx, id, "w1", Result{}); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Delivered after rescue: %v, want ErrLeaseLost", err)
	}
	// Due at max(NextAttempt, now): not claimable before the recorded backoff.
	if ms, _ := s.Claim(ctx, clk.Now(), 1, "w2"); len(ms) != 0 {
		t.Fatal("rescued message claimable before its ifCrash time")
	}
	if ms, _ := s.Claim(ctx, start.Add(10*time.Minute), 1, "w2"); len(ms) != 1 {
		t.Fatal("rescued message not claimable at its ifCrash time")
	}
	if err := s.Defer(ctx, id, "w1", clk.Now(), Result{}); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("old owner Defer after reclaim: %v", err)
	}
}

func TestRescuerRunsInBackground(t *testing.T) {
	opts := Options{Logger: quietLogger(), RescueInterval: 20 * time.Millisecond, LeaseDuration: 50 * time.Millisecond}
	s := openTest(t, t.TempDir(), opts)
	ctx := context.Background()
	id := mustEnqueue(t, s, req("a"), "x")
	<-s.Notify()
	if ms, err := s.Claim(ctx, time.Now(), 1, "w"); err != nil || len(ms) != 1 {
		t.Fatal(ms, err)
	}
	select {
	case <-s.Notify():
	case <-time.After(10 * time.Second):
		t.Fatal("rescuer did not signal Notify")
	}
	waitFor(t, "message requeued", 10*time.Second, func() bool { return mustGet(t, s, id).State == StateQueued })
}

func ids(ms []*Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

// TestClaimAccountStart checks that a claim which starts attempts commits
// them with their crash-time next attempt, returns the messages as claimed,
// and that Postpone gives an unsent one its attempt back.
func TestClaimAccountStart(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s := openTest(t, t.TempDir(), testOpts(clk))
	a := mustEnqueue(t, s, req("acct"), "a")
	b := mustEnqueue(t, s, req("acct"), "b")
	mustEnqueue(t, s, req("other"), "c")
	now := clk.Now()
	var seen []int
	msgs, err := s.ClaimAccountStart(ctx, "acct", now, 10, "w", func(m *Message) time.Time {
		seen = append(seen, m.Attempts)
		return now.Add(time.Minute)
	})
	if err != nil || len(msgs) != 2 {
		t.Fatalf("ClaimAccountStart: %d messages, %v; want 2", len(msgs), err)
	}
	if len(seen) != 2 || seen[0] != 0 || seen[1] != 0 {
		t.Fatalf("ifCrash saw attempts %v, want [0 0]", seen)
	}
	for _, m := range msgs {
		if m.State != StateActive || m.LeaseOwner != "w" || m.Attempts != 0 || len(m.History) != 0 {
			t.Fatalf("returned %s history=%d, want active, as claimed", describe(m), len(m.History))
		}
		stored := mustGet(t, s, m.ID)
		if stored.Attempts != 1 || !stored.NextAttempt.Equal(now.Add(time.Minute)) ||
			len(stored.History) != 1 || !stored.History[0].End.IsZero() {
			t.Fatalf("stored %s history=%+v, want one open attempt due in a minute", describe(stored), stored.History)
		}
	}
	if err := s.Delivered(ctx, a, "w", Result{}); err != nil {
		t.Fatal(err)
	}
	if m := mustGet(t, s, a); m.State != StateDelivered || m.Attempts != 1 || m.History[0].Result != "delivered" {
		t.Fatalf("after delivery: %s %+v", describe(m), m.History)
	}
	if err := s.Postpone(ctx, b, "w", time.Time{}, "released unsent"); err != nil {
		t.Fatal(err)
	}
	if m := mustGet(t, s, b); m.State != StateDeferred || m.Attempts != 0 || len(m.History) != 0 {
		t.Fatalf("after Postpone: %s history=%+v, want the attempt uncounted", describe(m), m.History)
	}
	// A crash between claim and send: recovery keeps the backoff.
	msgs, err = s.ClaimAccountStart(ctx, "other", now, 10, "w", func(*Message) time.Time { return now.Add(time.Hour) })
	if err != nil || len(msgs) != 1 {
		t.Fatalf("claim other: %d, %v", len(msgs), err)
	}
	dir := s.Dir()
	s.Close()
	s = openTest(t, dir, testOpts(clk))
	if m := mustGet(t, s, msgs[0].ID); m.State != StateQueued || m.Attempts != 1 || !m.NextAttempt.Equal(now.Add(time.Hour)) {
		t.Fatalf("after a crash mid-claim: %s", describe(m))
	}
	if _, err := s.ClaimAccountStart(ctx, "acct", now, 1, "w", nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("nil ifCrash: %v, want ErrInvalid", err)
	}
}
