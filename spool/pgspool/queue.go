package pgspool

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spoold/spoold/spool"
)

// dueStates is the SQL predicate of the due indexes (it must match their
// WHERE clause for the planner to use them).
const dueStates = "state IN ('queued', 'deferred')"

// Claim leases up to limit due messages in due-time order.
func (s *Spool) Claim(ctx context.Context, now time.Time, limit int, owner string) ([]*spool.Message, error) {
	return s.claim(ctx, "", now, limit, owner, nil)
}

// ClaimAccount is Claim restricted to one account.
func (s *Spool) ClaimAccount(ctx context.Context, account string, now time.Time, limit int, owner string) ([]*spool.Message, error) {
	if account == "" {
		return nil, fmt.Errorf("spool: claim: %w: empty account", spool.ErrInvalid)
	}
	return s.claim(ctx, account, now, limit, owner, nil)
}

// ClaimAccountStart is ClaimAccount plus StartAttempt on each message, in
// one transaction (see spool.Spool.ClaimAccountStart).
func (s *Spool) ClaimAccountStart(ctx context.Context, account string, now time.Time, limit int, owner string, ifCrash func(m *spool.Message) time.Time) ([]*spool.Message, error) {
	if ifCrash == nil {
		return nil, fmt.Errorf("spool: claim: %w: nil ifCrash", spool.ErrInvalid)
	}
	if account == "" {
		return nil, fmt.Errorf("spool: claim: %w: empty account", spool.ErrInvalid)
	}
	return s.claim(ctx, account, now, limit, owner, ifCrash)
}

// claim takes due rows with FOR UPDATE SKIP LOCKED: nodes claiming at once
// each get different messages without waiting for one another, and a row
// another transaction is changing (an admin's Hold) is left for later.
func (s *Spool) claim(ctx context.Context, account string, now time.Time, limit int, owner string, ifCrash func(*spool.Message) time.Time) ([]*spool.Message, error) {
	if owner == "" {
		return nil, fmt.Errorf("spool: claim: %w: empty owner", spool.ErrInvalid)
	}
	if err := s.begin(ctx, true); err != nil {
		return nil, fmt.Errorf("spool: claim: %w", err)
	}
	defer s.end()
	if limit <= 0 {
		return nil, nil
	}
	q := "SELECT msg FROM spool_messages WHERE " + dueStates + " AND next_attempt_ns <= $1"
	args := []any{ns(now), limit}
	if account != "" {
		q += " AND account = $3"
		args = append(args, account)
	}
	q += " ORDER BY next_attempt_ns, id LIMIT $2 FOR UPDATE SKIP LOCKED"
	var out []*spool.Message
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		out = out[:0]
		_, err := updateLocked(ctx, tx, q, args, func(m *spool.Message) (bool, error) {
			claimed, err := s.mc.Claim(m, owner, now, ifCrash)
			if err != nil {
				return false, err
			}
			out = append(out, claimed)
			return true, nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("spool: claim: %w", dbErr(err))
	}
	return out, nil
}

// NextDue returns the earliest due time (of one account; "" = all).
func (s *Spool) NextDue(ctx context.Context, account string) (time.Time, bool, error) {
	if err := s.begin(ctx, false); err != nil {
		return time.Time{}, false, fmt.Errorf("spool: next due: %w", err)
	}
	defer s.end()
	q := "SELECT min(next_attempt_ns) FROM spool_messages WHERE " + dueStates
	var args []any
	if account != "" {
		q += " AND account = $1"
		args = append(args, account)
	}
	var due *int64
	if err := s.pool.QueryRow(ctx, q, args...).Scan(&due); err != nil {
		return time.Time{}, false, fmt.Errorf("spool: next due: %w", dbErr(err))
	}
	if due == nil {
		return time.Time{}, false, nil
	}
	return fromNS(*due), true, nil
}

// DueAccounts returns the accounts with a message due at now, sorted.
func (s *Spool) DueAccounts(ctx context.Context, now time.Time) ([]string, error) {
	if err := s.begin(ctx, false); err != nil {
		return nil, fmt.Errorf("spool: due accounts: %w", err)
	}
	defer s.end()
	rows, err := s.pool.Query(ctx, "SELECT DISTINCT account FROM spool_messages WHERE "+dueStates+
		" AND next_attempt_ns <= $1 ORDER BY account", ns(now))
	if err != nil {
		return nil, fmt.Errorf("spool: due accounts: %w", dbErr(err))
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("spool: due accounts: %w", dbErr(err))
	}
	return out, nil
}

// FlushAll makes every waiting message (of one account; "" = all) due now.
func (s *Spool) FlushAll(ctx context.Context, account string) (int, error) {
	if err := s.begin(ctx, true); err != nil {
		return 0, fmt.Errorf("spool: flush all: %w", err)
	}
	defer s.end()
	now := s.opts.Clock()
	q := "SELECT msg FROM spool_messages WHERE " + dueStates + " AND next_attempt_ns > $1"
	args := []any{ns(now)}
	if account != "" {
		q += " AND account = $2"
		args = append(args, account)
	}
	// Rows a worker is changing right now are skipped: they are not
	// waiting any more.
	q += " FOR UPDATE SKIP LOCKED"
	n := 0
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		n, err = updateLocked(ctx, tx, q, args, func(m *spool.Message) (bool, error) {
			changed, err := s.mc.Flush(m)
			return err == nil && changed, nil
		})
		if err != nil {
			return err
		}
		if n > 0 {
			return s.notifyDue(ctx, tx)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("spool: flush all: %w", dbErr(err))
	}
	if n > 0 {
		s.signal()
	}
	return n, nil
}

// Delete removes a message in any state but active, with its body.
func (s *Spool) Delete(ctx context.Context, id string) error {
	if err := s.begin(ctx, true); err != nil {
		return fmt.Errorf("spool: delete %s: %w", id, err)
	}
	defer s.end()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		m, _, err := loadForUpdate(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := s.mc.CheckDelete(m); err != nil {
			return err
		}
		// The fallback route (DeliveredVia) goes with the message.
		_, err = tx.Exec(ctx, "WITH gone AS (DELETE FROM spool_messages WHERE id = $1 RETURNING id) DELETE FROM spool_routes WHERE id IN (SELECT id FROM gone)", id)
		return dbErr(err)
	})
	if err != nil {
		return fmt.Errorf("spool: delete %s: %w", id, dbErr(err))
	}
	s.log.Info("deleted", "msg_id", id)
	return nil
}

