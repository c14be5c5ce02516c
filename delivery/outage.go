package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/spoold/spoold/configs/field"
	"github.com/spoold/spoold/spool"
)

// Upstream outages (issue 23).
//
// A refused or timed-out connection, a failed TLS handshake or a 421 at the
// greeting says nothing about the message being sent: the upstream (or the
// link to it) is down. Such connection-level failures therefore never use a
// message's attempts. The message waits a short account-level delay, and
// after OutagePolicy.After of them in a row the account is upstream_down:
//
//   - its due messages are parked (postponed without an attempt, like those
//     of a held account) until HoldInterval later, never past the end of
//     their lifetime; a message whose lifetime is over is dead-lettered with
//     the last connection error;
//   - one probe connection at a time checks the upstream, on a backoff of
//     its own (OutagePolicy: short at first, a few minutes at most,
//     jittered), instead of one connection per message;
//   - the first connection that succeeds (a probe, a worker that was
//     already connecting, a test send) ends the state and makes every parked
//     message due at once; the account's connection cap and rate then pace
//     the drain.
//
// Only parked messages are made due: their reason starts with
// reasonUnreachable, while messages deferred for reasons of their own (a 4xx
// to one recipient) keep their schedule. Parked messages outlive the
// process, so Run looks for them at start and, if it finds any, starts the
// account in upstream_down with a probe due at once.

// OutagePolicy says when an account is upstream_down and how often it is
// probed then. Zero fields take DefaultOutagePolicy's values; jitter follows
// the same rule as RetryPolicy's (0 = default, NoJitter = none).
type OutagePolicy struct {
	After      int           // connection-level failures in a row that make the account upstream_down; default 3
	First      time.Duration // delay before the first probe (and the wait of a message after such a failure); default 10s
	Multiplier float64       // growth per failed probe, 1..100; default 2
	Max        time.Duration // longest delay between probes; default 3m (or First, if longer)
	Jitter     float64       // ± fraction, 0..1; default 0.2; NoJitter (-1) = none
}

// DefaultOutagePolicy: three failures in a row; probes after 10 s, 20 s,
// 40 s ... at most 3 min apart, ±20 %. A link that comes back is found within
// 3.6 min at worst, and a long outage costs about one connection per 3 min.
func DefaultOutagePolicy() OutagePolicy {
	return OutagePolicy{After: 3, First: 10 * time.Second, Multiplier: 2, Max: 3 * time.Minute, Jitter: DefaultJitter}
}

func (p OutagePolicy) shape() backoffShape {
	return backoffShape{first: p.First, multiplier: p.Multiplier, max: p.Max, jitter: p.Jitter}
}

// WithDefaults returns p with its zero fields set from DefaultOutagePolicy.
// It is idempotent and leaves out-of-range values for Validate.
func (p OutagePolicy) WithDefaults() OutagePolicy {
	def := DefaultOutagePolicy()
	s := p.shape().withDefaults(def.shape())
	p.First, p.Multiplier, p.Max, p.Jitter = s.first, s.multiplier, s.max, s.jitter
	if p.After == 0 {
		p.After = def.After
	}
	return p
}

// Validate reports what is wrong with p as it would run (defaults
// applied), keyed by delivery.outage's YAML names: after, first_probe,
// max_probe, multiplier, jitter.
func (p OutagePolicy) Validate() error {
	p = p.WithDefaults()
	var ps field.Problems
	if p.After < 0 {
		ps.Add("after", "%d is negative: want a count of failures, or 0 for the default", p.After)
	}
	p.shape().validate(&ps, "first_probe", "max_probe")
	return ps.Err()
}

// probeDelay is the wait after the step-th failure (0-based), computed with
// the retry schedule's backoff parameters so both share one formula.
func (e *Engine) probeDelay(step int, now time.Time) time.Time {
	p := e.opts.Outage
	next, _ := NextRetry(RetryPolicy{First: p.First, Multiplier: p.Multiplier, Max: p.Max, Jitter: p.Jitter,
		Lifetime: math.MaxInt64}, step+1, now, now, e.opts.Rand)
	return next
}

// reasonUnreachable starts the reason of every message parked by a
// connection-level failure; the drain after recovery flushes exactly these.
const reasonUnreachable = "upstream unreachable: "

