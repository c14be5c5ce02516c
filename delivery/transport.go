package delivery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/spoold/spoold/auth"
)

// envelope is what a session sends: the sender and the pending recipients.
type envelope struct {
	ID   string
	From string
	To   []string
}

// rcptResult is one recipient's answer; Err nil means accepted.
type rcptResult struct {
	Addr string
	Err  *SMTPError
}

// sendResult is the outcome of one message on a session. When the returned
// error is nil, Rcpts says per recipient what happened (refused recipients
// carry their error; accepted ones were delivered). Reply is the final reply.
type sendResult struct {
	Rcpts []rcptResult
	Reply string
}

// session is an open upstream connection that can carry several messages.
type session interface {
	// send transmits one message. A whole-message failure is an *SMTPError;
	// errStale means a reused connection died before anything was sent.
	send(ctx context.Context, env envelope, msg io.WriterTo, size int64) (sendResult, error)
	// usable reports whether another message may follow on this session.
	usable() bool
	close()
}

// transport opens sessions for one account.
type transport interface {
	// open connects and logs in; dialOnce skips the quick redial of a
	// refused dial.
	open(ctx context.Context, token string, dialOnce bool) (session, error)
}

// errStale: a reused connection was gone (its RSET or first command failed
// before anything of the message was sent); redial without penalty.
var errStale = errors.New("delivery: reused connection is gone")

// ---- file transport ----

type fileTransport struct{ dir string }

func (t *fileTransport) open(ctx context.Context, _ string, _ bool) (session, error) {
	if err := os.MkdirAll(t.dir, 0o750); err != nil {
		return nil, classify(&SMTPError{Command: "WRITE", Text: "creating outbox dir: " + err.Error(), Err: err})
	}
	return &fileSession{dir: t.dir}, nil
}

type fileSession struct{ dir string }

func (s *fileSession) usable() bool { return true }
func (s *fileSession) close()       {}

