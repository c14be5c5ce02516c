package pgspool

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spoold/spoold/spool"
)

// Limits shared by every node on the spool. Providers count per mailbox,
// not per sending machine: Microsoft allows 3 concurrent SMTP connections
// per mailbox ("432 4.3.2 ... thread limit exceeded" past that), a
// per-minute rate and a daily recipient budget, and both Microsoft and
// Google revoke a whole grant whose refresh token is presented twice. A
// node enforcing these alone would let three nodes use three times the
// allowance; these methods make the database the one place they are
// counted. Delivery takes connection slots, the rate and the budget
// through spool.ClusterLimits, auth its refreshes through RefreshLocked.

// ErrNoSlot says every connection slot of an account is taken, on some node.
var ErrNoSlot = spool.ErrNoSlot

// Slot is one of an account's connection slots, held by this node for
// the life of one upstream connection. It is a session advisory lock on a
// connection of its own: a node that dies (or loses its database
// connection) gives its slots back at once, with no lease to wait out.
//
// The other side of that: a database restart, or an administrator's
// pg_terminate_backend, frees the slot while this node's upstream
// connection is still open, and once the database is back another node
// may take the slot and open one more connection than the mailbox
// allows. So each slot is watched from the moment it is taken: a
// goroutine waits on the slot's own connection, where a server shutting
// down or terminating the session is seen at once (the connection ends),
// and pings it after every SlotKeepAlive of quiet, so a link that dies
// silently is noticed within SlotKeepAlive+SlotPingTimeout. Lost is
// closed then, and the caller closes the upstream connection.
//
// What remains: PostgreSQL releases the lock of a session whose client
// it can no longer reach only when its own TCP keep-alives
// (tcp_keepalives_idle/interval/count, 2 hours by the kernel's defaults)
// give up, or when the server restarts. If it does so faster than
// SlotKeepAlive+SlotPingTimeout (10 s) while this node cannot reach it,
// or restarts during such a network partition, another node may open a
// connection before this one has noticed: for at most those 10 s the
// mailbox may see one connection per lost slot too many.
type Slot struct {
	conn    *pgx.Conn
	account string
	index   int
	k1, k2  int32

	lost    chan struct{} // closed when the session is found lost
	lostErr error         // why; written before lost is closed
	stop    context.CancelFunc
	done    chan struct{} // closed when the watcher has returned
	release sync.Once
	relErr  error
}

// SlotKeepAlive is how long a slot's connection may stay quiet before it
// is pinged, and SlotPingTimeout how long the ping may take: a slot on a
// link that died silently is known lost within their sum. Short enough
// to bound the overlap after a network partition (see Slot), long enough
// that a busy database does not make a healthy slot look lost.
const (
	SlotKeepAlive   = 5 * time.Second
	SlotPingTimeout = 5 * time.Second
)

// Index is the slot's number, 0 to limit-1.
func (sl *Slot) Index() int { return sl.index }

// Lost is closed once the slot's database session is lost (a database
// restart or shutdown, the session terminated, a dead link): the lock is
// gone, another node may take the slot, and the upstream connection it
// guarded must close now.
func (sl *Slot) Lost() <-chan struct{} { return sl.lost }

// Held reports an error once the slot is lost (see Lost).
func (sl *Slot) Held(ctx context.Context) error {
	select {
	case <-sl.lost:
		return sl.lostErr
	default:
		return nil
	}
}

// watch waits on the slot's connection until the slot is released or
// its session is lost. Only watch uses the connection until Release has
// stopped it: a pgx connection serves one goroutine at a time.
func (sl *Slot) watch(ctx context.Context) {
	defer close(sl.done)
	for {
		// Nothing is listened for, so this only returns when the server
		// says something (a FATAL before it ends the session), the
		// connection ends, or the quiet period is over.
		wctx, cancel := context.WithTimeout(ctx, SlotKeepAlive)
		err := sl.conn.PgConn().WaitForNotification(wctx)
		quiet := wctx.Err() != nil
		cancel()
		if ctx.Err() != nil {
			return // released
		}
		if err == nil {
			continue
		}
		if quiet && !sl.conn.IsClosed() {
			pctx, cancel := context.WithTimeout(ctx, SlotPingTimeout)
			err = sl.conn.Ping(pctx)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				continue
			}
			if errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("no answer to a ping within %s: %w", SlotPingTimeout, err)
			}
		}
		sl.lostErr = fmt.Errorf("pgspool: connection slot %d of %s lost with its database session (the database restarted, "+
			"the session was terminated, or the link to it failed); its upstream connection must close: %w", sl.index, sl.account, dbErr(err))
		close(sl.lost) // first: the caller's upstream connection must not wait for the close below
		// Closing frees the lock if the server still had it (a ping
		// that timed out): the slot is treated as lost either way.
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
		sl.conn.Close(cctx)
		ccancel()
		return
	}
}

