package delivery

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/delivery/smtpfake"
	"github.com/spoold/spoold/spool"
)

func TestDelivered(t *testing.T) {
	h := newHarness(t, hopt{})
	id := h.enqueue()
	m := h.waitState(id, spool.StateDelivered)
	if m.Attempts != 1 {
		t.Errorf("attempts = %d, want 1", m.Attempts)
	}
	msgs := h.up.Messages()
	if len(msgs) != 1 {
		t.Fatalf("upstream got %d messages, want 1", len(msgs))
	}
	got := msgs[0]
	if got.From != testMailbox || len(got.To) != 1 || got.To[0] != "bob@dest.example" {
		t.Errorf("envelope = %q -> %v", got.From, got.To)
	}
	data := string(got.Data)
	if !strings.Contains(data, "From: \"Alice Example\" <"+testMailbox+">\r\n") ||
		!strings.Contains(data, "Reply-To: \"Alice Example\" <alice@office.example>\r\n") {
		t.Errorf("headers not rewritten:\n%s", data)
	}
	if toks := h.up.Tokens(); len(toks) != 1 || toks[0] != "tok-1" {
		t.Errorf("upstream saw tokens %v", toks)
	}
	if strings.Contains(h.logs.String(), "tok-1") {
		t.Error("access token appears in the log")
	}
	st := h.eng.AccountStates()
	if len(st) != 1 || st[0].LastDelivery.IsZero() {
		t.Errorf("account state %+v", st)
	}
}

func TestDeferredAndRetried(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	h := newHarness(t, hopt{up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "MAIL" && fail.Load() {
			return smtpfake.Reply{Code: 451, Enhanced: "4.3.0", Text: "try later"}
		}
		return smtpfake.Reply{}
	}}})
	start := h.clock.Now()
	id := h.enqueue()
	m := h.waitState(id, spool.StateDeferred)
	// Rand 0.5 means no jitter: first retry exactly 1 minute later.
	if want := start.Add(time.Minute); !m.NextAttempt.Equal(want) {
		t.Errorf("next attempt = %v, want %v", m.NextAttempt, want)
	}
	if m.Attempts != 1 || m.LastError == nil || m.LastError.Code != 451 || m.LastError.Command != "MAIL" || m.LastError.Class != ClassTransient {
		t.Errorf("after first failure: attempts %d, last error %+v", m.Attempts, m.LastError)
	}
	// Second failure: 2 minutes after the second attempt.
	h.clock.Add(time.Minute)
	h.sp.signal()
	waitFor(t, "second attempt", func() bool { return h.sp.get(id).Attempts == 2 && h.sp.get(id).State == spool.StateDeferred })
	m = h.sp.get(id)
	if want := start.Add(3 * time.Minute); !m.NextAttempt.Equal(want) {
		t.Errorf("second next attempt = %v, want %v", m.NextAttempt, want)
	}
	// The stored body is never modified by the rewrite.
	if b, err := readFile(h.sp.dir, id); err != nil || string(b) != simpleBody {
		t.Errorf("stored body changed: %q %v", b, err)
	}
	fail.Store(false)
	h.clock.Add(2 * time.Minute)
	h.sp.signal()
	m = h.waitState(id, spool.StateDelivered)
	if m.Attempts != 3 {
		t.Errorf("attempts = %d, want 3", m.Attempts)
	}
}

func TestDeadAfter5xx(t *testing.T) {
	h := newHarness(t, hopt{up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "DATA" {
			return smtpfake.Reply{Code: 552, Enhanced: "5.3.4", Text: "message too big"}
		}
		return smtpfake.Reply{}
	}}})
	id := h.enqueue()
	m := h.waitState(id, spool.StateDead)
	if m.LastError == nil || m.LastError.Code != 552 || m.LastError.Enhanced != "5.3.4" || m.LastError.Class != ClassPermanent {
		t.Errorf("last error %+v", m.LastError)
	}
	if !strings.Contains(m.Reason, "552 5.3.4") {
		t.Errorf("reason %q", m.Reason)
	}
}

