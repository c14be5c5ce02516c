package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
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

// connGuard ties one upstream connection (a connection worker's, or a
// probe's) to the shared slot it holds. A slot is a session advisory lock
// in the database: a database restart, or the slot's session terminated,
// frees it at once while the connection it guards is still open, and
// once the database is back another node may take it and open one more
// connection than the mailbox allows (Microsoft refuses that with "432
// 4.3.2" and counts it against the mailbox). So the guard watches the
// slot, and the moment its session is lost closes the connection: with
// QUIT when it is idle and the upstream answers within slotQuitTimeout,
// else by dropping it; an attempt in flight on it ends as one interrupted
// by shutdown does (the message goes back to the queue without using an
// attempt; if the drop came after the final dot the upstream may have it,
// and it is sent again: never lost, possibly twice). Then the worker
// stops, and the scheduler starts a new one when a slot is free.
//
// This relies on the slot saying promptly that it is lost: pgspool's
// slots are watched on their own database connection, where a server
// shutdown or a terminated session is seen at once, and pinged after 5 s
// of quiet, so a link that dies silently is seen within 10 s. What
// remains is a network partition during which PostgreSQL gives up on
// this node's session faster than that (its tcp_keepalives settings far
// below the kernel's 2-hour default) or restarts: another node may then
// open a connection up to 10 s before this one closes its own.
type connGuard struct {
	slot spool.ConnSlot // nil: one node, nothing shared
	// ctx is the connection's: sessions are opened with it, and
	// cancelling it drops them. soft ends the worker's waits and claims.
	ctx, soft          context.Context
	cancel, cancelSoft context.CancelFunc

	mu   sync.Mutex
	busy bool    // an attempt is using the connection
	idle session // the open connection while no attempt uses it
	lost bool

	stop chan struct{} // ends the watch
	done chan struct{} // closed when the watch has returned
}

// slotQuitTimeout bounds the QUIT of an idle connection whose slot was
// lost: a round trip to the provider takes well under it, and a database
// restart takes longer, so the connection is gone before any node could
// take the slot again.
const slotQuitTimeout = 250 * time.Millisecond

// slotRetry is how soon an account whose slots were all taken on the
// nodes tries again: a probe, and a new connection worker unless one of
// the account's own gives its slot back first. Trying on every scheduling
// pass instead cost three nodes at 50 clients seven slot statements per
// message; a second is short enough that mail waits no noticeably longer
// for a slot freed on another node, which nothing here would announce.
const slotRetry = time.Second

// takeSlot takes one of a's connection slots across the nodes for the
// life of one connection and returns its guard. On a spool with one node
// the guard holds nothing and never reports a loss. ok false means every
// slot is taken on some node (or the database cannot say): the caller
// does not connect, and tries again later.
func (e *Engine) takeSlot(a *account) (g *connGuard, ok bool) {
	g = &connGuard{stop: make(chan struct{}), done: make(chan struct{})}
	e.mu.Lock() // Run sets them; a test send may come before it does
	soft, hard := e.soft, e.hard
	e.mu.Unlock()
	g.ctx, g.cancel = context.WithCancel(hard)
	g.soft, g.cancelSoft = context.WithCancel(soft)
	cl := e.cluster()
	if cl == nil {
		close(g.done)
		return g, true
	}
	ctx, cancel := context.WithTimeout(soft, 10*time.Second)
	defer cancel()
	slot, err := cl.AcquireConnSlot(ctx, a.cfg.Name, a.cfg.MaxConnections)
	switch {
	case err == nil:
		g.slot = slot
		go g.watch(e, a)
		return g, true
	case errors.Is(err, spool.ErrNoSlot):
		e.mu.Lock()
		a.slotsFullAt = e.opts.Clock()
		e.mu.Unlock()
		e.log.Debug("every connection slot of the account is in use on the nodes; waiting", "account", a.cfg.Name, "limit", a.cfg.MaxConnections)
	case soft.Err() == nil:
		e.log.Warn("taking a connection slot shared by the nodes; trying again shortly", "account", a.cfg.Name, "err", err)
	}
	close(g.done)
	g.cancel()
	g.cancelSoft()
	return nil, false
}

