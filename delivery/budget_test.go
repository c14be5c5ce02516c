package delivery

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spoold/spoold/spool"
)

// budgetRig runs the engine on a real spool in dir with file accounts
// (limited: 3 recipients a day, falling back to "relay" after 10 minutes
// when fallback is set), on an injected clock.
type budgetRig struct {
	t      *testing.T
	clock  *fakeClock
	dir    string
	sp     *spool.Spool
	eng    *Engine
	reg    *prometheus.Registry
	outA   string // limited's outbox
	outB   string // relay's outbox
	cancel context.CancelFunc
	done   chan error
}

func newBudgetRig(t *testing.T, clock *fakeClock, dir string, fallback bool) *budgetRig {
	t.Helper()
	r := &budgetRig{t: t, clock: clock, dir: dir, outA: filepath.Join(dir, "out-limited"), outB: filepath.Join(dir, "out-relay"),
		reg: prometheus.NewRegistry()}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{Clock: clock.Now, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	r.sp = sp
	limited := AccountConfig{Name: "limited", Transport: "file", Dir: r.outA, DailyRecipientLimit: 3}
	if fallback {
		limited.Fallback, limited.FallbackAfter = "relay", 10*time.Minute
	}
	accs := []AccountConfig{limited, {Name: "relay", Transport: "file", Dir: r.outB}}
	r.eng, err = New(accs, sp, nil, Options{Clock: clock.Now, Rand: func() float64 { return 0.5 }, Owner: "test",
		Logger: quiet, Hostname: "spoold.test", Registerer: r.reg, ShutdownTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- r.eng.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

// stop ends the engine and closes the spool (a restart follows with a new rig).
func (r *budgetRig) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil {
		r.t.Errorf("Run: %v", err)
	}
	if err := r.sp.Close(); err != nil {
		r.t.Errorf("closing spool: %v", err)
	}
}

func (r *budgetRig) enqueue(to ...string) string {
	r.t.Helper()
	id, err := r.sp.Enqueue(context.Background(), spool.EnqueueRequest{From: "alice@office.example", To: to, Account: "limited",
		Source: spool.Source{Kind: spool.SourceSMTP}}, strings.NewReader(simpleBody))
	if err != nil {
		r.t.Fatal(err)
	}
	return id
}

func (r *budgetRig) state(id string) *spool.Message {
	r.t.Helper()
	m, err := r.sp.Get(context.Background(), id)
	if err != nil {
		r.t.Fatal(err)
	}
	return m
}

func (r *budgetRig) waitDelivered(id string) {
	r.t.Helper()
	waitFor(r.t, "message "+id+" delivered", func() bool { return r.state(id).State == spool.StateDelivered })
}

// waitHeld waits until id waits for the limited account's budget.
func (r *budgetRig) waitHeld(id string) spool.State {
	r.t.Helper()
	var m *spool.Message
	waitFor(r.t, "message "+id+" waiting for the budget", func() bool {
		m = r.state(id)
		return m.State == spool.StateDeferred && strings.Contains(m.Reason, "daily recipient budget")
	})
	return m.State
}

func (r *budgetRig) account(name string) AccountState {
	for _, s := range r.eng.AccountStates() {
		if s.Name == name {
			return s
		}
	}
	r.t.Fatalf("no account %s", name)
	return AccountState{}
}

// step moves the clock and waits for a scheduler pass on the new time.
func (r *budgetRig) step(d time.Duration) {
	r.t.Helper()
	r.clock.Add(d)
	passAfterStep(r.t, r.eng, "limited") // outage_test.go
}

func outbox(t *testing.T, dir, id string) bool {
	_, err := os.Stat(filepath.Join(dir, id+".eml"))
	return err == nil
}

func TestDailyBudgetHoldsAcrossRestart(t *testing.T) {
	dir, clock := t.TempDir(), newClock()
	r := newBudgetRig(t, clock, dir, false)
	first := r.enqueue("a@dest.example", "b@dest.example")
	r.waitDelivered(first)
	clock.Add(time.Hour)
	second := r.enqueue("c@dest.example", "d@dest.example") // 2 + 2 > 3
	r.waitHeld(second)
	m := r.state(second)
	if m.Attempts != 0 || !m.NextAttempt.Equal(clock.Now().Add(23*time.Hour)) {
		t.Fatalf("held message: attempts %d, next %v; want 0 attempts, due when the first leaves the window (%v)",
			m.Attempts, m.NextAttempt, clock.Now().Add(23*time.Hour))
	}
	st := r.account("limited")
	if !strings.Contains(st.HoldReason, "daily recipient budget reached: 2 of 3") || st.RecipientsToday != 2 || st.DailyRecipientLimit != 3 {
		t.Fatalf("account state: %+v", st)
	}
	if got := testutil.ToFloat64(r.eng.m.budgetHeld.WithLabelValues("limited")); got != 1 {
		t.Fatalf("spoold_delivery_budget_held = %v, want 1", got)
	}
	if got := testutil.ToFloat64(r.eng.m.budgetUsed.WithLabelValues("limited")); got != 2 {
		t.Fatalf("spoold_delivery_recipients_24h = %v, want 2", got)
	}

	// A restart forgets the hold in memory, not the count in the spool.
	r.stop()
	r = newBudgetRig(t, clock, dir, false)
	if st := r.account("limited"); st.RecipientsToday != 2 {
		t.Fatalf("after restart: %d recipients today, want 2 (from the spool)", st.RecipientsToday)
	}
	third := r.enqueue("e@dest.example", "f@dest.example")
	r.waitHeld(third)
	if outbox(t, r.outA, second) || outbox(t, r.outA, third) {
		t.Fatal("a message past the budget was sent")
	}

	// The window frees: both go (2 + 2 > 3, so one at a time a day apart).
	r.step(23*time.Hour + time.Second)
	waitFor(t, "one held message delivered", func() bool {
		return r.state(second).State == spool.StateDelivered || r.state(third).State == spool.StateDelivered
	})
	r.step(24*time.Hour + time.Second)
	r.waitDelivered(second)
	r.waitDelivered(third)
	for _, id := range []string{second, third} {
		if m := r.state(id); m.Attempts != 1 {
			t.Fatalf("message %s: %d attempts, want 1 (waiting used none)", id, m.Attempts)
		}
	}
	if got := testutil.ToFloat64(r.eng.m.budgetHeld.WithLabelValues("limited")); got != 0 {
		t.Fatalf("spoold_delivery_budget_held = %v after the window freed, want 0", got)
	}
}

func TestFallbackEngagedAndReleased(t *testing.T) {
	dir, clock := t.TempDir(), newClock()
	r := newBudgetRig(t, clock, dir, true)
	first := r.enqueue("a@dest.example", "b@dest.example", "c@dest.example")
	r.waitDelivered(first)
	held := r.enqueue("d@dest.example")
	r.waitHeld(held)
	if via := r.account("limited").FallbackVia; via != "" {
		t.Fatalf("fallback engaged at once (%q); want after fallback_after", via)
	}
	// Held past fallback_after: the relay sends the limited account's mail.
	r.step(10*time.Minute + time.Second)
	r.waitDelivered(held)
	if !outbox(t, r.outB, held) || outbox(t, r.outA, held) {
		t.Fatal("the held message did not go through the fallback account")
	}
	if via, err := r.sp.DeliveredVia(context.Background(), held); err != nil || via != "relay" {
		t.Fatalf("DeliveredVia = %q, %v; want relay", via, err)
	}
	if via, _ := r.sp.DeliveredVia(context.Background(), first); via != "" {
		t.Fatalf("DeliveredVia(first) = %q; want none (its own account)", via)
	}
	if st := r.account("limited"); st.FallbackVia != "relay" {
		t.Fatalf("account state while held: %+v; want FallbackVia relay", st)
	}
	if got := testutil.ToFloat64(r.eng.m.fallback.WithLabelValues("limited", "relay")); got != 1 {
		t.Fatalf("spoold_delivery_fallback_messages_total = %v, want 1", got)
	}
	// The window frees and the hold ends: mail goes through its own account again.
	r.step(24 * time.Hour)
	after := r.enqueue("e@dest.example")
	r.waitDelivered(after)
	if !outbox(t, r.outA, after) || outbox(t, r.outB, after) {
		t.Fatal("after the hold ended the message did not go through its own account")
	}
	if st := r.account("limited"); st.FallbackVia != "" || st.HoldReason != "" && st.HeldUntil.After(clock.Now()) {
		t.Fatalf("account state after release: %+v", st)
	}
}

func TestBudgetAndFallbackConfig(t *testing.T) {
	base := AccountConfig{Name: "a", Transport: "file", Dir: "/tmp/x"}
	bad := base
	bad.DailyRecipientLimit = -2
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "daily_recipient_limit") {
		t.Fatalf("limit -2: %v", err)
	}
	self := base
	self.Fallback = "a"
	if err := self.Validate(); err == nil || !strings.Contains(err.Error(), "fallback") {
		t.Fatalf("fallback to itself: %v", err)
	}
	dangling := base
	dangling.Fallback = "nope"
	if err := ValidateAccounts([]AccountConfig{dangling}); err == nil || !strings.Contains(err.Error(), `"nope" is not configured`) {
		t.Fatalf("fallback to a missing account: %v", err)
	}
	ok := base
	ok.Fallback = "b"
	if err := ValidateAccounts([]AccountConfig{ok, {Name: "b", Transport: "file", Dir: "/tmp/y"}}); err != nil {
		t.Fatal(err)
	}
	if d := ok.WithDefaults(); d.FallbackAfter != defaultFallbackAfter || d.DailyRecipientLimit != 0 {
		t.Fatalf("defaults: %+v", d)
	}
}

// Connections of one account share its budget: recipients being sent count
// until their attempt has been recorded.
func TestBudgetReservesRecipientsInFlight(t *testing.T) {
	h := newHarness(t, hopt{noStart: true, account: func(a *AccountConfig) { a.DailyRecipientLimit = 3 }})
	a := h.eng.accounts["m365"]
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m1 := h.sp.get(h.enqueue("a@dest.example", "b@dest.example"))
	m2 := h.sp.get(h.enqueue("c@dest.example", "d@dest.example"))
	_, _, over, release := h.eng.overBudget(context.Background(), a, m1, log)
	if over {
		t.Fatal("first message held with an empty window")
	}
	until, reason, over, _ := h.eng.overBudget(context.Background(), a, m2, log)
	if !over || !strings.Contains(reason, "sends in flight") || !until.Equal(h.clock.Now().Add(time.Minute)) {
		t.Fatalf("second message while the first is in flight: over %v until %v reason %q; want a short wait for the sends in flight", over, until, reason)
	}
	release() // the first failed: nothing was spent
	if _, _, over, _ := h.eng.overBudget(context.Background(), a, m2, log); over {
		t.Fatal("second message held after the first released its reservation")
	}
}