// send writes <id>.eml atomically: temp file, fsync, rename, fsync dir.
func (s *fileSession) send(ctx context.Context, env envelope, msg io.WriterTo, _ int64) (sendResult, error) {
	fail := func(what string, err error) (sendResult, error) {
		return sendResult{}, classify(&SMTPError{Command: "WRITE", Text: what + ": " + err.Error(), Err: err})
	}
	if err := ctx.Err(); err != nil {
		return fail("cancelled", err)
	}
	name := filepath.Base(env.ID)
	if name == "." || name == ".." || name == "/" || name != env.ID {
		return sendResult{}, &SMTPError{Command: "WRITE", Class: ClassPermanent, Text: fmt.Sprintf("message id %q is not a valid file name", env.ID)}
	}
	f, err := os.CreateTemp(s.dir, "."+name+".*.tmp")
	if err != nil {
		return fail("creating temp file", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if _, err := msg.WriteTo(f); err != nil {
		f.Close()
		return fail("writing "+tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fail("fsync "+tmp, err)
	}
	if err := f.Close(); err != nil {
		return fail("closing "+tmp, err)
	}
	final := filepath.Join(s.dir, name+".eml")
	if err := os.Rename(tmp, final); err != nil {
		return fail("renaming to "+final, err)
	}
	if d, err := os.Open(s.dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fail("fsync dir "+s.dir, err)
		}
	}
	res := sendResult{Reply: "written to " + final}
	for _, r := range env.To {
		res.Rcpts = append(res.Rcpts, rcptResult{Addr: r})
	}
	return res, nil
}

// ---- SMTP transport ----

type smtpTransport struct {
	cfg      AccountConfig
	tls      *tls.Config
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	hostname string
}

func (t *smtpTransport) open(ctx context.Context, token string, dialOnce bool) (session, error) {
	cfg := t.cfg
	addr := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
	dctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	// A refused or reset dial is retried briefly (a relay restarting); the
	// message's own schedule handles longer outages.
	var raw net.Conn
	redials := uint64(2)
	if dialOnce {
		redials = 0
	}
	b := backoff.WithContext(backoff.WithMaxRetries(&backoff.ExponentialBackOff{
		InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.2, Multiplier: 2,
		MaxInterval: time.Second, MaxElapsedTime: cfg.ConnectTimeout, Stop: backoff.Stop, Clock: backoff.SystemClock,
	}, redials), dctx)
	err := backoff.Retry(func() error {
		var derr error
		raw, derr = t.dial(dctx, "tcp", addr)
		return derr
	}, b)
	if err != nil {
		return nil, netErr("CONNECT", "connecting to "+addr, err)
	}
	// Cancelling the session's context closes the connection: the only way
	// to interrupt a blocked read inside the client. During setup the same
	// holds for ConnectTimeout (go-smtp applies its own per-command timeouts
	// to the greeting and STARTTLS, which we cannot set beforehand).
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	setupStop := context.AfterFunc(dctx, func() { raw.Close() })
	ok := false
	defer func() {
		if !ok {
			stop()
			raw.Close()
		}
	}()
	fail := func(cmd string, err error) (session, error) {
		if dctx.Err() != nil && ctx.Err() == nil {
			return nil, netErr(cmd, fmt.Sprintf("connection setup with %s took longer than %s", addr, cfg.ConnectTimeout), err)
		}
		if cmd == "TLS" {
			return nil, netErr(cmd, "TLS handshake with "+addr, err)
		}
		return nil, convErr(cmd, err)
	}
	var conn net.Conn = raw
	if cfg.TLS == "implicit" {
		tc := tls.Client(raw, t.tls)
		if err := tc.HandshakeContext(dctx); err != nil {
			return fail("TLS", err)
		}
		conn = tc
	}
	var c *smtp.Client
	if cfg.TLS == "starttls" {
		c, err = smtp.NewClientStartTLS(conn, t.tls)
		if err != nil {
			return fail("STARTTLS", err)
		}
	} else {
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout = cfg.CommandTimeout
	c.SubmissionTimeout = cfg.DataTimeout
	if err := c.Hello(t.hostname); err != nil {
		c.Close()
		return fail("EHLO", err)
	}
	var sc sasl.Client
	switch cfg.Auth {
	case "xoauth2":
		sc = auth.NewXOAUTH2Client(cfg.Username, token)
	case "plain":
		sc = sasl.NewPlainClient("", cfg.Username, cfg.Password.Reveal())
	case "login":
		sc = sasl.NewLoginClient(cfg.Username, cfg.Password.Reveal())
	}
	if sc != nil {
		if err := c.Auth(sc); err != nil {
			c.Close()
			return fail("AUTH", err)
		}
	}
	if !setupStop() {
		// The setup deadline fired just now and closed the connection.
		c.Close()
		return fail("AUTH", context.DeadlineExceeded)
	}
	ok = true
	return &smtpSession{c: c, raw: raw, cfg: cfg, stop: stop}, nil
}

// bdatChunkSize is the BDAT chunk (RFC 3030) used when the upstream offers
// CHUNKING; 0 sends every message with DATA. It is 0: BDAT did not
// measurably help. BenchmarkRelayChunking (cmd/spoold/benchtest: the same
// sink with and without CHUNKING behind the delaying proxy, 300 messages, 10
// clients, 2 CPUs, 256 KiB chunks, 3 alternating repetitions, medians):
//
//	size  one-way  msg/s BDAT / DATA   spoold CPU ms/msg BDAT / DATA
//	4 KB  0 ms     340 / 376           1.77 / 1.57
//	4 KB  20 ms    183 / 181           2.20 / 2.17
//	1 MB  0 ms     70 / 57, 65 / 89    10.37 / 10.67, 9.63 / 9.93
//	1 MB  20 ms    77 / 57, 63 / 57    9.77 / 11.00, 10.17 / 11.03
//
// (1 MB measured twice.) A 4 KB message costs the same 2 round trips either
// way (the MAIL/RCPT group, then the body), and the dot writer already copies
// whole runs, so only 1 MB messages save CPU (3-11%), while end-to-end
// throughput stayed within the run-to-run spread.
//
// Measured again once the dot writer passed whole clean lines on in one
// write (so DATA, too, sends a stored 1 MB body in a few large writes with
// one scan per line), 200 messages, 10 clients, 64 KiB chunks, no delay,
// alternating repetitions on a busy 2-CPU machine, medians [spread]:
//
//	size  msg/s BDAT / DATA                          spoold CPU ms/msg BDAT / DATA
//	4 KB  264 [179..279] / 243 [215..320]            1.60 [1.55..1.65] / 1.65 [1.50..1.90]
//	1 MB  60 [42..64] / 47 [46..48]                  6.55 [6.50..6.85] / 6.25 [5.90..7.40]
//	1 MB  53 [50..60] / 55 [37..57] (4 repetitions)  7.17 [7.00..7.65] / 7.17 [6.50..7.35]
//
// Still no difference beyond the spread: what BDAT saves (the dot-stuffing
// scan) is now one IndexByte per line, and its chunks are copied into the
// client's write buffer where DATA's large runs go to the socket directly.
// DATA stays. Setting a size here turns BDAT on for every upstream that
// offers it; TestChunkingSameMessage keeps that path tested.
var bdatChunkSize = 0

type smtpSession struct {
	c      *smtp.Client
	raw    net.Conn
	cfg    AccountConfig
	stop   func() bool
	used   bool // a message was sent on it
	open   bool // a transaction was started and not completed: RSET first
	broken bool
	once   sync.Once
}

func (s *smtpSession) usable() bool { return !s.broken }

func (s *smtpSession) close() {
	s.once.Do(func() {
		if !s.broken {
			s.raw.SetDeadline(time.Now().Add(5 * time.Second))
			s.c.Quit()
		}
		s.c.Close()
		s.stop()
	})
}

// errWriter remembers write errors so they can be told from body read errors.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(b []byte) (int, error) {
	n, err := e.w.Write(b)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}

func (s *smtpSession) send(ctx context.Context, env envelope, msg io.WriterTo, size int64) (sendResult, error) {
	var res sendResult
	if s.broken {
		return res, errStale
	}
	// RFC 5321 section 4.1.4: after a completed transaction the next MAIL
	// may follow directly; RSET only clears one that failed midway.
	if s.open {
		if err := s.c.Reset(); err != nil {
			s.broken = true
			return res, errStale
		}
		s.open = false
	}
	reused := s.used
	s.used = true
	if max, ok := s.c.MaxMessageSize(); ok && max > 0 && size > int64(max) {
		return res, &SMTPError{Code: 552, Enhanced: "5.3.4", Command: "MAIL", Class: ClassPermanent,
			Text: fmt.Sprintf("message of %d bytes is larger than the upstream limit of %d bytes", size, max)}
	}
	var mo *smtp.MailOptions
	if !asciiOnly(env.From) || !asciiOnly(env.To...) {
		// Internationalised addresses need SMTPUTF8; without it the server refuses them per recipient.
		if ok, _ := s.c.Extension("SMTPUTF8"); ok {
			mo = &smtp.MailOptions{UTF8: true}
		}
	}
	// MAIL, every RCPT and DATA: one round trip when the upstream offers
	// PIPELINING (RFC 2920), one per command otherwise.
	s.open = true
	var rcptErrs []error
	var w *smtp.DataCommand
	var err error
	if ok, _ := s.c.Extension("CHUNKING"); ok && bdatChunkSize > 0 {
		rcptErrs, w, err = s.c.MailRcptBdat(env.From, mo, env.To, nil, bdatChunkSize)
	} else {
		rcptErrs, w, err = s.c.MailRcptData(env.From, mo, env.To, nil)
	}
	if err != nil {
		cmd := "MAIL"
		if rcptErrs != nil {
			cmd = "DATA"
		}
		e := s.fail(cmd, err)
		if reused && (e.Code == 0 || e.Code == 421) {
			// The upstream closed the connection while it idled (nothing of
			// this message went out): redial without penalty, as a failed
			// RSET did.
			s.broken = true
			return res, errStale
		}
		if rcptErrs == nil || e.Code == 0 {
			return res, e
		}
	}
	accepted := 0
	for i, to := range env.To {
		if rcptErrs[i] == nil {
			accepted++
			res.Rcpts = append(res.Rcpts, rcptResult{Addr: to})
			continue
		}
		res.Rcpts = append(res.Rcpts, rcptResult{Addr: to, Err: convErr("RCPT", rcptErrs[i])})
	}
	if err != nil {
		return res, convErr("DATA", err) // refused; the transaction stays open
	}
	if accepted == 0 {
		return res, nil // the next send starts with RSET
	}
	s.raw.SetDeadline(time.Now().Add(s.cfg.DataTimeout))
	ew := &errWriter{w: w}
	var werr error
	if p, ok := msg.(*prepared); ok {
		_, werr = p.writeTo(ew, false) // w normalises line ends itself
	} else {
		_, werr = msg.WriteTo(ew)
	}
	if err := werr; err != nil {
		// DATA cannot be aborted: drop the connection so nothing half-written is accepted.
		s.broken = true
		s.c.Close()
		if se := (*smtp.SMTPError)(nil); errors.As(ew.err, &se) {
			return res, convErr("DATA", ew.err) // a BDAT chunk refused
		}
		if ew.err != nil {
			return res, netErr("DATA", "sending the message body", ew.err)
		}
		return res, &SMTPError{Command: "DATA", Class: ClassInternal, Text: "reading the spooled body: " + err.Error(), Err: err}
	}
	resp, err := w.CloseWithResponse()
	s.raw.SetDeadline(time.Time{})
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return res, convErr("DATA", err)
		}
		// No reply to the final dot: the upstream may have accepted the message.
		s.broken = true
		e := netErr("DATA", "no reply after the final dot", err)
		e.Class = ClassUnknown
		return res, e
	}
	res.Reply = resp.StatusText
	s.open = false
	return res, nil
}

// fail converts err; network errors mark the session broken.
func (s *smtpSession) fail(cmd string, err error) *SMTPError {
	e := convErr(cmd, err)
	if e.Code == 0 {
		s.broken = true
	}
	return e
}

// convErr converts a go-smtp or network error into an *SMTPError.
func convErr(cmd string, err error) *SMTPError {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		e := &SMTPError{Code: se.Code, Command: cmd, Text: se.Message}
		if se.EnhancedCode != smtp.NoEnhancedCode && se.EnhancedCode != (smtp.EnhancedCode{}) {
			e.Enhanced = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		}
		return classify(e)
	}
	return netErr(cmd, "", err)
}

func netErr(cmd, what string, err error) *SMTPError {
	text := err.Error()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		text = "timeout: " + text
	}
	if what != "" {
		text = what + ": " + text
	}
	return classify(&SMTPError{Command: cmd, Text: text, Err: err})
}

func asciiOnly(ss ...string) bool {
	for _, s := range ss {
		for i := 0; i < len(s); i++ {
			if s[i] >= 0x80 {
				return false
			}
		}
	}
	return true
}
