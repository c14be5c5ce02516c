package smtp_test

// Tests of spoold's behavioural patches to the server (see SPOOLD-PATCHES.md).
// Each fails on go-smtp v0.25.1 as released.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// readAll reads replies until the server closes the connection.
func readUntilClosed(t *testing.T, c net.Conn, scanner *bufio.Scanner) []string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var lines []string
	for scanner.Scan() {
		lines = append(lines, scanner.Text())
	}
	if err := scanner.Err(); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("server did not close the connection; got %q", lines)
		}
	}
	return lines
}

// A command line cut short by the read timeout is never executed: Go's
// bufio.Reader.ReadLine hands back the partial line without the error.
func TestServerPartialLineTimeoutNotExecuted(t *testing.T) {
	be, s, c, scanner, _ := testServerEhlo(t, func(s *smtp.Server) { s.ReadTimeout = 200 * time.Millisecond })
	defer s.Close()
	defer c.Close()

	io.WriteString(c, "MAIL FROM:<root@nsa.gov>\r\n")
	scanner.Scan()
	if !strings.HasPrefix(scanner.Text(), "250 ") {
		t.Fatal("MAIL:", scanner.Text())
	}
	// No CRLF, then silence past the read timeout.
	io.WriteString(c, "RCPT TO:<bob@example.com>")
	lines := readUntilClosed(t, c, scanner)
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "421 4.4.2 ") {
		t.Fatalf("replies to a partial line then a timeout: %q, want only 421 4.4.2", lines)
	}
	_ = be
}

// A partial line followed by the client closing its side is not executed either.
func TestServerPartialLineEOFNotExecuted(t *testing.T) {
	_, s, c, scanner, _ := testServerEhlo(t)
	defer s.Close()
	defer c.Close()

	io.WriteString(c, "NOOP")
	c.(*net.TCPConn).CloseWrite()
	if lines := readUntilClosed(t, c, scanner); len(lines) != 0 {
		t.Fatalf("replies to a partial line then EOF: %q, want none", lines)
	}
}

// sendData runs MAIL, RCPT and DATA with body (which must end with the
// end-of-data line) and returns the final reply.
func sendData(t *testing.T, c net.Conn, scanner *bufio.Scanner, body string) string {
	t.Helper()
	for _, cmd := range []string{"MAIL FROM:<root@nsa.gov>", "RCPT TO:<root@gchq.gov.uk>", "DATA"} {
		io.WriteString(c, cmd+"\r\n")
		scanner.Scan()
		if !strings.HasPrefix(scanner.Text(), "250 ") && !strings.HasPrefix(scanner.Text(), "354 ") {
			t.Fatalf("%s: %s", cmd, scanner.Text())
		}
	}
	io.WriteString(c, body)
	scanner.Scan()
	return scanner.Text()
}

// RFC 1870: a message of exactly the advertised SIZE is accepted; one more
// octet is refused.
func TestServerSizeExactlyAtLimit(t *testing.T) {
	be, s, c, scanner, caps := testServerEhlo(t, func(s *smtp.Server) { s.MaxMessageBytes = 20 })
	defer s.Close()
	defer c.Close()
	if !caps["SIZE 20"] {
		t.Fatalf("SIZE 20 not advertised: %v", caps)
	}
	exact := "0123456789abcdef\r\n" + "x\r\n"[1:] // 18 + 2 = 20 octets
	if len(exact) != 20 {
		t.Fatal(len(exact))
	}
	if got := sendData(t, c, scanner, exact+".\r\n"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("message of exactly MaxMessageBytes: %s, want 250", got)
	}
	if len(be.messages)+len(be.anonmsgs) != 1 {
		t.Fatal("message not stored")
	}
	if got := sendData(t, c, scanner, "0123456789abcdefg\r\n\r\n.\r\n"); !strings.HasPrefix(got, "552 5.3.4 ") {
		t.Fatalf("message of MaxMessageBytes+1: %s, want 552 5.3.4", got)
	}
	// The session is still in step after the refusal.
	io.WriteString(c, "NOOP\r\n")
	scanner.Scan()
	if !strings.HasPrefix(scanner.Text(), "250 ") {
		t.Fatal("NOOP after 552:", scanner.Text())
	}
}

