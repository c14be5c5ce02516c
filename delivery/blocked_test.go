package delivery

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoold/spoold/delivery/smtpfake"
	"github.com/spoold/spoold/spool"
)

// Replies that mean "the account is blocked" hold the account with the
// reason and fix; the message waits queued without using its attempt,
// nothing is dead-lettered, and the hold's end drains the queue.
func TestBlockedAccountReplies(t *testing.T) {
	cases := []struct {
		name  string
		at    string // the command answered
		reply smtpfake.Reply
		hold  time.Duration
		want  string // in the hold reason
	}{
		{"exchange submission quota", "DATA", smtpfake.Reply{Code: 554, Enhanced: "5.2.0",
			Text: "STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message due to a permanent exception"}, quotaHold, "rolling 24-hour window"},
		{"sender mailbox full", "DATA", smtpfake.Reply{Code: 554, Enhanced: "5.2.2",
			Text: "mailbox full; STOREDRV.Submission.Exception:QuotaExceededException"}, 15 * time.Minute, "Sent Items"},
		{"basic auth refused", "MAIL", smtpfake.Reply{Code: 550, Enhanced: "5.7.30",
			Text: "Basic authentication is not supported for Client Submission."}, 15 * time.Minute, "OAuth"},
		{"tenant threshold", "RCPT", smtpfake.Reply{Code: 550, Enhanced: "5.7.705",
			Text: "Access denied, tenant has exceeded threshold"}, 15 * time.Minute, "Microsoft Support"},
		{"ip not accepted", "RCPT", smtpfake.Reply{Code: 550, Enhanced: "5.7.708",
			Text: "Service unavailable. Access denied, traffic not accepted from this IP."}, 15 * time.Minute, "sender.office.com"},
		{"unregistered domain", "MAIL", smtpfake.Reply{Code: 550, Enhanced: "5.7.750",
			Text: "Service unavailable. Client blocked from sending from unregistered domains."}, 15 * time.Minute, "accepted domain"},
		{"bad outbound sender", "MAIL", smtpfake.Reply{Code: 550, Enhanced: "5.1.8",
			Text: "Access denied, bad outbound sender"}, 15 * time.Minute, "Restricted entities"},
		{"gmail daily limit", "MAIL", smtpfake.Reply{Code: 550, Enhanced: "5.4.5",
			Text: "Daily user sending limit exceeded. https://support.google.com/mail/?p=DailyLimitExceeded"}, quotaHold, "rolling 24-hour window"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var released atomic.Bool
			h := newHarness(t, hopt{up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
				if c.Name == tc.at && !released.Load() {
					return tc.reply
				}
				return smtpfake.Reply{}
			}}})
			start := h.clock.Now()
			id := h.enqueue("a@dest.example", "b@dest.example")
			other := h.enqueue("c@dest.example")
			var held AccountState
			waitFor(t, "the account on hold", func() bool {
				for _, st := range h.eng.AccountStates() {
					if st.Name == "m365" && !st.HeldUntil.IsZero() {
						held = st
						return true
					}
				}
				return false
			})
			if !held.HeldUntil.Equal(start.Add(tc.hold)) {
				t.Errorf("held until %s, want %s after the start", held.HeldUntil, tc.hold)
			}
			if !strings.Contains(held.HoldReason, tc.want) || !strings.Contains(held.HoldReason, tc.reply.Enhanced) {
				t.Errorf("hold reason %q lacks %q or the reply", held.HoldReason, tc.want)
			}
			for _, x := range []string{id, other} {
				var m *spool.Message
				waitFor(t, x+" waiting for the hold's end", func() bool {
					m = h.sp.get(x)
					return m.State == spool.StateDeferred && m.NextAttempt.Equal(held.HeldUntil)
				})
				if m.Attempts != 0 {
					t.Errorf("%s: %d attempts, next %s; want none used, due at the hold's end", x, m.Attempts, m.NextAttempt)
				}
			}
			// The block lifts; the hold's end drains the queue.
			released.Store(true)
			h.clock.Add(tc.hold + time.Second)
			h.sp.signal()
			h.waitState(id, spool.StateDelivered)
			h.waitState(other, spool.StateDelivered)
		})
	}
}
