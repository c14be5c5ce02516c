package smtpd

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// oldReplyTexts are go-smtp v0.25.1's own reply texts that an MFD's log or
// an admin's swaks showed (issue 15): none may reach a client.
var oldReplyTexts = []string{
	"Roger", "I'll make sure", "Go ahead", "successfully done nothing", "Session reset", "bye bye", "sorry",
	"Quiting", "Syntax errors,", "Was expecting", "introduce yourself", "Maximum limit of",
}

// TestReplyTranscript runs one session through every reply a device
// commonly sees and holds each to plain RFC 5321 text with an enhanced
// status code (RFC 2034; the greeting and 354 have none).
func TestReplyTranscript(t *testing.T) {
	lc := baseListener()
	lc.MaxRecipients = 1
	s := startServer(t, []ListenerConfig{lc}, Routes{}, &fakeSpool{}, Options{})
	c := dial(t, addrOf(t, s, "mfd"))
	var transcript []string
	record := func(cmd string, code int, msg string) {
		transcript = append(transcript, fmt.Sprintf("C: %s\nS: %d %s", cmd, code, msg))
	}
	code, msg := c.reply()
	record("(connect)", code, msg)
	if code != 220 {
		t.Fatalf("greeting %d %s", code, msg)
	}
	steps := []struct {
		cmd  string
		code int
		want string // the whole reply text after the code ("" = not checked beyond enhanced code)
	}{
		{"MAIL FROM:<a@corp.example>", 503, "5.5.1 Send EHLO or HELO first"},
		{"HELO scanner.lan", 250, "2.0.0 Hello scanner.lan"},
		{"EHLO scanner.lan", 250, ""},
		{"NOOP", 250, "2.0.0 OK"},
		{"RSET", 250, "2.0.0 OK"},
		{"VRFY someone", 252, "2.5.0 Cannot VRFY user, but will accept message and attempt delivery"},
		{"FROB", 500, "5.5.2 Syntax error, command unrecognized"},
		{"MAIL a@corp.example", 501, "5.5.2 Syntax: MAIL FROM:<address>"},
		{"RCPT TO:<b@corp.example>", 503, ""},
		{"MAIL FROM:<a@corp.example>", 250, "2.1.0 Sender OK"},
		{"RCPT b@corp.example", 501, "5.5.2 Syntax: RCPT TO:<address>"},
		{"RCPT TO:<b@corp.example>", 250, "2.1.5 Recipient OK"},
		{"RCPT TO:<c@corp.example>", 452, "4.5.3 Too many recipients"},
		{"DATA", 354, "Start mail input; end with <CRLF>.<CRLF>"},
	}
	for _, st := range steps {
		code, msg := c.cmd("%s", st.cmd)
		record(st.cmd, code, msg)
		if code != st.code || (st.want != "" && msg != st.want) {
			t.Errorf("%s: got %d %q, want %d %q", st.cmd, code, msg, st.code, st.want)
		}
	}
	c.raw("Subject: transcript\r\n\r\nhello\r\n.\r\n")
	code, msg = c.reply()
	record("(message).", code, msg)
	if code != 250 || !strings.HasPrefix(msg, "2.0.0 OK queued as ") {
		t.Errorf("end of data: %d %q", code, msg)
	}
	code, msg = c.cmd("QUIT")
	record("QUIT", code, msg)
	if code != 221 || msg != "2.0.0 Bye" {
		t.Errorf("QUIT: %d %q", code, msg)
	}

	// An idle client is told why it is cut off.
	idle := baseListener()
	idle.Name, idle.ReadTimeout, idle.StressTimeout = "idle", 200*time.Millisecond, 200*time.Millisecond
	s2 := startServer(t, []ListenerConfig{idle}, Routes{}, &fakeSpool{}, Options{})
	c2 := dial(t, addrOf(t, s2, "idle"))
	c2.greet()
	c2.ehlo()
	code, msg = c2.reply() // waits for the server's timeout
	record("(idle)", code, msg)
	if code != 421 || !strings.HasPrefix(msg, "4.4.2 ") {
		t.Errorf("idle: %d %q, want 421 4.4.2", code, msg)
	}

	all := strings.Join(transcript, "\n")
	for _, old := range oldReplyTexts {
		if strings.Contains(all, old) {
			t.Errorf("a reply contains go-smtp's %q", old)
		}
	}
	enhanced := regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3} `)
	for _, line := range transcript {
		cmd, reply, _ := strings.Cut(line, "\nS: ")
		if strings.HasPrefix(reply, "220 ") || strings.HasPrefix(reply, "354 ") || strings.HasPrefix(cmd, "C: EHLO") {
			continue
		}
		if !enhanced.MatchString(reply[4:]) {
			t.Errorf("%s: reply without an enhanced status code: %q", cmd, reply)
		}
	}
	if t.Failed() {
		t.Logf("transcript:\n%s", all)
	}
}

// Reported defect (issue 15): log lines carried auth_user="" for clients
// that did not authenticate. Empty attributes are left out.
func TestLogsOmitEmptyAttributes(t *testing.T) {
	var logs logBuf
	s := startServer(t, []ListenerConfig{baseListener()}, Routes{}, &fakeSpool{}, Options{Logger: slogTo(&logs)})
	c := dial(t, addrOf(t, s, "mfd"))
	c.greet()
	c.ehlo()
	if code, msg := c.send("a@corp.example", "b@corp.example", "Subject: x\r\n\r\nhi\r\n.\r\n"); code != 250 {
		t.Fatalf("send: %d %s", code, msg)
	}
	c.expect(221, "", "QUIT")
	eventually(t, "message accepted logged", func() bool { return strings.Contains(logs.String(), `msg="message accepted"`) })
	if strings.Contains(logs.String(), `=""`) {
		t.Errorf("empty attribute in:\n%s", logs.String())
	}
}
