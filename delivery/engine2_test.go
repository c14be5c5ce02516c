package delivery

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/delivery/smtpfake"
	"github.com/spoold/spoold/spool"
)

func TestClientNotAuthenticatedAtMailWaits(t *testing.T) {
	h := newHarness(t, hopt{up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "MAIL" {
			return smtpfake.Reply{Code: 530, Enhanced: "5.7.57", Text: "Client not authenticated to send mail"}
		}
		return smtpfake.Reply{}
	}}})
	id := h.enqueue()
	waitFor(t, "postponed", func() bool { m := h.sp.get(id); return m.State == spool.StateDeferred && m.Reason != "" })
	if m := h.sp.get(id); m.Attempts != 0 || !strings.Contains(m.Reason, "enable authenticated SMTP") {
		t.Errorf("attempts %d reason %q", m.Attempts, m.Reason)
	}
}

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

func TestAccountConfigNeverPrintsPassword(t *testing.T) {
	a := AccountConfig{Name: "relay", Host: "smtp.example", Auth: "plain", Username: "u", Password: "hunter2-secret"}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("cfg", "account", a)
	for _, s := range []string{buf.String(), a.String()} {
		if strings.Contains(s, "hunter2-secret") {
			t.Errorf("password printed: %s", s)
		}
	}
}

// A refused connection is the upstream's failure, not the message's: the
// message waits without using an attempt (issue 23), and the account records
// the error.
func TestConnectRefusedIsTransient(t *testing.T) {
	h := newHarness(t, hopt{noStart: true})
	h.up.Close() // nothing listens on the port any more
	h.start()
	id := h.enqueue()
	m := h.waitState(id, spool.StateDeferred)
	if m.Attempts != 0 || !strings.HasPrefix(m.Reason, reasonUnreachable) || !strings.Contains(m.Reason, "CONNECT") {
		t.Errorf("attempts %d reason %q", m.Attempts, m.Reason)
	}
	if le := h.eng.AccountStates()[0].LastError; le == nil || le.Command != "CONNECT" || le.Class != ClassTransient {
		t.Errorf("account last error %+v", le)
	}
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

func TestInvalidRecipientFailsLocally(t *testing.T) {
	h := newHarness(t, hopt{})
	id := h.enqueue("ok@dest.example", "bad\r\nRCPT TO:<x@evil.example>")
	m := h.waitState(id, spool.StateDead)
	for _, r := range m.Recipients {
		want := spool.RcptDelivered
		if r.Addr != "ok@dest.example" {
			want = spool.RcptFailed
		}
		if r.State != want {
			t.Errorf("%q: %s, want %s", r.Addr, r.State, want)
		}
	}
	for _, msg := range h.up.Messages() {
		if strings.Join(msg.To, ",") != "ok@dest.example" {
			t.Errorf("upstream got recipients %q", msg.To)
		}
	}
}

func TestMalformedHeaderDeadWithNotice(t *testing.T) {
	h := newHarness(t, hopt{})
	id := h.sp.add(spool.EnqueueRequest{From: "user@office.example", To: []string{"bob@dest.example"}, Account: "m365",
		Source: spool.Source{Kind: spool.SourceScan}}, "From: a@b.example\r\nnot a header line\r\n\r\nbody\r\n")
	m := h.waitState(id, spool.StateDead)
	if !strings.Contains(m.Reason, "malformed header line") || m.Attempts != 1 {
		t.Errorf("reason %q attempts %d", m.Reason, m.Attempts)
	}
	waitFor(t, "notice to the envelope sender", func() bool {
		for _, msg := range h.up.Messages() {
			if len(msg.To) == 1 && msg.To[0] == "user@office.example" {
				return true
			}
		}
		return false
	})
}

func TestTestSendReportsRefusal(t *testing.T) {
	h := newHarness(t, hopt{noStart: true, up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "RCPT" {
			return smtpfake.Reply{Code: 550, Enhanced: "5.1.10", Text: "Recipient not found"}
		}
		return smtpfake.Reply{}
	}}})
	res, err := h.eng.TestSend(context.Background(), "m365", "nobody@dest.example")
	if err == nil || res.Code != 550 || res.Enhanced != "5.1.10" || res.Text != "Recipient not found" {
		t.Errorf("result %+v err %v", res, err)
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
	if v := testutil.ToFloat64(h.eng.m.attempts.WithLabelValues("m365", "delivered", "")); v != 1 {
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

func TestTokenEndpointDownWaitsWithoutAttempts(t *testing.T) {
	h := newHarness(t, hopt{})
	h.tokens.set("", auth.ErrTransient)
	id := h.enqueue()
	var m *spool.Message
	waitFor(t, "postponed", func() bool { m = h.sp.get(id); return m.State == spool.StateDeferred && m.Reason != "" })
	if m.Attempts != 0 || !m.NextAttempt.Equal(h.clock.Now().Add(time.Minute)) || !strings.Contains(m.Reason, "token endpoint") {
		t.Errorf("attempts %d next %v reason %q", m.Attempts, m.NextAttempt, m.Reason)
	}
	h.tokens.set("tok-1", nil)
	h.clock.Add(time.Minute)
	h.sp.signal()
	h.waitState(id, spool.StateDelivered)
}

func TestHangingGreetingTimesOut(t *testing.T) {
	// A listener that accepts and never says anything.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	h := newHarness(t, hopt{account: func(a *AccountConfig) {
		a.Port = ln.Addr().(*net.TCPAddr).Port
		a.ConnectTimeout = 300 * time.Millisecond
	}})
	id := h.enqueue()
	m := h.waitState(id, spool.StateDeferred)
	if m.Attempts != 0 || !strings.HasPrefix(m.Reason, reasonUnreachable) || !strings.Contains(m.Reason, "took longer than") {
		t.Errorf("attempts %d reason %q", m.Attempts, m.Reason)
	}
}