// Purge deletes dead or delivered messages last updated before olderThan.
func (s *Spool) Purge(ctx context.Context, state spool.State, olderThan time.Time) (int, error) {
	if err := spool.CheckPurge(state); err != nil {
		return 0, fmt.Errorf("spool: purge: %w", err)
	}
	if err := s.begin(ctx, true); err != nil {
		return 0, fmt.Errorf("spool: purge: %w", err)
	}
	defer s.end()
	ids, err := s.purge(ctx, state, olderThan)
	if err != nil {
		return 0, fmt.Errorf("spool: purge %s: %w", state, err)
	}
	return len(ids), nil
}

func (s *Spool) purge(ctx context.Context, state spool.State, olderThan time.Time) ([]string, error) {
	rows, err := s.pool.Query(ctx, `WITH gone AS (DELETE FROM spool_messages WHERE state = $1 AND updated_ns < $2 RETURNING id),
		routes AS (DELETE FROM spool_routes WHERE id IN (SELECT id FROM gone))
		SELECT id FROM gone`, string(state), ns(olderThan))
	if err != nil {
		return nil, dbErr(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, dbErr(err)
	}
	for _, id := range ids {
		s.log.Info("purged", "msg_id", id, "state", string(state))
	}
	return ids, nil
}

// Rescue runs one rescuer pass: leases that expired (on any node) go back
// to queued, delivered records past retention are purged, and this node's
// heartbeat is refreshed. It returns how many leases it returned.
func (s *Spool) Rescue(ctx context.Context) (int, error) {
	if err := s.begin(ctx, true); err != nil {
		return 0, fmt.Errorf("spool: rescue: %w", err)
	}
	defer s.end()
	now := s.opts.Clock()
	var rescued []string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rescued = rescued[:0]
		_, err := updateLocked(ctx, tx, "SELECT msg FROM spool_messages WHERE state = 'active' AND lease_until_ns < $1 FOR UPDATE SKIP LOCKED",
			[]any{ns(now)}, func(m *spool.Message) (bool, error) {
				s.mc.Rescue(m, now)
				rescued = append(rescued, m.ID)
				return true, nil
			})
		if err != nil {
			return err
		}
		if len(rescued) > 0 {
			return s.notifyDue(ctx, tx)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("spool: rescue: %w", dbErr(err))
	}
	for _, id := range rescued {
		s.log.Warn("lease expired, message requeued", "msg_id", id)
	}
	if len(rescued) > 0 {
		s.signal()
	}
	if _, err := s.purge(ctx, spool.StateDelivered, now.Add(-s.opts.DeliveredRetention)); err != nil {
		return len(rescued), fmt.Errorf("spool: rescue: purging delivered: %w", err)
	}
	if err := s.heartbeat(ctx, false); err != nil {
		return len(rescued), err
	}
	return len(rescued), nil
}

func (s *Spool) rescueLoop(ctx context.Context) {
	defer s.loops.Done()
	t := time.NewTicker(s.opts.RescueInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.Rescue(ctx); err != nil && !errors.Is(err, spool.ErrClosed) && ctx.Err() == nil {
				s.log.Error("rescuer", "err", err)
			}
		}
	}
}

