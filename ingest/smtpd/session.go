package smtpd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/notice"
)

func smtpErr(code int, enh smtp.EnhancedCode, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

var (
	errAuthRequired    = smtpErr(530, smtp.EnhancedCode{5, 7, 0}, "Authentication required")
	errEncryptRequired = smtpErr(538, smtp.EnhancedCode{5, 7, 11}, "Encryption required for requested authentication mechanism")
	errAuthFailed      = smtpErr(535, smtp.EnhancedCode{5, 7, 8}, "Authentication credentials invalid")
	errNestedMail      = smtpErr(503, smtp.EnhancedCode{5, 5, 1}, "Sender already specified")
	errSpoolUnavail    = smtpErr(452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage, try again later")
	errShuttingDown    = smtpErr(421, smtp.EnhancedCode{4, 3, 2}, "Service shutting down, try again later")
	errSizeAtMail      = smtpErr(552, smtp.EnhancedCode{5, 3, 4}, "Message size exceeds fixed maximum message size")
)

// session is one SMTP session. go-smtp calls it from the connection's
// goroutine, except Data for BDAT, which runs on its own goroutine while the
// connection goroutine may still process RSET or AUTH: mu guards what both
// touch.
type session struct {
	ls        *listenerState
	conn      *smtp.Conn
	tc        *trackedConn
	ip        netip.Addr
	inNetwork bool
	isTLS     bool
	helo      string
	log       *slog.Logger

	mu          sync.Mutex
	authUser    string
	userAccount string

	// Current transaction.
	hasMail bool
	from    string
	to      []string
	account string
	maxSize int64

	goodbyeAfterReply bool
	// closeAfterReply: Data answered 421, which closes the transmission
	// channel (RFC 5321 section 3.8); go-smtp would read on.
	closeAfterReply bool
}

func (ls *listenerState) newSession(c *smtp.Conn) (smtp.Session, error) {
	tc := unwrapTracked(c.Conn())
	if tc != nil {
		tc.setTop(c.Conn())
	}
	ip := remoteIP(c.Conn().RemoteAddr())
	_, isTLS := c.TLSConnectionState()
	return &session{
		ls:        ls,
		conn:      c,
		tc:        tc,
		ip:        ip,
		inNetwork: ls.inNetworks(ip),
		isTLS:     isTLS,
		helo:      c.Hostname(),
		log:       ls.log.With("peer", ip.String()),
	}, nil
}

var (
	errTooManyJunk   = smtpErr(421, smtp.EnhancedCode{4, 7, 0}, "Too many junk commands, closing connection")
	errTooManyErrors = smtpErr(421, smtp.EnhancedCode{4, 7, 0}, "Too many errors, closing connection")
	errClosing       = smtpErr(421, smtp.EnhancedCode{4, 4, 2}, "Connection closed")
)

// commandHook runs before every command (go-smtp's CommandHook): it enforces
// the junk command and hard error limits, which need commands go-smtp
// answers itself, and stops a session whose connection smtpd has closed
// from running commands the client had already pipelined.
func (ls *listenerState) commandHook(c *smtp.Conn, cmd string) error {
	tc := unwrapTracked(c.Conn())
	if tc == nil {
		return nil
	}
	tc.mu.Lock()
	closed := tc.closed
	tc.mu.Unlock()
	if closed {
		return errClosing
	}
	refuse := func(reason string, e *smtp.SMTPError, n int32) error {
		ls.srv.metrics.rejections.WithLabelValues(ls.cfg.Name, reason).Inc()
		ls.log.Info("session closed", "peer", tc.ip.String(), "reason", reason, "count", n)
		return e
	}
	if lim := ls.cfg.HardErrorLimit; lim > 0 && cmd != "QUIT" { // a client that wants to leave may
		if n := tc.hardErrors.Load(); n >= int32(lim) {
			return refuse("hard_errors", errTooManyErrors, n)
		}
	}
	switch cmd {
	case "NOOP", "RSET", "VRFY", "HELP", "EXPN":
		if n := tc.junk.Add(1); ls.cfg.JunkCommandLimit > 0 && n > int32(ls.cfg.JunkCommandLimit) {
			return refuse("junk_commands", errTooManyJunk, n)
		}
	}
	return nil
}

// reject counts a refusal and returns its reply.
func (s *session) reject(reason string, e *smtp.SMTPError) error {
	if s.tc != nil {
		s.tc.hardErrors.Add(1)
	}
	s.ls.srv.metrics.rejections.WithLabelValues(s.ls.cfg.Name, reason).Inc()
	s.log.Info("command refused", "reason", reason, "code", e.Code, "reply", e.Message)
	return e
}

func (s *session) Reset() {
	s.mu.Lock()
	s.hasMail, s.from, s.to, s.account, s.maxSize = false, "", nil, "", 0
	goodbye, closeNow := s.goodbyeAfterReply, s.closeAfterReply
	s.mu.Unlock()
	if closeNow && s.tc != nil {
		// The 421 is out (go-smtp resets after replying): just close.
		s.tc.mu.Lock()
		s.tc.closed = true
		_ = s.tc.Close()
		s.tc.mu.Unlock()
		return
	}
	if goodbye && s.tc != nil {
		// Shutdown began during DATA; the DATA reply is out, now say 421.
		s.tc.mu.Lock()
		s.tc.sayGoodbyeLocked(replyShutdown)
		s.tc.mu.Unlock()
	}
}

func (s *session) Logout() error { return nil }

// authOffered: AUTH needs users, and TLS unless the listener is legacy and
// the client is in an allowed network (plain-text passwords stay on the LAN).
func (s *session) authOffered() bool {
	if len(s.ls.users.Load().byName) == 0 {
		return false
	}
	return s.isTLS || (s.ls.cfg.Legacy && s.inNetwork)
}

func (s *session) AuthMechanisms() []string {
	if !s.authOffered() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	if len(s.ls.users.Load().byName) == 0 {
		return nil, smtp.ErrAuthUnsupported
	}
	if !s.authOffered() {
		return nil, s.reject("auth_needs_tls", errEncryptRequired)
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return s.authFailed(username)
			}
			return s.authenticate(username, password)
		}), nil
	case sasl.Login:
		return &loginServer{check: s.authenticate}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// authenticate checks a password. Neither the password nor the SASL payload
// is ever logged; the user name is.
func (s *session) authenticate(username, password string) error {
	u, ok := s.ls.users.Load().check(username, password)
	if !ok {
		return s.authFailed(username)
	}
	s.mu.Lock()
	s.authUser, s.userAccount = u.Name, u.Account
	s.mu.Unlock()
	s.log.Info("auth succeeded", "user", u.Name)
	return nil
}

func (s *session) authFailed(username string) error {
	n := s.ls.throttle.fail(s.ip, s.ls.srv.clock())
	s.log.Warn("auth failed", "user", username, "failures_in_window", n)
	if n >= s.ls.cfg.AuthFailureLimit {
		s.ls.srv.metrics.rejections.WithLabelValues(s.ls.cfg.Name, "auth_throttled").Inc()
		if s.tc != nil {
			s.tc.mu.Lock()
			s.tc.sayGoodbyeLocked("421 4.7.0 Too many authentication failures, try again later")
			s.tc.mu.Unlock()
		}
		return smtpErr(421, smtp.EnhancedCode{4, 7, 0}, "Too many authentication failures, try again later")
	}
	if d := s.ls.srv.authDelay; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-s.ls.srv.baseCtx.Done():
			t.Stop()
		}
	}
	return s.reject("auth_failed", errAuthFailed)
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := &s.ls.cfg
	if s.hasMail {
		return errNestedMail
	}
	if s.authUser == "" && (!s.inNetwork || cfg.RequireAuth) {
		return s.reject("auth_required", errAuthRequired)
	}
	if from != "" {
		if err := checkAddress(from); err != nil {
			return s.reject("bad_address", smtpErr(553, smtp.EnhancedCode{5, 1, 7}, "Bad sender address syntax: "+err.Error()))
		}
	}
	if !domainAllowedSender(cfg.AllowedSenderDomains, from) {
		return s.reject("sender_domain", smtpErr(553, smtp.EnhancedCode{5, 7, 1}, "Sender domain not allowed on this listener"))
	}
	account := s.route(from)
	if account == "" {
		return s.reject("unroutable", smtpErr(451, smtp.EnhancedCode{4, 3, 0},
			"No upstream account is configured for this sender; ask the administrator to add a route"))
	}
	maxSize := cfg.MaxMessageSize
	if m := s.ls.srv.routes.Load().AccountMaxSize[account]; m > 0 && m < maxSize {
		maxSize = m
	}
	if opts != nil && opts.Size > maxSize {
		return s.reject("size", smtpErr(errSizeAtMail.Code, errSizeAtMail.EnhancedCode,
			fmt.Sprintf("Message size exceeds fixed maximum message size (%d bytes)", maxSize)))
	}
	s.hasMail, s.from, s.account, s.maxSize = true, from, account, maxSize
	return nil
}