// Release gives the slot back. It may be called more than once; a slot
// already lost has nothing to give back.
func (sl *Slot) Release() error {
	sl.release.Do(func() {
		sl.stop()
		<-sl.done
		select {
		case <-sl.lost:
			return // its session, and so the lock, is gone already
		default:
		}
		if sl.conn.IsClosed() {
			return // a ping cut short by the release closed it: the lock went with it
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := sl.conn.Exec(ctx, "SELECT pg_advisory_unlock($1, $2)", sl.k1, sl.k2)
		// Closing the session releases the lock whatever the unlock said.
		cerr := sl.conn.Close(ctx)
		if err != nil {
			sl.relErr = fmt.Errorf("pgspool: releasing connection slot %d of %s (closing its session frees it anyway): %w", sl.index, sl.account, dbErr(err))
			return
		}
		sl.relErr = dbErr(cerr)
	})
	return sl.relErr
}

// slotKey is the advisory lock of one slot: the first key names the
// account (and schema), the second the slot. A hash collision makes two
// accounts share slots: stricter, never looser.
func (s *Spool) slotKey(account string) int32 { return s.limitKey("slot", account) }

// limitKey is the first advisory-lock key of one kind of limit of one
// account: kinds never share keys, so a budget reservation never waits
// for a connection slot.
func (s *Spool) limitKey(kind, account string) int32 {
	h := fnv.New32a()
	fmt.Fprintf(h, "spoold-%s\x00%d\x00%s", kind, s.lockKey, account)
	return int32(h.Sum32())
}

// AcquireSlot takes a free connection slot of account among limit
// (cluster-wide), or returns ErrNoSlot when all are taken.
//
// A slot needs a session of its own, and opening one forks a backend:
// with several nodes most attempts find every slot taken, and opening a
// session (and trying each slot in turn) only to learn that was most of
// the cost of taking slots. So the held slots are first read on a pooled
// connection (freeSlots), and a session is opened only when one looked
// free, trying those first. The lock stays the truth: a slot taken
// between the look and the lock is refused by pg_try_advisory_lock.
func (s *Spool) AcquireSlot(ctx context.Context, account string, limit int) (*Slot, error) {
	if account == "" || limit <= 0 {
		return nil, fmt.Errorf("pgspool: connection slot: %w: account and a positive limit are required", spool.ErrInvalid)
	}
	if err := s.begin(ctx, true); err != nil {
		return nil, fmt.Errorf("pgspool: connection slot of %s: %w", account, err)
	}
	defer s.end()
	k1 := s.slotKey(account)
	free, err := s.freeSlots(ctx, k1, limit)
	if err != nil {
		return nil, fmt.Errorf("pgspool: connection slot of %s: reading the slots held: %w", account, dbErr(err))
	}
	if len(free) == 0 {
		return nil, fmt.Errorf("%w: %s has %d", ErrNoSlot, account, limit)
	}
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("pgspool: connection slot of %s: %w", account, dbErr(err))
	}
	for _, i := range free {
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, $2)", k1, int32(i)).Scan(&ok); err != nil {
			conn.Close(context.Background())
			return nil, fmt.Errorf("pgspool: connection slot of %s: %w", account, dbErr(err))
		}
		if ok {
			wctx, stop := context.WithCancel(context.Background())
			sl := &Slot{conn: conn, account: account, index: i, k1: k1, k2: int32(i),
				lost: make(chan struct{}), stop: stop, done: make(chan struct{})}
			go sl.watch(wctx)
			return sl, nil
		}
	}
	// Every slot that looked free was taken meanwhile by another session.
	conn.Close(context.Background())
	return nil, fmt.Errorf("%w: %s has %d", ErrNoSlot, account, limit)
}

