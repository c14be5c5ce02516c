// Package smtpfake is a scripted in-process SMTP upstream for delivery tests
// and benchmarks: it speaks STARTTLS or implicit TLS with a generated
// self-signed certificate, requires AUTH XOAUTH2 (or PLAIN) when asked,
// answers every command from a script (accept, 4xx/5xx, drop the connection,
// hang) and counts concurrent sessions. SetOutage plays an upstream that is
// down (connections refused, reset, or answered 421 at the greeting) and Dial
// counts every connection attempt. RoundTrips counts the client's turns
// (the server waiting for the client after it answered) and Commands the
// verbs received, for the pipelining tests. It listens on 127.0.0.1 only.
package smtpfake

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Command is one client command as the script sees it.
type Command struct {
	Name    string // AUTH, MAIL, RCPT, DATA (after the body was read)
	Arg     string // address for MAIL/RCPT; the token for AUTH
	Session int    // 1-based session number
	Data    []byte // the body, for DATA
}

// Reply is what the script answers. The zero Reply accepts.
type Reply struct {
	Code     int    // 0 = accept
	Enhanced string // "4.3.2"
	Text     string
	Drop     bool          // close the connection instead of answering
	Hang     time.Duration // wait this long (or until Close) before answering
}

// Message is one accepted message.
type Message struct {
	From    string
	To      []string
	Data    []byte
	Session int
}

// Options configures the server.
type Options struct {
	TLS      string // "starttls" (default), "implicit" or "none"
	Auth     string // "xoauth2" (default), "plain" or "none"
	User     string // PLAIN user
	Password string // PLAIN password
	// Script answers each command; nil accepts everything. It may be called
	// from several sessions at once.
	Script func(Command) Reply
	// Discard keeps only counts, not bodies (benchmarks).
	Discard bool
	// SessionDelay is added at the start of every session (to make
	// concurrency observable).
	SessionDelay time.Duration
	Dir          string // where the CA file is written; default os.TempDir()
	SMTPUTF8     bool   // advertise SMTPUTF8
	// NoPipelining leaves PIPELINING out of the EHLO reply, as old relays
	// do. It needs TLS "none" or "implicit" (the reply is edited above TLS).
	NoPipelining bool
	// NoChunking leaves CHUNKING (RFC 3030, BDAT) out of the EHLO reply; the
	// server offers it otherwise, as Exchange Online does. Same TLS limits as
	// NoPipelining.
	NoChunking bool
}

// Server is a running fake upstream.
type Server struct {
	Addr   string // 127.0.0.1:port
	Host   string
	Port   int
	CAFile string // PEM of the self-signed certificate, for AccountConfig.CAFile

	opts Options
	srv  *smtp.Server
	ln   net.Listener
	stop chan struct{}

	mu            sync.Mutex
	msgs          []Message
	count         int
	sessions      int
	concurrent    int
	maxConcurrent int
	tokens        []string
	closeOnce     sync.Once
	outage        Outage
	dials         int
	accepted      int
	commands      map[string]int
	turns         map[string]*turnConn // by client address
	roundTrips    int
	handshakes    int
	resumed       int
}

// Outage is how the server behaves while it is down (SetOutage).
type Outage int

const (
	// Up serves normally.
	Up Outage = iota
	// Refuse: Dial fails with ECONNREFUSED without connecting, exactly as
	// the kernel answers for a closed port; a connection made otherwise
	// (another process) is reset at once. The listener stays open, so the
	// port cannot be taken by someone else while the upstream is "down".
	Refuse
	// Reset: every new connection is closed at once (RST), before the greeting.
	Reset
	// Greet421 answers "421 4.3.2 Service not available" as the greeting and
	// closes, like a server in maintenance.
	Greet421
)

// SetOutage switches the server's behaviour for new connections; sessions
// already open go on.
func (s *Server) SetOutage(o Outage) {
	s.mu.Lock()
	s.outage = o
	s.mu.Unlock()
}

// Dial is a dialer for the client under test (delivery.Options.Dial): it
// counts every attempt and refuses while the outage is Refuse.
func (s *Server) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	s.mu.Lock()
	s.dials++
	o := s.outage
	s.mu.Unlock()
	if o == Refuse {
		return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// Dials returns how many connection attempts went through Dial.
func (s *Server) Dials() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dials
}

