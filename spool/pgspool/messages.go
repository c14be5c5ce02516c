package pgspool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spoold/spoold/spool"
)

// chunkBufs pools the body chunk buffers: memory stays constant in the
// body size and the number of finished sessions.
var chunkBufs = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// Enqueue streams body into a new message in one transaction: the message
// row first (so that a duplicate idempotency key waits for, then defers
// to, the transaction that holds it), then the body in chunks, then
// Verify, then COMMIT. It returns once the commit is durable.
func (s *Spool) Enqueue(ctx context.Context, req spool.EnqueueRequest, body io.Reader) (string, error) {
	if err := spool.ValidateEnqueue(req); err != nil {
		return "", err
	}
	if body == nil {
		return "", fmt.Errorf("spool: enqueue: %w: nil body", spool.ErrInvalid)
	}
	if err := s.begin(ctx, true); err != nil {
		return "", fmt.Errorf("spool: enqueue: %w", err)
	}
	defer s.end()
	if req.IdempotencyKey != "" {
		if id, found, err := s.lookupKey(ctx, req.IdempotencyKey); err != nil {
			return "", fmt.Errorf("spool: enqueue: %w", err)
		} else if found {
			return id, nil
		}
	}
	now := s.opts.Clock()
	id, err := s.newID(now)
	if err != nil {
		return "", err
	}
	m := s.mc.NewMessage(req, id, 0, now)
	// Read the first chunk before the transaction: a body that fits in it
	// (most mail) then holds a database connection only for the commit,
	// not for the time a slow client takes to send it.
	bp := chunkBufs.Get().(*[]byte)
	defer chunkBufs.Put(bp)
	buf := *bp
	n, rerr := io.ReadFull(body, buf)
	first, complete := buf[:n], false
	switch {
	case rerr == nil:
	case errors.Is(rerr, io.EOF), errors.Is(rerr, io.ErrUnexpectedEOF):
		complete = true
	default:
		return "", fmt.Errorf("spool: enqueue: reading body: %w", rerr)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return "", fmt.Errorf("spool: enqueue: %w", dbErr(err))
	}
	defer tx.Rollback(context.Background())
	var key any
	if req.IdempotencyKey != "" {
		key = req.IdempotencyKey
	}
	meta, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("spool: enqueue: encoding message %s: %w", id, err)
	}
	tag, err := tx.Exec(ctx, `INSERT INTO spool_messages
		(id, state, account, next_attempt_ns, created_ns, updated_ns, idempotency_key, body_present, msg)
		VALUES ($1, $2, $3, $4, $5, $5, $6, false, $7)
		ON CONFLICT (idempotency_key) DO NOTHING`,
		id, string(m.State), m.Account, ns(m.NextAttempt), ns(now), key, meta)
	if err != nil {
		return "", fmt.Errorf("spool: enqueue: %w", dbErr(err))
	}
	if tag.RowsAffected() == 0 {
		// Another enqueue with this key committed while we started.
		tx.Rollback(ctx)
		existing, found, err := s.lookupKey(ctx, req.IdempotencyKey)
		if err != nil {
			return "", fmt.Errorf("spool: enqueue: %w", err)
		}
		if !found {
			return "", fmt.Errorf("spool: enqueue: %w: idempotency key taken and released again; try again", spool.ErrUnavailable)
		}
		return existing, nil
	}
	if complete {
		body = nil
	}
	size, chunks, err := writeChunks(ctx, tx, id, first, body)
	if err != nil {
		return "", err
	}
	if req.Verify != nil {
		if err := req.Verify(); err != nil {
			return "", fmt.Errorf("spool: enqueue: %w", err)
		}
	}
	m.Size = size
	if meta, err = json.Marshal(m); err != nil {
		return "", fmt.Errorf("spool: enqueue: encoding message %s: %w", id, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE spool_messages SET body_present = true, body_chunks = $2, msg = $3 WHERE id = $1`,
		id, chunks, meta); err != nil {
		return "", fmt.Errorf("spool: enqueue: %w", dbErr(err))
	}
	if spool.IsDue(m.State) {
		if err := s.notifyDue(ctx, tx); err != nil {
			return "", fmt.Errorf("spool: enqueue: %w", dbErr(err))
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return "", fmt.Errorf("spool: enqueue: committing: %w", dbErr(err))
	}
	if s.opts.Enqueued != nil {
		s.opts.Enqueued(req.Source.Kind)
	}
	s.signal()
	return id, nil
}

// writeChunks stores first, then streams rest (nil: first was all of
// it) into chunk rows of at most chunkSize bytes, reusing first's buffer.
func writeChunks(ctx context.Context, tx pgx.Tx, id string, first []byte, rest io.Reader) (size int64, chunks int, err error) {
	buf := first[:cap(first)]
	n := len(first)
	for {
		if n > 0 {
			if _, err := tx.Exec(ctx, "INSERT INTO spool_body_chunks (id, seq, data) VALUES ($1, $2, $3)", id, chunks, buf[:n]); err != nil {
				return 0, 0, fmt.Errorf("spool: enqueue: storing the body: %w", dbErr(err))
			}
			chunks++
			size += int64(n)
		}
		if rest == nil {
			return size, chunks, nil
		}
		var rerr error
		n, rerr = io.ReadFull(rest, buf)
		switch {
		case rerr == nil:
		case errors.Is(rerr, io.EOF), errors.Is(rerr, io.ErrUnexpectedEOF):
			rest = nil
		default:
			return 0, 0, fmt.Errorf("spool: enqueue: reading body: %w", rerr)
		}
	}
}

// LookupKey returns the message ID committed with an idempotency key.
func (s *Spool) LookupKey(ctx context.Context, key string) (string, bool, error) {
	if err := s.begin(ctx, false); err != nil {
		return "", false, fmt.Errorf("spool: lookup key: %w", err)
	}
	defer s.end()
	id, found, err := s.lookupKey(ctx, key)
	if err != nil {
		return "", false, fmt.Errorf("spool: lookup key: %w", err)
	}
	return id, found, nil
}

func (s *Spool) lookupKey(ctx context.Context, key string) (string, bool, error) {
	if key == "" {
		return "", false, nil
	}
	var id string
	err := s.pool.QueryRow(ctx, "SELECT id FROM spool_messages WHERE idempotency_key = $1", key).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, dbErr(err)
	}
	return id, true, nil
}

// OpenBody opens a message's body for reading, one chunk in memory at a time.
func (s *Spool) OpenBody(id string) (io.ReadCloser, error) {
	ctx := context.Background()
	if err := s.begin(ctx, false); err != nil {
		return nil, fmt.Errorf("spool: open body %s: %w", id, err)
	}
	defer s.end()
	var state string
	var present bool
	var chunks int
	err := s.pool.QueryRow(ctx, "SELECT state, body_present, body_chunks FROM spool_messages WHERE id = $1", id).Scan(&state, &present, &chunks)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("spool: open body %s: %w", id, spool.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: open body %s: %w", id, dbErr(err))
	}
	if !present {
		if spool.State(state) == spool.StateDelivered {
			return nil, fmt.Errorf("spool: open body %s: %w", id, spool.ErrNotFound)
		}
		return nil, fmt.Errorf("spool: open body %s: %w", id, spool.ErrBodyMissing)
	}
	return &bodyReader{s: s, id: id, chunks: chunks}, nil
}

// bodyReader reads a body chunk by chunk.
type bodyReader struct {
	s      *Spool
	id     string
	chunks int
	next   int
	cur    []byte
	closed bool
}

func (r *bodyReader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, fmt.Errorf("spool: reading body %s: %w", r.id, spool.ErrClosed)
	}
	for len(r.cur) == 0 {
		if r.next >= r.chunks {
			return 0, io.EOF
		}
		if err := r.fetch(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

func (r *bodyReader) fetch() error {
	if err := r.s.begin(context.Background(), false); err != nil {
		return fmt.Errorf("spool: reading body %s: %w", r.id, err)
	}
	defer r.s.end()
	var data []byte
	err := r.s.pool.QueryRow(context.Background(), "SELECT data FROM spool_body_chunks WHERE id = $1 AND seq = $2", r.id, r.next).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("spool: reading body %s: chunk %d is gone (the message was delivered or deleted meanwhile): %w", r.id, r.next, spool.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("spool: reading body %s: %w", r.id, dbErr(err))
	}
	r.next++
	r.cur = data
	return nil
}

func (r *bodyReader) Close() error {
	r.closed = true
	r.cur = nil
	return nil
}

// loadForUpdate reads and row-locks one message in tx.
func loadForUpdate(ctx context.Context, tx pgx.Tx, id string) (*spool.Message, bool, error) {
	var meta []byte
	var present bool
	err := tx.QueryRow(ctx, "SELECT msg, body_present FROM spool_messages WHERE id = $1 FOR UPDATE", id).Scan(&meta, &present)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, spool.ErrNotFound
	}
	if err != nil {
		return nil, false, dbErr(err)
	}
	m, err := decode(meta)
	return m, present, err
}

func decode(meta []byte) (*spool.Message, error) {
	var m spool.Message
	if err := json.Unmarshal(meta, &m); err != nil {
		return nil, fmt.Errorf("%w: decoding a message record: %v", spool.ErrCorrupt, err)
	}
	return &m, nil
}

// store writes m back: its columns and record in one statement, and for a
// delivered message the body's removal.
func store(ctx context.Context, tx pgx.Tx, m *spool.Message) error {
	meta, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding message %s: %w", m.ID, err)
	}
	q := `UPDATE spool_messages SET state = $2, account = $3, next_attempt_ns = $4, lease_owner = $5,
		lease_until_ns = $6, updated_ns = $7, msg = $8`
	if m.State == spool.StateDelivered {
		q += ", body_present = false, body_chunks = 0"
	}
	if _, err := tx.Exec(ctx, q+" WHERE id = $1", m.ID, string(m.State), m.Account, ns(m.NextAttempt), m.LeaseOwner,
		ns(m.LeaseUntil), ns(m.Updated), meta); err != nil {
		return dbErr(err)
	}
	if m.State == spool.StateDelivered {
		if _, err := tx.Exec(ctx, "DELETE FROM spool_body_chunks WHERE id = $1", m.ID); err != nil {
			return dbErr(err)
		}
	}
	return nil
}

func (s *Spool) notifyDue(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", s.channel, s.token)
	return dbErr(err)
}

// mutate loads id under its row lock, lets fn change it and writes it
// back in the same transaction: the state check and its write are atomic
// across nodes.
func (s *Spool) mutate(ctx context.Context, op, id string, fn func(m *spool.Message, bodyPresent bool) error) (*spool.Message, error) {
	if err := s.begin(ctx, true); err != nil {
		return nil, fmt.Errorf("spool: %s %s: %w", op, id, err)
	}
	defer s.end()
	var out *spool.Message
	due := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		m, present, err := loadForUpdate(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := fn(m, present); err != nil {
			return err
		}
		if err := store(ctx, tx, m); err != nil {
			return err
		}
		out = m
		due = spool.IsDue(m.State) && !m.NextAttempt.After(s.opts.Clock())
		if due {
			return s.notifyDue(ctx, tx)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("spool: %s %s: %w", op, id, dbErr(err))
	}
	if due {
		s.signal()
	}
	return out, nil
}

// RenewLease extends an active message's lease.
func (s *Spool) RenewLease(ctx context.Context, id, owner string, until time.Time) error {
	_, err := s.mutate(ctx, "renew lease", id, func(m *spool.Message, _ bool) error { return s.mc.RenewLease(m, owner, until) })
	return err
}

// StartAttempt counts an attempt and commits the next attempt time to use
// if the worker crashes before it ends.
func (s *Spool) StartAttempt(ctx context.Context, id, owner string, now, ifCrash time.Time) error {
	_, err := s.mutate(ctx, "start attempt", id, func(m *spool.Message, _ bool) error {
		return s.mc.StartAttempt(m, owner, now, ifCrash)
	})
	return err
}

// Delivered completes an attempt (see spool.Spool.Delivered); the body
// goes in the same commit.
func (s *Spool) Delivered(ctx context.Context, id, owner string, r spool.Result) error {
	m, err := s.mutate(ctx, "delivered", id, func(m *spool.Message, _ bool) error { return s.mc.Delivered(m, owner, r) })
	if err != nil {
		return err
	}
	if m.State == spool.StateDelivered {
		s.log.Info("delivered", "msg_id", id, "account", m.Account)
	} else {
		s.log.Warn("dead-lettered", "msg_id", id, "account", m.Account, "reason", m.Reason)
	}
	return nil
}

// Defer completes an attempt with a transient failure.
func (s *Spool) Defer(ctx context.Context, id, owner string, next time.Time, r spool.Result) error {
	_, err := s.mutate(ctx, "defer", id, func(m *spool.Message, _ bool) error { return s.mc.Defer(m, owner, next, r) })
	return err
}

// Dead completes an attempt with a permanent failure.
func (s *Spool) Dead(ctx context.Context, id, owner string, r spool.Result) error {
	m, err := s.mutate(ctx, "dead", id, func(m *spool.Message, _ bool) error { return s.mc.Dead(m, owner, r) })
	if err == nil {
		s.log.Warn("dead-lettered", "msg_id", id, "account", m.Account, "reason", m.Reason)
	}
	return err
}

// Postpone returns an active message to deferred without using an attempt.
func (s *Spool) Postpone(ctx context.Context, id, owner string, next time.Time, reason string) error {
	_, err := s.mutate(ctx, "postpone", id, func(m *spool.Message, _ bool) error { return s.mc.Postpone(m, owner, next, reason) })
	return err
}

// Hold moves a queued, deferred or dead message to held.
func (s *Spool) Hold(ctx context.Context, id, reason string) error {
	_, err := s.mutate(ctx, "hold", id, func(m *spool.Message, _ bool) error { return s.mc.Hold(m, reason) })
	return err
}

// Release moves a held message to queued, due now.
func (s *Spool) Release(ctx context.Context, id string) error {
	_, err := s.mutate(ctx, "release", id, func(m *spool.Message, present bool) error { return s.mc.Release(m, present) })
	return err
}

// Requeue moves a dead or held message to queued with attempts reset.
func (s *Spool) Requeue(ctx context.Context, id string) error {
	_, err := s.mutate(ctx, "requeue", id, func(m *spool.Message, present bool) error { return s.mc.Requeue(m, present) })
	return err
}

// Flush makes a queued or deferred message due now.
func (s *Spool) Flush(ctx context.Context, id string) error {
	_, err := s.mutate(ctx, "flush", id, func(m *spool.Message, _ bool) error { _, err := s.mc.Flush(m); return err })
	return err
}
