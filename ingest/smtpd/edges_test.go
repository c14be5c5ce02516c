package smtpd

// Tests for issue 12 ("Sessions that never end", "Protocol details"): each
// reproduces a defect found by probing the listener as an attacker would.

import (
	"context"
	"fmt"
	"io"
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
	c := startSession(t, lc, fs)
	c.expect(250, "", "MAIL FROM:<a@corp.example>")
	c.expect(250, "", "RCPT TO:<b@corp.example>")
	c.raw("RCPT TO:<bob@example.com>") // no CRLF, then silence
	c.expectReply(421, "4.4.2")
	c.expectClosed()
	if n := len(fs.all()); n != 0 {
		t.Fatalf("stored %d messages", n)
	}
}

// TestSizeExactlyAtLimit: RFC 1870, a listener advertising SIZE N accepts a
// body of exactly N octets and refuses N+1 with 552 5.3.4.
func TestSizeExactlyAtLimit(t *testing.T) {
	const max = 1000
	lc := baseListener()
	lc.MaxMessageSize = max
	fs := &fakeSpool{}
	s := startServer(t, []ListenerConfig{lc}, Routes{}, fs, Options{})
	c := dial(t, addrOf(t, s, "mfd"))
	c.greet()
	if ehlo := c.ehlo(); !strings.Contains(ehlo, "SIZE 1000") {
		t.Fatalf("SIZE not advertised: %q", ehlo)
	}
	body := func(n int) string {
		head := "Subject: size\r\n\r\n"
		return head + strings.Repeat("x", n-len(head)-2) + "\r\n"
	}
	if b := body(max); len(b) != max {
		t.Fatal(len(b))
	}
	c.expect(250, "", "MAIL FROM:<a@corp.example> SIZE=%d", max)
	c.expect(250, "", "RCPT TO:<b@corp.example>")
	c.expect(354, "", "DATA")
	c.raw(body(max) + ".\r\n")
	if code, msg := c.reply(); code != 250 {
		t.Fatalf("body of exactly SIZE octets: %d %s, want 250", code, msg)
	}
	if code, msg := c.send("a@corp.example", "b@corp.example", body(max+1)+".\r\n"); code != 552 || !strings.HasPrefix(msg, "5.3.4") {
		t.Fatalf("body of SIZE+1 octets: %d %s, want 552 5.3.4", code, msg)
	}
	if n := len(fs.all()); n != 1 {
		t.Fatalf("stored %d messages, want 1", n)
	}
}

// TestProtocolReplyCodes: invalid base64 in AUTH is 501 5.5.2 (RFC 4954),
// commands out of sequence are 503 5.5.1 (RFC 5321, as Postfix).
func TestProtocolReplyCodes(t *testing.T) {
	s := startServer(t, []ListenerConfig{authListener(t, TLSStartTLS)}, Routes{}, &fakeSpool{}, Options{})
	addr := addrOf(t, s, "mfd")
	c := dial(t, addr)
	c.greet()
	c.expect(503, "5.5.1", "MAIL FROM:<a@corp.example>") // before EHLO
	tc := dialTLSAfterStartTLS(t, addr)
	tc.expect(501, "5.5.2", "AUTH PLAIN !!notbase64")
	tc.expect(334, "", "AUTH LOGIN")
	tc.expect(501, "5.5.2", "@@@")
	tc.expect(235, "", "AUTH PLAIN %s", plainIR("scanner", "s3cret!"))
	tc.expect(503, "5.5.1", "RCPT TO:<b@corp.example>") // before MAIL
	tc.expect(503, "5.5.1", "DATA")                     // before MAIL
	tc.expect(250, "", "MAIL FROM:<a@corp.example>")
	tc.expect(503, "5.5.1", "DATA") // before RCPT
}

// TestShutdownClosesStalledData: a client stalled in the middle of DATA does
// not keep the daemon up past the shutdown timeout: Shutdown returns soon
// after ctx expires, the client is disconnected and nothing is stored.
func TestShutdownClosesStalledData(t *testing.T) {
	lc := baseListener() // ReadTimeout 30s: far beyond what the test waits
	fs := &fakeSpool{started: make(chan struct{}, 1)}
	s := startServer(t, []ListenerConfig{lc}, Routes{}, fs, Options{})
	addr := addrOf(t, s, "mfd")
	c, idle := dial(t, addr), dial(t, addr)
	c.greet()
	idle.greet()
	c.ehlo()
	idle.ehlo()
	c.beginData("a@corp.example", "b@corp.example")
	c.raw("Subject: stalled\r\n\r\nhalf a scan")
	<-fs.started

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown returned nil although a session never finished")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Shutdown took %v with a 200ms timeout", took)
	}
	// The idle session was told politely at once.
	idle.expectReply(421, "4.3.2")
	// The stalled one is disconnected (possibly after a 421), never 250.
	if code, msg, err := c.replyErr(); err == nil && code != 421 {
		t.Fatalf("stalled DATA session got %d %s, want 421 or a closed connection", code, msg)
	}
	c.expectClosed()
	if n := len(fs.all()); n != 0 {
		t.Fatalf("stored %d messages", n)
	}
}