// Accepted returns how many TCP connections the listener accepted, including
// those an outage reset or answered with 421.
func (s *Server) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// outageListener applies the outage below TLS, where a real server's
// connection handling starts.
type outageListener struct {
	net.Listener
	s *Server
}

func (l outageListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.s.mu.Lock()
		l.s.accepted++
		o := l.s.outage
		l.s.mu.Unlock()
		switch o {
		case Up:
			return c, nil
		case Greet421:
			// Written off the accept loop: a client that does not read
			// must not stall the listener.
			go func() {
				c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				io.WriteString(c, "421 4.3.2 fake.upstream Service not available, closing transmission channel\r\n")
				c.Close()
			}()
		default:
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // RST, as a host whose service is gone
			}
			c.Close()
		}
	}
}

// Start starts a server on 127.0.0.1 with a random port.
func Start(opts Options) (*Server, error) {
	if opts.TLS == "" {
		opts.TLS = "starttls"
	}
	if opts.Auth == "" {
		opts.Auth = "xoauth2"
	}
	s := &Server{opts: opts, stop: make(chan struct{}), commands: map[string]int{}, turns: map[string]*turnConn{}}
	s.srv = smtp.NewServer(smtp.BackendFunc(s.newSession))
	s.srv.Domain = "fake.upstream"
	s.srv.ReadTimeout = time.Minute
	s.srv.WriteTimeout = time.Minute
	s.srv.MaxMessageBytes = 64 << 20
	s.srv.ErrorLog = nopLogger{}
	s.srv.EnableSMTPUTF8 = opts.SMTPUTF8
	var err error
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("smtpfake: listen: %w", err)
	}
	if (opts.NoPipelining || opts.NoChunking) && opts.TLS == "starttls" {
		ln.Close()
		return nil, errors.New("smtpfake: NoPipelining and NoChunking need TLS none or implicit")
	}
	var drop [][]byte
	if opts.NoPipelining {
		drop = append(drop, []byte("250-PIPELINING\r\n"))
	}
	if opts.NoChunking {
		drop = append(drop, []byte("250-CHUNKING\r\n"))
	}
	ln = turnListener{Listener: outageListener{Listener: ln, s: s}, s: s}
	if opts.TLS != "none" {
		cert, pemBytes, err := selfSigned()
		if err != nil {
			ln.Close()
			return nil, err
		}
		dir := opts.Dir
		if dir == "" {
			dir = os.TempDir()
		}
		f, err := os.CreateTemp(dir, "smtpfake-ca-*.pem")
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("smtpfake: writing CA file: %w", err)
		}
		f.Write(pemBytes)
		f.Close()
		s.CAFile = f.Name()
		tc := &tls.Config{Certificates: []tls.Certificate{cert},
			VerifyConnection: func(cs tls.ConnectionState) error {
				s.mu.Lock()
				s.handshakes++
				if cs.DidResume {
					s.resumed++
				}
				s.mu.Unlock()
				return nil
			}}
		if opts.TLS == "implicit" {
			ln = tls.NewListener(ln, tc)
			if drop != nil {
				// The wrapper hides the *tls.Conn from go-smtp, which then
				// takes the connection for plain text and refuses AUTH.
				ln = capsFilterListener{ln, drop}
				s.srv.AllowInsecureAuth = true
			}
		} else {
			s.srv.TLSConfig = tc
		}
	} else {
		s.srv.AllowInsecureAuth = true
		if drop != nil {
			ln = capsFilterListener{ln, drop}
		}
	}
	s.srv.CommandHook = s.commandHook
	s.ln = ln
	s.Addr = ln.Addr().String()
	s.Host = "127.0.0.1"
	s.Port = ln.Addr().(*net.TCPAddr).Port
	go s.srv.Serve(ln)
	return s, nil
}

// Close stops the server, releases hanging answers and removes the CA file.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.stop)
		// Serve registers the listener in its own goroutine; a Close right
		// after Start can come first and find nothing to close, so close
		// it here too (a second Close of a listener is harmless).
		s.ln.Close()
		s.srv.Close()
		if s.CAFile != "" {
			os.Remove(s.CAFile)
		}
	})
}