// Get returns one message.
func (s *Spool) Get(ctx context.Context, id string) (*spool.Message, error) {
	if err := s.begin(ctx, false); err != nil {
		return nil, fmt.Errorf("spool: get %s: %w", id, err)
	}
	defer s.end()
	var meta []byte
	err := s.pool.QueryRow(ctx, "SELECT msg FROM spool_messages WHERE id = $1", id).Scan(&meta)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("spool: get %s: %w", id, spool.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: get %s: %w", id, dbErr(err))
	}
	m, err := decode(meta)
	if err != nil {
		return nil, fmt.Errorf("spool: get %s: %w", id, err)
	}
	return m, nil
}

// List returns up to limit messages matching f in ID order after cursor.
func (s *Spool) List(ctx context.Context, f spool.Filter, cursor string, limit int) (spool.Page, error) {
	return s.list(ctx, f, spool.ListOptions{}, cursor, limit)
}

// ListMatching is List with opts (see spool.Spool.ListMatching): rows are
// read in ID order (newest first with opts.Newest) in batches, filtered
// here, and never more than opts.MaxScan examined.
func (s *Spool) ListMatching(ctx context.Context, f spool.Filter, opts spool.ListOptions, cursor string, limit int) (spool.Page, error) {
	return s.list(ctx, f, opts, cursor, limit)
}

// listBatch is how many rows list reads per query.
const listBatch = 256

func (s *Spool) list(ctx context.Context, f spool.Filter, opts spool.ListOptions, cursor string, limit int) (spool.Page, error) {
	if f.State != "" && !f.State.Valid() {
		return spool.Page{}, fmt.Errorf("spool: list: %w: unknown state %q", spool.ErrInvalid, f.State)
	}
	if limit <= 0 {
		limit = spool.DefaultListLimit
	}
	limit = min(limit, spool.MaxListLimit)
	if err := s.begin(ctx, false); err != nil {
		return spool.Page{}, fmt.Errorf("spool: list: %w", err)
	}
	defer s.end()
	match := func(m *spool.Message) bool {
		if f.Account != "" && m.Account != f.Account {
			return false
		}
		if !f.CreatedBefore.IsZero() && !m.Created.Before(f.CreatedBefore) {
			return false
		}
		return opts.Match == nil || opts.Match(m)
	}
	cmp, order := ">", "ASC"
	if opts.Newest {
		cmp, order = "<", "DESC"
	}
	var page spool.Page
	scanned, last, after := 0, "", cursor
	for {
		var where []string
		var args []any
		if f.State != "" {
			args = append(args, string(f.State))
			where = append(where, fmt.Sprintf("state = $%d", len(args)))
		}
		if after != "" {
			args = append(args, after)
			where = append(where, fmt.Sprintf("id %s $%d", cmp, len(args)))
		}
		q := "SELECT msg FROM spool_messages"
		if len(where) > 0 {
			q += " WHERE " + strings.Join(where, " AND ")
		}
		args = append(args, listBatch)
		q += fmt.Sprintf(" ORDER BY id %s LIMIT $%d", order, len(args))
		rows, err := s.pool.Query(ctx, q, args...)
		if err != nil {
			return spool.Page{}, fmt.Errorf("spool: list: %w", dbErr(err))
		}
		metas, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
		if err != nil {
			return spool.Page{}, fmt.Errorf("spool: list: %w", dbErr(err))
		}
		for _, meta := range metas {
			if opts.MaxScan > 0 && scanned == opts.MaxScan {
				page.Next = last // the next page starts after it
				return page, nil
			}
			m, err := decode(meta)
			if err != nil {
				return spool.Page{}, fmt.Errorf("spool: list: %w", err)
			}
			scanned, last, after = scanned+1, m.ID, m.ID
			if !match(m) {
				continue
			}
			if len(page.Messages) == limit {
				page.Next = page.Messages[limit-1].ID
				return page, nil
			}
			page.Messages = append(page.Messages, m)
		}
		if len(metas) < listBatch {
			return page, nil
		}
	}
}