// RFC 4954 section 4: a client response that is not valid base64 gets 501
// 5.5.2, not a temporary 454 that devices retry forever.
func TestServerAuthInvalidBase64(t *testing.T) {
	_, s, c, scanner, _ := testServerEhlo(t)
	defer s.Close()
	defer c.Close()

	io.WriteString(c, "AUTH PLAIN !!!notbase64\r\n")
	scanner.Scan()
	if !strings.HasPrefix(scanner.Text(), "501 5.5.2 ") {
		t.Fatal("invalid initial response:", scanner.Text())
	}
	io.WriteString(c, "AUTH PLAIN\r\n")
	scanner.Scan()
	if scanner.Text() != "334 " {
		t.Fatal("AUTH PLAIN:", scanner.Text())
	}
	io.WriteString(c, "@@@\r\n")
	scanner.Scan()
	if !strings.HasPrefix(scanner.Text(), "501 5.5.2 ") {
		t.Fatal("invalid continuation:", scanner.Text())
	}
}

// RFC 5321 section 4.3.2 and Postfix: commands out of sequence get 503
// 5.5.1 ("bad sequence of commands"); 502 means "not implemented".
func TestServerBadSequence503(t *testing.T) {
	_, s, c, scanner := testServerGreeted(t)
	defer s.Close()
	defer c.Close()

	expect := func(cmd, prefix string) {
		t.Helper()
		io.WriteString(c, cmd+"\r\n")
		scanner.Scan()
		if !strings.HasPrefix(scanner.Text(), prefix) {
			t.Fatalf("%s: %s, want %s", cmd, scanner.Text(), prefix)
		}
	}
	expect("MAIL FROM:<root@nsa.gov>", "503 5.5.1 ") // before EHLO
	expect("AUTH PLAIN", "503 5.5.1 ")               // before EHLO
	expect("EHLO localhost", "250")
	for scanner.Text()[3] == '-' {
		scanner.Scan()
	}
	expect("RCPT TO:<root@gchq.gov.uk>", "503 5.5.1 ") // before MAIL
	expect("DATA", "503 5.5.1 ")                       // before MAIL
	expect("MAIL FROM:<root@nsa.gov>", "250 ")
	expect("DATA", "503 5.5.1 ") // before RCPT
	io.WriteString(c, "BDAT 4 LAST\r\nNOOP")
	scanner.Scan()
	if !strings.HasPrefix(scanner.Text(), "503 5.5.1 ") {
		t.Fatal("BDAT before RCPT:", scanner.Text())
	}
	expect("HELP", "502 5.5.1 ") // not implemented stays 502
}

// RFC 4954 section 6: AUTH that needs an encrypted connection answers 538
// 5.7.11 (523 is not an SMTP reply code).
func TestServerAuthBeforeTLS538(t *testing.T) {
	_, s, c, scanner, _ := testServerEhlo(t, func(s *smtp.Server) { s.AllowInsecureAuth = false })
	defer s.Close()
	defer c.Close()
	io.WriteString(c, "AUTH PLAIN AHVzZXJuYW1lAHBhc3N3b3Jk\r\n")
	scanner.Scan()
	if scanner.Text() != "538 5.7.11 Encryption required for requested authentication mechanism" {
		t.Fatal("AUTH before TLS:", scanner.Text())
	}
}

// CommandHook sees every command before it runs; an error is the reply
// instead, and a 421 closes the connection.
func TestServerCommandHook(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	_, s, c, scanner := testServerGreeted(t, func(s *smtp.Server) {
		s.CommandHook = func(_ *smtp.Conn, cmd string) error {
			mu.Lock()
			seen = append(seen, cmd)
			mu.Unlock()
			switch cmd {
			case "VRFY":
				return &smtp.SMTPError{Code: 502, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "no VRFY here"}
			case "RSET":
				return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "enough"}
			}
			return nil
		}
	})
	defer s.Close()
	defer c.Close()

	io.WriteString(c, "noop\r\n")
	scanner.Scan()
	if !strings.HasPrefix(scanner.Text(), "250 ") {
		t.Fatal("NOOP:", scanner.Text())
	}
	io.WriteString(c, "VRFY root\r\n")
	scanner.Scan()
	if scanner.Text() != "502 5.5.1 no VRFY here" {
		t.Fatal("VRFY:", scanner.Text())
	}
	io.WriteString(c, "RSET\r\nNOOP\r\n")
	lines := readUntilClosed(t, c, scanner)
	if len(lines) != 1 || lines[0] != "421 4.7.0 enough" {
		t.Fatalf("after a 421 from the hook: %q, want only the 421 and a close", lines)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, " ") != "NOOP VRFY RSET" {
		t.Fatalf("hook saw %q", seen)
	}
}