// Messages returns the accepted messages so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Count returns how many messages were accepted.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Sessions returns the number of sessions (connections) so far.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

// MaxConcurrent returns the largest number of simultaneous sessions seen. A
// session counts until the server has closed it, a moment after the client
// got the QUIT reply, so a client reconnecting at once may be counted +1.
func (s *Server) MaxConcurrent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxConcurrent
}

// Tokens returns the XOAUTH2 tokens presented, in order.
func (s *Server) Tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.tokens...)
}

// Handshakes returns the TLS handshakes completed and how many of them
// resumed an earlier session.
func (s *Server) Handshakes() (all, resumed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handshakes, s.resumed
}

// Commands returns how many times the server received the verb (EHLO,
// MAIL, RCPT, DATA, RSET, NOOP, QUIT...).
func (s *Server) Commands(verb string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commands[strings.ToUpper(verb)]
}

// RoundTrips returns the client's turns counted since each session's first
// MAIL: how often the server, having answered, had to wait for more input.
// Connection setup (greeting, TLS, EHLO, AUTH) is left out, so the figure is
// the per-message cost: 2 per message with PIPELINING and no RSET (the
// command group, the body), plus the final QUIT.
func (s *Server) RoundTrips() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.roundTrips
}

func (s *Server) commandHook(c *smtp.Conn, verb string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commands[verb]++
	if verb == "MAIL" {
		if tc := s.turns[c.Conn().RemoteAddr().String()]; tc != nil {
			tc.counting = true
		}
	}
	return nil
}

// turnListener counts round trips on each accepted connection (below TLS).
type turnListener struct {
	net.Listener
	s *Server
}

func (l turnListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &turnConn{Conn: c, s: l.s}
	key := c.RemoteAddr().String()
	l.s.mu.Lock()
	l.s.turns[key] = tc
	l.s.mu.Unlock()
	return tc, nil
}

// turnConn counts a turn each time a read follows a write. Its fields are
// guarded by Server.mu (the hook sets counting from the session goroutine).
type turnConn struct {
	net.Conn
	s        *Server
	wrote    bool
	counting bool
	once     sync.Once
}

func (c *turnConn) Read(b []byte) (int, error) {
	c.s.mu.Lock()
	if c.wrote && c.counting {
		c.s.roundTrips++
	}
	c.wrote = false
	c.s.mu.Unlock()
	return c.Conn.Read(b)
}

func (c *turnConn) Write(b []byte) (int, error) {
	c.s.mu.Lock()
	c.wrote = true
	c.s.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *turnConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.turns, c.RemoteAddr().String())
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

// capsFilterListener removes capability lines from the EHLO reply.
type capsFilterListener struct {
	net.Listener
	drop [][]byte
}

func (l capsFilterListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return capsFilterConn{c, l.drop}, nil
}

type capsFilterConn struct {
	net.Conn
	drop [][]byte
}

// Write drops the capability lines; go-smtp writes the whole EHLO reply in
// one call, and SIZE is always its last line.
func (c capsFilterConn) Write(b []byte) (int, error) {
	out := b
	if bytes.HasPrefix(b, []byte("250-")) {
		for _, d := range c.drop {
			out = bytes.Replace(out, d, nil, 1)
		}
	}
	if len(out) != len(b) {
		if _, err := c.Conn.Write(out); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return c.Conn.Write(b)
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...interface{}) {}
func (nopLogger) Println(...interface{})        {}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	s.mu.Lock()
	s.sessions++
	s.concurrent++
	if s.concurrent > s.maxConcurrent {
		s.maxConcurrent = s.concurrent
	}
	n := s.sessions
	s.mu.Unlock()
	if d := s.opts.SessionDelay; d > 0 {
		select {
		case <-time.After(d):
		case <-s.stop:
		}
	}
	return &session{s: s, c: c, n: n}, nil
}

type session struct {
	s      *Server
	c      *smtp.Conn
	n      int
	authed bool
	from   string
	to     []string
	ended  bool
}

