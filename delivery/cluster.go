package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spoold/spoold/spool"
)

// Limits across nodes. When several spoold nodes share one spool (a
// PostgreSQL spool: spool.ClusterLimits), the provider's limits are per
// mailbox, not per node: Microsoft allows 3 concurrent SMTP connections
// per mailbox and refuses more with "432 4.3.2 Concurrent connections
// limit exceeded", and the rate and daily recipient budget are the
// mailbox's too. The engine's own counters (conns, the rate limiter, the
// budget window) still apply on each node; these hooks add the shared
// count on top, so the stricter of the two holds.

// cluster returns the spool's shared limits, or nil for a spool with one
// node (the embedded spool).
func (e *Engine) cluster() spool.ClusterLimits {
	cl, _ := e.sp.(spool.ClusterLimits)
	return cl
}

// clusterSlot takes one of a's connection slots across the nodes for the
// life of one connection worker. nil with ok true means no shared slots
// (one node); ok false means every slot is taken on some node (or the
// database cannot say): the worker does not start, and the scheduler's
// next pass tries again.
func (e *Engine) clusterSlot(a *account) (slot spool.ConnSlot, ok bool) {
	cl := e.cluster()
	if cl == nil {
		return nil, true
	}
	ctx, cancel := context.WithTimeout(e.soft, 10*time.Second)
	defer cancel()
	slot, err := cl.AcquireConnSlot(ctx, a.cfg.Name, a.cfg.MaxConnections)
	switch {
	case err == nil:
		return slot, true
	case errors.Is(err, spool.ErrNoSlot):
		e.log.Debug("every connection slot of the account is in use on the nodes; waiting", "account", a.cfg.Name, "limit", a.cfg.MaxConnections)
	case e.soft.Err() == nil:
		e.log.Warn("taking a connection slot shared by the nodes; trying again shortly", "account", a.cfg.Name, "err", err)
	}
	return nil, false
}

// releaseSlot gives a shared slot back once its connection is closed.
func (e *Engine) releaseSlot(a *account, slot spool.ConnSlot) {
	if slot == nil {
		return
	}
	if err := slot.Release(); err != nil {
		// The slot's own database session ends with it, which frees it.
		e.log.Warn("giving back a connection slot shared by the nodes", "account", a.cfg.Name, "err", err)
	}
}

// slotHeld says whether the worker may go on sending over its slot: a
// slot whose database session was lost (a database restart) may already
// be another node's, and its connection must close.
func (e *Engine) slotHeld(a *account, slot spool.ConnSlot) bool {
	if slot == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(e.soft, 5*time.Second)
	defer cancel()
	if err := slot.Held(ctx); err != nil {
		if e.soft.Err() == nil {
			e.log.Warn("lost the connection slot shared by the nodes; closing the connection", "account", a.cfg.Name, "err", err)
		}
		return false
	}
	return true
}