// freeSlots returns the indexes below limit of the slots with first key
// k1 that no session holds now, lowest first. pg_locks lists every
// session's locks (any role may read it); a lock taken with two int4 keys
// shows the first as classid and the second as objid, both as oid (so
// unsigned: a negative key reads as itself plus 2^32), with objsubid 2.
// https://www.postgresql.org/docs/current/view-pg-locks.html
func (s *Spool) freeSlots(ctx context.Context, k1 int32, limit int) ([]int, error) {
	// The alias keeps the word advisory in pg_stat_statements, which
	// replaces the literal below with $1 (benchtest counts by it).
	rows, err := s.pool.Query(ctx, `SELECT objid::bigint AS advisory_slot FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objsubid = 2
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND classid::bigint = $1 AND objid::bigint < $2`, int64(uint32(k1)), int64(limit))
	if err != nil {
		return nil, err
	}
	held, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	taken := make([]bool, limit)
	for _, i := range held {
		if i >= 0 && i < int64(limit) {
			taken[i] = true
		}
	}
	var free []int
	for i, t := range taken {
		if !t {
			free = append(free, i)
		}
	}
	return free, nil
}

// AcquireConnSlot is AcquireSlot for spool.ClusterLimits.
func (s *Spool) AcquireConnSlot(ctx context.Context, account string, limit int) (spool.ConnSlot, error) {
	sl, err := s.AcquireSlot(ctx, account, limit)
	if err != nil {
		return nil, err // not a typed nil
	}
	return sl, nil
}

// The shared limits are offered to delivery and auth.
var (
	_ spool.ClusterLimits = (*Spool)(nil)
	_ spool.GrantLocker   = (*Spool)(nil)
)

// TakeRate asks to send one message of account under a cluster-wide rate
// of perMinute messages with bursts of up to burst. It returns 0 when the
// message may go now (and counts it), or how long to wait. The algorithm
// is GCRA: one row per account holding the theoretical arrival time of
// the next message, updated under its row lock.
func (s *Spool) TakeRate(ctx context.Context, account string, perMinute float64, burst int, now time.Time) (time.Duration, error) {
	if account == "" || perMinute <= 0 {
		return 0, fmt.Errorf("pgspool: rate of %q: %w: account and a positive rate are required", account, spool.ErrInvalid)
	}
	burst = max(burst, 1)
	if err := s.begin(ctx, true); err != nil {
		return 0, fmt.Errorf("pgspool: rate of %s: %w", account, err)
	}
	defer s.end()
	interval := time.Duration(float64(time.Minute) / perMinute)
	tolerance := time.Duration(burst-1) * interval
	var wait time.Duration
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO spool_rates (account, tat_ns) VALUES ($1, 0) ON CONFLICT (account) DO NOTHING", account); err != nil {
			return err
		}
		var tatNS int64
		if err := tx.QueryRow(ctx, "SELECT tat_ns FROM spool_rates WHERE account = $1 FOR UPDATE", account).Scan(&tatNS); err != nil {
			return err
		}
		tat := time.Unix(0, tatNS)
		if tat.Before(now) {
			tat = now
		}
		if allowAt := tat.Add(-tolerance); allowAt.After(now) {
			wait = allowAt.Sub(now)
			return nil
		}
		wait = 0
		_, err := tx.Exec(ctx, "UPDATE spool_rates SET tat_ns = $2 WHERE account = $1", account, tat.Add(interval).UnixNano())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("pgspool: rate of %s: %w", account, dbErr(err))
	}
	return wait, nil
}

