package delivery

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/spool"
)

// Account holds.
//
// Holding an account's messages is delivery's decision, and this file is
// its one home: an account whose sends cannot succeed until something
// outside delivery changes (a login, a tenant setting, the token endpoint
// coming back, a corrected password) is held until a time, and its due
// messages are postponed to then without using attempts. The account's
// health (ok, needs_reauth, misconfigured, refresh_failing) is auth's: the
// engine reports what it learns there (MarkNeedsReauth, MarkMisconfigured),
// reads it only through the token source's errors, and keeps no status of
// its own. A hold ends at its time (the next attempt finds out whether the
// cause is gone) or at once when auth reports the account recovered.

// hold is an account's hold, guarded by Engine.mu.
type hold struct {
	until  time.Time // zero: not held
	since  time.Time // when the hold began (a fallback takes over after FallbackAfter)
	reason string    // why, with the fix where known; shown as AccountState.HoldReason
	// recoveries counts the token source's recovery reports, so that a
	// token error obtained before a recovery cannot hold the recovered
	// account again.
	recoveries uint64
}

// active reports whether the hold still applies at now.
func (h *hold) active(now time.Time) bool { return h.until.After(now) }

// tokenError: the token source could not give a token (wraps auth.Err*).
type tokenError struct {
	err        error
	recoveries uint64 // the account's recovery count before the token was asked for
}

func (e *tokenError) Error() string { return "delivery: getting access token: " + e.err.Error() }
func (e *tokenError) Unwrap() error { return e.err }

// holdError: the account must wait (needs_reauth or misconfigured).
type holdError struct {
	reason     string
	rec        *SMTPError
	recoveries uint64 // as in tokenError
}

func (e *holdError) Error() string { return "delivery: account on hold: " + e.reason }

// holdCause says whether err (from connect) holds the account, and whether
// it is stale: made before the account last recovered, so it must not.
func (e *Engine) holdCause(a *account, err error) (holds, stale bool) {
	var te *tokenError
	var he *holdError
	switch {
	case errors.As(err, &he):
		return true, he.recoveries != e.recoveriesOf(a)
	case errors.As(err, &te):
		return true, te.recoveries != e.recoveriesOf(a)
	}
	return false, false
}

// holdFor says how long an account waits after a token or hold error from
// connect, why, and the upstream's answer if there was one.
func (e *Engine) holdFor(a *account, err error) (time.Duration, string, *SMTPError) {
	var te *tokenError
	var he *holdError
	switch {
	case errors.As(err, &he):
		return e.opts.HoldInterval, he.reason, he.rec
	case errors.As(err, &te) && errors.Is(err, auth.ErrNeedsReauth):
		return e.opts.HoldInterval, "account needs re-authorization: run spoolctl auth login " + a.cfg.Name, nil
	case errors.As(err, &te) && errors.Is(err, auth.ErrUnknownAccount):
		return e.opts.HoldInterval, "the token source has no OAuth account " + a.cfg.Name + ": check the configuration", nil
	case errors.As(err, &te) && errors.Is(err, auth.ErrMisconfigured):
		return e.opts.HoldInterval, te.err.Error(), nil // auth's text names the account and the fix
	case errors.As(err, &te):
		// Token endpoint down: the auth manager retries with backoff; messages wait without attempts.
		return e.opts.TokenRetry, "token endpoint unavailable: " + te.err.Error(), nil
	}
	return e.opts.HoldInterval, err.Error(), nil
}

// holdLocked holds a until until and records the upstream's answer, if
// any, as its last error (e.mu held).
func (a *account) holdLocked(until time.Time, reason string, se *SMTPError, now time.Time) {
	if !a.hold.active(now) {
		a.hold.since = now
	}
	a.hold.until, a.hold.reason = until, reason
	if se != nil {
		a.lastErr = se.Record(now)
	}
}

// holdAndPostpone holds the account for d and postpones m to the hold's end.
func (e *Engine) holdAndPostpone(bg context.Context, a *account, m *spool.Message, d time.Duration, reason string, se *SMTPError, log *slog.Logger) {
	now := e.opts.Clock()
	until := now.Add(d)
	e.mu.Lock()
	a.holdLocked(until, reason, se, now)
	e.mu.Unlock()
	log.Warn("account on hold; its messages wait without using attempts", "until", until, "reason", reason)
	e.postpone(bg, a, m, e.parkUntil(a, until), reason, log)
}

// accountRecovered is the token source's recovery hook: it clears the
// account's hold, makes its messages due now and wakes the scheduler. It
// runs on the caller's goroutine, so it must not block for long.
func (e *Engine) accountRecovered(name string) {
	e.mu.Lock()
	if a := e.accounts[name]; a != nil {
		a.hold.until, a.hold.reason = time.Time{}, ""
		a.hold.recoveries++
	}
	e.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := e.drains.FlushAll(ctx, name)
	if err != nil {
		e.log.Error("draining recovered account", "account", name, "err", err)
	} else {
		e.log.Info("account recovered; draining its queue", "account", name, "messages", n)
	}
	e.wake()
}

// recoveriesOf reads an account's recovery count.
func (e *Engine) recoveriesOf(a *account) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return a.hold.recoveries
}

// blockedHold is how long a blocked account waits and the hold's reason:
// what the provider said, what it means and the fix.
func (e *Engine) blockedHold(se *SMTPError) (time.Duration, string) {
	b := blockedReply(se)
	if b == nil { // classified elsewhere as blocked
		return e.opts.HoldInterval, "the upstream blocks the account: " + se.Error()
	}
	d := e.opts.HoldInterval
	if b.quota {
		d = quotaHold
	}
	return d, b.why + " (" + se.Error() + "): " + b.fix
}
