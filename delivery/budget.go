package delivery

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spoold/spoold/spool"
)

// Daily recipient budgets and fallback routes.
//
// Providers cap the recipients one mailbox may send to in a day and answer
// past it with replies that block the whole mailbox for a day (Exchange's
// 554 5.2.0 SubmissionQuotaExceededException, Gmail's 550 5.4.5). An
// account with a DailyRecipientLimit counts the recipients it delivers in
// a rolling 24 hours, kept in the spool so a restart does not forget them,
// and when the next message would pass the limit the account is held until
// enough of the window has passed: its mail waits, nothing is refused.
//
// An account with a Fallback whose hold (for its budget or any other
// reason) has lasted FallbackAfter sends its mail through the fallback
// account until the hold ends; the spool records which account delivered
// each such message (spool.DeliveredVia).

// budgetWindow is the rolling window the providers' daily limits count in.
const budgetWindow = 24 * time.Hour

// budgetStore is where the counts live (the spool).
type budgetStore interface {
	BudgetRecord(ctx context.Context, account, id, own string, at time.Time, n int, forgetBefore time.Time) error
	BudgetEntries(ctx context.Context, account string, since time.Time) ([]spool.BudgetEntry, error)
}

// budget is an account's window, guarded by Engine.mu.
type budget struct {
	loaded  bool
	entries []spool.BudgetEntry // oldest first, within the window
	// reserved counts the recipients of messages being sent now: the
	// account's connections share one budget, so three of them cannot each
	// take the last place. held is the same per message, so a send's
	// reservation ends the moment its record counts instead (spend), not
	// only when its attempt ends: counted twice meanwhile, the next message
	// of an account with room left waited a minute for "sends in flight".
	reserved int
	held     map[string]reservation
}

// reservation is one message's reserved recipients and when they were
// reserved: a budget entry of that message from then on counts them.
type reservation struct {
	n  int
	at time.Time
}

// unreserve ends message id's reservation, if it still has one.
func (b *budget) unreserve(id string) {
	b.reserved -= b.held[id].n
	delete(b.held, id)
}

// countedByEntries ends the reservations that entries now count: on a
// shared spool a worker re-reads the window while another is between its
// send's record and its unreserve (spend), and counted twice there the
// account waited a minute for "sends in flight" that had been sent.
func (b *budget) countedByEntries() {
	for _, en := range b.entries {
		if r, ok := b.held[en.ID]; ok && !en.At.Before(r.at) {
			b.unreserve(en.ID)
		}
	}
}

// add counts an entry once: on a shared spool another worker's reload
// (cluster.go) may have read it from the spool already.
func (b *budget) add(en spool.BudgetEntry) {
	for i := len(b.entries) - 1; i >= 0 && !b.entries[i].At.Before(en.At); i-- { // oldest first: look at the newest
		if b.entries[i].ID == en.ID && b.entries[i].At.Equal(en.At) {
			return
		}
	}
	b.entries = append(b.entries, en)
}

// trim drops entries that left the window at now and returns the count of
// recipients still in it.
func (b *budget) trim(now time.Time) int {
	cut := now.Add(-budgetWindow)
	i := 0
	for i < len(b.entries) && !b.entries[i].At.After(cut) {
		i++
	}
	b.entries = b.entries[i:]
	used := 0
	for _, en := range b.entries {
		used += en.Recipients
	}
	return used
}

// load reads the window from the spool once per account record.
func (e *Engine) loadBudget(ctx context.Context, a *account, now time.Time) error {
	e.mu.Lock()
	loaded := a.budget.loaded
	e.mu.Unlock()
	if loaded {
		return nil
	}
	es, err := e.budgets.BudgetEntries(ctx, a.cfg.Name, now.Add(-budgetWindow))
	if err != nil {
		return err
	}
	e.mu.Lock()
	if !a.budget.loaded {
		a.budget.entries, a.budget.loaded = es, true
	}
	e.mu.Unlock()
	return nil
}

// loadBudgets reads the windows of new account records with a limit, so
// that status shows the day's count from the start (a failure leaves the
// read to the first message).
func (e *Engine) loadBudgets(accs map[string]*account) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := e.opts.Clock()
	for _, a := range accs {
		if a.cfg.DailyRecipientLimit <= 0 {
			continue
		}
		if err := e.loadBudget(ctx, a, now); err != nil {
			e.log.Error("reading the daily recipient budget", "account", a.cfg.Name, "err", err)
			continue
		}
		e.mu.Lock()
		used := a.budget.trim(now)
		e.mu.Unlock()
		e.m.budgetUsed.WithLabelValues(a.cfg.Name).Set(float64(used))
	}
}