// isConnLevel reports a failure to reach the upstream at all, as opposed to
// an answer about the account or the message.
func isConnLevel(se *SMTPError) bool {
	switch se.Command {
	case "CONNECT", "TLS":
		return true
	case "STARTTLS", "EHLO":
		// The greeting is read by the first of these: 421 there is "service
		// not available"; no code is a reset or a timeout before any reply.
		return se.Code == 0 || se.Code == 421
	}
	return false
}

// connLevelFailed handles a message whose connection failed at the
// connection level: counts the failure for the account (possibly entering
// upstream_down) and parks the message without using its attempt.
func (e *Engine) connLevelFailed(bg context.Context, a *account, m *spool.Message, se *SMTPError, log *slog.Logger) {
	now := e.opts.Clock()
	e.mu.Lock()
	a.connFails++
	a.reached = false
	a.lastErr = se.Record(now)
	entered := false
	if a.downSince.IsZero() && a.connFails >= e.opts.Outage.After && !a.removed {
		a.downSince, a.downReason, a.downErr = now, se.Error(), se
		a.probeStep, a.probeAt = 0, e.probeDelay(0, now)
		entered = true
	}
	if !a.downSince.IsZero() {
		a.downReason, a.downErr = se.Error(), se
	}
	down := !a.downSince.IsZero()
	fails, probeAt, ups := a.connFails, a.probeAt, a.ups
	until := now.Add(e.opts.HoldInterval)
	if !down {
		// Not yet an outage: a short, growing account-level wait.
		until = e.probeDelay(fails-1, now)
	}
	e.mu.Unlock()
	if entered {
		e.m.upstreamDown.WithLabelValues(a.cfg.Name).Set(1)
		e.log.Warn("upstream is down: messages wait without using attempts; probing with one connection",
			"account", a.cfg.Name, "failures", fails, "next_probe", probeAt, "err", se.Error())
	} else if !down {
		log.Warn("connection to the upstream failed; the message waits without using an attempt",
			"failures_in_a_row", fails, "until", until, "err", se.Error())
	}
	if e.park(bg, a, m, until, reasonUnreachable+se.Error(), se) {
		e.mu.Lock()
		raced := a.ups != ups
		e.mu.Unlock()
		if raced {
			// The upstream came back between our look and the park, and
			// its drain may have missed this message: make it due now.
			if err := e.drains.Flush(bg, m.ID); err != nil {
				log.Warn("making a parked message due after the upstream came back", "err", err)
			}
		}
	}
}

// park postpones a claimed message of an unreachable upstream until until
// (capped at its lifetime's end) without using an attempt, or dead-letters it
// when its lifetime is over. It reports whether the message was postponed.
func (e *Engine) park(bg context.Context, a *account, m *spool.Message, until time.Time, reason string, se *SMTPError) bool {
	now := e.opts.Clock()
	log := e.log.With("msg_id", m.ID, "account", a.cfg.Name)
	deadline := m.Created.Add(a.cfg.Retry.Lifetime)
	if !now.Before(deadline) {
		e.dead(bg, a, m, fmt.Sprintf("delivery lifetime of %s expired; last error: %s", a.cfg.Retry.Lifetime,
			strings.TrimPrefix(reason, reasonUnreachable)), se, nil, log)
		return false
	}
	if until.After(deadline) {
		until = deadline
	}
	if err := e.claims.Postpone(bg, m.ID, e.opts.Owner, until, reason); err != nil {
		log.Error("postponing", "err", err)
		return false
	}
	e.m.attempt(a.cfg.Name, "postponed", se.Class)
	return true
}

// parkConcurrency is how many parks or flushes run at once: concurrent
// transitions share the spool's group commits.
const parkConcurrency = 16

// parkDown parks every due message of an upstream_down account.
func (e *Engine) parkDown(ctx context.Context, a *account) {
	name := a.cfg.Name
	total := 0
	e.mu.Lock()
	ups := a.ups
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		raced := a.ups != ups
		e.mu.Unlock()
		if raced {
			// The upstream came back while we parked: the drain may have
			// listed the messages before we parked them.
			e.drainParked(name)
		}
	}()
	for ctx.Err() == nil {
		e.mu.Lock()
		reason, se, down := a.downReason, a.downErr, !a.downSince.IsZero()
		e.mu.Unlock()
		if !down {
			break
		}
		msgs, err := e.claims.ClaimAccount(ctx, name, e.opts.Clock(), 100, e.opts.Owner)
		if err != nil {
			e.log.Error("claiming messages to park", "account", name, "err", err)
			return
		}
		if se == nil {
			se = &SMTPError{Class: ClassTransient, Text: reason}
		}
		until := e.opts.Clock().Add(e.opts.HoldInterval)
		bg := context.WithoutCancel(ctx)
		var wg sync.WaitGroup
		sem := make(chan struct{}, parkConcurrency)
		for _, m := range msgs {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				e.park(bg, a, m, until, reasonUnreachable+reason, se)
			}()
		}
		wg.Wait()
		total += len(msgs)
		if len(msgs) < 100 {
			break
		}
	}
	if total > 0 {
		// New mail parks one message at a time: only big batches are news.
		level := slog.LevelDebug
		if total >= 100 {
			level = slog.LevelInfo
		}
		e.log.Log(ctx, level, "upstream down: messages wait", "account", name, "messages", total,
			"until", e.opts.Clock().Add(e.opts.HoldInterval))
	}
}

