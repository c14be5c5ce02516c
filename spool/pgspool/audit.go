package pgspool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spoold/spoold/spool"
)

// AuditAppend durably records an admin action.
func (s *Spool) AuditAppend(ctx context.Context, e spool.AuditEntry) error {
	v, err := spool.EncodeAuditEntry(e)
	if err != nil {
		return fmt.Errorf("spool: audit: %w", err)
	}
	if err := s.begin(ctx, true); err != nil {
		return fmt.Errorf("spool: audit: %w", err)
	}
	defer s.end()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var seq int64
		if err := tx.QueryRow(ctx, "INSERT INTO spool_audit (at_ns, entry) VALUES ($1, $2) RETURNING seq", e.Time.UnixNano(), v).Scan(&seq); err != nil {
			return err
		}
		if seq%spool.AuditBoundEvery != 0 {
			return nil
		}
		// Keep the bound whatever the retention: the oldest go first.
		_, err := tx.Exec(ctx, `DELETE FROM spool_audit WHERE seq IN (
			SELECT seq FROM spool_audit ORDER BY at_ns DESC, seq DESC OFFSET $1)`, spool.MaxAuditEntries)
		return err
	})
	if err != nil {
		return fmt.Errorf("spool: audit: %w", dbErr(err))
	}
	return nil
}

// AuditList returns entries at or after since, newest first, at most limit
// (all when limit <= 0).
func (s *Spool) AuditList(ctx context.Context, since time.Time, limit int) ([]spool.AuditEntry, error) {
	if err := s.begin(ctx, false); err != nil {
		return nil, fmt.Errorf("spool: reading the audit log: %w", err)
	}
	defer s.end()
	q := "SELECT entry FROM spool_audit WHERE at_ns >= $1 ORDER BY at_ns DESC, seq DESC"
	args := []any{int64(0)}
	if !since.IsZero() {
		args[0] = since.UnixNano()
	} else {
		args[0] = int64(-1 << 63)
	}
	if limit > 0 {
		q += " LIMIT $2"
		args = append(args, limit)
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("spool: reading the audit log: %w", dbErr(err))
	}
	out := []spool.AuditEntry{}
	var v []byte
	if _, err := pgx.ForEachRow(rows, []any{&v}, func() error {
		var e spool.AuditEntry
		if json.Unmarshal(v, &e) == nil { // one damaged entry must not hide the rest
			out = append(out, e)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("spool: reading the audit log: %w", dbErr(err))
	}
	return out, nil
}

// AuditPrune deletes entries older than before and returns how many.
func (s *Spool) AuditPrune(ctx context.Context, before time.Time) (int, error) {
	if err := s.begin(ctx, true); err != nil {
		return 0, fmt.Errorf("spool: pruning the audit log: %w", err)
	}
	defer s.end()
	tag, err := s.pool.Exec(ctx, "DELETE FROM spool_audit WHERE at_ns < $1", before.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("spool: pruning the audit log: %w", dbErr(err))
	}
	return int(tag.RowsAffected()), nil
}

// AccountsWith lists the accounts that have a record key, sorted.
func (s *Spool) AccountsWith(ctx context.Context, key string) ([]string, error) {
	if err := s.begin(ctx, false); err != nil {
		return nil, fmt.Errorf("spool: listing %s records: %w", key, err)
	}
	defer s.end()
	rows, err := s.pool.Query(ctx, "SELECT account FROM spool_accounts WHERE key = $1 ORDER BY account", key)
	if err != nil {
		return nil, fmt.Errorf("spool: listing %s records: %w", key, dbErr(err))
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("spool: listing %s records: %w", key, dbErr(err))
	}
	return out, nil
}

// AccountUpdate reads a per-account record (nil when absent), passes it to
// fn and writes what fn returns, in one transaction under a lock of that
// record, so that updates from several nodes never interleave. fn
// returning (nil, nil) writes nothing; its error is returned as it is.
func (s *Spool) AccountUpdate(ctx context.Context, account, key string, fn func(old []byte) ([]byte, error)) error {
	if err := spool.CheckAccountKey(account, key); err != nil {
		return fmt.Errorf("spool: account update %s: %w", account, err)
	}
	if err := s.begin(ctx, true); err != nil {
		return fmt.Errorf("spool: account update %s: %w", account, err)
	}
	defer s.end()
	h := fnv.New32a()
	h.Write([]byte(key))
	var fnErr error
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// An absent row has nothing to lock with FOR UPDATE.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, $2)", s.limitKey("record", account), int32(h.Sum32())); err != nil {
			return err
		}
		var old []byte
		err := tx.QueryRow(ctx, "SELECT value FROM spool_accounts WHERE account = $1 AND key = $2", account, key).Scan(&old)
		if errors.Is(err, pgx.ErrNoRows) {
			old, err = nil, nil
		} else if err == nil && old == nil {
			old = []byte{}
		}
		if err != nil {
			return err
		}
		next, err := fn(old)
		if err != nil {
			fnErr = err
			return err
		}
		if next == nil {
			return nil
		}
		_, err = tx.Exec(ctx, `INSERT INTO spool_accounts (account, key, value) VALUES ($1, $2, $3)
			ON CONFLICT (account, key) DO UPDATE SET value = excluded.value`, account, key, next)
		return err
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("spool: account update %s: %w", account, dbErr(err))
	}
	return nil
}