func TestSendAsDenied(t *testing.T) {
	h := newHarness(t, hopt{up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "DATA" {
			return smtpfake.Reply{Code: 554, Enhanced: "5.2.0", Text: "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied"}
		}
		return smtpfake.Reply{}
	}}, account: func(a *AccountConfig) { a.SenderRule = "keep" }})
	id := h.enqueue()
	m := h.waitState(id, spool.StateDead)
	if m.Reason != ReasonSendAsDenied {
		t.Errorf("reason %q, want %q", m.Reason, ReasonSendAsDenied)
	}
	if got := h.up.Messages(); len(got) != 0 {
		t.Errorf("upstream accepted %d messages", len(got))
	}
}

func TestPartialRecipients(t *testing.T) {
	h := newHarness(t, hopt{up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		switch {
		case c.Name == "RCPT" && c.Arg == "gone@dest.example":
			return smtpfake.Reply{Code: 550, Enhanced: "5.1.1", Text: "no such user"}
		case c.Name == "RCPT" && c.Arg == "busy@dest.example":
			return smtpfake.Reply{Code: 450, Enhanced: "4.2.1", Text: "mailbox busy"}
		}
		return smtpfake.Reply{}
	}}})
	id := h.enqueue("ok@dest.example", "gone@dest.example", "busy@dest.example")
	m := h.waitState(id, spool.StateDeferred)
	states := map[string]spool.RcptState{}
	for _, r := range m.Recipients {
		states[r.Addr] = r.State
	}
	want := map[string]spool.RcptState{"ok@dest.example": spool.RcptDelivered, "gone@dest.example": spool.RcptFailed, "busy@dest.example": spool.RcptPending}
	for a, s := range want {
		if states[a] != s {
			t.Errorf("%s: %s, want %s", a, states[a], s)
		}
	}
	if msgs := h.up.Messages(); len(msgs) != 1 || strings.Join(msgs[0].To, ",") != "ok@dest.example" {
		t.Fatalf("upstream got %+v", msgs)
	}
	// The retry goes only to the pending recipient; it still fails
	// temporarily until the lifetime ends, then the message is dead.
	h.clock.Add(5 * 24 * time.Hour)
	h.sp.signal()
	m = h.waitState(id, spool.StateDead)
	if !strings.Contains(m.Reason, "lifetime") {
		t.Errorf("reason %q", m.Reason)
	}
	if n := len(h.up.Messages()); n != 1 {
		t.Errorf("upstream got %d messages, want 1 (no resend to delivered recipients)", n)
	}
}

func TestAuthRefreshThenSuccess(t *testing.T) {
	h := newHarness(t, hopt{up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "AUTH" && c.Arg == "tok-1" {
			return smtpfake.Reply{Code: 535, Enhanced: "5.7.3", Text: "Authentication unsuccessful"}
		}
		return smtpfake.Reply{}
	}}})
	id := h.enqueue()
	m := h.waitState(id, spool.StateDelivered)
	if m.Attempts != 1 {
		t.Errorf("attempts %d, want 1", m.Attempts)
	}
	refreshes, reauth, _ := h.tokens.snapshot()
	if refreshes != 1 || len(reauth) != 0 {
		t.Errorf("refreshes %d, needs_reauth %v", refreshes, reauth)
	}
	if toks := h.up.Tokens(); strings.Join(toks, ",") != "tok-1,tok-2" {
		t.Errorf("tokens presented %v", toks)
	}
}

