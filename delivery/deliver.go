package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/mail"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/notice"
)

// deliverSafe runs one attempt of m over sess (nil: connect first) and
// returns the session to send the next message over (nil when there is no
// usable one). started says the claim already started the attempt
// (ClaimAccountStart). A panic is recovered and counted as an attempt
// (deferred with "internal error"), and the engine goes on. ctx is the
// connection's: cancelled at shutdown or when its shared slot is lost
// (cluster.go), and sess was opened with it.
func (e *Engine) deliverSafe(ctx context.Context, a *account, m *spool.Message, sess session, started bool) (next session) {
	log := e.log.With("msg_id", m.ID, "account", a.cfg.Name)
	bg := context.WithoutCancel(e.hard) // state commits happen even while shutting down
	e.mu.Lock()
	a.inflight++
	e.mu.Unlock()
	e.m.inflight.Inc()
	defer func() {
		e.mu.Lock()
		a.inflight--
		e.mu.Unlock()
		e.m.inflight.Dec()
		r := recover()
		if r == nil {
			return
		}
		log.Error("internal error while sending", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		if next != nil { // the panic came after the attempt (apply)
			next.close()
		}
		next = nil // a panic inside the attempt closed its session there
		if !started {
			now := e.opts.Clock()
			if err := e.msgs.StartAttempt(bg, m.ID, e.opts.Owner, now, now.Add(a.cfg.Retry.First)); err != nil {
				log.Error("recording attempt after internal error", "err", err)
				return
			}
		}
		e.transient(bg, a, m, &SMTPError{Class: ClassInternal, Text: "internal error"}, log)
	}()
	// Past the daily budget the account waits instead of being refused.
	until, reason, over, release := e.overBudgetShared(bg, a, m, log) // cluster.go
	defer release()
	if over {
		e.holdForBudget(bg, a, m, until, reason, log)
		return sess
	}
	// Attempts and the next time are durable before we dial: a crash mid-send
	// cannot cause a hot loop.
	if !started {
		now := e.opts.Clock()
		if err := e.msgs.StartAttempt(bg, m.ID, e.opts.Owner, now, e.ifCrash(a, m, now)); err != nil {
			log.Warn("starting attempt", "err", err)
			return sess
		}
		started = true
	}
	stop := e.renewLease(m.ID, log)
	defer stop()
	d, next := e.attempt(ctx, a, m, sess, log)
	e.apply(bg, a, m, d, log)
	return next
}

func pendingRcpts(m *spool.Message) []string {
	var out []string
	for _, r := range m.Recipients {
		if r.State == spool.RcptPending || r.State == "" {
			out = append(out, r.Addr)
		}
	}
	return out
}

// ifCrash is the next attempt time committed when an attempt starts, kept if
// the worker dies before it ends.
func (e *Engine) ifCrash(a *account, m *spool.Message, now time.Time) time.Time {
	next, expired := NextRetry(a.cfg.Retry, m.Attempts+1, m.Created, now, e.opts.Rand)
	if expired {
		return now.Add(a.cfg.Retry.First)
	}
	return next
}

// attempt sends m over sess, connecting first when sess is nil, and says
// what should happen to m; it changes no message state. It returns the
// session to go on with, and closes a session it gives up, even when it
// panics.
func (e *Engine) attempt(ctx context.Context, a *account, m *spool.Message, sess session, log *slog.Logger) (_ disposition, next session) {
	defer func() {
		if r := recover(); r != nil {
			if sess != nil {
				sess.close()
			}
			panic(r) // deliverSafe counts it; the frames that panicked are still on the stack
		}
	}()
	if a.cfg.MaxMessageSize > 0 && m.Size > a.cfg.MaxMessageSize {
		se := &SMTPError{Code: 552, Enhanced: "5.3.4", Class: ClassPermanent,
			Text: fmt.Sprintf("message of %d bytes exceeds the account limit of %d bytes", m.Size, a.cfg.MaxMessageSize)}
		return deadVerdict("message too big: "+se.Text, se, nil), sess
	}
	pending := pendingRcpts(m)
	if len(pending) == 0 {
		return disposition{verdict: verdictDelivered}, sess
	}
	body, err := e.msgs.OpenBody(m.ID)
	if errors.Is(err, spool.ErrBodyMissing) {
		// Deleted under messages/ while we ran: no retry can bring it back.
		return deadVerdict("body missing (its file was removed from the spool)",
			&SMTPError{Class: ClassPermanent, Text: "body missing", Err: err}, nil), sess
	}
	if err != nil {
		return e.retry(a, m, &SMTPError{Class: ClassInternal, Text: "opening the spooled body: " + err.Error(), Err: err}, nil, 0, e.opts.Clock()), sess
	}
	defer body.Close()
	p, err := prepare(body, a.cfg.SenderRule, a.cfg.Mailbox)
	if err != nil {
		var ce *ContentError
		if errors.As(err, &ce) {
			return deadVerdict("cannot send as stored: "+ce.Reason, &SMTPError{Class: ClassPermanent, Text: ce.Reason}, nil), sess
		}
		return e.retry(a, m, &SMTPError{Class: ClassInternal, Text: err.Error(), Err: err}, nil, 0, e.opts.Clock()), sess
	}
	env := envelope{ID: m.ID, From: m.From}
	if a.cfg.SenderRule == "rewrite" {
		env.From = a.cfg.Mailbox
	}
	if !validEnvelopeAddr(env.From) {
		return deadVerdict(fmt.Sprintf("invalid envelope sender %q", truncate(env.From, 80)),
			&SMTPError{Code: 553, Enhanced: "5.1.7", Command: "MAIL", Class: ClassPermanent, Text: "invalid sender address (local check)"}, nil), sess
	}
	// Addresses that cannot be sent (line breaks, brackets) fail locally
	// and permanently instead of breaking the connection on every retry.
	var refused []rcptResult
	for _, to := range pending {
		if validEnvelopeAddr(to) && to != "" {
			env.To = append(env.To, to)
			continue
		}
		refused = append(refused, rcptResult{Addr: to, Err: &SMTPError{Code: 553, Enhanced: "5.1.3", Command: "RCPT",
			Class: ClassPermanent, Text: "invalid recipient address (local check)"}})
	}
	if len(env.To) == 0 {
		return e.decide(a, m, sendResult{Rcpts: refused}, nil, e.opts.Clock()), sess
	}
	for try := 0; try < 2; try++ {
		if sess == nil {
			s, err := e.connect(ctx, a, log, false)
			if err != nil {
				if e.slotCut(ctx) { // cluster.go
					return disposition{verdict: verdictPostpone, next: e.opts.Clock(), reason: reasonSlotLost}, nil
				}
				return disposition{verdict: verdictConnFailed, connErr: err}, nil
			}
			e.connected(a, "a connection succeeded")
			sess = s
		}
		res, err := sess.send(ctx, env, p, m.Size)
		if errors.Is(err, errStale) {
			sess.close()
			sess = nil
			continue
		}
		res.Rcpts = append(res.Rcpts, refused...)
		d := e.decide(a, m, res, err, e.opts.Clock())
		d = e.slotLostVerdict(ctx, d, err) // cluster.go
		if !sess.usable() {
			sess.close()
			sess = nil
		}
		return d, sess
	}
	return e.retry(a, m, &SMTPError{Class: ClassTransient, Text: "connection lost before sending"}, nil, 0, e.opts.Clock()), nil
}

// validEnvelopeAddr rejects what cannot go into MAIL FROM:<...>/RCPT TO:<...>.
func validEnvelopeAddr(s string) bool {
	return len(s) <= 512 && !strings.ContainsAny(s, "\r\n<> \t\x00")
}

// renewLease keeps the lease of a long send alive.
func (e *Engine) renewLease(id string, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(e.opts.LeaseDuration / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := e.msgs.RenewLease(ctx, id, e.opts.Owner, e.opts.Clock().Add(e.opts.LeaseDuration)); err != nil && ctx.Err() == nil {
					log.Warn("renewing lease", "err", err)
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

// connect opens a session, handling tokens: a refused token gets one forced
// refresh; refused again, the account needs re-authorization.
// probe dials once (no quick redial): the outage backoff paces probes.
func (e *Engine) connect(ctx context.Context, a *account, log *slog.Logger, probe bool) (session, error) {
	name := a.cfg.Name
	e.mu.Lock()
	// After a connection-level failure, redialing at once mostly adds
	// connections to an upstream that is down.
	dialOnce := probe || a.connFails > 0
	e.mu.Unlock()
	oauth := a.cfg.Transport == "smtp" && a.cfg.Auth == "xoauth2"
	token := ""
	recoveries := e.recoveriesOf(a)
	if oauth {
		t, err := e.tokens.AccessToken(ctx, name)
		if err != nil {
			return nil, &tokenError{err, recoveries}
		}
		token = t
	}
	s, err := a.tr.open(ctx, token, dialOnce)
	if err == nil || !oauth {
		return s, err
	}
	se := asSMTPError(err)
	if se == nil || se.Command != "AUTH" || !isAuthRejected(se) {
		return nil, err
	}
	log.Warn("upstream refused the access token; forcing a refresh", "err", se.Error())
	t, rerr := e.tokens.RefreshRejected(ctx, name, token)
	if rerr != nil {
		return nil, &tokenError{rerr, recoveries}
	}
	s, err = a.tr.open(ctx, t, dialOnce)
	if err == nil {
		return s, nil
	}
	if se2 := asSMTPError(err); se2 != nil && se2.Command == "AUTH" && isAuthRejected(se2) {
		reason := "upstream refused a freshly refreshed token (" + se2.Error() + "): run spoolctl auth login " + name
		if merr := e.tokens.MarkNeedsReauth(ctx, name, reason); merr != nil {
			log.Error("marking account needs_reauth", "err", merr)
		}
		return nil, &holdError{reason: reason, rec: se2, recoveries: recoveries}
	}
	return nil, err
}

// connectFailed decides what a failed connection means for message m.
func (e *Engine) connectFailed(bg context.Context, a *account, m *spool.Message, err error, log *slog.Logger) {
	if e.hard.Err() != nil {
		e.postpone(bg, a, m, e.opts.Clock(), "interrupted by shutdown", log)
		return
	}
	if holds, stale := e.holdCause(a, err); stale {
		// The account recovered (a login) after this token error was
		// made: no hold, the message is due again now.
		e.postpone(bg, a, m, e.opts.Clock(), "account recovered while connecting", log)
		return
	} else if holds {
		e.holdFromConnect(bg, a, m, err, log) // hold.go
		return
	}
	se := asSMTPError(err)
	if se == nil {
		se = &SMTPError{Class: ClassTransient, Text: err.Error(), Err: err}
	}
	switch {
	case isConnLevel(se) && se.Code == 421 && e.othersConnected(a):
		// A 421 greeting while other sessions of the account work is the
		// server's connection limit (Exchange: "421 4.3.2 ... concurrent
		// server connections"), not an outage: slow the account down as
		// for any 4.3.2; the message waits without using an attempt.
		e.throttle(a, log)
		e.park(bg, a, m, e.opts.Clock().Add(e.opts.ThrottlePause), "upstream refused another connection (its connection limit?): "+se.Error(), se)
	case isConnLevel(se):
		// The upstream is unreachable: not this message's failure.
		e.connLevelFailed(bg, a, m, se, log)
	case se.Class == ClassConfig:
		reason := fmt.Sprintf("SMTP AUTH is disabled (%s): %s", se.Error(), fixSMTPAuthDisabled)
		if a.cfg.Auth == "xoauth2" {
			if merr := e.tokens.MarkMisconfigured(bg, a.cfg.Name, reason); merr != nil {
				log.Error("marking account misconfigured", "err", merr)
			}
		}
		e.holdAndPostpone(bg, a, m, e.opts.HoldInterval, reason, se, log)
	case se.Class == ClassBlocked:
		d, reason := e.blockedHold(se)
		e.holdAndPostpone(bg, a, m, d, reason, se, log)
	case se.Class == ClassAuth:
		e.holdAndPostpone(bg, a, m, e.opts.HoldInterval, "upstream refused the account's credentials: "+se.Error(), se, log)
	default:
		// Connection-level answers are about the server, not this message:
		// even a 5xx greeting is retried rather than dead-lettering the queue.
		if se.Class == ClassPermanent {
			c := *se
			c.Class = ClassTransient
			se = &c
		}
		e.transient(bg, a, m, se, log)
	}
}

// postpone gives m back without an attempt, due at until; false if the
// spool refused.
func (e *Engine) postpone(bg context.Context, a *account, m *spool.Message, until time.Time, reason string, log *slog.Logger) bool {
	if err := e.claims.Postpone(bg, m.ID, e.opts.Owner, until, reason); err != nil {
		log.Error("postponing", "err", err)
		return false
	}
	e.m.attempt(a.cfg.Name, "postponed", "")
	return true
}

// finish commits a delivery (failed recipients make the spool dead-letter them).
func (e *Engine) finish(bg context.Context, a *account, m *spool.Message, results []spool.RecipientResult, log *slog.Logger) {
	now := e.opts.Clock()
	r := spool.Result{Now: now, Recipients: results}
	result := "delivered"
	var refused []string
	for _, rr := range results {
		if rr.State == spool.RcptFailed {
			result = "partial"
			r.Error = rr.Error
			r.Reason = "recipient " + rr.Addr + " refused: " + rr.Error.Text
			refused = append(refused, rr.Addr)
		}
	}
	if err := e.msgs.Delivered(bg, m.ID, e.opts.Owner, r); err != nil {
		log.Error("recording delivery", "err", err)
		return
	}
	class := ""
	if r.Error != nil {
		class = r.Error.Class
	}
	e.m.attempt(a.cfg.Name, result, class)
	e.m.duration.WithLabelValues(a.cfg.Name).Observe(now.Sub(m.Created).Seconds())
	// The spool logs the delivery itself (once, as it commits it); what it
	// cannot know is which recipients the upstream refused.
	if len(refused) > 0 {
		log.Warn("upstream refused some recipients; delivered to the others", "refused", strings.Join(refused, ","),
			"reason", r.Reason)
	}
}

func (e *Engine) succeeded(a *account, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	a.lastDelivery = now
	// Step back up, one notch per quiet period, after a throttle.
	if a.throttledAt.IsZero() || now.Sub(a.throttledAt) < e.opts.ThrottleRecover {
		return
	}
	if a.connLimit < a.cfg.MaxConnections {
		a.connLimit++
	}
	atFull := true
	if a.limiter != nil {
		full := rate.Limit(a.cfg.RatePerMinute / 60)
		a.limiter.SetLimit(min(a.limiter.Limit()*2, full))
		atFull = a.limiter.Limit() == full
	}
	a.throttledAt = now
	if atFull && a.connLimit == a.cfg.MaxConnections {
		a.throttledAt = time.Time{}
	}
}

// othersConnected reports whether connection workers of a other than the
// caller are running.
func (e *Engine) othersConnected(a *account) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return a.conns > 1
}

// throttle slows the whole account down: half the connections and rate, and
// a pause before the next connection.
func (e *Engine) throttle(a *account, log *slog.Logger) {
	now := e.opts.Clock()
	e.mu.Lock()
	if a.connLimit > 1 {
		a.connLimit /= 2
	}
	if a.limiter != nil {
		a.limiter.SetLimit(a.limiter.Limit() / 2)
	}
	until := now.Add(e.opts.ThrottlePause)
	a.throttledUntil, a.throttledAt = until, now
	limit := a.connLimit
	e.mu.Unlock()
	log.Warn("upstream is throttling the account: slowing down", "until", until, "max_connections", limit)
}

func (e *Engine) noteErr(a *account, se *SMTPError, now time.Time) {
	e.mu.Lock()
	a.lastErr = se.Record(now)
	e.mu.Unlock()
}

// dead dead-letters m and sends a failure notice when configured.
func (e *Engine) dead(bg context.Context, a *account, m *spool.Message, reason string, se *SMTPError, results []spool.RecipientResult, log *slog.Logger) {
	now := e.opts.Clock()
	r := spool.Result{Now: now, Reason: reason, Recipients: results}
	class := ClassPermanent
	if se != nil {
		r.Error = se.Record(now)
		class = se.Class
	}
	if err := e.msgs.Dead(bg, m.ID, e.opts.Owner, r); err != nil {
		log.Error("dead-lettering", "err", err)
		return
	}
	if se != nil {
		e.noteErr(a, se, now)
	}
	e.m.attempt(a.cfg.Name, "dead", class)
	// No log line here: the spool logs the dead letter with its reason.
	e.notice(bg, a, m, reason, results, log)
}

// notice queues a failure notice to the original sender through the same
// account: never about a notice, never to the null sender.
func (e *Engine) notice(bg context.Context, a *account, m *spool.Message, reason string, results []spool.RecipientResult, log *slog.Logger) {
	wants := m.NotifyOnFailure
	for _, k := range e.opts.NoticeForSources {
		if k == m.Source.Kind {
			wants = true
		}
	}
	switch a.cfg.NotifyOnFailure {
	case "always":
		wants = true
	case "never":
		wants = false
	}
	if !wants || m.Source.Kind == spool.SourceNotice || m.From == "" {
		return
	}
	to, subject, origID := "", "", ""
	if body, err := e.sp.OpenBody(m.ID); err == nil {
		if p, err := prepare(body, "keep", ""); err == nil {
			subject = p.subject
			switch {
			case len(p.replyTo) > 0:
				to = p.replyTo[0].Address
			case len(p.from) > 0:
				to = p.from[0].Address
			}
			if h, err := mail.ReadMessage(bytes.NewReader(p.header)); err == nil {
				origID = h.Header.Get("Message-Id")
			}
		}
		body.Close()
	}
	if to == "" {
		to = m.From
	}
	if addr, err := mail.ParseAddress(to); err != nil || addr.Address != to || strings.ContainsAny(to, "<>\r\n ") {
		log.Warn("no usable address for a failure notice", "sender", to)
		return
	}
	// Each failed recipient once: refused now, or in an earlier attempt
	// (with that attempt's reply, which the notice's reason may not name).
	var failed []notice.Failure
	seen := map[string]bool{}
	add := func(addr string, rec *spool.ErrorRecord) {
		if seen[addr] {
			return
		}
		seen[addr] = true
		own := ""
		if rec != nil && rec.Text != "" && !strings.Contains(reason, rec.Text) {
			own = strings.TrimSpace(fmt.Sprintf("%s %s %s", codeText(rec.Code), rec.Enhanced, rec.Text))
		}
		failed = append(failed, notice.Failure{Recipient: addr, Reason: own})
	}
	for _, r := range results {
		if r.State == spool.RcptFailed {
			add(r.Addr, r.Error)
		}
	}
	for _, r := range m.Recipients {
		if r.State == spool.RcptFailed {
			add(r.Addr, r.Error)
		}
	}
	if len(failed) == 0 {
		for _, addr := range pendingRcpts(m) {
			add(addr, nil)
		}
	}
	body, err := e.buildNotice(a, m, to, subject, origID, reason, failed)
	if err != nil {
		log.Error("building failure notice", "err", err)
		return
	}
	id, err := e.sp.Enqueue(bg, spool.EnqueueRequest{
		To: []string{to}, Account: m.Account,
		Source:         spool.Source{Kind: spool.SourceNotice, NoticeFor: m.ID},
		IdempotencyKey: noticeKey(m.ID),
	}, bytes.NewReader(body))
	if err != nil {
		log.Error("queueing failure notice", "err", err)
		return
	}
	log.Info("failure notice queued", "notice_id", id, "to", to)
}

// noticeKey is the idempotency key of the failure notice about message id
// (one notice per message) and the seed of its Message-ID.
func noticeKey(id string) string { return "notice:" + id }

// codeText is an SMTP reply code as text, "" for none.
func codeText(code int) string {
	if code == 0 {
		return ""
	}
	return fmt.Sprint(code)
}

// buildNotice writes the dead-letter notice to the original sender: a reply
// to their message (Auto-Submitted: auto-replied), from the account's mailbox.
func (e *Engine) buildNotice(a *account, m *spool.Message, to, subject, origID, reason string, failed []notice.Failure) ([]byte, error) {
	now := e.opts.Clock().UTC()
	from := a.cfg.Mailbox
	if from == "" {
		from = "postmaster@" + e.opts.Hostname
	}
	if dec, err := (&mime.WordDecoder{}).DecodeHeader(subject); err == nil {
		subject = dec
	}
	subject = cleanDisplay(subject)
	return notice.Bytes(notice.Notice{
		From: from, FromName: "Mail Delivery System", To: to,
		Subject: "Undeliverable: " + subject, Date: now,
		MessageID: notice.MessageID(noticeKey(m.ID), e.opts.Hostname),
		Reply:     true, InReplyTo: origID,
		Text:        "Your message could not be delivered.",
		OrigSubject: subject,
		Details: []notice.Detail{
			// People read these: the server's local time, with its zone.
			{Label: "Created", Value: m.Created.Local().Format(time.RFC1123)},
			{Label: "Failed at", Value: now.Local().Format(time.RFC1123)},
			{Label: "Queue ID", Value: m.ID},
		},
		Failed: failed,
		Reason: reason,
		Footer: "An administrator can see the message with: spoolctl show " + m.ID,
	})
}

// TestSend sends a short test message through account now (not via the
// queue) and returns the upstream's final answer.
func (e *Engine) TestSend(ctx context.Context, account, to string) (TestResult, error) {
	e.mu.Lock()
	a := e.accounts[account]
	e.mu.Unlock()
	res := TestResult{Account: account}
	if a == nil {
		return res, fmt.Errorf("%w %q", auth.ErrUnknownAccount, account)
	}
	if addr, err := mail.ParseAddress(to); err != nil || addr.Address != to {
		return res, fmt.Errorf("recipient %q is not a plain address", to)
	}
	log := e.log.With("account", account)
	start := time.Now()
	now := e.opts.Clock().UTC()
	from := a.cfg.Mailbox
	if from == "" {
		from = "spoold@" + e.opts.Hostname
	}
	id := fmt.Sprintf("test-%d", now.UnixNano()) // names the send in logs; it is never queued
	msg := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: spoold test message\r\nDate: %s\r\nMessage-ID: %s\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"+
		"This is a test message sent by spoold through account %s.\r\n",
		(&mail.Address{Address: from}).String(), (&mail.Address{Address: to}).String(), now.Format(time.RFC1123Z), notice.MessageID("", e.opts.Hostname), account)
	p, err := prepare(strings.NewReader(msg), "keep", "")
	if err != nil {
		return res, err
	}
	// A test send is a connection to the mailbox like any other: on a
	// shared spool it takes one of the slots, and closes if it is lost.
	g, ok := e.takeSlot(a) // cluster.go
	if !ok {
		return res, fmt.Errorf("all %d connections the nodes may open to the mailbox are in use, or the spool database did not answer: try the test send again shortly", a.cfg.MaxConnections)
	}
	defer e.releaseSlot(a, g)
	g.begin()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if g.slot != nil {
		stopCut := context.AfterFunc(g.soft, cancel)
		defer stopCut()
	}
	s, err := e.connect(ctx, a, log, false)
	if err != nil {
		if se := asSMTPError(err); se != nil {
			res.Code, res.Enhanced, res.Text = se.Code, se.Enhanced, se.Text
		}
		return res, err // the caller names the account and the test-send
	}
	defer s.close()
	e.connected(a, "a test send connected")
	sr, err := s.send(ctx, envelope{ID: id, From: from, To: []string{to}}, p, int64(len(msg)))
	res.Duration = time.Since(start)
	if err == nil && len(sr.Rcpts) == 1 && sr.Rcpts[0].Err != nil {
		err = sr.Rcpts[0].Err
	}
	if err != nil {
		if se := asSMTPError(err); se != nil {
			res.Code, res.Enhanced, res.Text = se.Code, se.Enhanced, se.Text
		}
		return res, err // the caller names the account and the test-send
	}
	res.Code, res.Text = 250, sr.Reply
	log.Info("test message sent", "to", to, "reply", sr.Reply)
	return res, nil
}