func TestNoticeAfterLaterAttemptListsEarlierRefusals(t *testing.T) {
	var busy atomic.Bool
	busy.Store(true)
	h := newHarness(t, hopt{up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		switch {
		case c.Name == "RCPT" && c.Arg == "gone@dest.example":
			return smtpfake.Reply{Code: 550, Enhanced: "5.1.1", Text: "no such user"}
		case c.Name == "RCPT" && c.Arg == "busy@dest.example" && busy.Load():
			return smtpfake.Reply{Code: 450, Enhanced: "4.2.1", Text: "busy"}
		}
		return smtpfake.Reply{}
	}}})
	id := h.sp.add(spool.EnqueueRequest{From: "mfd@office.example", To: []string{"gone@dest.example", "busy@dest.example"},
		Account: "m365", Source: spool.Source{Kind: spool.SourceScan}}, "From: User <user@office.example>\r\nSubject: S\r\n\r\nx\r\n")
	h.waitState(id, spool.StateDeferred)
	busy.Store(false)
	h.clock.Add(time.Hour)
	h.sp.signal()
	h.waitState(id, spool.StateDead)
	waitFor(t, "notice naming the earlier refusal", func() bool {
		for _, msg := range h.up.Messages() {
			if msg.To[0] == "user@office.example" {
				return strings.Contains(string(msg.Data), "gone@dest.example") && strings.Contains(string(msg.Data), "no such user")
			}
		}
		return false
	})
}

func TestInternationalisedRecipient(t *testing.T) {
	h := newHarness(t, hopt{up: smtpfake.Options{SMTPUTF8: true}})
	id := h.enqueue("jürgen@dest.example")
	h.waitState(id, spool.StateDelivered)
	if msgs := h.up.Messages(); len(msgs) != 1 || msgs[0].To[0] != "jürgen@dest.example" {
		t.Errorf("upstream got %+v", msgs)
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