func TestAuthRejectedTwiceNeedsReauth(t *testing.T) {
	h := newHarness(t, hopt{up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "AUTH" {
			return smtpfake.Reply{Code: 535, Enhanced: "5.7.3", Text: "Authentication unsuccessful"}
		}
		return smtpfake.Reply{}
	}}})
	id := h.enqueue()
	var m *spool.Message
	waitFor(t, "message postponed", func() bool {
		m = h.sp.get(id)
		return m.State == spool.StateDeferred && m.Reason != ""
	})
	if m.Attempts != 0 {
		t.Errorf("attempts %d, want 0 (waiting does not use attempts)", m.Attempts)
	}
	refreshes, reauth, _ := h.tokens.snapshot()
	if refreshes != 1 || len(reauth) != 1 {
		t.Errorf("refreshes %d, needs_reauth %v", refreshes, reauth)
	}
	st := h.eng.AccountStates()[0]
	if !st.HeldUntil.After(h.clock.Now()) || !strings.Contains(st.HoldReason, "re") {
		t.Errorf("account state %+v", st)
	}
	// A second message of the held account also waits without dialing.
	sessions := h.up.Sessions()
	id2 := h.enqueue()
	waitFor(t, "second message postponed", func() bool {
		m := h.sp.get(id2)
		return m.State == spool.StateDeferred && m.Reason != ""
	})
	if h.up.Sessions() != sessions {
		t.Errorf("held account dialed the upstream")
	}
}

func TestInvalidGrantWaitsThenDrains(t *testing.T) {
	h := newHarness(t, hopt{})
	h.tokens.set("", auth.ErrNeedsReauth)
	ids := []string{h.enqueue(), h.enqueue(), h.enqueue()}
	for _, id := range ids {
		waitFor(t, "message "+id+" waits", func() bool {
			m := h.sp.get(id)
			return m.State == spool.StateDeferred && m.Attempts == 0 && strings.Contains(m.Reason, "re-authorization")
		})
	}
	if n := h.up.Sessions(); n != 0 {
		t.Errorf("dialed %d times without a token", n)
	}
	h.tokens.set("tok-new", nil)
	h.tokens.recover("m365")
	for _, id := range ids {
		m := h.waitState(id, spool.StateDelivered)
		if m.Attempts != 1 {
			t.Errorf("%s attempts %d, want 1", id, m.Attempts)
		}
	}
}

func TestMisconfiguredTenant(t *testing.T) {
	h := newHarness(t, hopt{up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "AUTH" {
			return smtpfake.Reply{Code: 535, Enhanced: "5.7.139", Text: "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant."}
		}
		return smtpfake.Reply{}
	}}})
	id := h.enqueue()
	waitFor(t, "postponed", func() bool { m := h.sp.get(id); return m.State == spool.StateDeferred && m.Reason != "" })
	m := h.sp.get(id)
	if m.Attempts != 0 || !strings.Contains(m.Reason, "enable authenticated SMTP") {
		t.Errorf("attempts %d reason %q", m.Attempts, m.Reason)
	}
	_, _, mis := h.tokens.snapshot()
	if len(mis) != 1 || !strings.Contains(mis[0], "enable authenticated SMTP") {
		t.Errorf("misconfigured marks %v", mis)
	}
}

func TestConnectionReuse(t *testing.T) {
	h := newHarness(t, hopt{noStart: true, account: func(a *AccountConfig) { a.MaxConnections = 1 }})
	const n = 12
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, h.enqueue())
	}
	h.start()
	for _, id := range ids {
		h.waitState(id, spool.StateDelivered)
	}
	if s := h.up.Sessions(); s >= n || s < 1 {
		t.Errorf("%d sessions for %d messages, want reuse", s, n)
	}
	if h.up.Count() != n {
		t.Errorf("upstream count %d", h.up.Count())
	}
}

// countingDialer counts open client connections (exact, unlike the server's
// count, which sees a closing session a moment after the client let go).
type countingDialer struct {
	open, max atomic.Int32
}

type countedConn struct {
	net.Conn
	d    *countingDialer
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.d.open.Add(-1) })
	return c.Conn.Close()
}

func (d *countingDialer) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	n := d.open.Add(1)
	for {
		m := d.max.Load()
		if n <= m || d.max.CompareAndSwap(m, n) {
			break
		}
	}
	return &countedConn{Conn: c, d: d}, nil
}

