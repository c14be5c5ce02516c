package delivery

import (
	"testing"
	"time"

	"github.com/spoold/spoold/delivery/smtpfake"
	"github.com/spoold/spoold/spool"
)

// TestTLSSessionResumed: each new connection of an account resumes the TLS
// session of an earlier one instead of a full handshake.
func TestTLSSessionResumed(t *testing.T) {
	for _, mode := range []string{"starttls", "implicit"} {
		t.Run(mode, func(t *testing.T) {
			h := newHarness(t, hopt{up: smtpfake.Options{TLS: mode}, account: func(a *AccountConfig) {
				a.TLS = mode
				a.MaxConnections = 1
				a.MaxMessagesPerConnection = 1 // a new connection per message
			}})
			for i := 0; i < 3; i++ {
				h.waitState(h.enqueue(), spool.StateDelivered)
			}
			all, resumed := h.up.Handshakes()
			if all != 3 || resumed != 2 {
				t.Errorf("%d handshakes, %d resumed; want 3 and 2 (all but the first)", all, resumed)
			}
		})
	}
}

// TestIdleKeepAlivePerAccount: an account's IdleTimeout (a provider's
// keep-alive) keeps its connection for the next message even when the
// engine's own idle time is tiny.
func TestIdleKeepAlivePerAccount(t *testing.T) {
	for _, keep := range []time.Duration{0, time.Minute} {
		h := newHarness(t, hopt{
			account: func(a *AccountConfig) { a.MaxConnections = 1; a.IdleTimeout = keep },
			opts:    func(o *Options) { o.IdleTimeout = time.Millisecond },
		})
		h.waitState(h.enqueue(), spool.StateDelivered)
		acct := func() (idle, conns int) {
			h.eng.mu.Lock()
			defer h.eng.mu.Unlock()
			a := h.eng.accounts["m365"]
			return a.idle, a.conns
		}
		if keep > 0 {
			waitFor(t, "the connection to idle", func() bool { idle, _ := acct(); return idle == 1 })
		} else {
			waitFor(t, "the connection to close after the engine's 1 ms", func() bool { _, conns := acct(); return conns == 0 })
		}
		h.waitState(h.enqueue(), spool.StateDelivered)
		want := 2
		if keep > 0 {
			want = 1
		}
		if s := h.up.Accepted(); s != want {
			t.Errorf("idle timeout %s: %d connections for two messages, want %d", keep, s, want)
		}
		h.stop()
	}
}