func domainAllowedSender(list []string, from string) bool {
	if len(list) == 0 {
		return true
	}
	return from != "" && domainAllowed(list, from)
}

// route picks the account: user route > sender-domain route > listener
// account > default. The caller holds mu.
func (s *session) route(from string) string {
	r := s.ls.srv.routes.Load()
	if s.authUser != "" {
		if s.userAccount != "" {
			return s.userAccount
		}
		if a := r.ByUser[s.authUser]; a != "" {
			return a
		}
	}
	if d := domainOf(from); d != "" {
		if a := r.BySenderDomain[d]; a != "" {
			return a
		}
	}
	if s.ls.cfg.Account != "" {
		return s.ls.cfg.Account
	}
	return r.Default
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := checkAddress(to); err != nil {
		return s.reject("bad_address", smtpErr(501, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax: "+err.Error()))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !domainAllowed(s.ls.cfg.AllowedRecipientDomains, to) {
		return s.reject("recipient_domain", smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "Recipient domain not allowed on this listener"))
	}
	for _, t := range s.to {
		if strings.EqualFold(t, to) {
			return nil // a duplicate is accepted once
		}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	err := s.data(r)
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code == 421 {
		s.mu.Lock()
		s.closeAfterReply = true
		s.mu.Unlock()
	}
	return err
}

func (s *session) data(r io.Reader) error {
	if s.tc != nil {
		s.tc.mu.Lock()
		s.tc.inData = true
		s.tc.mu.Unlock()
		s.tc.startData(s.ls.cfg.ReadTimeout, s.ls.cfg.DataMinRate, s.ls.cfg.DataRateGrace)
		defer func() {
			s.tc.endData()
			s.tc.mu.Lock()
			s.tc.inData = false
			goodbye := s.tc.closeAfterData
			s.tc.mu.Unlock()
			s.mu.Lock()
			s.goodbyeAfterReply = goodbye
			s.mu.Unlock()
		}()
	}
	cfg := &s.ls.cfg
	srv := s.ls.srv
	s.mu.Lock()
	tx := txSnapshot{from: s.from, to: slices.Clone(s.to), account: s.account, maxSize: s.maxSize, authUser: s.authUser}
	s.mu.Unlock()
	lim := &sizeLimiter{r: r, max: tx.maxSize}
	bufs := srv.bufs.Get().(*bodyBufs)
	// Enqueue has stopped reading when it returns; go-smtp drains r itself.
	defer srv.bufs.Put(bufs)
	body := &errTracker{r: newHeaderFixer(newLineEndings(lim, cfg.BareLF == BareLFNormalize, bufs),
		s.receivedHeader(tx), s.missingHeaders, bufs)}
	req := spool.EnqueueRequest{
		From:    tx.from,
		To:      tx.to,
		Account: tx.account,
		Source: spool.Source{
			Kind:     spool.SourceSMTP,
			Listener: cfg.Name,
			PeerIP:   s.ip.String(),
			AuthUser: tx.authUser,
			HELO:     s.helo,
		},
	}
	start := time.Now()
	id, err := srv.enq.Enqueue(srv.baseCtx, req, body)
	if err != nil {
		if body.err != nil {
			reply, reason := bodyReply(body.err, cfg.MaxLineLength)
			if reason == "data_too_slow" {
				// Enough for an admin to tell a stalled device from a limit set too high.
				s.log.Warn("message data arrived below smtp_listeners.data_min_rate; session closed",
					"bytes", lim.n, "took", time.Since(start).Round(time.Millisecond),
					"data_min_rate", cfg.DataMinRate, "data_rate_grace", cfg.DataRateGrace)
			}
			return s.reject(reason, reply)
		}
		if srv.baseCtx.Err() != nil {
			s.log.Warn("message not accepted: shutdown", "account", tx.account, "err", err)
			return s.reject("shutdown", errShuttingDown)
		}
		kind := "storage error"
		switch {
		case errors.Is(err, spool.ErrNoSpace):
			kind = "spool full"
		case errors.Is(err, spool.ErrClosed):
			kind = "spool closed"
		case errors.Is(err, spool.ErrUnavailable):
			kind = "spool database unreachable"
		}
		s.log.Error("message not accepted: "+kind, "account", tx.account, "err", err)
		return s.reject("spool_unavailable", errSpoolUnavail)
	}
	if s.tc != nil {
		// A client that delivers is not idling or probing.
		s.tc.junk.Store(0)
		s.tc.hardErrors.Store(0)
	}
	from := tx.from
	if from == "" {
		from = "<>" // the null sender, as SMTP writes it
	}
	attrs := []any{"msg_id", id, "account", tx.account, "from", from, "recipients", len(req.To), "size", lim.n}
	if tx.authUser != "" { // a client from allowed_networks has none: no auth_user=""
		attrs = append(attrs, "auth_user", tx.authUser)
	}
	s.log.Info("message accepted", append(attrs, "took", time.Since(start).Round(time.Millisecond))...)
	// go-smtp sends the code of a returned SMTPError as is, so 250 carries the ID.
	return smtpErr(250, smtp.EnhancedCode{2, 0, 0}, "OK queued as "+id)
}

// txSnapshot is what Data needs of the transaction, copied under mu.
type txSnapshot struct {
	from, account, authUser string
	to                      []string
	maxSize                 int64
}

// receivedHeader is the trace header prepended to every message.
func (s *session) receivedHeader(tx txSnapshot) []byte {
	proto := "ESMTP"
	if s.isTLS {
		proto += "S"
	}
	if tx.authUser != "" {
		proto += "A"
	}
	var b strings.Builder
	b.WriteString("Received: from ")
	b.WriteString(sanitizeHELO(s.helo))
	b.WriteString(" ([")
	b.WriteString(s.ip.String())
	b.WriteString("])\r\n\tby ")
	b.WriteString(s.ls.cfg.Hostname)
	b.WriteString(" (spoold) with ")
	b.WriteString(proto)
	if st, ok := s.conn.TLSConnectionState(); ok {
		fmt.Fprintf(&b, "\r\n\t(version=%s cipher=%s)", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
	}
	if len(tx.to) == 1 {
		b.WriteString("\r\n\tfor <")
		b.WriteString(tx.to[0])
		b.WriteString(">")
	}
	b.WriteString("; ")
	b.WriteString(s.ls.srv.clock().Format(time.RFC1123Z))
	b.WriteString("\r\n")
	return []byte(b.String())
}

// missingHeaders returns the Message-ID and Date header lines to add.
func (s *session) missingHeaders(hasMsgID, hasDate bool) []byte {
	var b []byte
	now := s.ls.srv.clock()
	if !hasMsgID {
		b = fmt.Appendf(b, "Message-ID: <%s>\r\n", notice.MessageID("", s.ls.cfg.Hostname))
	}
	if !hasDate {
		b = fmt.Appendf(b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	}
	return b
}

// sanitizeHELO keeps the client's HELO name safe to put in a header.
func sanitizeHELO(h string) string {
	if len(h) > 255 {
		h = h[:255]
	}
	b := []byte(h)
	for i, c := range b {
		if c <= ' ' || c >= 0x7f || c == '(' || c == ')' || c == ';' || c == '\\' {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "unknown"
	}
	return string(b)
}

var _ smtp.AuthSession = (*session)(nil)
