package delivery

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spoold/spoold/delivery/smtpfake"
	"github.com/spoold/spoold/spool"
)

func TestPauseAndResume(t *testing.T) {
	h := newHarness(t, hopt{noStart: true})
	h.eng.Pause(true)
	h.start()
	id := h.enqueue()
	other := h.enqueue()
	// The loop reads Notify only between passes: once a second signal has
	// been consumed, the pass after the enqueue has finished.
	for i := 0; i < 2; i++ {
		h.sp.signal()
		waitFor(t, "scheduler pass", func() bool { return len(h.sp.notify) == 0 })
	}
	if s := h.sp.get(id).State; s != spool.StateQueued {
		t.Fatalf("state %s while paused", s)
	}
	h.eng.Pause(false)
	h.waitState(id, spool.StateDelivered)
	h.waitState(other, spool.StateDelivered)
}

func TestReloadConfiguresNewAccount(t *testing.T) {
	h := newHarness(t, hopt{})
	id := h.sp.add(spool.EnqueueRequest{From: "a@b.example", To: []string{"c@d.example"}, Account: "second"}, simpleBody)
	waitFor(t, "parked", func() bool { return strings.Contains(h.sp.get(id).Reason, "not configured") })
	acc := testAccount(h.up)
	acc2 := acc
	acc2.Name = "second"
	if err := h.eng.Reload([]AccountConfig{acc, acc2}); err != nil {
		t.Fatal(err)
	}
	h.waitState(id, spool.StateDelivered)
	if names := h.eng.AccountStates(); len(names) != 2 || names[1].Name != "second" {
		t.Errorf("states %+v", names)
	}
	bad := acc2
	bad.TLS = "bogus"
	if err := h.eng.Reload([]AccountConfig{acc, bad}); err == nil {
		t.Error("bad reload accepted")
	}
	if n := len(h.eng.AccountStates()); n != 2 {
		t.Errorf("a failed reload changed the accounts: %d", n)
	}
}

func TestLeaseRenewedDuringLongSend(t *testing.T) {
	h := newHarness(t, hopt{up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "DATA" {
			return smtpfake.Reply{Hang: 400 * time.Millisecond}
		}
		return smtpfake.Reply{}
	}}, opts: func(o *Options) { o.LeaseDuration = 60 * time.Millisecond }})
	id := h.enqueue()
	claimed := h.clock.Now().Add(5 * time.Minute) // the fake's initial lease
	waitFor(t, "lease renewed", func() bool {
		m := h.sp.get(id)
		return m.State == spool.StateActive && !m.LeaseUntil.Equal(claimed) && !m.LeaseUntil.IsZero()
	})
	h.waitState(id, spool.StateDelivered)
}

func TestThrottleRecoversStepwise(t *testing.T) {
	h := newHarness(t, hopt{noStart: true, account: func(a *AccountConfig) { a.MaxConnections = 4; a.RatePerMinute = 60 }})
	a := h.eng.accounts["m365"]
	log := slog.New(slog.DiscardHandler)
	h.eng.throttle(a, log)
	h.eng.throttle(a, log)
	st := h.eng.AccountStates()[0]
	if st.ConnLimit != 1 || st.RatePerMinute != 15 {
		t.Fatalf("after two throttles: %+v", st)
	}
	h.eng.succeeded(a, h.clock.Now().Add(time.Minute)) // too early: no change
	if st := h.eng.AccountStates()[0]; st.ConnLimit != 1 {
		t.Errorf("stepped up too early: %+v", st)
	}
	for i := 1; i <= 3; i++ {
		h.eng.succeeded(a, h.clock.Now().Add(time.Duration(i)*6*time.Minute))
	}
	if st := h.eng.AccountStates()[0]; st.ConnLimit != 4 || st.RatePerMinute != 60 {
		t.Errorf("after quiet periods: %+v", st)
	}
}

func TestIdleSchedulerDoesNotPoll(t *testing.T) {
	h := newHarness(t, hopt{up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "MAIL" {
			return smtpfake.Reply{Code: 451, Enhanced: "4.3.0", Text: "later"}
		}
		return smtpfake.Reply{}
	}}, opts: func(o *Options) { o.IdleTimeout = 50 * time.Millisecond }})
	id := h.enqueue()
	h.waitState(id, spool.StateDeferred) // due again in a minute of (fake) time
	waitFor(t, "connection workers gone", func() bool { return h.eng.AccountStates()[0].Connections == 0 })
	before := h.sp.passes.Load()
	time.Sleep(500 * time.Millisecond) // negative check: an idle engine must not wake
	if n := h.sp.passes.Load() - before; n > 1 {
		t.Errorf("%d scheduler passes in 0.5 s while idle", n)
	}
}

