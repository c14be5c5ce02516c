package smtp_test

// Tests of spoold's behavioural patches to the server (see SPOOLD-PATCHES.md).
// Each fails on go-smtp v0.25.1 as released.

import (
	"bufio"
	"io"
	"net"
	"strings"
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