// overBudget says whether sending m through a now would pass a's daily
// limit, and if so until when the account waits and why. When it may go,
// its recipients are reserved until release is called (after the attempt
// has counted what it delivered).
func (e *Engine) overBudget(ctx context.Context, a *account, m *spool.Message, log *slog.Logger) (until time.Time, reason string, over bool, release func()) {
	release = func() {}
	limit := a.cfg.DailyRecipientLimit
	if limit <= 0 {
		return time.Time{}, "", false, release
	}
	now := e.opts.Clock()
	if err := e.loadBudget(ctx, a, now); err != nil {
		// Sending on is the lesser harm: the provider's own limit still holds the account.
		log.Error("reading the daily recipient budget; sending without it", "err", err)
		return time.Time{}, "", false, release
	}
	need := min(len(pendingRcpts(m)), limit) // a message larger than the budget goes with an empty window
	e.mu.Lock()
	defer e.mu.Unlock()
	sent := a.budget.trim(now)
	e.m.budgetUsed.WithLabelValues(a.cfg.Name).Set(float64(sent))
	used := sent + a.budget.reserved
	if used+need <= limit {
		e.m.budgetHeld.WithLabelValues(a.cfg.Name).Set(0)
		a.budget.reserved += need
		if a.budget.held == nil {
			a.budget.held = map[string]reservation{}
		}
		r := a.budget.held[m.ID]
		a.budget.held[m.ID] = reservation{n: r.n + need, at: now}
		return time.Time{}, "", false, func() {
			e.mu.Lock()
			a.budget.unreserve(m.ID)
			e.mu.Unlock()
		}
	}
	if a.budget.reserved > 0 && sent+need <= limit {
		// Only sends in flight stand in the way: wait for them, not a day.
		until = now.Add(time.Minute)
		e.m.budgetHeld.WithLabelValues(a.cfg.Name).Set(1)
		return until, fmt.Sprintf("daily recipient budget nearly reached: %d of %d recipients sent or being sent in the last 24 hours; "+
			"mail waits for the sends in flight", used, limit), true, release
	}
	freed := 0
	for _, en := range a.budget.entries {
		freed += en.Recipients
		until = en.At.Add(budgetWindow)
		if used-freed+need <= limit {
			break
		}
	}
	if !until.After(now) {
		until = now.Add(time.Second)
	}
	e.m.budgetHeld.WithLabelValues(a.cfg.Name).Set(1)
	reason = fmt.Sprintf("daily recipient budget reached: %d of %d recipients sent in the last 24 hours and the next message has %d; "+
		"mail waits until the window frees enough (raise daily_recipient_limit if the provider allows more)", used, limit, len(pendingRcpts(m)))
	return until, reason, true, release
}

// spend counts n recipients of m, delivered through a, in a's window.
func (e *Engine) spend(bg context.Context, a *account, m *spool.Message, n int, log *slog.Logger) {
	if a.cfg.DailyRecipientLimit <= 0 && a.cfg.Name == m.Account {
		return // nothing counts, and no route to record
	}
	now := e.opts.Clock()
	if err := e.recordBudget(bg, a, m, now, n); err != nil { // cluster.go
		log.Error("recording recipients in the daily budget", "err", err)
	}
	if a.cfg.DailyRecipientLimit <= 0 {
		return
	}
	e.mu.Lock()
	a.budget.unreserve(m.ID) // the record counts them now
	if a.budget.loaded {
		a.budget.add(spool.BudgetEntry{At: now, ID: m.ID, Recipients: n})
	}
	used := a.budget.trim(now)
	e.mu.Unlock()
	e.m.budgetUsed.WithLabelValues(a.cfg.Name).Set(float64(used))
}

// holdForBudget holds a until until for its budget and postpones m.
func (e *Engine) holdForBudget(bg context.Context, a *account, m *spool.Message, until time.Time, reason string, log *slog.Logger) {
	now := e.opts.Clock()
	e.mu.Lock()
	a.holdLocked(until, reason, nil, now)
	e.mu.Unlock()
	log.Warn("account on hold for its daily recipient budget; its messages wait without using attempts", "until", until, "reason", reason)
	e.postpone(bg, a, m, e.parkUntil(a, until), reason, log)
}

// fallbackLocked returns the account that sends a's mail now, or nil when
// a has none or its hold has not lasted FallbackAfter (e.mu held).
func (e *Engine) fallbackLocked(a *account, now time.Time) *account {
	if a.cfg.Fallback == "" || !a.hold.active(now) || now.Sub(a.hold.since) < a.cfg.FallbackAfter {
		return nil
	}
	fb := e.accounts[a.cfg.Fallback]
	if fb == nil || fb.removed {
		return nil
	}
	return fb
}

// parkUntil is when the messages of held account a are due again: the end
// of the hold, or earlier when its fallback takes over before then.
func (e *Engine) parkUntil(a *account, until time.Time) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	if a.cfg.Fallback == "" || !a.hold.active(e.opts.Clock()) {
		return until
	}
	if at := a.hold.since.Add(a.cfg.FallbackAfter); at.Before(until) {
		return at
	}
	return until
}
