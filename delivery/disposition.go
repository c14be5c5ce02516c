package delivery

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spoold/spoold/spool"
)

// verdict is what happens to a message after one attempt.
type verdict int

const (
	verdictDelivered  verdict = iota // committed as delivered (refused recipients dead-lettered by the spool)
	verdictDefer                     // retried at next with the retry schedule; uses the attempt
	verdictDead                      // dead-lettered with reason
	verdictPostpone                  // back to the queue at next without using the attempt (shutdown)
	verdictConnFailed                // no session: connectFailed decides (hold, park, throttle or retry)
)

// disposition is the decision about one attempted message, made without
// touching the spool or the account (decide, retry) and carried out by
// apply. Keeping the two apart makes every outcome of an attempt one value
// that says what will happen, in one place.
type disposition struct {
	verdict verdict
	next    time.Time  // verdictDefer, verdictPostpone
	reason  string     // verdictDead, verdictPostpone
	err     *SMTPError // the answer that decided it (nil for a plain delivery)
	connErr error      // verdictConnFailed: the error from connect (token and hold errors included)
	results []spool.RecipientResult
	// delivered counts recipients the upstream accepted in this attempt:
	// the account's throttle may step back up.
	delivered int
	// throttle: the answer was a throttling one; slow the account down.
	throttle bool
	// hold: a recipient's answer said the account is blocked; hold it.
	hold *SMTPError
	// notice is the failure notice's reason after a delivery in which some
	// recipients were refused (now or in an earlier attempt).
	notice string
}

func deadVerdict(reason string, se *SMTPError, results []spool.RecipientResult) disposition {
	return disposition{verdict: verdictDead, reason: reason, err: se, results: results}
}

// retry decides a transient failure: defer with the retry schedule, or
// dead-letter when the message's lifetime is over (its pending recipients
// then fail too).
func (e *Engine) retry(a *account, m *spool.Message, se *SMTPError, results []spool.RecipientResult, delivered int, now time.Time) disposition {
	d := disposition{err: se, results: results, delivered: delivered, throttle: se.Class == ClassThrottled}
	next, expired := NextRetry(a.cfg.Retry, m.Attempts+1, m.Created, now, e.opts.Rand)
	if !expired {
		d.verdict, d.next = verdictDefer, next
		return d
	}
	for i := range d.results {
		if d.results[i].State == spool.RcptPending {
			d.results[i].State = spool.RcptFailed
		}
	}
	d.verdict = verdictDead
	d.reason = fmt.Sprintf("delivery lifetime of %s expired; last error: %s", a.cfg.Retry.Lifetime, se.Error())
	return d
}

// decide turns the upstream's answer to a sent message (a whole-message
// error, or one answer per recipient) into a disposition.
func (e *Engine) decide(a *account, m *spool.Message, res sendResult, err error, now time.Time) disposition {
	if err != nil {
		se := asSMTPError(err)
		if se == nil {
			se = &SMTPError{Class: ClassInternal, Text: err.Error(), Err: err}
		}
		switch {
		case e.hard.Err() != nil && se.Code == 0:
			return disposition{verdict: verdictPostpone, next: now, reason: "interrupted by shutdown", err: se}
		case se.Class == ClassConfig || se.Class == ClassAuth || se.Class == ClassBlocked:
			// e.g. 530 5.7.57 at MAIL: the tenant refuses this client; wait.
			return disposition{verdict: verdictConnFailed, connErr: se, err: se}
		case isSendAsDenied(se):
			c := *se
			c.Class = ClassPermanent
			return deadVerdict(ReasonSendAsDenied, &c, nil)
		case se.Class == ClassPermanent:
			return deadVerdict("upstream refused the message: "+se.Error(), se, nil)
		}
		return e.retry(a, m, se, nil, 0, now)
	}
	var (
		results          []spool.RecipientResult
		tempErr, permErr *SMTPError
		blockedErr       *SMTPError // a recipient's answer says the account is blocked
		delivered        int
	)
	for _, r := range res.Rcpts {
		switch {
		case r.Err == nil:
			delivered++
			results = append(results, spool.RecipientResult{Addr: r.Addr, State: spool.RcptDelivered})
		case r.Err.Class == ClassBlocked && blockedErr == nil:
			blockedErr = r.Err
			fallthrough
		case r.Err.Temporary():
			if tempErr == nil {
				tempErr = r.Err
			}
			results = append(results, spool.RecipientResult{Addr: r.Addr, State: spool.RcptPending, Error: r.Err.Record(now)})
		default:
			if permErr == nil {
				permErr = r.Err
			}
			results = append(results, spool.RecipientResult{Addr: r.Addr, State: spool.RcptFailed, Error: r.Err.Record(now)})
		}
	}
	switch {
	case blockedErr != nil && delivered == 0:
		// Nothing went out: the message waits for the account's hold
		// without using the attempt.
		return disposition{verdict: verdictConnFailed, connErr: blockedErr, err: blockedErr}
	case blockedErr != nil:
		d := e.retry(a, m, blockedErr, results, delivered, now)
		d.hold = blockedErr
		return d
	case tempErr != nil:
		return e.retry(a, m, tempErr, results, delivered, now)
	case delivered == 0 && permErr != nil:
		return deadVerdict("upstream refused every remaining recipient: "+permErr.Error(), permErr, results)
	}
	d := disposition{verdict: verdictDelivered, results: results, delivered: delivered}
	// Recipients refused in this or an earlier attempt make the message
	// dead for them: tell the sender once, now that the rest is done.
	if permErr != nil {
		d.notice = "upstream refused some recipients: " + permErr.Error()
	}
	for _, r := range m.Recipients {
		if r.State == spool.RcptFailed && d.notice == "" {
			d.notice = "upstream refused some recipients"
			if r.Error != nil {
				d.notice += ": " + r.Error.Text
			}
		}
	}
	return d
}