// ReserveBudget counts n recipients of message id against account's
// budget of limit recipients per window ending at now, if they fit: the
// check and the entry are one transaction under a per-account lock, so
// nodes sending at once cannot overshoot it together. ok is false (and
// nothing is written) when they do not fit. A send that then fails gives
// the recipients back with CancelBudget.
func (s *Spool) ReserveBudget(ctx context.Context, account, id string, n, limit int, window time.Duration, now time.Time) (ok bool, used int, err error) {
	if account == "" || id == "" || n < 0 || limit < 0 || window <= 0 {
		return false, 0, fmt.Errorf("pgspool: budget of %q: %w: empty account or id, or a negative count", account, spool.ErrInvalid)
	}
	if err := s.begin(ctx, true); err != nil {
		return false, 0, fmt.Errorf("pgspool: budget of %s: %w", account, err)
	}
	defer s.end()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Serialise reservations of this account only (until commit).
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, 0)", s.limitKey("budget", account)); err != nil {
			return err
		}
		since := budgetNS(now.Add(-window))
		if _, err := tx.Exec(ctx, "DELETE FROM spool_budget WHERE account = $1 AND at_ns < $2", account, since); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, "SELECT coalesce(sum(recipients), 0) FROM spool_budget WHERE account = $1", account).Scan(&used); err != nil {
			return err
		}
		if used+n > limit {
			ok = false
			return nil
		}
		ok = true
		used += n
		_, err := tx.Exec(ctx, `INSERT INTO spool_budget (account, at_ns, id, recipients) VALUES ($1, $2, $3, $4)
			ON CONFLICT (account, at_ns, id) DO UPDATE SET recipients = excluded.recipients`, account, budgetNS(now), id, n)
		return err
	})
	if err != nil {
		return false, 0, fmt.Errorf("pgspool: budget of %s: %w", account, dbErr(err))
	}
	return ok, used, nil
}

// CancelBudget gives back what ReserveBudget counted for message id.
func (s *Spool) CancelBudget(ctx context.Context, account, id string) error {
	if err := s.begin(ctx, true); err != nil {
		return fmt.Errorf("pgspool: budget of %s: %w", account, err)
	}
	defer s.end()
	if _, err := s.pool.Exec(ctx, "DELETE FROM spool_budget WHERE account = $1 AND id = $2", account, id); err != nil {
		return fmt.Errorf("pgspool: budget of %s: giving back message %s: %w", account, id, dbErr(err))
	}
	return nil
}

// RefreshLocked runs refresh holding account's grant lock, cluster-wide:
// the row lock of the account's spool_grants row is taken, the record key
// (the stored grant) is read, refresh runs (the token request goes here),
// and the value it returns is written and committed before the lock is
// released. A node waiting meanwhile then reads the rotated grant, so a
// refresh token is never presented twice. refresh returning nil next
// leaves the record unchanged (another node has just refreshed: the
// current grant is good); an error rolls back and is returned.
//
// A node that dies while holding the lock releases it with its session;
// if the provider had already rotated the token, that rotation is lost
// and the account needs a new sign-in, exactly as with one node.
func (s *Spool) RefreshLocked(ctx context.Context, account, key string, refresh func(ctx context.Context, current []byte, found bool) (next []byte, err error)) ([]byte, error) {
	if err := spool.CheckAccountKey(account, key); err != nil {
		return nil, fmt.Errorf("pgspool: refreshing %s: %w", account, err)
	}
	if err := s.begin(ctx, true); err != nil {
		return nil, fmt.Errorf("pgspool: refreshing %s: %w", account, err)
	}
	defer s.end()
	var out []byte
	var fnErr error
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO spool_grants (account) VALUES ($1) ON CONFLICT (account) DO NOTHING", account); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SELECT 1 FROM spool_grants WHERE account = $1 FOR UPDATE", account); err != nil {
			return err
		}
		var cur []byte
		found := true
		err := tx.QueryRow(ctx, "SELECT value FROM spool_accounts WHERE account = $1 AND key = $2", account, key).Scan(&cur)
		if errors.Is(err, pgx.ErrNoRows) {
			found, err = false, nil
		}
		if err != nil {
			return err
		}
		next, err := refresh(ctx, cur, found)
		if err != nil {
			fnErr = err
			return err
		}
		if next == nil {
			out = cur
			return nil
		}
		out = next
		if _, err := tx.Exec(ctx, `INSERT INTO spool_accounts (account, key, value) VALUES ($1, $2, $3)
			ON CONFLICT (account, key) DO UPDATE SET value = excluded.value`, account, key, next); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE spool_grants SET refreshed = now() WHERE account = $1", account)
		return err
	})
	if fnErr != nil {
		return nil, fnErr // the caller's own error, unchanged
	}
	if err != nil {
		return nil, fmt.Errorf("pgspool: refreshing %s: %w", account, dbErr(err))
	}
	return out, nil
}
