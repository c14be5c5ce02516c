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
	// signIn: the hold waits for a sign-in (the token source said the
	// account needs re-authorization or is misconfigured). On a shared
	// spool one may have happened through another node (signedInElsewhere).
	signIn bool
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
	a.hold.until, a.hold.reason, a.hold.signIn = until, reason, false
	if se != nil {
		a.lastErr = se.Record(now)
	}
}

// holdAndPostpone holds the account for d and postpones m to the hold's end.
func (e *Engine) holdAndPostpone(bg context.Context, a *account, m *spool.Message, d time.Duration, reason string, se *SMTPError, log *slog.Logger) {
	e.mu.Lock()
	seen := a.hold.recoveries
	e.mu.Unlock()
	e.holdSeen(bg, a, m, d, reason, se, seen, false, log)
}

// holdFromConnect holds the account for a token or hold error from
// connect (holdCause said it holds) and postpones m. The error was made
// when the account had seen recoveries recoveries; a recovery reported
// since (a login, here or, on a shared spool, through another node) makes
// the error stale, and m is due again at once instead.
func (e *Engine) holdFromConnect(bg context.Context, a *account, m *spool.Message, err error, log *slog.Logger) {
	var te *tokenError
	var he *holdError
	var seen uint64
	switch {
	case errors.As(err, &he):
		seen = he.recoveries
	case errors.As(err, &te):
		seen = te.recoveries
	}
	d, reason, rec := e.holdFor(a, err)
	signIn := he != nil || errors.Is(err, auth.ErrNeedsReauth) || errors.Is(err, auth.ErrMisconfigured)
	e.holdSeen(bg, a, m, d, reason, rec, seen, signIn, log)
}

// holdSeen holds a for d and postpones m to the hold's end, unless the
// account recovered after seen: then m is due again now. The check and
// the hold are one step under e.mu, so a recovery between the caller's
// look and the hold cannot be undone by it.
func (e *Engine) holdSeen(bg context.Context, a *account, m *spool.Message, d time.Duration, reason string, se *SMTPError, seen uint64, signIn bool, log *slog.Logger) {
	now := e.opts.Clock()
	until := now.Add(d)
	e.mu.Lock()
	if a.hold.recoveries != seen {
		e.mu.Unlock()
		e.postpone(bg, a, m, now, "account recovered while connecting", log)
		return
	}
	a.holdLocked(until, reason, se, now)
	a.hold.signIn = signIn
	e.mu.Unlock()
	log.Warn("account on hold; its messages wait without using attempts", "until", until, "reason", reason)
	if e.postpone(bg, a, m, e.parkUntil(a, until), reason, log) {
		e.unparkIfRecovered(bg, a.cfg.Name, m.ID, seen, log)
	}
}

// unparkIfRecovered makes message id, just parked for the hold of account
// name, due again now if the account recovered after seen. A recovery
// clears the hold and flushes the account's waiting mail (accountRecovered),
// but the flush skips a message that a worker or parkAll has claimed, and
// that message would then wait out the whole hold: on a shared spool this
// happened to mail parked by a node in the moment it learned of a sign-in
// through another node. The recovery counts before it flushes, and this
// looks after the park is committed, so one of the two releases the message.
func (e *Engine) unparkIfRecovered(ctx context.Context, name, id string, seen uint64, log *slog.Logger) {
	if e.recoveriesByName(name) == seen {
		return
	}
	if err := e.drains.Flush(ctx, id); err != nil {
		// Claimed or finished meanwhile: no longer waiting for the hold.
		log.Debug("releasing a message parked while its account recovered", "msg_id", id, "err", err)
		return
	}
	log.Info("account recovered while its message was parked; the message is due now", "msg_id", id)
	e.wake()
}

// signedInElsewhere is asked before the scheduler parks the due mail of
// an account on hold: on a shared spool, an account held for a sign-in
// may have been signed in through another node, which this node's token
// source learns of only when it next reads the shared account record
// (auth re-reads it every few seconds, and at once when a token call
// would fail). Mail enqueued through any node in that moment would be
// parked here until then, so the token source is asked first: a token
// means the hold is over, and the account is released as on a recovery.
// The question costs a read of the account record per parking, which
// happens only when new mail arrives for the held account.
func (e *Engine) signedInElsewhere(ctx context.Context, name string) bool {
	if e.cluster() == nil || e.tokens == nil { // cluster.go
		return false
	}
	e.mu.Lock()
	a := e.accounts[name]
	if a == nil || !a.hold.signIn || !a.hold.active(e.opts.Clock()) {
		e.mu.Unlock()
		return false
	}
	seen := a.hold.recoveries
	e.mu.Unlock()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := e.tokens.AccessToken(tctx, name); err != nil {
		return false
	}
	if e.recoveriesByName(name) == seen {
		// The token source reported no recovery (it knew of the sign-in
		// already): end the hold here.
		e.accountRecovered(name)
	}
	return true
}

// recoveriesByName reads the recovery count of account name (0 for an
// account not configured, which no recovery releases).
func (e *Engine) recoveriesByName(name string) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if a := e.accounts[name]; a != nil {
		return a.hold.recoveries
	}
	return 0
}

// accountRecovered is the token source's recovery hook: it clears the
// account's hold, makes its messages due now and wakes the scheduler. It
// runs on the caller's goroutine, so it must not block for long.
func (e *Engine) accountRecovered(name string) {
	e.mu.Lock()
	if a := e.accounts[name]; a != nil {
		a.hold.until, a.hold.reason, a.hold.signIn = time.Time{}, "", false
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
