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

// AccountGet reads a per-account record (auth tokens, health).
func (s *Spool) AccountGet(ctx context.Context, account, key string) ([]byte, bool, error) {
	if err := spool.CheckAccountKey(account, key); err != nil {
		return nil, false, fmt.Errorf("spool: account get %s: %w", account, err)
	}
	if err := s.begin(ctx, false); err != nil {
		return nil, false, fmt.Errorf("spool: account get %s: %w", account, err)
	}
	defer s.end()
	var v []byte
	err := s.pool.QueryRow(ctx, "SELECT value FROM spool_accounts WHERE account = $1 AND key = $2", account, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("spool: account get %s: %w", account, dbErr(err))
	}
	if v == nil {
		v = []byte{}
	}
	return v, true, nil
}

// AccountPut durably writes a per-account record.
func (s *Spool) AccountPut(ctx context.Context, account, key string, value []byte) error {
	if err := spool.CheckAccountKey(account, key); err != nil {
		return fmt.Errorf("spool: account put %s: %w", account, err)
	}
	if err := s.begin(ctx, true); err != nil {
		return fmt.Errorf("spool: account put %s: %w", account, err)
	}
	defer s.end()
	if value == nil {
		value = []byte{}
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO spool_accounts (account, key, value) VALUES ($1, $2, $3)
		ON CONFLICT (account, key) DO UPDATE SET value = excluded.value`, account, key, value); err != nil {
		return fmt.Errorf("spool: account put %s: %w", account, dbErr(err))
	}
	return nil
}

// AccountDelete removes a per-account record.
func (s *Spool) AccountDelete(ctx context.Context, account, key string) error {
	if err := spool.CheckAccountKey(account, key); err != nil {
		return fmt.Errorf("spool: account delete %s: %w", account, err)
	}
	if err := s.begin(ctx, true); err != nil {
		return fmt.Errorf("spool: account delete %s: %w", account, err)
	}
	defer s.end()
	if _, err := s.pool.Exec(ctx, "DELETE FROM spool_accounts WHERE account = $1 AND key = $2", account, key); err != nil {
		return fmt.Errorf("spool: account delete %s: %w", account, dbErr(err))
	}
	return nil
}

// AlertState returns every alert record.
func (s *Spool) AlertState(ctx context.Context) (map[string][]byte, error) {
	if err := s.begin(ctx, false); err != nil {
		return nil, fmt.Errorf("spool: reading alert state: %w", err)
	}
	defer s.end()
	out := map[string][]byte{}
	rows, err := s.pool.Query(ctx, "SELECT key, value FROM spool_alerts")
	if err != nil {
		return nil, fmt.Errorf("spool: reading alert state: %w", dbErr(err))
	}
	var k string
	var v []byte
	if _, err := pgx.ForEachRow(rows, []any{&k, &v}, func() error {
		out[k] = append([]byte{}, v...)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("spool: reading alert state: %w", dbErr(err))
	}
	return out, nil
}

// AlertWrite puts and deletes alert records in one transaction.
func (s *Spool) AlertWrite(ctx context.Context, put map[string][]byte, del []string) error {
	for k := range put {
		if k == "" || len(k) > spool.MaxAlertKey {
			return fmt.Errorf("spool: writing alert state: %w: key %q is empty or too long", spool.ErrInvalid, k)
		}
	}
	if len(put) == 0 && len(del) == 0 {
		return nil
	}
	if err := s.begin(ctx, true); err != nil {
		return fmt.Errorf("spool: writing alert state: %w", err)
	}
	defer s.end()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if len(del) > 0 {
			if _, err := tx.Exec(ctx, "DELETE FROM spool_alerts WHERE key = ANY($1)", del); err != nil {
				return err
			}
		}
		for k, v := range put {
			if v == nil {
				v = []byte{}
			}
			if _, err := tx.Exec(ctx, `INSERT INTO spool_alerts (key, value) VALUES ($1, $2)
				ON CONFLICT (key) DO UPDATE SET value = excluded.value`, k, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("spool: writing alert state: %w", dbErr(err))
	}
	return nil
}

// BudgetRecord counts n recipients of message id delivered through account
// at at and forgets the account's entries before forgetBefore, in one
// transaction (see spool.Spool.BudgetRecord).
func (s *Spool) BudgetRecord(ctx context.Context, account, id, own string, at time.Time, n int, forgetBefore time.Time) error {
	return s.budgetRecord(ctx, account, "", id, own, at, n, forgetBefore)
}

// RecordReserved is BudgetRecord that also deletes the reservation
// reservationID (ReserveBudget) in the same transaction (spool.ClusterLimits).
func (s *Spool) RecordReserved(ctx context.Context, account, reservationID, id, own string, at time.Time, n int, forgetBefore time.Time) error {
	if reservationID == "" {
		return fmt.Errorf("spool: recording recipients of %q: %w: empty reservation", id, spool.ErrInvalid)
	}
	return s.budgetRecord(ctx, account, reservationID, id, own, at, n, forgetBefore)
}

func (s *Spool) budgetRecord(ctx context.Context, account, reservationID, id, own string, at time.Time, n int, forgetBefore time.Time) error {
	if account == "" || strings.IndexByte(account, 0) >= 0 || id == "" || n < 0 {
		return fmt.Errorf("spool: recording recipients of %q for account %q: %w: empty or invalid name or count", id, account, spool.ErrInvalid)
	}
	if err := s.begin(ctx, true); err != nil {
		return fmt.Errorf("spool: recording recipients of %s: %w", id, err)
	}
	defer s.end()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM spool_budget WHERE account = $1 AND at_ns < $2", account, budgetNS(forgetBefore)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO spool_budget (account, at_ns, id, recipients) VALUES ($1, $2, $3, $4)
			ON CONFLICT (account, at_ns, id) DO UPDATE SET recipients = excluded.recipients`, account, budgetNS(at), id, n); err != nil {
			return err
		}
		if reservationID != "" {
			if _, err := tx.Exec(ctx, "DELETE FROM spool_budget WHERE account = $1 AND id = $2", account, reservationID); err != nil {
				return err
			}
		}
		if own == "" || own == account {
			return nil
		}
		_, err := tx.Exec(ctx, `INSERT INTO spool_routes (id, account) VALUES ($1, $2)
			ON CONFLICT (id) DO UPDATE SET account = excluded.account`, id, account)
		return err
	})
	if err != nil {
		return fmt.Errorf("spool: recording recipients of %s: %w", id, dbErr(err))
	}
	return nil
}

