package conformance

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoold/spoold/spool"
)

func testLifecycle(t *testing.T, s Suite) {
	e := newEnv(t, s)
	const body = "Subject: hi\r\n\r\nbody\r\n"
	drain(e.b.Notify())
	id := e.enqueue(req("outbox", "a@example.com", "b@example.com"), body)
	if !spool.ValidID(id) {
		t.Fatalf("Enqueue returned a bad ID %q", id)
	}
	waitFor(t, "Notify after Enqueue", 10*time.Second, func() bool {
		select {
		case <-e.b.Notify():
			return true
		default:
			return false
		}
	})
	m := e.get(id)
	if m.State != spool.StateQueued || m.Size != int64(len(body)) || len(m.Recipients) != 2 || m.Account != "outbox" ||
		m.From != "scanner@example.com" || m.Source.PeerIP != "127.0.0.1" || !m.Created.Equal(e.clk.Now()) {
		t.Fatalf("after enqueue: %s size=%d rcpts=%d %+v", describe(m), m.Size, len(m.Recipients), m)
	}
	if got := readBody(t, e.b, id); got != body {
		t.Fatalf("body = %q", got)
	}
	now := e.clk.Now()
	claimed, err := e.b.Claim(ctx, now, 10, "w1")
	if err != nil || len(claimed) != 1 || claimed[0].ID != id {
		t.Fatalf("Claim = %v, %v; want [%s]", ids(claimed), err, id)
	}
	if c := claimed[0]; c.State != spool.StateActive || c.LeaseOwner != "w1" || !c.LeaseUntil.Equal(now.Add(5*time.Minute)) {
		t.Fatalf("claimed: %s", describe(c))
	}
	if again, _ := e.b.Claim(ctx, now, 10, "w2"); len(again) != 0 {
		t.Fatalf("second Claim returned %d messages, want 0", len(again))
	}
	if err := e.b.StartAttempt(ctx, id, "w1", now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := e.b.Delivered(ctx, id, "w1", spool.Result{Now: now.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	m = e.get(id)
	if m.State != spool.StateDelivered || m.Attempts != 1 || len(m.History) != 1 || m.History[0].Result != "delivered" ||
		!m.DeliveredAt.Equal(now.Add(time.Second)) {
		t.Fatalf("after Delivered: %s history=%+v", describe(m), m.History)
	}
	for _, r := range m.Recipients {
		if r.State != spool.RcptDelivered {
			t.Fatalf("recipient %s is %s", r.Addr, r.State)
		}
	}
	if e.bodyStored(id) {
		t.Fatal("body kept after delivery")
	}
	if _, err := e.b.OpenBody(id); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("OpenBody after delivery: %v, want ErrNotFound", err)
	}
	if _, err := e.b.OpenBody("01NOSUCHMESSAGE0000000000"); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("OpenBody of an unknown ID: %v, want ErrNotFound", err)
	}
	st, err := e.b.Stats(ctx)
	if err != nil || st[spool.StateDelivered] != 1 || st[spool.StateQueued] != 0 || st[spool.StateActive] != 0 {
		t.Fatalf("Stats = %v, %v", st, err)
	}
	if len(st) != len(spool.States) {
		t.Fatalf("Stats has %d states, want all %d", len(st), len(spool.States))
	}
}

func testEnqueueValidation(t *testing.T, s Suite) {
	e := newEnv(t, s)
	cases := map[string]spool.EnqueueRequest{
		"no account":    {To: []string{"a@x"}},
		"no recipients": {Account: "a"},
		"empty rcpt":    {Account: "a", To: []string{""}},
		"CR in rcpt":    {Account: "a", To: []string{"a@x\r\nRCPT TO:<evil>"}},
		"NUL in rcpt":   {Account: "a", To: []string{"a\x00@x"}},
		"LF in from":    {Account: "a", To: []string{"a@x"}, From: "x\n"},
		"NUL account":   {Account: "a\x00b", To: []string{"a@x"}},
		"bad UTF-8":     {Account: "a", To: []string{"a@x"}, From: "\xff@x"},
		"long key":      {Account: "a", To: []string{"a@x"}, IdempotencyKey: strings.Repeat("k", 513)},
	}
	for name, r := range cases {
		if _, err := e.b.Enqueue(ctx, r, strings.NewReader("x")); !errors.Is(err, spool.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := e.b.Enqueue(ctx, req("a"), nil); !errors.Is(err, spool.ErrInvalid) {
		t.Errorf("nil body: err = %v, want ErrInvalid", err)
	}
	if n := e.bodyCount(); n != 0 {
		t.Fatalf("%d bodies left after rejected enqueues", n)
	}
}

type transitionOp struct {
	name string
	do   func(b spool.Backend, id string, now time.Time) error
	// ok maps the legal source states to the resulting state ("" =
	// deleted); every other state must fail with errFor.
	ok     map[spool.State]spool.State
	errFor error
}

func transitionOps() []transitionOp {
	Q, A, D, H, X, V := spool.StateQueued, spool.StateActive, spool.StateDeferred, spool.StateHeld, spool.StateDead, spool.StateDelivered
	return []transitionOp{
		{"RenewLease", func(b spool.Backend, id string, now time.Time) error {
			return b.RenewLease(ctx, id, "w1", now.Add(time.Hour))
		},
			map[spool.State]spool.State{A: A}, spool.ErrLeaseLost},
		{"RenewLease/other owner", func(b spool.Backend, id string, now time.Time) error {
			return b.RenewLease(ctx, id, "w2", now.Add(time.Hour))
		},
			nil, spool.ErrLeaseLost},
		{"StartAttempt", func(b spool.Backend, id string, now time.Time) error {
			return b.StartAttempt(ctx, id, "w1", now, now.Add(time.Minute))
		}, map[spool.State]spool.State{A: A}, spool.ErrLeaseLost},
		{"Delivered", func(b spool.Backend, id string, now time.Time) error {
			return b.Delivered(ctx, id, "w1", spool.Result{})
		},
			map[spool.State]spool.State{A: V}, spool.ErrLeaseLost},
		{"Delivered/other owner", func(b spool.Backend, id string, now time.Time) error {
			return b.Delivered(ctx, id, "w2", spool.Result{})
		},
			nil, spool.ErrLeaseLost},
		{"Defer", func(b spool.Backend, id string, now time.Time) error {
			return b.Defer(ctx, id, "w1", now.Add(time.Minute), spool.Result{})
		}, map[spool.State]spool.State{A: D}, spool.ErrLeaseLost},
		{"Dead", func(b spool.Backend, id string, now time.Time) error {
			return b.Dead(ctx, id, "w1", spool.Result{Reason: "bad"})
		},
			map[spool.State]spool.State{A: X}, spool.ErrLeaseLost},
		{"Postpone", func(b spool.Backend, id string, now time.Time) error {
			return b.Postpone(ctx, id, "w1", now, "needs_reauth")
		},
			map[spool.State]spool.State{A: D}, spool.ErrLeaseLost},
		{"Hold", func(b spool.Backend, id string, now time.Time) error { return b.Hold(ctx, id, "why") },
			map[spool.State]spool.State{Q: H, D: H, X: H}, spool.ErrWrongState},
		{"Release", func(b spool.Backend, id string, now time.Time) error { return b.Release(ctx, id) },
			map[spool.State]spool.State{H: Q}, spool.ErrWrongState},
		{"Requeue", func(b spool.Backend, id string, now time.Time) error { return b.Requeue(ctx, id) },
			map[spool.State]spool.State{X: Q, H: Q}, spool.ErrWrongState},
		{"Flush", func(b spool.Backend, id string, now time.Time) error { return b.Flush(ctx, id) },
			map[spool.State]spool.State{Q: Q, D: D}, spool.ErrWrongState},
		{"Delete", func(b spool.Backend, id string, now time.Time) error { return b.Delete(ctx, id) },
			map[spool.State]spool.State{Q: "", D: "", H: "", X: "", V: ""}, spool.ErrWrongState},
	}
}

// testTransitionsTable runs every transition from every state on one store:
// each case uses a message of its own.
func testTransitionsTable(t *testing.T, s Suite) {
	e := newEnv(t, s)
	ops := transitionOps()
	for _, o := range ops {
		for _, from := range spool.States {
			t.Run(o.name+"/from_"+string(from), func(t *testing.T) {
				e := &env{t: t, s: e.s, clk: e.clk, cfg: e.cfg, b: e.b, acct: t.Name()}
				id := e.inState(from)
				err := o.do(e.b, id, e.clk.Now())
				want, legal := o.ok[from]
				if !legal {
					if !errors.Is(err, o.errFor) {
						t.Fatalf("err = %v, want %v", err, o.errFor)
					}
					if !strings.Contains(err.Error(), id) {
						t.Fatalf("error %q does not name the message", err)
					}
					if m := e.get(id); m.State != from {
						t.Fatalf("failed op changed state to %s", m.State)
					}
					return
				}
				if err != nil {
					t.Fatalf("legal op failed: %v", err)
				}
				if want == "" {
					if _, err := e.b.Get(ctx, id); !errors.Is(err, spool.ErrNotFound) {
						t.Fatalf("after Delete Get err = %v, want ErrNotFound", err)
					}
					if e.bodyStored(id) {
						t.Fatal("body left after Delete")
					}
					return
				}
				m := e.get(id)
				if m.State != want {
					t.Fatalf("state = %s, want %s", m.State, want)
				}
				if want != spool.StateActive && (m.LeaseOwner != "" || !m.LeaseUntil.IsZero()) {
					t.Fatalf("lease not cleared: %s", describe(m))
				}
				if want == spool.StateDelivered && e.bodyStored(id) {
					t.Fatal("delivered body not removed")
				}
				if (want == spool.StateDead || want == spool.StateQueued || want == spool.StateHeld) && !e.bodyStored(id) {
					t.Fatal("body removed too early")
				}
			})
		}
	}
	t.Run("unknown id", func(t *testing.T) {
		for _, o := range ops {
			if err := o.do(e.b, "01NOSUCHMESSAGE0000000000", e.clk.Now()); !errors.Is(err, spool.ErrNotFound) {
				t.Errorf("%s: err = %v, want ErrNotFound", o.name, err)
			}
		}
	})
}

func testActiveErrors(t *testing.T, s Suite) {
	e := newEnv(t, s)
	id := e.inState(spool.StateQueued)
	err := e.b.Defer(ctx, id, "w1", e.clk.Now(), spool.Result{})
	if !errors.Is(err, spool.ErrLeaseLost) || !errors.Is(err, spool.ErrWrongState) {
		t.Fatalf("Defer of a queued message: %v; want ErrLeaseLost and ErrWrongState", err)
	}
	if !strings.HasPrefix(err.Error(), "spool: defer "+id+": ") {
		t.Fatalf("error text %q lacks context", err)
	}
}

func testRecipientsAndHistory(t *testing.T, s Suite) {
	e := newEnvCfg(t, s, func(c *Config) { c.HistoryLimit = 3 })
	b, clk := e.b, e.clk
	id := e.enqueue(req("acct", "a@x", "b@x", "c@x"), "x")
	// Five deferred attempts: the history keeps the last three, the count all.
	for i := 0; i < 5; i++ {
		now := clk.Now()
		ms, err := b.Claim(ctx, now, 5, "w1")
		if err != nil || len(ms) != 1 {
			t.Fatalf("attempt %d claim: %v %v", i, ids(ms), err)
		}
		if err := b.StartAttempt(ctx, id, "w1", now, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		res := spool.Result{Error: &spool.ErrorRecord{Code: 451, Enhanced: "4.3.0", Text: "busy"}}
		if i == 0 {
			res.Recipients = []spool.RecipientResult{{Addr: "a@x", State: spool.RcptDelivered}}
		}
		if err := b.Defer(ctx, id, "w1", now.Add(time.Minute), res); err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Minute)
	}
	m := e.get(id)
	if m.Attempts != 5 || len(m.History) != 3 || m.LastError == nil || m.LastError.Code != 451 || m.LastError.Enhanced != "4.3.0" {
		t.Fatalf("after 5 defers: %s history=%d lastErr=%+v", describe(m), len(m.History), m.LastError)
	}
	for _, h := range m.History {
		if h.Result != "deferred" || h.End.IsZero() || h.Owner != "w1" {
			t.Fatalf("history entry %+v", h)
		}
	}
	// Final attempt: b refused, c delivered implicitly -> dead naming b.
	if _, err := b.Claim(ctx, clk.Now(), 1, "w1"); err != nil {
		t.Fatal(err)
	}
	err := b.Delivered(ctx, id, "w1", spool.Result{Recipients: []spool.RecipientResult{
		{Addr: "b@x", State: spool.RcptFailed, Error: &spool.ErrorRecord{Code: 550, Enhanced: "5.1.1", Text: "no such user"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	m = e.get(id)
	want := map[string]spool.RcptState{"a@x": spool.RcptDelivered, "b@x": spool.RcptFailed, "c@x": spool.RcptDelivered}
	for _, r := range m.Recipients {
		if r.State != want[r.Addr] {
			t.Fatalf("recipient %s = %s, want %s", r.Addr, r.State, want[r.Addr])
		}
	}
	if m.State != spool.StateDead || !strings.Contains(m.Reason, "b@x") || !e.bodyStored(id) || m.LastError == nil || m.LastError.Code != 550 {
		t.Fatalf("partial failure: %s reason=%q body=%v", describe(m), m.Reason, e.bodyStored(id))
	}
	// Requeue: attempts reset, b pending again, a and c stay delivered.
	if err := b.Requeue(ctx, id); err != nil {
		t.Fatal(err)
	}
	m = e.get(id)
	if m.State != spool.StateQueued || m.Attempts != 0 || m.Reason != "" {
		t.Fatalf("after requeue: %s", describe(m))
	}
	want["b@x"] = spool.RcptPending
	for _, r := range m.Recipients {
		if r.State != want[r.Addr] {
			t.Fatalf("after requeue recipient %s = %s, want %s", r.Addr, r.State, want[r.Addr])
		}
	}
	// Unknown recipient in a result is refused without changing anything.
	if _, err := b.Claim(ctx, clk.Now(), 1, "w1"); err != nil {
		t.Fatal(err)
	}
	err = b.Defer(ctx, id, "w1", clk.Now(), spool.Result{Recipients: []spool.RecipientResult{{Addr: "zz@x", State: spool.RcptFailed}}})
	if !errors.Is(err, spool.ErrInvalid) {
		t.Fatalf("unknown recipient: %v", err)
	}
	if m := e.get(id); m.State != spool.StateActive {
		t.Fatalf("state after refused Defer: %s", m.State)
	}
	// A pending recipient cannot be "delivered".
	err = b.Delivered(ctx, id, "w1", spool.Result{Recipients: []spool.RecipientResult{{Addr: "b@x", State: spool.RcptPending}}})
	if !errors.Is(err, spool.ErrInvalid) {
		t.Fatalf("Delivered with a pending recipient: %v, want ErrInvalid", err)
	}
}

func testPostpone(t *testing.T, s Suite) {
	e := newEnv(t, s)
	id := e.inState(spool.StateActive)
	now := e.clk.Now()
	if err := e.b.StartAttempt(ctx, id, "w1", now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if m := e.get(id); m.Attempts != 1 || len(m.History) != 1 || !m.NextAttempt.Equal(now.Add(time.Minute)) {
		t.Fatalf("after StartAttempt: %s", describe(m))
	}
	next := now.Add(10 * time.Minute)
	if err := e.b.Postpone(ctx, id, "w1", next, "account needs_reauth"); err != nil {
		t.Fatal(err)
	}
	m := e.get(id)
	if m.State != spool.StateDeferred || m.Attempts != 0 || len(m.History) != 0 || !m.NextAttempt.Equal(next) || m.Reason != "account needs_reauth" {
		t.Fatalf("after Postpone: %s history=%v reason=%q", describe(m), m.History, m.Reason)
	}
	if due, ok, err := e.b.NextDue(ctx, "acct"); err != nil || !ok || !due.Equal(next) {
		t.Fatalf("NextDue = %v %v %v, want %v", due, ok, err, next)
	}
}

func testClaimOrder(t *testing.T, s Suite) {
	e := newEnv(t, s)
	b, clk := e.b, e.clk
	base := clk.Now()
	a1 := e.enqueue(req("a"), "1")
	clk.Add(time.Second)
	b1 := e.enqueue(req("b"), "2")
	clk.Add(time.Second)
	a2 := e.enqueue(req("a"), "3")

	if accts, err := b.DueAccounts(ctx, base); err != nil || len(accts) != 1 || accts[0] != "a" {
		t.Fatalf("DueAccounts(base) = %v %v, want [a]", accts, err)
	}
	if accts, err := b.DueAccounts(ctx, clk.Now()); err != nil || fmt.Sprint(accts) != "[a b]" {
		t.Fatalf("DueAccounts(now) = %v %v, want [a b]", accts, err)
	}
	if due, ok, err := b.NextDue(ctx, ""); err != nil || !ok || !due.Equal(base) {
		t.Fatalf("NextDue = %v %v %v", due, ok, err)
	}
	if due, ok, _ := b.NextDue(ctx, "b"); !ok || !due.Equal(base.Add(time.Second)) {
		t.Fatalf("NextDue(b) = %v %v", due, ok)
	}
	if _, ok, _ := b.NextDue(ctx, "nobody"); ok {
		t.Fatal("NextDue(nobody) ok")
	}
	ms, err := b.Claim(ctx, base.Add(time.Second), 10, "w")
	if err != nil || len(ms) != 2 || ms[0].ID != a1 || ms[1].ID != b1 {
		t.Fatalf("Claim(base+1s) = %v %v; want [a1 b1]", ids(ms), err)
	}
	if err := b.Defer(ctx, a1, "w", base.Add(time.Hour), spool.Result{}); err != nil {
		t.Fatal(err)
	}
	ms, err = b.ClaimAccount(ctx, "a", clk.Now(), 10, "w")
	if err != nil || len(ms) != 1 || ms[0].ID != a2 {
		t.Fatalf("ClaimAccount(a) = %v %v; want [a2]", ids(ms), err)
	}
	ms, err = b.Claim(ctx, base.Add(2*time.Hour), 10, "w")
	if err != nil || len(ms) != 1 || ms[0].ID != a1 {
		t.Fatalf("Claim(+2h) = %v %v; want [a1]", ids(ms), err)
	}
	if _, ok, _ := b.NextDue(ctx, ""); ok {
		t.Fatal("NextDue ok with everything active")
	}
	if ms, err := b.Claim(ctx, clk.Now(), 0, "w"); err != nil || len(ms) != 0 {
		t.Fatalf("Claim with limit 0 = %v %v", ids(ms), err)
	}
	if _, err := b.Claim(ctx, clk.Now(), 1, ""); !errors.Is(err, spool.ErrInvalid) {
		t.Fatalf("Claim without an owner: %v, want ErrInvalid", err)
	}
	if _, err := b.ClaimAccount(ctx, "", clk.Now(), 1, "w"); !errors.Is(err, spool.ErrInvalid) {
		t.Fatalf("ClaimAccount without an account: %v, want ErrInvalid", err)
	}
}

func testFlush(t *testing.T, s Suite) {
	e := newEnv(t, s)
	b, clk := e.b, e.clk
	var deferred []string
	for _, acct := range []string{"a", "a", "b"} {
		id := e.enqueue(req(acct), "x")
		if _, err := b.ClaimAccount(ctx, acct, clk.Now(), 1, "w"); err != nil {
			t.Fatal(err)
		}
		if err := b.Defer(ctx, id, "w", clk.Now().Add(time.Hour), spool.Result{}); err != nil {
			t.Fatal(err)
		}
		deferred = append(deferred, id)
	}
	drain(b.Notify())
	if err := b.Flush(ctx, deferred[0]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Notify after Flush", 10*time.Second, func() bool {
		select {
		case <-b.Notify():
			return true
		default:
			return false
		}
	})
	if m := e.get(deferred[0]); !m.NextAttempt.Equal(clk.Now()) || m.State != spool.StateDeferred {
		t.Fatalf("after Flush: %s", describe(m))
	}
	n, err := b.FlushAll(ctx, "a")
	if err != nil || n != 1 {
		t.Fatalf("FlushAll(a) = %d %v, want 1", n, err)
	}
	n, err = b.FlushAll(ctx, "")
	if err != nil || n != 1 {
		t.Fatalf("FlushAll() = %d %v, want 1 (only b left)", n, err)
	}
	ms, err := b.Claim(ctx, clk.Now(), 10, "w")
	if err != nil || len(ms) != 3 {
		t.Fatalf("Claim after flush = %d %v, want 3", len(ms), err)
	}
}

func testPurge(t *testing.T, s Suite) {
	e := newEnv(t, s)
	dead := e.inState(spool.StateDead)
	delivered := e.inState(spool.StateDelivered)
	e.clk.Add(time.Hour)
	dead2 := e.inState(spool.StateDead)
	if _, err := e.b.Purge(ctx, spool.StateQueued, e.clk.Now()); !errors.Is(err, spool.ErrInvalid) {
		t.Fatalf("Purge(queued) err = %v", err)
	}
	n, err := e.b.Purge(ctx, spool.StateDead, e.clk.Now().Add(-time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("Purge(dead) = %d %v, want 1", n, err)
	}
	if _, err := e.b.Get(ctx, dead); !errors.Is(err, spool.ErrNotFound) || e.bodyStored(dead) {
		t.Fatalf("purged dead message still there: %v", err)
	}
	e.get(dead2)
	e.get(delivered)
	st, _ := e.b.Stats(ctx)
	if st[spool.StateDead] != 1 || st[spool.StateDelivered] != 1 {
		t.Fatalf("stats after purge %v", st)
	}
}

func testRetention(t *testing.T, s Suite) {
	e := newEnvCfg(t, s, func(c *Config) { c.DeliveredRetention = time.Hour })
	id := e.inState(spool.StateDelivered)
	e.clk.Add(30 * time.Minute)
	if _, err := e.b.Rescue(ctx); err != nil {
		t.Fatal(err)
	}
	e.get(id)
	e.clk.Add(31 * time.Minute)
	if _, err := e.b.Rescue(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.Get(ctx, id); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("delivered record past retention: %v", err)
	}
}

func testLeaseRescue(t *testing.T, s Suite) {
	e := newEnv(t, s)
	b, clk := e.b, e.clk
	id := e.inState(spool.StateActive)
	start := clk.Now()
	if err := b.StartAttempt(ctx, id, "w1", start, start.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Expired but not rescued: still w1's.
	clk.Add(6 * time.Minute)
	if err := b.RenewLease(ctx, id, "w1", clk.Now().Add(time.Minute)); err != nil {
		t.Fatalf("renew of expired, unrescued lease: %v", err)
	}
	if n, err := b.Rescue(ctx); err != nil || n != 0 {
		t.Fatalf("Rescue of a renewed lease = %d %v, want 0", n, err)
	}
	clk.Add(2 * time.Minute)
	n, err := b.Rescue(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Rescue = %d %v, want 1", n, err)
	}
	m := e.get(id)
	if m.State != spool.StateQueued || m.Attempts != 1 || !m.NextAttempt.Equal(start.Add(10*time.Minute)) {
		t.Fatalf("rescued: %s", describe(m))
	}
	if h := m.History[len(m.History)-1]; h.Result != "interrupted" || h.End.IsZero() {
		t.Fatalf("history after rescue: %+v", h)
	}
	if err := b.Delivered(ctx, id, "w1", spool.Result{}); !errors.Is(err, spool.ErrLeaseLost) {
		t.Fatalf("Delivered after rescue: %v, want ErrLeaseLost", err)
	}
	if ms, _ := b.Claim(ctx, clk.Now(), 1, "w2"); len(ms) != 0 {
		t.Fatal("rescued message claimable before its ifCrash time")
	}
	if ms, _ := b.Claim(ctx, start.Add(10*time.Minute), 1, "w2"); len(ms) != 1 {
		t.Fatal("rescued message not claimable at its ifCrash time")
	}
	if err := b.Defer(ctx, id, "w1", clk.Now(), spool.Result{}); !errors.Is(err, spool.ErrLeaseLost) {
		t.Fatalf("old owner Defer after reclaim: %v", err)
	}
}

func testRescuerRunsInBackground(t *testing.T, s Suite) {
	e := &env{t: t, s: s, clk: NewClock(), cfg: Config{RescueInterval: 20 * time.Millisecond, LeaseDuration: 50 * time.Millisecond}}
	e.b = e.open()
	id := e.enqueue(req("a"), "x")
	drain(e.b.Notify())
	if ms, err := e.b.Claim(ctx, time.Now(), 1, "w"); err != nil || len(ms) != 1 {
		t.Fatal(ids(ms), err)
	}
	select {
	case <-e.b.Notify():
	case <-time.After(10 * time.Second):
		t.Fatal("rescuer did not signal Notify")
	}
	waitFor(t, "message requeued", 10*time.Second, func() bool { return e.get(id).State == spool.StateQueued })
}

func testRescuerBackground(t *testing.T, s Suite) { testRescuerRunsInBackground(t, s) }

func testClaimAccountStart(t *testing.T, s Suite) {
	e := newEnv(t, s)
	a := e.enqueue(req("acct"), "a")
	bID := e.enqueue(req("acct"), "b")
	e.enqueue(req("other"), "c")
	now := e.clk.Now()
	var seen []int
	msgs, err := e.b.ClaimAccountStart(ctx, "acct", now, 10, "w", func(m *spool.Message) time.Time {
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
		if m.State != spool.StateActive || m.LeaseOwner != "w" || m.Attempts != 0 || len(m.History) != 0 {
			t.Fatalf("returned %s history=%d, want active, as claimed", describe(m), len(m.History))
		}
		stored := e.get(m.ID)
		if stored.Attempts != 1 || !stored.NextAttempt.Equal(now.Add(time.Minute)) ||
			len(stored.History) != 1 || !stored.History[0].End.IsZero() {
			t.Fatalf("stored %s history=%+v, want one open attempt due in a minute", describe(stored), stored.History)
		}
	}
	if err := e.b.Delivered(ctx, a, "w", spool.Result{}); err != nil {
		t.Fatal(err)
	}
	if m := e.get(a); m.State != spool.StateDelivered || m.Attempts != 1 || m.History[0].Result != "delivered" {
		t.Fatalf("after delivery: %s %+v", describe(m), m.History)
	}
	if err := e.b.Postpone(ctx, bID, "w", time.Time{}, "released unsent"); err != nil {
		t.Fatal(err)
	}
	if m := e.get(bID); m.State != spool.StateDeferred || m.Attempts != 0 || len(m.History) != 0 {
		t.Fatalf("after Postpone: %s history=%+v, want the attempt uncounted", describe(m), m.History)
	}
	// A crash between claim and send: the restart or the rescuer keeps
	// the backoff the claim recorded.
	msgs, err = e.b.ClaimAccountStart(ctx, "other", now, 10, "w", func(*spool.Message) time.Time { return now.Add(time.Hour) })
	if err != nil || len(msgs) != 1 {
		t.Fatalf("claim other: %d, %v", len(msgs), err)
	}
	e.reopen()
	if !s.OpenRequeuesLeases {
		e.clk.Add(6 * time.Minute)
		if n, err := e.b.Rescue(ctx); err != nil || n != 1 {
			t.Fatalf("Rescue after restart = %d %v, want 1", n, err)
		}
	}
	if m := e.get(msgs[0].ID); m.State != spool.StateQueued || m.Attempts != 1 || !m.NextAttempt.Equal(now.Add(time.Hour)) {
		t.Fatalf("after a crash mid-claim: %s", describe(m))
	}
	if _, err := e.b.ClaimAccountStart(ctx, "acct", now, 1, "w", nil); !errors.Is(err, spool.ErrInvalid) {
		t.Fatalf("nil ifCrash: %v, want ErrInvalid", err)
	}
}

// testLeasesAcrossRestart: an exclusive store requeues every lease when it
// opens; a shared one keeps them (their owner may be another live node)
// until they expire.
func testLeasesAcrossRestart(t *testing.T, s Suite) {
	e := newEnv(t, s)
	id := e.inState(spool.StateActive)
	e.reopen()
	m := e.get(id)
	if s.OpenRequeuesLeases {
		if m.State != spool.StateQueued || m.LeaseOwner != "" || m.NextAttempt.After(e.clk.Now()) {
			t.Fatalf("live lease of a dead process not requeued on open: %s", describe(m))
		}
		got, err := e.b.Claim(ctx, e.clk.Now(), 10, "w2")
		if err != nil || len(got) != 1 || got[0].ID != id {
			t.Fatalf("requeued message is not claimable at once: %v %v", ids(got), err)
		}
		return
	}
	if m.State != spool.StateActive || m.LeaseOwner != "w1" {
		t.Fatalf("a restart took another node's lease: %s", describe(m))
	}
	if err := e.b.RenewLease(ctx, id, "w1", e.clk.Now().Add(time.Minute)); err != nil {
		t.Fatalf("owner's lease after a restart: %v", err)
	}
}

// testConcurrentClaims: workers claiming at once get each message exactly
// once.
func testConcurrentClaims(t *testing.T, s Suite) {
	e := newEnv(t, s)
	const n = 60
	want := map[string]bool{}
	for i := 0; i < n; i++ {
		want[e.enqueue(req([]string{"a", "b", "c"}[i%3]), fmt.Sprint(i))] = true
	}
	var mu sync.Mutex
	got := map[string]string{}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		owner := fmt.Sprintf("w%d", w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var ms []*spool.Message
				var err error
				if w%2 == 0 {
					ms, err = e.b.Claim(ctx, e.clk.Now(), 3, owner)
				} else {
					ms, err = e.b.ClaimAccountStart(ctx, []string{"a", "b", "c"}[w%3], e.clk.Now(), 2, owner,
						func(*spool.Message) time.Time { return e.clk.Now().Add(time.Minute) })
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, m := range ms {
					if prev, dup := got[m.ID]; dup {
						t.Errorf("%s claimed by %s and %s", m.ID, prev, owner)
					}
					got[m.ID] = owner
				}
				done := len(got) == n
				mu.Unlock()
				if len(ms) == 0 && (done || w%2 == 0) {
					return
				}
			}
		}()
	}
	wg.Wait()
	if len(got) != n {
		t.Fatalf("%d of %d messages claimed", len(got), n)
	}
	for id, owner := range got {
		if m := e.get(id); m.State != spool.StateActive || m.LeaseOwner != owner {
			t.Fatalf("%s: %s, want leased by %s", id, describe(m), owner)
		}
	}
}