// apply carries out a disposition: the account's pace first (a delivery
// steps a throttle back up, a throttling answer slows it down), then the
// message's transition, its metrics and its log line.
func (e *Engine) apply(bg context.Context, a *account, m *spool.Message, d disposition, log *slog.Logger) {
	now := e.opts.Clock()
	if d.err != nil && d.err.Class == ClassUnknown {
		log.Warn("no reply after the final dot; the upstream may have the message: retrying (possible duplicate)", "err", d.err.Error())
	}
	if d.delivered > 0 {
		e.succeeded(a, now)
		e.spend(bg, a, m, d.delivered, log)
		if m.Account != a.cfg.Name {
			e.m.fallback.WithLabelValues(m.Account, a.cfg.Name).Inc()
			log.Info("delivered through the fallback account", "via", a.cfg.Name)
		}
	}
	if d.throttle {
		e.throttle(a, log)
	}
	if d.hold != nil {
		dur, reason := e.blockedHold(d.hold)
		e.mu.Lock()
		a.holdLocked(now.Add(dur), reason, d.hold, now)
		// m itself is deferred or postponed by its verdict; the scheduler parks the rest (parkUntil).
		e.mu.Unlock()
		log.Warn("account on hold; its messages wait without using attempts", "until", now.Add(dur), "reason", reason)
	}
	switch d.verdict {
	case verdictDelivered:
		e.finish(bg, a, m, d.results, log)
		if d.notice != "" {
			e.notice(bg, a, m, d.notice, d.results, log)
		}
	case verdictDefer:
		se := d.err
		if err := e.msgs.Defer(bg, m.ID, e.opts.Owner, d.next, spool.Result{Now: now, Error: se.Record(now), Recipients: d.results}); err != nil {
			log.Error("deferring", "err", err)
			return
		}
		e.noteErr(a, se, now)
		e.m.attempt(a.cfg.Name, "deferred", se.Class)
		log.Info("deferred", nonEmpty("next_attempt", d.next, "attempts", m.Attempts+1, "class", se.Class,
			"delivered_recipients", d.delivered, "err", se.Error())...)
	case verdictDead:
		e.dead(bg, a, m, d.reason, d.err, d.results, log)
	case verdictPostpone:
		e.postpone(bg, a, m, d.next, d.reason, log)
	case verdictConnFailed:
		e.connectFailed(bg, a, m, d.connErr, log)
	}
}

// transient defers m with the retry schedule, or dead-letters it when its
// lifetime is over.
func (e *Engine) transient(bg context.Context, a *account, m *spool.Message, se *SMTPError, log *slog.Logger) {
	e.apply(bg, a, m, e.retry(a, m, se, nil, 0, e.opts.Clock()), log)
}