// trickle writes chunk every interval until the connection fails or stop is
// closed: a slowloris client that never goes silent for a read timeout.
func trickle(c *client, chunk string, interval time.Duration, stop <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			if _, err := io.WriteString(c.conn, chunk); err != nil {
				return
			}
		}
	}()
	return done
}

// TestSlowlorisData: a client trickling DATA below the minimum rate is
// answered 421 4.4.2 and disconnected once the grace period is used up,
// although it never stays silent for a read timeout; nothing is stored.
func TestSlowlorisData(t *testing.T) {
	lc := baseListener() // ReadTimeout 30s: never reached
	lc.DataMinRate = 10000
	lc.DataRateGrace = 100 * time.Millisecond
	fs := &fakeSpool{}
	c := startSession(t, lc, fs)
	c.beginData("a@corp.example", "b@corp.example")
	c.raw("Subject: slow\r\n\r\n")
	stop := make(chan struct{})
	done := trickle(c, "xxxxxxxx\r\n", 20*time.Millisecond, stop) // 500 bytes/s
	defer func() { close(stop); <-done }()
	c.expectReply(421, "4.4.2")
	c.expectClosed()
	if n := len(fs.all()); n != 0 {
		t.Fatalf("stored %d messages", n)
	}
}

// TestDataMinRateAllowsSteadyClient: a client above the minimum rate that
// pauses within its earned credit is not cut off.
func TestDataMinRateAllowsSteadyClient(t *testing.T) {
	lc := baseListener()
	lc.DataMinRate = 1000
	lc.DataRateGrace = 100 * time.Millisecond
	fs := &fakeSpool{}
	c := startSession(t, lc, fs)
	// 2000 bytes at once earn 2 s of credit, far more than the pause below.
	big := "Subject: steady\r\n\r\n" + strings.Repeat(strings.Repeat("y", 98)+"\r\n", 20)
	c.beginData("a@corp.example", "b@corp.example")
	c.raw(big)
	// The client's own pause, not a wait for a condition: longer than the
	// grace period, shorter than the credit the 2000 bytes earned.
	time.Sleep(300 * time.Millisecond)
	c.raw("end\r\n.\r\n")
	if code, msg := c.reply(); code != 250 {
		t.Fatalf("steady client: %d %s", code, msg)
	}
}

// TestJunkCommandLimit: NOOP, RSET, VRFY and HELP count against a limit per
// session (Postfix's smtpd_junk_command_limit); past it the client gets 421
// 4.7.0 and is disconnected. An accepted message starts the count afresh.
func TestJunkCommandLimit(t *testing.T) {
	lc := baseListener()
	lc.JunkCommandLimit = 5
	fs := &fakeSpool{}
	c := startSession(t, lc, fs)
	c.expect(250, "", "NOOP")
	c.expect(250, "", "RSET")
	c.expect(252, "", "VRFY bob")
	c.expect(502, "", "HELP")
	if code, msg := c.send("a@corp.example", "b@corp.example", simpleBody); code != 250 {
		t.Fatalf("message: %d %s", code, msg)
	}
	for i := 0; i < 5; i++ {
		c.expect(250, "", "NOOP")
	}
	c.expect(421, "4.7.0", "NOOP")
	c.expectClosed()
}

// TestHardErrorLimit: refused commands count against a limit per session
// (Postfix's smtpd_hard_error_limit); past it the client gets 421 4.7.0.
func TestHardErrorLimit(t *testing.T) {
	lc := baseListener()
	lc.HardErrorLimit = 3
	lc.AllowedRecipientDomains = []string{"corp.example"}
	s := startServer(t, []ListenerConfig{lc}, Routes{}, &fakeSpool{}, Options{})
	c := dial(t, addrOf(t, s, "mfd"))
	c.greet()
	c.ehlo()
	c.expect(250, "", "MAIL FROM:<a@corp.example>")
	for i := 0; i < 3; i++ {
		c.expect(550, "5.7.1", "RCPT TO:<x%d@elsewhere.example>", i)
	}
	c.expect(421, "4.7.0", "RCPT TO:<b@corp.example>")
	c.expectClosed()
	// A client past the limit that only wants to leave gets a normal QUIT.
	c = dial(t, addrOf(t, s, "mfd"))
	c.greet()
	c.ehlo()
	c.expect(250, "", "MAIL FROM:<a@corp.example>")
	for i := 0; i < 3; i++ {
		c.expect(550, "5.7.1", "RCPT TO:<x%d@elsewhere.example>", i)
	}
	c.expect(221, "", "QUIT")
}

