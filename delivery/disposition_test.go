package delivery

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
