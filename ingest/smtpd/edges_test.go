package smtpd

// Tests for issue 12 ("Sessions that never end", "Protocol details"): each
// reproduces a defect found by probing the listener as an attacker would.

import (
	"strings"
	"testing"
	"time"
)

// TestPartialCommandLineTimeout: a command line cut short by the read
// timeout is never executed; the client gets 421 4.4.2 and is disconnected.
func TestPartialCommandLineTimeout(t *testing.T) {
	lc := baseListener()
	lc.ReadTimeout = 300 * time.Millisecond
	fs := &fakeSpool{}
	s := startServer(t, []ListenerConfig{lc}, Routes{}, fs, Options{})
	c := dial(t, addrOf(t, s, "mfd"))
	c.greet()
	c.ehlo()
	c.expect(250, "", "MAIL FROM:<a@corp.example>")
	c.expect(250, "", "RCPT TO:<b@corp.example>")
	c.raw("RCPT TO:<bob@example.com>") // no CRLF, then silence
	code, msg, err := c.replyErr()
	if err != nil || code != 421 || !strings.HasPrefix(msg, "4.4.2") {
		t.Fatalf("partial line then timeout: %d %q %v, want 421 4.4.2", code, msg, err)
	}
	if err := c.waitClosed(); err != nil {
		t.Fatalf("connection not closed after 421: %v", err)
	}
	if n := len(fs.all()); n != 0 {
		t.Fatalf("stored %d messages", n)
	}
}