// startProbes starts the probe of every upstream_down account whose time has
// come and reports the next probe times to the scheduler.
func (e *Engine) startProbes(now time.Time, earlier func(time.Time)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.paused {
		return
	}
	for _, a := range e.accounts {
		switch {
		case a.downSince.IsZero() || a.probing || a.removed:
		case a.probeAt.After(now):
			earlier(a.probeAt)
		case a.hold.active(now):
			// Held (token endpoint down, needs re-authorization): a probe
			// could not even log in; try again when the hold ends.
			earlier(a.hold.until)
		case e.workers >= e.opts.Workers:
			earlier(now.Add(time.Second))
		default:
			a.probing = true
			a.conns++
			e.workers++
			e.wg.Add(1)
			go e.probe(a)
		}
	}
}

// probe makes one connection for an upstream_down account: success ends the
// state, a connection-level failure moves the next probe one step further.
func (e *Engine) probe(a *account) {
	name := a.cfg.Name
	log := e.log.With("account", name)
	defer func() {
		e.mu.Lock()
		a.probing = false
		a.conns--
		e.workers--
		e.mu.Unlock()
		e.wg.Done()
		e.wake()
	}()
	// A probe is a connection like any other: it takes one of the
	// account's slots shared by the nodes, and closes if the slot is lost
	// (cluster.go).
	g, ok := e.takeSlot(a)
	if !ok {
		e.mu.Lock()
		a.probeAt = e.opts.Clock().Add(slotRetry)
		e.mu.Unlock()
		return
	}
	defer e.releaseSlot(a, g)
	if !g.begin() {
		return
	}
	ctx := g.soft
	s, err := e.connect(ctx, a, log, true)
	if ctx.Err() != nil {
		// Shutting down (no verdict; the next process probes again), or
		// the slot was lost: probe again once one is free.
		if s != nil {
			s.close()
		}
		return
	}
	if err == nil {
		s.close()
		e.m.probes.WithLabelValues(name, "up").Inc()
		e.upstreamBack(a, "a probe connected")
		return
	}
	now := e.opts.Clock()
	if holds, stale := e.holdCause(a, err); holds {
		if stale {
			// The account recovered (a login) after this token answer was
			// made: no hold; probe again at once.
			e.mu.Lock()
			a.probeAt = now
			e.mu.Unlock()
			return
		}
		// Not an answer from the upstream: hold the account as a message
		// would, and probe again after the next step.
		d, reason, rec := e.holdFor(a, err)
		e.mu.Lock()
		a.holdLocked(now.Add(d), reason, rec, now)
		a.probeAt = e.probeDelay(a.probeStep, now)
		e.mu.Unlock()
		e.m.probes.WithLabelValues(name, "error").Inc()
		log.Warn("upstream probe could not log in; the account is held", "reason", reason)
		return
	}
	se := asSMTPError(err)
	if se == nil {
		se = &SMTPError{Class: ClassTransient, Text: err.Error(), Err: err}
	}
	if !isConnLevel(se) {
		// The upstream answered: it is up. Whatever else is wrong (a 5xx
		// to EHLO, refused credentials) shows on the next message, which
		// handles it as usual.
		e.m.probes.WithLabelValues(name, "up").Inc()
		e.upstreamBack(a, "the upstream answered a probe: "+se.Error())
		return
	}
	e.mu.Lock()
	a.probeStep++
	a.probeAt = e.probeDelay(a.probeStep, now)
	a.connFails++
	a.downReason, a.downErr = se.Error(), se
	a.lastErr = se.Record(now)
	next := a.probeAt
	e.mu.Unlock()
	e.m.probes.WithLabelValues(name, "down").Inc()
	log.Info("upstream still down", "next_probe", next, "err", se.Error())
}