func TestConnectionCapAndPerConnectionLimit(t *testing.T) {
	dialer := &countingDialer{}
	h := newHarness(t, hopt{noStart: true, up: smtpfake.Options{SessionDelay: 50 * time.Millisecond, Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "DATA" {
			return smtpfake.Reply{Hang: 20 * time.Millisecond}
		}
		return smtpfake.Reply{}
	}}, account: func(a *AccountConfig) { a.MaxConnections = 2; a.MaxMessagesPerConnection = 3 },
		opts: func(o *Options) { o.Dial = dialer.Dial }})
	const n = 12
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, h.enqueue())
	}
	h.start()
	for _, id := range ids {
		h.waitState(id, spool.StateDelivered)
	}
	if mc := dialer.max.Load(); mc != 2 {
		t.Errorf("max concurrent connections %d, want the cap 2", mc)
	}
	if mc := h.up.MaxConcurrent(); mc > 3 {
		t.Errorf("upstream saw %d concurrent sessions", mc)
	}
	if s := h.up.Sessions(); s < n/3 {
		t.Errorf("%d sessions; at most 3 messages per connection needs >= %d", s, n/3)
	}
}

func TestRateLimit(t *testing.T) {
	h := newHarness(t, hopt{noStart: true, account: func(a *AccountConfig) { a.RatePerMinute = 600; a.MaxConnections = 3 }})
	const n = 6
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, h.enqueue())
	}
	start := time.Now()
	h.start()
	for _, id := range ids {
		h.waitState(id, spool.StateDelivered)
	}
	// 10/s with burst 1: six messages need at least 0.5 s whatever the load.
	if el := time.Since(start); el < 450*time.Millisecond {
		t.Errorf("6 messages at 600/min took %v, want >= 0.5s", el)
	}
}

func TestThrottleSlowsAccount(t *testing.T) {
	var once atomic.Bool
	var h *harness
	var sentAt atomic.Value // fake-clock time of the MAIL commands after the throttle
	h = newHarness(t, hopt{up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name != "MAIL" {
			return smtpfake.Reply{}
		}
		if once.CompareAndSwap(false, true) {
			return smtpfake.Reply{Code: 432, Enhanced: "4.3.2", Text: "STOREDRV.ClientSubmit; sender thread limit exceeded"}
		}
		sentAt.Store(h.clock.Now())
		return smtpfake.Reply{}
	}}, account: func(a *AccountConfig) { a.MaxConnections = 4 }, noStart: true})
	h.start()
	throttledAt := h.clock.Now()
	id := h.enqueue()
	m := h.waitState(id, spool.StateDeferred)
	if m.LastError == nil || m.LastError.Class != ClassThrottled {
		t.Fatalf("last error %+v", m.LastError)
	}
	st := h.eng.AccountStates()[0]
	if st.ConnLimit != 2 || !st.ThrottledUntil.Equal(throttledAt.Add(time.Minute)) {
		t.Errorf("account after throttle: %+v", st)
	}
	// Another message of the account waits for the end of the pause even
	// though it is due: the whole account slowed down.
	id2 := h.enqueue()
	h.clock.Add(30 * time.Second)
	h.sp.signal()
	h.clock.Add(31 * time.Second)
	h.sp.signal()
	h.waitState(id2, spool.StateDelivered)
	if at := sentAt.Load().(time.Time); at.Before(throttledAt.Add(time.Minute)) {
		t.Errorf("sent at %v during the throttle pause (until %v)", at, throttledAt.Add(time.Minute))
	}
	h.waitState(id, spool.StateDelivered)
}

func TestTimeoutAfterDot(t *testing.T) {
	var hang atomic.Bool
	hang.Store(true)
	h := newHarness(t, hopt{up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "DATA" && hang.Load() {
			return smtpfake.Reply{Hang: 30 * time.Second}
		}
		return smtpfake.Reply{}
	}}, account: func(a *AccountConfig) { a.DataTimeout = 300 * time.Millisecond }})
	id := h.enqueue()
	m := h.waitState(id, spool.StateDeferred)
	if m.LastError == nil || m.LastError.Class != ClassUnknown || m.Attempts != 1 {
		t.Errorf("attempts %d last error %+v", m.Attempts, m.LastError)
	}
	if !strings.Contains(h.logs.String(), "possible duplicate") {
		t.Error("no possible-duplicate log line")
	}
	hang.Store(false)
	h.clock.Add(time.Hour)
	h.sp.signal()
	h.waitState(id, spool.StateDelivered)
}