// Commands pipelined after QUIT (or after any reply that closes the
// connection) are not run: they are already in the read buffer.
func TestServerNothingRunsAfterClose(t *testing.T) {
	errs := &logRecorder{}
	be, s, c, scanner, _ := testServerEhlo(t, func(s *smtp.Server) { s.ErrorLog = errs })
	defer s.Close()
	defer c.Close()

	io.WriteString(c, "QUIT\r\nMAIL FROM:<root@nsa.gov>\r\nRCPT TO:<root@gchq.gov.uk>\r\nDATA\r\nhi\r\n.\r\n")
	lines := readUntilClosed(t, c, scanner)
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "221 ") {
		t.Fatalf("replies after QUIT with pipelined commands: %q", lines)
	}
	if len(be.messages)+len(be.anonmsgs) != 0 {
		t.Fatal("a message pipelined after QUIT was delivered")
	}
	// Shutdown waits for the connection's handler to return.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if log := errs.String(); log != "" {
		t.Fatalf("commands after QUIT ran into a closed session: %s", log)
	}
}

// logRecorder is a Server.ErrorLog that keeps what it is told.
type logRecorder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logRecorder) Printf(format string, v ...interface{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, format+"\n", v...)
}

func (l *logRecorder) Println(v ...interface{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintln(&l.b, v...)
}

func (l *logRecorder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A 421 answer to BDAT ends the session, as after DATA (RFC 5321 4.2.2): the
// server closes once the reply is out. v0.25.1 kept reading, so the client
// got a second "421 Connection error" and the session lived on.
func TestServerBdat421Closes(t *testing.T) {
	be, s, c, scanner, _ := testServerEhlo(t)
	defer s.Close()
	be.dataErr = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Message data arriving too slowly"}
	io.WriteString(c, "MAIL FROM:<root@nsa.gov>\r\n")
	scanner.Scan()
	io.WriteString(c, "RCPT TO:<root@gchq.gov.uk>\r\n")
	scanner.Scan()
	io.WriteString(c, "BDAT 5 LAST\r\nhello")
	lines := readUntilClosed(t, c, scanner)
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "421 4.4.2 ") {
		t.Fatalf("replies %q, want one 421 4.4.2 and the connection closed", lines)
	}
}

// The server's own reply texts are plain RFC 5321 text with RFC 3463 codes
// (2.1.0 for MAIL, 2.1.5 for RCPT), not v0.25.1's "Roger, accepting mail
// from", "I'll make sure ... gets this" or "Go ahead": devices log them.
func TestServerPlainReplies(t *testing.T) {
	_, s, c, scanner, _ := testServerEhlo(t, func(s *smtp.Server) { s.MaxRecipients = 1 })
	defer s.Close()
	defer c.Close()
	for _, step := range []struct{ cmd, want string }{
		{"NOOP", "250 2.0.0 OK"},
		{"RSET", "250 2.0.0 OK"},
		{"FROB", "500 5.5.2 Syntax error, command unrecognized"},
		{"MAIL root@nsa.gov", "501 5.5.2 Syntax: MAIL FROM:<address>"},
		{"MAIL FROM:<root@nsa.gov>", "250 2.1.0 Sender OK"},
		{"RCPT root@gchq.gov.uk", "501 5.5.2 Syntax: RCPT TO:<address>"},
		{"RCPT TO:<root@gchq.gov.uk>", "250 2.1.5 Recipient OK"},
		{"RCPT TO:<other@gchq.gov.uk>", "452 4.5.3 Too many recipients"},
		{"DATA", "354 Start mail input; end with <CRLF>.<CRLF>"},
	} {
		io.WriteString(c, step.cmd+"\r\n")
		scanner.Scan()
		if got := scanner.Text(); got != step.want {
			t.Errorf("%s: got %q, want %q", step.cmd, got, step.want)
		}
	}
}