// watch waits for the slot's loss and closes the connection.
func (g *connGuard) watch(e *Engine, a *account) {
	defer close(g.done)
	select {
	case <-g.stop:
		return
	case <-g.slot.Lost():
	}
	g.cancelSoft()
	g.mu.Lock()
	g.lost = true
	idle, busy := g.idle, g.busy
	g.idle = nil
	g.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	reason := g.slot.Held(ctx)
	cancel()
	e.log.Warn("lost the connection slot shared by the nodes; closing its upstream connection before another node can take the slot",
		"account", a.cfg.Name, "sending", busy, "err", reason)
	if busy || idle == nil {
		g.cancel() // an attempt in flight, or nothing open: drop at once
		return
	}
	t := time.AfterFunc(slotQuitTimeout, g.cancel) // cuts a QUIT that takes longer
	idle.close()
	t.Stop()
	g.cancel()
}

// begin marks the connection in use by an attempt; false when the slot
// is lost and nothing more may be sent.
func (g *connGuard) begin() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.lost {
		return false
	}
	g.busy, g.idle = true, nil
	return true
}

// end marks the attempt over; sess is the connection it left open.
func (g *connGuard) end(sess session) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.busy = false
	if !g.lost {
		g.idle = sess
	}
}

// held says whether the connection may go on.
func (g *connGuard) held() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.lost
}

// slotCut says the connection's context was cancelled by the loss of its
// slot, not by shutdown: a failure on it is the guard's doing.
func (e *Engine) slotCut(ctx context.Context) bool {
	return ctx.Err() != nil && e.hard.Err() == nil
}

// reasonSlotLost is why a message whose connection was closed for the
// loss of its slot waits.
const reasonSlotLost = "connection closed: its slot shared by the nodes was lost (database restart?)"

// slotLostVerdict is d for a send whose connection the guard dropped
// because the slot was lost: not the upstream's failure, so, as for a
// send cut by shutdown, the message goes back to the queue at once
// without using an attempt; err kept, so a drop after the final dot is
// logged as a possible duplicate.
func (e *Engine) slotLostVerdict(ctx context.Context, d disposition, err error) disposition {
	se := asSMTPError(err)
	if se == nil || se.Code != 0 || !e.slotCut(ctx) {
		return d
	}
	return disposition{verdict: verdictPostpone, next: e.opts.Clock(), reason: reasonSlotLost, err: se}
}

// releaseSlot gives the slot back once the connection is closed.
func (e *Engine) releaseSlot(a *account, g *connGuard) {
	if g == nil {
		return
	}
	close(g.stop)
	<-g.done
	g.cancel()
	g.cancelSoft()
	if g.slot == nil {
		return
	}
	if err := g.slot.Release(); err != nil {
		// The slot's own database session ends with it, which frees it.
		e.log.Warn("giving back a connection slot shared by the nodes", "account", a.cfg.Name, "err", err)
	}
	// A slot is free now: the account need not wait out slotRetry.
	e.mu.Lock()
	a.slotsFullAt = time.Time{}
	e.mu.Unlock()
}

// slotsPausedLocked says whether a starts no new connection worker yet
// because takeSlot found every slot taken less than slotRetry ago, and
// then asks for a pass when the pause ends (e.mu held).
func (e *Engine) slotsPausedLocked(a *account, now time.Time, earlier func(time.Time)) bool {
	if a.slotsFullAt.IsZero() {
		return false
	}
	if a.slotsFullAt.After(now) {
		a.slotsFullAt = now // the clock was set back: never a longer pause
	}
	until := a.slotsFullAt.Add(slotRetry)
	if !now.Before(until) {
		return false
	}
	earlier(until)
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

// recordBudget records the n recipients of m delivered through a. On a
// shared spool the record gives back m's reservation in the same commit:
// in two commits the send counted twice in between, as sent and as
// reserved, and another node deciding in that moment made its mail wait
// for "sends in flight" that had been sent. The release after the attempt
// then finds nothing left to give back.
func (e *Engine) recordBudget(bg context.Context, a *account, m *spool.Message, now time.Time, n int) error {
	if cl := e.cluster(); cl != nil && a.cfg.DailyRecipientLimit > 0 {
		return cl.RecordReserved(bg, a.cfg.Name, clusterReserveID(m.ID), m.ID, m.Account, now, n, now.Add(-budgetWindow))
	}
	return e.budgets.BudgetRecord(bg, a.cfg.Name, m.ID, m.Account, now, n, now.Add(-budgetWindow))
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
	a.budget.countedByEntries()
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