// answer runs the script for cmd and turns its reply into an error.
func (ss *session) answer(cmd Command) error {
	if ss.s.opts.Script == nil {
		return nil
	}
	cmd.Session = ss.n
	r := ss.s.opts.Script(cmd)
	if r.Hang > 0 {
		select {
		case <-time.After(r.Hang):
		case <-ss.s.stop:
		}
	}
	if r.Drop {
		ss.c.Conn().Close()
		return errors.New("dropped")
	}
	if r.Code == 0 {
		return nil
	}
	e := &smtp.SMTPError{Code: r.Code, Message: r.Text, EnhancedCode: smtp.NoEnhancedCode}
	if r.Enhanced != "" {
		var a, b, c int
		if _, err := fmt.Sscanf(r.Enhanced, "%d.%d.%d", &a, &b, &c); err == nil {
			e.EnhancedCode = smtp.EnhancedCode{a, b, c}
		}
	}
	return e
}

func (ss *session) AuthMechanisms() []string {
	switch ss.s.opts.Auth {
	case "xoauth2":
		return []string{"XOAUTH2"}
	case "plain":
		return []string{sasl.Plain}
	}
	return nil
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	switch {
	case mech == "XOAUTH2" && ss.s.opts.Auth == "xoauth2":
		return &xoauth2Server{ss: ss}, nil
	case mech == sasl.Plain && ss.s.opts.Auth == "plain":
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if username != ss.s.opts.User || password != ss.s.opts.Password {
				return smtp.ErrAuthFailed
			}
			if err := ss.answer(Command{Name: "AUTH", Arg: username}); err != nil {
				return err
			}
			ss.authed = true
			return nil
		}), nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// xoauth2Server checks "user=...\x01auth=Bearer TOKEN\x01\x01"; a refusal is
// sent as a 334 error challenge first, like Gmail and Microsoft do.
type xoauth2Server struct {
	ss      *session
	failure error
}

func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	if x.failure != nil {
		return nil, true, x.failure
	}
	parts := strings.Split(string(resp), "\x01")
	token := ""
	for _, p := range parts {
		if t, ok := strings.CutPrefix(p, "auth=Bearer "); ok {
			token = t
		}
	}
	if !strings.HasPrefix(string(resp), "user=") || token == "" {
		return nil, true, &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "malformed XOAUTH2"}
	}
	x.ss.s.mu.Lock()
	x.ss.s.tokens = append(x.ss.s.tokens, token)
	x.ss.s.mu.Unlock()
	if err := x.ss.answer(Command{Name: "AUTH", Arg: token}); err != nil {
		x.failure = err
		return []byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`), false, nil
	}
	x.ss.authed = true
	return nil, true, nil
}

func (ss *session) needAuth() error {
	if ss.s.opts.Auth != "none" && !ss.authed {
		return smtp.ErrAuthRequired
	}
	return nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if err := ss.needAuth(); err != nil {
		return err
	}
	if err := ss.answer(Command{Name: "MAIL", Arg: from}); err != nil {
		return err
	}
	ss.from, ss.to = from, nil
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := ss.needAuth(); err != nil {
		return err
	}
	if err := ss.answer(Command{Name: "RCPT", Arg: to}); err != nil {
		return err
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	var data []byte
	if ss.s.opts.Discard && ss.s.opts.Script == nil {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return err
		}
	} else {
		var buf bytes.Buffer
		if _, err := io.Copy(&buf, r); err != nil {
			return err
		}
		data = buf.Bytes()
	}
	if err := ss.answer(Command{Name: "DATA", Data: data}); err != nil {
		return err
	}
	ss.s.mu.Lock()
	ss.s.count++
	if !ss.s.opts.Discard {
		ss.s.msgs = append(ss.s.msgs, Message{From: ss.from, To: ss.to, Data: data, Session: ss.n})
	}
	ss.s.mu.Unlock()
	return nil
}

func (ss *session) Reset() { ss.from, ss.to = "", nil }

func (ss *session) Logout() error {
	ss.s.mu.Lock()
	if !ss.ended {
		ss.ended = true
		ss.s.concurrent--
	}
	ss.s.mu.Unlock()
	return nil
}

// selfSigned makes a certificate for 127.0.0.1 and localhost.
func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("smtpfake: key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "smtpfake"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("smtpfake: certificate: %w", err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pemBytes, nil
}