func TestDropConnection(t *testing.T) {
	var drop atomic.Bool
	drop.Store(true)
	h := newHarness(t, hopt{up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "RCPT" && drop.Load() {
			return smtpfake.Reply{Drop: true}
		}
		return smtpfake.Reply{}
	}}})
	id := h.enqueue()
	m := h.waitState(id, spool.StateDeferred)
	if m.LastError == nil || m.LastError.Code != 0 || m.LastError.Class != ClassTransient {
		t.Errorf("last error %+v", m.LastError)
	}
	drop.Store(false)
	h.clock.Add(time.Hour)
	h.sp.signal()
	h.waitState(id, spool.StateDelivered)
}

func TestFailureNotice(t *testing.T) {
	h := newHarness(t, hopt{up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "RCPT" && c.Arg == "nobody@dest.example" {
			return smtpfake.Reply{Code: 550, Enhanced: "5.1.1", Text: "User unknown"}
		}
		return smtpfake.Reply{}
	}}})
	body := "From: Scanner User <user@office.example>\r\nSubject: Scan 42\r\n\r\n%PDF\r\n"
	id := h.sp.add(spool.EnqueueRequest{From: "mfd@office.example", To: []string{"nobody@dest.example"}, Account: "m365",
		Source: spool.Source{Kind: spool.SourceScan}}, body)
	h.waitState(id, spool.StateDead)
	var notice *spool.Message
	waitFor(t, "notice delivered", func() bool {
		for _, m := range h.sp.all() {
			if m.Source.Kind == spool.SourceNotice {
				notice = m
				return m.State == spool.StateDelivered
			}
		}
		return false
	})
	if notice.Source.NoticeFor != id || notice.Recipients[0].Addr != "user@office.example" {
		t.Errorf("notice %+v", notice)
	}
	var got smtpfake.Message
	for _, m := range h.up.Messages() {
		if m.To[0] == "user@office.example" {
			got = m
		}
	}
	d := string(got.Data)
	for _, want := range []string{"Subject: Undeliverable: Scan 42", "User unknown", "nobody@dest.example", id, "Auto-Submitted: auto-replied"} {
		if !strings.Contains(d, want) {
			t.Errorf("notice lacks %q:\n%s", want, d)
		}
	}
	// A notice that fails is not noticed about.
	nid := h.sp.add(spool.EnqueueRequest{From: "x@office.example", To: []string{"nobody@dest.example"}, Account: "m365",
		NotifyOnFailure: true, Source: spool.Source{Kind: spool.SourceNotice, NoticeFor: "m0000"}}, body)
	h.waitState(nid, spool.StateDead)
	// Nor is an SMTP message without NotifyOnFailure, nor the null sender.
	sid := h.sp.add(spool.EnqueueRequest{From: "", To: []string{"nobody@dest.example"}, Account: "m365",
		NotifyOnFailure: true, Source: spool.Source{Kind: spool.SourceSMTP}}, body)
	h.waitState(sid, spool.StateDead)
	notices := 0
	for _, m := range h.sp.all() {
		if m.Source.Kind == spool.SourceNotice {
			notices++
		}
	}
	if notices != 2 { // the real notice + the one we added by hand
		t.Errorf("%d notice messages, want 2", notices)
	}
}

