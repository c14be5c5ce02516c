package delivery

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/spoold/spoold/delivery/smtpfake"
	"github.com/spoold/spoold/spool"
)

// upstreams with and without PIPELINING (RFC 2920); the second edits the
// EHLO reply above implicit TLS.
var pipeliningCases = []struct {
	name    string
	up      smtpfake.Options
	account func(*AccountConfig)
}{
	{"offered", smtpfake.Options{TLS: "implicit"}, func(a *AccountConfig) { a.TLS = "implicit"; a.MaxConnections = 1 }},
	{"not offered", smtpfake.Options{TLS: "implicit", NoPipelining: true}, func(a *AccountConfig) { a.TLS = "implicit"; a.MaxConnections = 1 }},
}

// Mixed per-recipient replies are recorded exactly, whether the replies
// came in one pipelined flight or one by one.
func TestPipeliningMixedRecipients(t *testing.T) {
	for _, tc := range pipeliningCases {
		t.Run(tc.name, func(t *testing.T) {
			up := tc.up
			up.Script = func(c smtpfake.Command) smtpfake.Reply {
				switch {
				case c.Name == "RCPT" && c.Arg == "gone@dest.example":
					return smtpfake.Reply{Code: 550, Enhanced: "5.1.1", Text: "no such user"}
				case c.Name == "RCPT" && c.Arg == "busy@dest.example":
					return smtpfake.Reply{Code: 450, Enhanced: "4.2.1", Text: "mailbox busy"}
				}
				return smtpfake.Reply{}
			}
			h := newHarness(t, hopt{up: up, account: tc.account})
			id := h.enqueue("ok1@dest.example", "gone@dest.example", "busy@dest.example", "ok2@dest.example")
			m := h.waitState(id, spool.StateDeferred)
			got := map[string]string{}
			for _, r := range m.Recipients {
				s := string(r.State)
				if r.Error != nil {
					s += fmt.Sprintf(" %d %s %s", r.Error.Code, r.Error.Enhanced, r.Error.Text)
				}
				got[r.Addr] = s
			}
			want := map[string]string{
				"ok1@dest.example":  "delivered",
				"gone@dest.example": "failed 550 5.1.1 no such user",
				"busy@dest.example": "pending 450 4.2.1 mailbox busy",
				"ok2@dest.example":  "delivered",
			}
			for a, w := range want {
				if got[a] != w {
					t.Errorf("%s: %q, want %q", a, got[a], w)
				}
			}
			if m.LastError == nil || m.LastError.Code != 450 || m.LastError.Enhanced != "4.2.1" {
				t.Errorf("last error %+v, want the 450 4.2.1 of the pending recipient", m.LastError)
			}
			msgs := h.up.Messages()
			if len(msgs) != 1 || strings.Join(msgs[0].To, ",") != "ok1@dest.example,ok2@dest.example" {
				t.Fatalf("upstream got %+v", msgs)
			}
		})
	}
}

// TestRoundTripsPerMessage counts the client's turns on one connection for
// messages to two recipients: with PIPELINING and no RSET between successful
// transactions a message costs 2 (the MAIL/RCPT/DATA group, the body);
// without PIPELINING 5 (MAIL, RCPT, RCPT, DATA, body). The code before
// issue 19 needed 6 either way (RSET first).
func TestRoundTripsPerMessage(t *testing.T) {
	const n = 10
	for i, tc := range pipeliningCases {
		perMsg := []int{2, 5}[i]
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, hopt{up: tc.up, account: tc.account, noStart: true})
			var ids []string
			for i := 0; i < n; i++ {
				ids = append(ids, h.enqueue("a@dest.example", "b@dest.example"))
			}
			h.start()
			for _, id := range ids {
				h.waitState(id, spool.StateDelivered)
			}
			h.stop() // QUIT: at most one more turn
			if s := h.up.Sessions(); s != 1 {
				t.Fatalf("%d sessions, want 1 (the test counts one connection's turns)", s)
			}
			if rt := h.up.RoundTrips(); rt < perMsg*n || rt > perMsg*n+1 {
				t.Errorf("%d round trips for %d messages, want %d per message", rt, n, perMsg)
			}
			if r := h.up.Commands("RSET"); r != 0 {
				t.Errorf("%d RSETs between successful transactions, want none", r)
			}
		})
	}
}

// TestRsetOnlyAfterFailure: a transaction that ended without delivery (every
// recipient refused) is reset before the next MAIL; successful ones are not.
func TestRsetOnlyAfterFailure(t *testing.T) {
	for _, tc := range pipeliningCases {
		t.Run(tc.name, func(t *testing.T) {
			up := tc.up
			up.Script = func(c smtpfake.Command) smtpfake.Reply {
				if c.Name == "RCPT" && strings.HasPrefix(c.Arg, "gone") {
					return smtpfake.Reply{Code: 550, Enhanced: "5.1.1", Text: "no such user"}
				}
				return smtpfake.Reply{}
			}
			h := newHarness(t, hopt{up: up, account: tc.account, noStart: true})
			ok1 := h.enqueue("a@dest.example")
			bad := h.enqueue("gone@dest.example")
			ok2 := h.enqueue("b@dest.example")
			ok3 := h.enqueue("c@dest.example")
			h.start()
			h.waitState(ok1, spool.StateDelivered)
			h.waitState(bad, spool.StateDead)
			h.waitState(ok2, spool.StateDelivered)
			h.waitState(ok3, spool.StateDelivered)
			h.stop()
			if s := h.up.Sessions(); s != 1 {
				t.Fatalf("%d sessions, want 1", s)
			}
			if r := h.up.Commands("RSET"); r != 1 {
				t.Errorf("%d RSETs, want 1 (after the refused transaction only)", r)
			}
			if c := h.up.Count(); c != 3 {
				t.Errorf("upstream accepted %d messages, want 3", c)
			}
		})
	}
}

// TestReusedConnectionGoneRedials: without RSET, the first command of the
// next transaction finds a connection the upstream closed while it idled
// (dropped, or a 421 there): the message goes out on a new connection in the
// same attempt, as it did when RSET found the connection gone.
func TestReusedConnectionGoneRedials(t *testing.T) {
	for _, gone := range []smtpfake.Reply{{Drop: true}, {Code: 421, Enhanced: "4.4.2", Text: "timeout, closing connection"}} {
		t.Run(fmt.Sprintf("drop=%v code=%d", gone.Drop, gone.Code), func(t *testing.T) {
			var mails atomic.Int32
			h := newHarness(t, hopt{noStart: true, account: func(a *AccountConfig) { a.MaxConnections = 1 },
				up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
					if c.Name == "MAIL" && c.Session == 1 {
						if mails.Add(1) == 2 {
							return gone
						}
					}
					return smtpfake.Reply{}
				}}})
			first := h.enqueue("a@dest.example")
			second := h.enqueue("b@dest.example")
			h.start()
			h.waitState(first, spool.StateDelivered)
			m := h.waitState(second, spool.StateDelivered)
			if m.Attempts != 1 {
				t.Errorf("%d attempts, want 1 (a connection gone while idle costs none)", m.Attempts)
			}
			if s := h.up.Sessions(); s != 2 {
				t.Errorf("%d sessions, want 2", s)
			}
		})
	}
}
