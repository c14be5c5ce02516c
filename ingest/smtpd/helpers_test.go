package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/spoold/spoold/spool"
)

// stored is one message the fake spool accepted.
type stored struct {
	ID   string
	Req  spool.EnqueueRequest
	Body []byte
}

// fakeSpool behaves like spool.Enqueue: it reads the body to the end and
// stores the message only if that worked; it can be told to fail.
type fakeSpool struct {
	mu      sync.Mutex
	msgs    []stored
	fail    error         // returned after reading the body
	started chan struct{} // if set, receives once Enqueue is entered
	block   chan struct{} // if set, Enqueue waits for it after reading
	n       int
}

func (f *fakeSpool) Enqueue(ctx context.Context, req spool.EnqueueRequest, body io.Reader) (string, error) {
	f.mu.Lock()
	started, block, fail := f.started, f.block, f.fail
	f.mu.Unlock()
	if started != nil {
		select {
		case started <- struct{}{}:
		default:
		}
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, body); err != nil {
		return "", fmt.Errorf("fake spool: reading body: %w", err)
	}
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	if fail != nil {
		return "", fmt.Errorf("fake spool: %w", fail)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	id := fmt.Sprintf("MSG%04d", f.n)
	f.msgs = append(f.msgs, stored{ID: id, Req: req, Body: buf.Bytes()})
	return id, nil
}

func (f *fakeSpool) all() []stored {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]stored(nil), f.msgs...)
}

func (f *fakeSpool) setFail(err error) {
	f.mu.Lock()
	f.fail = err
	f.mu.Unlock()
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// baseListener is a plain listener for loopback clients.
func baseListener() ListenerConfig {
	return ListenerConfig{
		Name:            "mfd",
		Addr:            "127.0.0.1:0",
		Hostname:        "spoold.test",
		AllowedNetworks: loopback,
		Account:         "outbox",
		ReadTimeout:     30 * time.Second,
		WriteTimeout:    30 * time.Second,
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startServer starts a server and stops it when the test ends (a no-op for
// a test that shut it down itself).
func startServer(t testing.TB, cfgs []ListenerConfig, routes Routes, enq Enqueuer, opts Options) *Server {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	if opts.DataDir == "" {
		opts.DataDir = sharedCertDir(t)
	}
	if opts.AuthFailureDelay == 0 {
		opts.AuthFailureDelay = -1
	}
	s, err := New(cfgs, routes, enq, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

// startSession starts a server with the one listener lc and returns a client
// past the greeting and EHLO.
func startSession(t testing.TB, lc ListenerConfig, enq Enqueuer) *client {
	t.Helper()
	s := startServer(t, []ListenerConfig{lc}, Routes{}, enq, Options{})
	c := dial(t, addrOf(t, s, lc.Name))
	c.greet()
	c.ehlo()
	return c
}

// sharedCertDir holds one self-signed certificate for all tests (RSA key
// generation is slow under -race); TestMain creates it.
func sharedCertDir(testing.TB) string { return testCertDir }

func addrOf(t testing.TB, s *Server, name string) string {
	t.Helper()
	a, ok := s.Addrs()[name]
	if !ok {
		t.Fatalf("no address for listener %q", name)
	}
	return a.String()
}

// client is a raw SMTP client over net/textproto, for exact reply codes.
type client struct {
	t    testing.TB
	conn net.Conn
	text *textproto.Conn
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	return &client{t: t, conn: c, text: textproto.NewConn(c)}
}

func dialTLS(t testing.TB, addr string) *client {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("dial tls %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	return &client{t: t, conn: c, text: textproto.NewConn(c)}
}

// reply reads one (possibly multi-line) reply.
func (c *client) reply() (int, string) {
	c.t.Helper()
	code, msg, err := c.text.ReadResponse(0)
	if err != nil && code == 0 {
		c.t.Fatalf("reading reply: %v", err)
	}
	return code, msg
}

// replyErr reads one reply, returning an error instead of failing (for
// connections that may be closed).
func (c *client) replyErr() (int, string, error) {
	code, msg, err := c.text.ReadResponse(0)
	if err != nil && code == 0 {
		return 0, "", err
	}
	return code, msg, nil
}

func (c *client) cmd(format string, a ...any) (int, string) {
	c.t.Helper()
	if err := c.text.PrintfLine(format, a...); err != nil {
		c.t.Fatalf("sending %q: %v", fmt.Sprintf(format, a...), err)
	}
	return c.reply()
}

// expect sends a command and checks the reply code and the start of its text.
func (c *client) expect(code int, prefix string, format string, a ...any) string {
	c.t.Helper()
	got, msg := c.cmd(format, a...)
	if got != code || !strings.HasPrefix(msg, prefix) {
		c.t.Fatalf("%q: got %d %q, want %d %q...", fmt.Sprintf(format, a...), got, msg, code, prefix)
	}
	return msg
}

func (c *client) greet() {
	c.t.Helper()
	if code, msg := c.reply(); code != 220 {
		c.t.Fatalf("greeting: %d %s", code, msg)
	}
}

func (c *client) ehlo() string {
	c.t.Helper()
	return c.expect(250, "", "EHLO scanner.lan")
}

// raw writes bytes as they are (for DATA bodies with odd line endings).
func (c *client) raw(b string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, b); err != nil {
		c.t.Fatalf("writing: %v", err)
	}
}

// beginData sends MAIL, RCPT and DATA: what the client writes next is the
// body.
func (c *client) beginData(from, to string) {
	c.t.Helper()
	c.expect(250, "", "MAIL FROM:<%s>", from)
	c.expect(250, "", "RCPT TO:<%s>", to)
	c.expect(354, "", "DATA")
}

// send runs a whole transaction and returns the reply to the end of DATA.
func (c *client) send(from, to, body string) (int, string) {
	c.t.Helper()
	c.beginData(from, to)
	c.raw(body)
	return c.reply()
}

// expectReply reads a reply the server sends unprompted (a timeout, a
// limit, a shutdown) and checks its code and the start of its text.
func (c *client) expectReply(code int, prefix string) {
	c.t.Helper()
	got, msg, err := c.replyErr()
	if err != nil || got != code || !strings.HasPrefix(msg, prefix) {
		c.t.Fatalf("got %d %q (%v), want %d %s", got, msg, err, code, prefix)
	}
}

// expectClosed waits for the server to close the connection, as it must
// after a 421 (RFC 5321 3.8) or a refused greeting.
func (c *client) expectClosed() {
	c.t.Helper()
	if err := c.waitClosed(); err != nil {
		c.t.Fatalf("connection not closed: %v", err)
	}
}

// waitClosed waits until the server closes the connection.
func (c *client) waitClosed() error {
	_ = c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := io.Copy(io.Discard, bufio.NewReader(c.conn))
	if err != nil && !errors.Is(err, net.ErrClosed) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return err
		}
	}
	return nil
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustHash(t testing.TB, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

const simpleBody = "Subject: scan\r\nFrom: scanner@corp.example\r\n\r\nHello.\r\n.\r\n"

type netipPrefix = netip.Prefix

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// plainIR is the AUTH PLAIN initial response for user and password.
func plainIR(user, pw string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pw))
}

func newTextConn(c net.Conn) *textproto.Conn { return textproto.NewConn(c) }

// logBuf collects log output; safe for concurrent use by the server.
type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

func slogTo(b *logBuf) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