func TestShutdownMidSend(t *testing.T) {
	entered := make(chan struct{}, 1)
	h := newHarness(t, hopt{up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "DATA" {
			select {
			case entered <- struct{}{}:
			default:
			}
			return smtpfake.Reply{Hang: time.Minute}
		}
		return smtpfake.Reply{}
	}}, opts: func(o *Options) { o.ShutdownTimeout = 300 * time.Millisecond }})
	id := h.enqueue()
	select {
	case <-entered:
	case <-time.After(20 * time.Second):
		t.Fatal("send did not start")
	}
	h.stop()
	m := h.sp.get(id)
	if m.State != spool.StateDeferred || m.Attempts != 0 || m.LeaseOwner != "" || !strings.Contains(m.Reason, "shutdown") {
		t.Errorf("after shutdown: state %s attempts %d owner %q reason %q", m.State, m.Attempts, m.LeaseOwner, m.Reason)
	}
	if !m.NextAttempt.Equal(h.clock.Now()) {
		t.Errorf("next attempt %v, want now", m.NextAttempt)
	}
}

type panicTransport struct{}

func (panicTransport) open(ctx context.Context, token string, _ bool) (session, error) { panic("boom") }

func TestPanicRecovery(t *testing.T) {
	h := newHarness(t, hopt{noStart: true})
	h.eng.accounts["m365"].tr = panicTransport{}
	h.start()
	id := h.enqueue()
	m := h.waitState(id, spool.StateDeferred)
	if m.Attempts != 1 || m.LastError == nil || m.LastError.Text != "internal error" {
		t.Errorf("attempts %d last error %+v", m.Attempts, m.LastError)
	}
	// The engine goes on: the next message is still processed.
	id2 := h.enqueue()
	h.waitState(id2, spool.StateDeferred)
}

func TestTestSend(t *testing.T) {
	h := newHarness(t, hopt{noStart: true})
	res, err := h.eng.TestSend(context.Background(), "m365", "admin@dest.example")
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 250 || h.up.Count() != 1 {
		t.Errorf("result %+v, upstream count %d", res, h.up.Count())
	}
	if _, err := h.eng.TestSend(context.Background(), "nope", "a@b.example"); !errors.Is(err, auth.ErrUnknownAccount) {
		t.Errorf("unknown account: %v", err)
	}
}

func TestPlainAuthImplicitTLS(t *testing.T) {
	h := newHarness(t, hopt{up: smtpfake.Options{TLS: "implicit", Auth: "plain", User: "relay", Password: "s3cret-pw"},
		account: func(a *AccountConfig) {
			a.TLS = "implicit"
			a.Auth = "plain"
			a.Username = "relay"
			a.Password = "s3cret-pw"
		}})
	id := h.enqueue()
	h.waitState(id, spool.StateDelivered)
	if strings.Contains(h.logs.String(), "s3cret-pw") {
		t.Error("password in log")
	}
}

func TestUntrustedCertificateIsTransient(t *testing.T) {
	h := newHarness(t, hopt{account: func(a *AccountConfig) { a.CAFile = "" }})
	id := h.enqueue()
	m := h.waitState(id, spool.StateDeferred)
	// A failed handshake is connection-level: no attempt used (issue 23).
	if m.Attempts != 0 || !strings.HasPrefix(m.Reason, reasonUnreachable) || !strings.Contains(m.Reason, "certificate") {
		t.Errorf("attempts %d reason %q", m.Attempts, m.Reason)
	}
	if len(h.up.Messages()) != 0 {
		t.Error("message sent over an unverified connection")
	}
}

func TestUnknownAccountWaits(t *testing.T) {
	h := newHarness(t, hopt{})
	id := h.sp.add(spool.EnqueueRequest{From: "a@b.example", To: []string{"c@d.example"}, Account: "other"}, simpleBody)
	waitFor(t, "postponed", func() bool {
		m := h.sp.get(id)
		return m.State == spool.StateDeferred && strings.Contains(m.Reason, "not configured")
	})
	if m := h.sp.get(id); m.Attempts != 0 {
		t.Errorf("attempts %d", m.Attempts)
	}
}