// waitRate waits for a's turn under its rate: the nodes' shared rate
// when the spool has one, else the engine's limiter. The shared rate is
// the limiter's current one, so a throttled account slows on every node
// that saw the throttle.
func (e *Engine) waitRate(ctx context.Context, a *account) error {
	if a.limiter == nil {
		return nil
	}
	cl := e.cluster()
	if cl == nil {
		return a.limiter.Wait(ctx)
	}
	for {
		perMinute := float64(a.limiter.Limit()) * 60
		wait, err := cl.TakeRate(ctx, a.cfg.Name, perMinute, 1, e.opts.Clock())
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// Sending faster than allowed could get the mailbox blocked;
			// sending a little later costs nothing.
			e.log.Warn("reading the send rate shared by the nodes; waiting", "account", a.cfg.Name, "err", err)
			wait = 5 * time.Second
		}
		if wait <= 0 {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// clusterReserveID names a reservation in the shared budget apart from
// the entry spend records after the send, so giving the reservation back
// keeps the record.
func clusterReserveID(id string) string { return reservePrefix + id }

const reservePrefix = "reserve:"

// sharedBudgetWait is how long an account waits when only sends in
// flight on the nodes keep its next message from the budget.
const sharedBudgetWait = 5 * time.Second

// overBudgetShared is overBudget plus, on a shared spool, the nodes'
// common count: the recipients are reserved in the database under a
// per-account lock, so nodes sending at once cannot pass the limit
// together. The reservation is given back after the attempt (by then
// spend has recorded what was delivered); a node that dies first leaves
// it counted until it leaves the window: stricter, never looser.
func (e *Engine) overBudgetShared(ctx context.Context, a *account, m *spool.Message, log *slog.Logger) (until time.Time, reason string, over bool, release func()) {
	cl := e.cluster()
	limit := a.cfg.DailyRecipientLimit
	if cl != nil && limit > 0 {
		e.reloadSharedBudget(ctx, a, log)
	}
	until, reason, over, release = e.overBudget(ctx, a, m, log)
	if over || cl == nil || limit <= 0 {
		return until, reason, over, release
	}
	need := min(len(pendingRcpts(m)), limit)
	now := e.opts.Clock()
	rid := clusterReserveID(m.ID)
	ok, used, err := cl.ReserveBudget(ctx, a.cfg.Name, rid, need, limit, budgetWindow, now)
	if err != nil {
		// As overBudget does when it cannot read the window: the
		// provider's own limit still holds the account.
		log.Error("reserving recipients in the budget shared by the nodes; sending without it", "err", err)
		return until, reason, over, release
	}
	if !ok {
		release()
		// The window read just now (every node's sends) had room, so what
		// stands in the way is sends in flight on the nodes (or, for the
		// moment between two commits, a send's record and its reservation
		// both: recordedShared): look again shortly, not in an hour.
		e.m.budgetHeld.WithLabelValues(a.cfg.Name).Set(1)
		return now.Add(sharedBudgetWait), fmt.Sprintf("daily recipient budget nearly reached across the nodes: %d of %d recipients sent or being sent in the last 24 hours; "+
			"mail waits for the sends in flight", used, limit), true, func() {}
	}
	local := release
	return until, reason, false, func() {
		local()
		bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := cl.CancelBudget(bg, a.cfg.Name, rid); err != nil {
			log.Warn("giving back a budget reservation shared by the nodes; it counts until it leaves the 24-hour window", "err", err)
		}
	}
}

// recordedShared ends m's reservation in the shared budget once its
// record counts the recipients sent, not only when the attempt ends:
// counted twice meanwhile, the other nodes' next messages waited for
// "sends in flight" that had been sent. The release after the attempt
// then finds nothing left to give back.
func (e *Engine) recordedShared(bg context.Context, a *account, m *spool.Message, log *slog.Logger) {
	cl := e.cluster()
	if cl == nil || a.cfg.DailyRecipientLimit <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	if err := cl.CancelBudget(ctx, a.cfg.Name, clusterReserveID(m.ID)); err != nil {
		log.Warn("ending a budget reservation shared by the nodes after its send was recorded; it counts twice until the attempt ends", "err", err)
	}
}

// reloadSharedBudget reads a's window from the spool before each decision:
// other nodes add to it. Reservations are left out (the database counts
// them in ReserveBudget; here they would count this node's own sends
// twice and linger after they are given back).
func (e *Engine) reloadSharedBudget(ctx context.Context, a *account, log *slog.Logger) {
	now := e.opts.Clock()
	es, err := e.budgets.BudgetEntries(ctx, a.cfg.Name, now.Add(-budgetWindow))
	if err != nil {
		log.Warn("reading the budget shared by the nodes; deciding on this node's count", "err", err)
		return
	}
	kept := es[:0]
	for _, en := range es {
		if !strings.HasPrefix(en.ID, reservePrefix) {
			kept = append(kept, en)
		}
	}
	e.mu.Lock()
	a.budget.entries, a.budget.loaded = kept, true
	e.mu.Unlock()
}

// holdEnded reports that account name was held when the scheduler chose
// to park its mail but is no longer: a recovery (on a shared spool often
// seen through another node's sign-in) cleared the hold and flushed the
// queue while parkAll was postponing, and the rest must not be parked
// again until the old hold's end.
func (e *Engine) holdEnded(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	a := e.accounts[name]
	return a != nil && !a.hold.active(e.opts.Clock())
}