// budgetNS is the stored time of a budget entry (times before 1970 count as 1970).
func budgetNS(t time.Time) int64 {
	if t.IsZero() || t.UnixNano() < 0 {
		return 0
	}
	return t.UnixNano()
}

// BudgetEntries returns account's entries at or after since, oldest first.
func (s *Spool) BudgetEntries(ctx context.Context, account string, since time.Time) ([]spool.BudgetEntry, error) {
	if err := s.begin(ctx, false); err != nil {
		return nil, fmt.Errorf("spool: reading the recipient budget of %s: %w", account, err)
	}
	defer s.end()
	rows, err := s.pool.Query(ctx, "SELECT at_ns, id, recipients FROM spool_budget WHERE account = $1 AND at_ns >= $2 ORDER BY at_ns, id",
		account, budgetNS(since))
	if err != nil {
		return nil, fmt.Errorf("spool: reading the recipient budget of %s: %w", account, dbErr(err))
	}
	var out []spool.BudgetEntry
	var at int64
	var e spool.BudgetEntry
	if _, err := pgx.ForEachRow(rows, []any{&at, &e.ID, &e.Recipients}, func() error {
		e.At = time.Unix(0, at).UTC()
		out = append(out, e)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("spool: reading the recipient budget of %s: %w", account, dbErr(err))
	}
	return out, nil
}

// DeliveredVia returns the account that delivered message id when a
// fallback did; "" otherwise.
func (s *Spool) DeliveredVia(ctx context.Context, id string) (string, error) {
	if err := s.begin(ctx, false); err != nil {
		return "", fmt.Errorf("spool: reading the route of %s: %w", id, err)
	}
	defer s.end()
	var via string
	err := s.pool.QueryRow(ctx, "SELECT account FROM spool_routes WHERE id = $1", id).Scan(&via)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("spool: reading the route of %s: %w", id, dbErr(err))
	}
	return via, nil
}