func TestQueuedClaimsReleasedBeforeLeaseExpiry(t *testing.T) {
	first := make(chan struct{})
	release := make(chan struct{})
	var h *harness
	h = newHarness(t, hopt{noStart: true, up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "DATA" {
			select {
			case first <- struct{}{}:
				<-release // the first message takes "long"
			default:
			}
		}
		return smtpfake.Reply{}
	}}, account: func(a *AccountConfig) { a.MaxConnections = 1; a.RatePerMinute = -1 },
		opts: func(o *Options) { o.LeaseDuration = time.Minute; o.Rand = func() float64 { return 0.5 } }})
	ids := []string{h.enqueue(), h.enqueue(), h.enqueue()}
	h.start()
	<-first
	h.clock.Add(40 * time.Second) // past half the lease of the batch still queued locally
	close(release)
	for _, id := range ids {
		if m := h.waitState(id, spool.StateDelivered); m.Attempts != 1 {
			t.Errorf("%s attempts %d", id, m.Attempts)
		}
	}
	h.sp.mu.Lock()
	reasons := strings.Join(h.sp.reasons, ",")
	h.sp.mu.Unlock()
	if !strings.Contains(reasons, "released unsent") {
		t.Errorf("queued claims were not released (postpones: %q)", reasons)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHarness(t, hopt{up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "RCPT" && c.Arg == "later@dest.example" {
			return smtpfake.Reply{Code: 451, Enhanced: "4.3.0", Text: "later"}
		}
		return smtpfake.Reply{}
	}}, opts: func(o *Options) { o.Registerer = reg }})
	h.waitState(h.enqueue(), spool.StateDelivered)
	h.waitState(h.enqueue("later@dest.example"), spool.StateDeferred)
	// The engine counts an attempt (and observes its duration) just after
	// the spool commits its state, so the state can show first: wait for
	// the counts, then check their values.
	waitFor(t, "the attempts counted", func() bool {
		return testutil.ToFloat64(h.eng.m.attempts.WithLabelValues("m365", "delivered", classNone)) >= 1 &&
			testutil.ToFloat64(h.eng.m.attempts.WithLabelValues("m365", "deferred", ClassTransient)) >= 1 &&
			testutil.CollectAndCount(reg, "spoold_delivery_duration_seconds") >= 1
	})
	if v := testutil.ToFloat64(h.eng.m.attempts.WithLabelValues("m365", "delivered", classNone)); v != 1 {
		t.Errorf("delivered attempts %v", v)
	}
	if v := testutil.ToFloat64(h.eng.m.attempts.WithLabelValues("m365", "deferred", ClassTransient)); v != 1 {
		t.Errorf("deferred attempts %v", v)
	}
	if n := testutil.CollectAndCount(reg, "spoold_delivery_duration_seconds"); n != 1 {
		t.Errorf("duration series %d", n)
	}
	if _, err := New(nil, h.sp, nil, Options{Registerer: reg}); err == nil {
		t.Error("second engine on the same registry accepted")
	}
}

func TestIdleConnectionYieldsWorkerSlot(t *testing.T) {
	h := newHarness(t, hopt{noStart: true, opts: func(o *Options) { o.Workers = 1; o.IdleTimeout = 10 * time.Minute }})
	other := testAccount(h.up)
	other.Name = "other"
	if err := h.eng.Reload([]AccountConfig{testAccount(h.up), other}); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.waitState(h.enqueue(), spool.StateDelivered) // m365's connection now idles, holding the only slot
	id := h.sp.add(spool.EnqueueRequest{From: "a@office.example", To: []string{"b@dest.example"}, Account: "other"}, simpleBody)
	h.waitState(id, spool.StateDelivered)
}

// Log lines name their subsystem with the component attribute, not with a
// prefix in the message.
func TestLogsCarryComponent(t *testing.T) {
	h := newHarness(t, hopt{})
	h.waitState(h.enqueue(), spool.StateDelivered)
	h.stop()
	logs := h.logs.String()
	if !strings.Contains(logs, `msg="engine started" component=delivery`) {
		t.Errorf("no component attribute on the delivery log line:\n%s", logs)
	}
	if strings.Contains(logs, `msg="delivery: `) {
		t.Errorf("message prefix still there:\n%s", logs)
	}
}