// TestStressModeAdmitsRealClient: idle connections fill the listener; under
// that pressure idle sessions get the short StressTimeout instead of
// ReadTimeout, so a real client gets in long before ReadTimeout. Each change
// of mode is logged once.
func TestStressModeAdmitsRealClient(t *testing.T) {
	lc := baseListener()
	lc.ReadTimeout = 5 * time.Minute // what the idle clients would get without stress mode
	lc.MaxConnections = 4
	lc.StressTimeout = 300 * time.Millisecond
	var logs logBuf
	fs := &fakeSpool{}
	s := startServer(t, []ListenerConfig{lc}, Routes{}, fs, Options{Logger: slogTo(&logs)})
	addr := addrOf(t, s, "mfd")
	idle := make([]*client, lc.MaxConnections)
	for i := range idle {
		idle[i] = dial(t, addr)
		idle[i].greet()
		idle[i].ehlo()
	}
	start := time.Now()
	var c *client
	eventually(t, "a new client admitted", func() bool {
		c = dial(t, addr)
		code, _, err := c.replyErr()
		if err == nil && code == 220 {
			return true
		}
		c.conn.Close()
		return false
	})
	if took := time.Since(start); took > lc.ReadTimeout/2 {
		t.Fatalf("admitted after %v", took)
	}
	c.ehlo()
	if code, msg := c.send("a@corp.example", "b@corp.example", simpleBody); code != 250 {
		t.Fatalf("real client: %d %s", code, msg)
	}
	// Idle clients were cut off until the pressure was gone (the count fell
	// below 3/4 of the threshold of 3, so at least two of them); the rest
	// got ReadTimeout back and stay.
	replies := make(chan string, len(idle))
	for _, ic := range idle {
		go func() {
			code, msg, err := ic.replyErr()
			replies <- fmt.Sprint(code, " ", msg, " ", err)
		}()
	}
	for i := 0; i < 2; i++ {
		if r := <-replies; !strings.HasPrefix(r, "421 4.4.2") {
			t.Fatalf("idle client told %q, want 421 4.4.2", r)
		}
	}
	// One line per change of mode, not one per connection.
	eventually(t, "stress mode off", func() bool { return strings.Contains(logs.String(), "stress mode off") })
	if on, conns := strings.Count(logs.String(), "stress mode on"), strings.Count(logs.String(), "connection refused"); on == 0 || on > len(idle) {
		t.Fatalf("stress mode on logged %d times (%d connections refused):\n%s", on, conns, logs.String())
	}
}

// TestSessionLimitDefaults: the new limits' defaults, "off" values and
// validation.
func TestSessionLimitDefaults(t *testing.T) {
	c := baseListener().WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.DataMinRate != 4096 || c.DataRateGrace != c.ReadTimeout || c.JunkCommandLimit != 100 ||
		c.HardErrorLimit != 20 || c.StressThreshold != 160 || c.StressTimeout != 10*time.Second {
		t.Fatalf("defaults: rate %d grace %v junk %d errors %d stress %d/%v", c.DataMinRate, c.DataRateGrace,
			c.JunkCommandLimit, c.HardErrorLimit, c.StressThreshold, c.StressTimeout)
	}
	off := baseListener()
	off.DataMinRate, off.JunkCommandLimit, off.HardErrorLimit, off.StressThreshold = -5, -1, -1, -1
	if c, err := off.WithDefaults(), off.Validate(); err != nil || c.DataMinRate != -1 || c.JunkCommandLimit != -1 ||
		c.HardErrorLimit != -1 || c.StressThreshold != -1 {
		t.Fatalf("off: %+v %v", c, err)
	}
	short := baseListener()
	short.ReadTimeout = 2 * time.Second
	if c, err := short.WithDefaults(), short.Validate(); err != nil || c.StressTimeout != 2*time.Second {
		t.Fatalf("stress timeout with a 2s read timeout: %v %v", c.StressTimeout, err)
	}
	for name, mod := range map[string]func(*ListenerConfig){
		"stress threshold above max connections": func(c *ListenerConfig) { c.MaxConnections, c.StressThreshold = 10, 11 },
		"stress timeout above read timeout":      func(c *ListenerConfig) { c.StressTimeout = time.Hour },
		"negative grace":                         func(c *ListenerConfig) { c.DataRateGrace = -time.Second },
		"negative stress timeout":                func(c *ListenerConfig) { c.StressTimeout = -time.Second },
	} {
		lc := baseListener()
		mod(&lc)
		if err := lc.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