// Stats counts messages per state.
func (s *Spool) Stats(ctx context.Context) (map[spool.State]int, error) {
	if err := s.begin(ctx, false); err != nil {
		return nil, fmt.Errorf("spool: stats: %w", err)
	}
	defer s.end()
	out := make(map[spool.State]int, len(spool.States))
	for _, st := range spool.States {
		out[st] = 0
	}
	rows, err := s.pool.Query(ctx, "SELECT state, count(*) FROM spool_messages GROUP BY state")
	if err != nil {
		return nil, fmt.Errorf("spool: stats: %w", dbErr(err))
	}
	var st string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&st, &n}, func() error { out[spool.State(st)] = n; return nil })
	if err != nil {
		return nil, fmt.Errorf("spool: stats: %w", dbErr(err))
	}
	return out, nil
}

// WaitingByAccount counts queued and deferred messages per account.
func (s *Spool) WaitingByAccount(ctx context.Context) (map[string]int, error) {
	if err := s.begin(ctx, false); err != nil {
		return nil, fmt.Errorf("spool: counting waiting messages: %w", err)
	}
	defer s.end()
	out := map[string]int{}
	rows, err := s.pool.Query(ctx, "SELECT account, count(*) FROM spool_messages WHERE "+dueStates+" GROUP BY account")
	if err != nil {
		return nil, fmt.Errorf("spool: counting waiting messages: %w", dbErr(err))
	}
	var acct string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&acct, &n}, func() error { out[acct] = n; return nil }); err != nil {
		return nil, fmt.Errorf("spool: counting waiting messages: %w", dbErr(err))
	}
	return out, nil
}

// Check verifies what the columns and the records say agree and that each
// stored body is complete.
func (s *Spool) Check(ctx context.Context) error {
	if err := s.begin(ctx, false); err != nil {
		return fmt.Errorf("spool: check: %w", err)
	}
	defer s.end()
	rows, err := s.pool.Query(ctx, `SELECT m.id, m.state, m.account, m.next_attempt_ns, m.lease_owner, m.lease_until_ns,
		m.body_present, m.body_chunks, m.msg,
		(SELECT count(*) FROM spool_body_chunks c WHERE c.id = m.id),
		(SELECT coalesce(sum(length(c.data)), 0) FROM spool_body_chunks c WHERE c.id = m.id)
		FROM spool_messages m`)
	if err != nil {
		return fmt.Errorf("spool: check: %w", dbErr(err))
	}
	var (
		id, state, account, owner string
		next, lease               int64
		present                   bool
		chunks                    int
		meta                      []byte
		haveChunks, haveBytes     int64
	)
	var problem error
	_, err = pgx.ForEachRow(rows, []any{&id, &state, &account, &next, &owner, &lease, &present, &chunks, &meta, &haveChunks, &haveBytes}, func() error {
		m, err := decode(meta)
		if err != nil {
			return err
		}
		switch {
		case m.ID != id || string(m.State) != state || m.Account != account || ns(m.NextAttempt) != next ||
			m.LeaseOwner != owner || ns(m.LeaseUntil) != lease:
			problem = fmt.Errorf("message %s: columns disagree with the record", id)
		case present && (int64(chunks) != haveChunks || haveBytes != m.Size):
			problem = fmt.Errorf("message %s: body has %d chunks, %d bytes; want %d, %d", id, haveChunks, haveBytes, chunks, m.Size)
		case !present && haveChunks != 0:
			problem = fmt.Errorf("message %s: %d body chunks of a body marked gone", id, haveChunks)
		case state == string(spool.StateDelivered) && present:
			problem = fmt.Errorf("message %s: delivered but its body is kept", id)
		}
		if problem != nil {
			return problem
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("spool: check: %w: %w", spool.ErrCorrupt, err)
	}
	return nil
}

// updateLocked runs q (a SELECT msg ... FOR UPDATE [SKIP LOCKED]) in tx and
// hands each locked message to apply; the ones apply reports changed are
// stored. It returns how many were stored: the one loop of the bulk
// transitions (claims, flushes, rescues).
func updateLocked(ctx context.Context, tx pgx.Tx, q string, args []any, apply func(*spool.Message) (bool, error)) (int, error) {
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return 0, dbErr(err)
	}
	metas, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return 0, dbErr(err)
	}
	n := 0
	for _, meta := range metas {
		m, err := decode(meta)
		if err != nil {
			return n, err
		}
		changed, err := apply(m)
		if err != nil {
			return n, err
		}
		if !changed {
			continue
		}
		if err := store(ctx, tx, m); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