func TestFileTransport(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	sp := newFakeSpool(t, clock.Now)
	eng, err := New([]AccountConfig{{Name: "outbox", Transport: "file", Dir: dir}}, sp, nil, Options{Clock: clock.Now, Owner: "t"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- eng.Run(ctx) }()
	defer func() { cancel(); <-done }()
	id := sp.add(spool.EnqueueRequest{From: "a@b.example", To: []string{"c@d.example"}, Account: "outbox"}, "Subject: x\n\nline1\nline2\n")
	waitFor(t, "delivered", func() bool { return sp.get(id).State == spool.StateDelivered })
	b, err := readFile(dir, id+".eml")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "Subject: x\r\n\r\nline1\r\nline2\r\n" {
		t.Errorf("file content %q", b)
	}
}

func TestNewValidates(t *testing.T) {
	sp := newFakeSpool(t, time.Now)
	bad := []AccountConfig{
		{Name: ""},
		{Name: "a", Host: "h", Auth: "xoauth2", Mailbox: "x@y.example"}, // no tokens
		{Name: "a", Host: "h", Auth: "plain", Mailbox: "x@y.example"},   // no password
		{Name: "a", Host: "h", Auth: "plain", Password: "p", TLS: "none", Mailbox: "x@y.example"},
		{Name: "a", Host: "h", Auth: "none", SenderRule: "rewrite"},
		{Name: "a", Transport: "file"},
		{Name: "a", Host: "h", Auth: "none", Mailbox: "Bob <x@y.example>"},
		{Name: "a", Host: "h", Auth: "none", Mailbox: "x@y.example", TLS: "ssl"},
	}
	for i, c := range bad {
		if _, err := New([]AccountConfig{c}, sp, nil, Options{}); err == nil {
			t.Errorf("%d: %+v accepted", i, c)
		}
	}
	pw := AccountConfig{Name: "a", Host: "h", Auth: "plain", Password: "topsecret", Mailbox: "x@y.example"}
	if _, err := New([]AccountConfig{pw, pw}, sp, nil, Options{}); err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Errorf("duplicate account: %v", err)
	}
}

// TestNoticePolicyPerAccount: "always" sends a notice for plain SMTP mail,
// "never" suppresses it even for scans.
func TestNoticePolicyPerAccount(t *testing.T) {
	refuse := smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "RCPT" {
			return smtpfake.Reply{Code: 550, Enhanced: "5.1.1", Text: "User unknown"}
		}
		return smtpfake.Reply{}
	}}
	body := "From: User <user@office.example>\r\nSubject: s\r\n\r\nx\r\n"
	countNotices := func(h *harness) int {
		n := 0
		for _, m := range h.sp.all() {
			if m.Source.Kind == spool.SourceNotice {
				n++
			}
		}
		return n
	}
	for _, tc := range []struct {
		policy  string
		source  spool.SourceKind
		notices int
	}{
		{"always", spool.SourceSMTP, 1},
		{"never", spool.SourceScan, 0},
		{"", spool.SourceSMTP, 0},
	} {
		t.Run(tc.policy+"/"+string(tc.source), func(t *testing.T) {
			h := newHarness(t, hopt{up: refuse, account: func(a *AccountConfig) { a.NotifyOnFailure = tc.policy }})
			id := h.sp.add(spool.EnqueueRequest{From: "mfd@office.example", To: []string{"nobody@dest.example"},
				Account: "m365", Source: spool.Source{Kind: tc.source}}, body)
			h.waitState(id, spool.StateDead)
			if tc.notices > 0 {
				waitFor(t, "notice enqueued", func() bool { return countNotices(h) == tc.notices })
				return
			}
			h.stop() // the worker that dead-lettered has finished: any notice is in the spool now
			if n := countNotices(h); n != 0 {
				t.Errorf("%d notices with policy %q, want none", n, tc.policy)
			}
		})
	}
	if err := (AccountConfig{Name: "x", Transport: "file", Dir: t.TempDir(), NotifyOnFailure: "sometimes"}).Validate(); err == nil {
		t.Error("an unknown notify policy is accepted")
	}
}