// connected is called after every successful connection of the account.
func (e *Engine) connected(a *account, how string) {
	e.mu.Lock()
	down := !a.downSince.IsZero()
	first := !a.reached
	a.connFails, a.reached = 0, true
	e.mu.Unlock()
	if down {
		e.upstreamBack(a, how)
	} else if first {
		e.wake() // end of the slow start: more connections may open
	}
}

// upstreamBack ends upstream_down and makes the parked messages due now.
func (e *Engine) upstreamBack(a *account, how string) {
	now := e.opts.Clock()
	e.mu.Lock()
	since := a.downSince
	a.connFails, a.downSince, a.downReason, a.downErr = 0, time.Time{}, "", nil
	a.reached = true
	if !since.IsZero() {
		a.ups++
	}
	a.probeStep, a.probeAt = 0, time.Time{}
	e.mu.Unlock()
	if since.IsZero() {
		return // another success got here first
	}
	e.m.upstreamDown.WithLabelValues(a.cfg.Name).Set(0)
	e.log.Info("upstream is back; draining the account's waiting messages", "account", a.cfg.Name,
		"down_for", now.Sub(since).Round(time.Second), "how", how)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.drainParked(a.cfg.Name)
	}()
}

// drainParked makes the account's parked messages due now, oldest first,
// leaving messages deferred for reasons of their own on their schedule.
func (e *Engine) drainParked(name string) {
	ctx := e.soft
	now := e.opts.Clock()
	n, cursor := 0, ""
	sem := make(chan struct{}, parkConcurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for ctx.Err() == nil {
		page, err := e.drains.List(ctx, spool.Filter{State: spool.StateDeferred, Account: name}, cursor, 1000)
		if err != nil {
			if ctx.Err() == nil {
				e.log.Error("listing parked messages to drain", "account", name, "err", err)
			}
			break
		}
		for _, m := range page.Messages {
			if !strings.HasPrefix(m.Reason, reasonUnreachable) || !m.NextAttempt.After(now) {
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func(id string) {
				defer func() { <-sem; wg.Done() }()
				// A message claimed or finished meanwhile is not ours to flush.
				if err := e.drains.Flush(ctx, id); err == nil {
					mu.Lock()
					n++
					mu.Unlock()
				} else if !errors.Is(err, spool.ErrWrongState) && !errors.Is(err, spool.ErrNotFound) && ctx.Err() == nil {
					e.log.Warn("making a parked message due", "msg_id", id, "account", name, "err", err)
				}
			}(m.ID)
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	wg.Wait()
	e.log.Info("parked messages are due", "account", name, "messages", n, "took", e.opts.Clock().Sub(now))
	e.wake()
}

// resumeOutages starts accounts with messages parked by an earlier process
// in upstream_down with a probe due now: their messages drain as soon as the
// upstream answers, not after HoldInterval.
func (e *Engine) resumeOutages(ctx context.Context) {
	e.mu.Lock()
	names := make([]string, 0, len(e.accounts))
	for name := range e.accounts {
		names = append(names, name)
	}
	e.mu.Unlock()
	for _, name := range names {
		found, reason := false, ""
		for cursor := ""; !found && ctx.Err() == nil; {
			page, err := e.drains.List(ctx, spool.Filter{State: spool.StateDeferred, Account: name}, cursor, 1000)
			if err != nil {
				e.log.Error("looking for parked messages", "account", name, "err", err)
				break
			}
			for _, m := range page.Messages {
				if strings.HasPrefix(m.Reason, reasonUnreachable) {
					found, reason = true, strings.TrimPrefix(m.Reason, reasonUnreachable)
					break
				}
			}
			if page.Next == "" {
				break
			}
			cursor = page.Next
		}
		if !found {
			continue
		}
		now := e.opts.Clock()
		e.mu.Lock()
		a := e.accounts[name]
		if a != nil && a.downSince.IsZero() {
			a.downSince, a.downReason = now, "before the restart: "+reason
			a.downErr = &SMTPError{Class: ClassTransient, Text: a.downReason}
			a.connFails, a.probeStep, a.probeAt = e.opts.Outage.After, 0, now
		}
		e.mu.Unlock()
		if a != nil {
			e.m.upstreamDown.WithLabelValues(name).Set(1)
			e.log.Info("messages wait from an upstream outage before the restart; probing now", "account", name)
		}
	}
}
