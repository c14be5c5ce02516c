package pgspool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"

	"github.com/spoold/spoold/spool"
)

// The spool keeps spoolctl migrate's contract (spool.Copy).
var _ spool.Migratable = (*Spool)(nil)

// Import stores m as given (ID, state, recipients, history, idempotency
// key, lease) with its body streamed in chunks; nil body stores none, as
// for a delivered message. For spool.Copy into a database no node uses.
func (s *Spool) Import(ctx context.Context, m *spool.Message, body io.Reader) error {
	if m == nil || m.ID == "" || !m.State.Valid() {
		return fmt.Errorf("spool: import: %w: a message with an ID and a valid state is required", spool.ErrInvalid)
	}
	if err := s.begin(ctx, true); err != nil {
		return fmt.Errorf("spool: import %s: %w", m.ID, err)
	}
	defer s.end()
	c := *m
	c.BodyInline, c.Size = false, 0
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var key any
		if c.IdempotencyKey != "" {
			key = c.IdempotencyKey
		}
		meta, err := json.Marshal(&c)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO spool_messages
			(id, state, account, next_attempt_ns, lease_owner, lease_until_ns, created_ns, updated_ns, idempotency_key, body_present, msg)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, false, $10)`,
			c.ID, string(c.State), c.Account, ns(c.NextAttempt), c.LeaseOwner, ns(c.LeaseUntil), ns(c.Created), ns(c.Updated), key, meta); err != nil {
			return err
		}
		if body == nil {
			return nil
		}
		bp := chunkBufs.Get().(*[]byte)
		defer chunkBufs.Put(bp)
		size, chunks, err := writeChunks(ctx, tx, c.ID, (*bp)[:0], body)
		if err != nil {
			return err
		}
		c.Size = size
		if meta, err = json.Marshal(&c); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE spool_messages SET body_present = true, body_chunks = $2, msg = $3 WHERE id = $1`, c.ID, chunks, meta)
		return err
	})
	if err != nil {
		var se interface{ SQLState() string }
		if errors.As(err, &se) && se.SQLState() == "23505" {
			return fmt.Errorf("spool: import %s: %w: the ID or idempotency key is already in the database", c.ID, spool.ErrInvalid)
		}
		return fmt.Errorf("spool: import %s: %w", c.ID, dbErr(err))
	}
	s.signal()
	return nil
}

// AccountRecords lists every per-account record.
func (s *Spool) AccountRecords(ctx context.Context) ([]spool.AccountRecord, error) {
	if err := s.begin(ctx, false); err != nil {
		return nil, fmt.Errorf("spool: listing account records: %w", err)
	}
	defer s.end()
	rows, err := s.pool.Query(ctx, "SELECT account, key, value FROM spool_accounts ORDER BY account, key")
	if err != nil {
		return nil, fmt.Errorf("spool: listing account records: %w", dbErr(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (spool.AccountRecord, error) {
		var a spool.AccountRecord
		err := r.Scan(&a.Account, &a.Key, &a.Value)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("spool: listing account records: %w", dbErr(err))
	}
	return out, nil
}
