package smtp

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// spoold's own: client CHUNKING (bdat.go) against DATA as the oracle.

type bodyBackend struct{ bodies chan []byte }

func (be *bodyBackend) NewSession(*Conn) (Session, error) { return &bodySession{be: be}, nil }

type bodySession struct{ be *bodyBackend }

func (s *bodySession) Reset()                          {}
func (s *bodySession) Logout() error                   { return nil }
func (s *bodySession) Mail(string, *MailOptions) error { return nil }
func (s *bodySession) Rcpt(to string, _ *RcptOptions) error {
	if strings.HasPrefix(to, "bad") {
		return &SMTPError{Code: 550, EnhancedCode: EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	return nil
}
func (s *bodySession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.be.bodies <- b
	return err
}

// bodyServer is go-smtp's own server (which offers PIPELINING and CHUNKING)
// recording each message body as its backend receives it.
func bodyServer(t testing.TB) (*Client, chan []byte) {
	t.Helper()
	be := &bodyBackend{bodies: make(chan []byte, 4)}
	srv := NewServer(be)
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.MaxLineLength = 1 << 20
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c, err := Dial(l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client"); err != nil {
		t.Fatal(err)
	}
	return c, be.bodies
}

func sendBody(c *Client, bdat bool, chunk int, body []byte, writes int) (string, error) {
	var w *DataCommand
	var err error
	to := []string{"bad@example.org", "a@example.org"}
	if bdat {
		_, w, err = c.MailRcptBdat("s@example.org", nil, to, nil, chunk)
	} else {
		_, w, err = c.MailRcptData("s@example.org", nil, to, nil)
	}
	if err != nil {
		return "", err
	}
	if w == nil {
		return "", errors.New("no data writer")
	}
	// Write in pieces of varying size, as WriteTo from the spool might.
	step := len(body)/writes + 1
	for b := body; len(b) > 0; {
		n := step
		if n > len(b) {
			n = len(b)
		}
		if _, err := w.Write(b[:n]); err != nil {
			return "", err
		}
		b = b[n:]
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	return resp.StatusText, nil
}

func receive(t testing.TB, bodies chan []byte) []byte {
	t.Helper()
	select {
	case b := <-bodies:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no message arrived")
		return nil
	}
}

func checkBdatSameBytes(t *testing.T, body []byte, chunk int, writes int, pipelining bool) {
	c, bodies := bodyServer(t)
	if !pipelining {
		delete(c.ext, "PIPELINING")
	}
	if _, err := sendBody(c, false, 0, body, writes); err != nil {
		t.Fatalf("DATA: %v", err)
	}
	want := receive(t, bodies)
	if _, err := sendBody(c, true, chunk, body, writes); err != nil {
		t.Fatalf("BDAT (chunk %d): %v", chunk, err)
	}
	got := receive(t, bodies)
	if !bytes.Equal(got, want) {
		t.Fatalf("chunk %d, %d writes: BDAT delivered %q, DATA %q", chunk, writes, got, want)
	}
	// The connection is still in step: the next command gets its own reply.
	if err := c.Noop(); err != nil {
		t.Fatalf("NOOP after BDAT: %v", err)
	}
}

func FuzzBdatSameBytes(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\n.hello\r\n..\r\n.\r\nend"), uint16(3), uint8(2), true)
	f.Add([]byte("bare\nlf\rcr\r\n\r\n"), uint16(1), uint8(7), false)
	f.Add([]byte(""), uint16(64), uint8(1), true)
	// dotWriter takes every second CR of a run as content.
	f.Add([]byte("\r\r\n\r\r\r\n\r"), uint16(1), uint8(106), false)
	f.Add(bytes.Repeat([]byte("line of text\r\n"), 2000), uint16(1000), uint8(3), true)
	f.Fuzz(func(t *testing.T, body []byte, chunk uint16, writes uint8, pipelining bool) {
		checkBdatSameBytes(t, body, int(chunk%4096)+1, int(writes%16)+1, pipelining)
	})
}

// Many chunks pipelined: more than maxPendingBdat replies outstanding.
func TestBdatManyChunks(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef\r\n.\r\n"), 5000)
	checkBdatSameBytes(t, body, 100, 50, true)
	checkBdatSameBytes(t, body, 100, 50, false)
}

// No recipient accepted: no writer and nothing sent; the session goes on.
func TestBdatNoRecipient(t *testing.T) {
	c, _ := bodyServer(t)
	errs, w, err := c.MailRcptBdat("s@example.org", nil, []string{"bad@example.org"}, nil, 1024)
	if err != nil || w != nil || len(errs) != 1 || errs[0] == nil {
		t.Fatalf("got %v, %v, %v; want one refused recipient and no writer", errs, w, err)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
}
