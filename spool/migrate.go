package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Copying a spool between backends (spoolctl migrate): the embedded spool
// of one node into a PostgreSQL spool several nodes share, and back. Both
// stores must be closed to everything else while it runs: the source
// stopped (its daemons not running), the target empty.

// AccountRecord is one per-account record (auth tokens, sealed as they
// are; health; Graph drafts).
type AccountRecord struct {
	Account, Key string
	Value        []byte
}

// Migratable is a Backend that can be copied from and into: Import
// stores a message exactly as given (ID, state, recipients, history,
// idempotency key) with its body, and AccountRecords lists every
// per-account record.
type Migratable interface {
	Backend
	Import(ctx context.Context, m *Message, body io.Reader) error
	AccountRecords(ctx context.Context) ([]AccountRecord, error)
}

// CopyStats counts what Copy copied.
type CopyStats struct {
	Messages, Bodies, Records, Alerts, Audit, Budget int
}

// Copy copies every message (with state, history, body and idempotency
// key), account record, alert record, audit entry and budget entry of
// from into to, which must hold no message. A message that was active
// (its node stopped mid-send) arrives queued, as a rescue would leave it:
// delivery is at least once. progress, if set, is called after each
// message.
func Copy(ctx context.Context, from, to Migratable, progress func(done int)) (CopyStats, error) {
	var cs CopyStats
	st, err := to.Stats(ctx)
	if err != nil {
		return cs, fmt.Errorf("reading the target: %w", err)
	}
	for state, n := range st {
		if n > 0 {
			return cs, fmt.Errorf("the target already holds messages (%d %s): copy into an empty spool only", n, state)
		}
	}
	now := time.Now()
	accounts := map[string]bool{}
	cursor := ""
	for {
		page, err := from.List(ctx, Filter{}, cursor, 200)
		if err != nil {
			return cs, fmt.Errorf("listing the source's messages: %w", err)
		}
		for _, lm := range page.Messages {
			m, err := from.Get(ctx, lm.ID)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return cs, fmt.Errorf("reading message %s: %w", lm.ID, err)
			}
			accounts[m.Account] = true
			if m.State == StateActive {
				m.State, m.LeaseOwner, m.LeaseUntil = StateQueued, "", time.Time{}
				if m.NextAttempt.Before(now) {
					m.NextAttempt = now
				}
			}
			var body io.ReadCloser
			if m.State != StateDelivered {
				body, err = from.OpenBody(m.ID)
				if errors.Is(err, ErrNotFound) || errors.Is(err, ErrWrongState) {
					body, err = nil, nil
				}
				if err != nil {
					return cs, fmt.Errorf("opening the body of message %s: %w", m.ID, err)
				}
			}
			var r io.Reader
			if body != nil {
				r = body
				cs.Bodies++
			}
			err = to.Import(ctx, m, r)
			if body != nil {
				body.Close()
			}
			if err != nil {
				return cs, fmt.Errorf("copying message %s: %w", m.ID, err)
			}
			cs.Messages++
			if progress != nil {
				progress(cs.Messages)
			}
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	recs, err := from.AccountRecords(ctx)
	if err != nil {
		return cs, fmt.Errorf("reading the account records: %w", err)
	}
	for _, r := range recs {
		accounts[r.Account] = true
		// Sealed token records are copied as they are: the same key opens them.
		if err := to.AccountPut(ctx, r.Account, r.Key, r.Value); err != nil {
			return cs, fmt.Errorf("copying the %s record of account %s: %w", r.Key, r.Account, err)
		}
		cs.Records++
	}
	alerts, err := from.AlertState(ctx)
	if err != nil {
		return cs, fmt.Errorf("reading the alert state: %w", err)
	}
	if len(alerts) > 0 {
		if err := to.AlertWrite(ctx, alerts, nil); err != nil {
			return cs, fmt.Errorf("copying the alert state: %w", err)
		}
		cs.Alerts = len(alerts)
	}
	audit, err := from.AuditList(ctx, time.Time{}, MaxAuditEntries)
	if err != nil {
		return cs, fmt.Errorf("reading the audit log: %w", err)
	}
	for i := len(audit) - 1; i >= 0; i-- { // oldest first, as they happened
		if err := to.AuditAppend(ctx, audit[i]); err != nil {
			return cs, fmt.Errorf("copying the audit log: %w", err)
		}
		cs.Audit++
	}
	// Budget windows of the accounts the source knows: 24 hours at most.
	since := now.Add(-24 * time.Hour)
	for a := range accounts {
		es, err := from.BudgetEntries(ctx, a, since)
		if err != nil {
			return cs, fmt.Errorf("reading the recipient budget of %s: %w", a, err)
		}
		for _, e := range es {
			if err := to.BudgetRecord(ctx, a, e.ID, a, e.At, e.Recipients, since); err != nil {
				return cs, fmt.Errorf("copying the recipient budget of %s: %w", a, err)
			}
			cs.Budget++
		}
	}
	return cs, nil
}

// Import stores m as given with its body (nil: none, as for a delivered
// message), for Copy into a spool no daemon runs on.
func (s *Spool) Import(ctx context.Context, m *Message, body io.Reader) error {
	if m == nil || m.ID == "" || !m.State.Valid() {
		return fmt.Errorf("spool: import: %w: a message with an ID and a valid state is required", ErrInvalid)
	}
	if err := s.begin(ctx, true); err != nil {
		return fmt.Errorf("spool: import %s: %w", m.ID, err)
	}
	defer s.end()
	c := *m
	c.BodyInline, c.Size = false, 0
	var inline []byte
	if body != nil {
		bp := copyBufs.Get().(*[]byte)
		defer copyBufs.Put(bp)
		buf := *bp
		n, complete, err := fill(body, buf)
		if err != nil {
			return fmt.Errorf("spool: import %s: reading body: %w", m.ID, err)
		}
		c.Size = int64(n)
		if complete && n <= s.inlineMax {
			inline, c.BodyInline = buf[:n], true
			if inline == nil {
				inline = []byte{}
			}
		} else {
			bb := blockBufs.Get().(*[]byte)
			c.Size, err = s.writeBody(m.ID, buf[:n], body, *bb)
			blockBufs.Put(bb)
			if err != nil {
				return err
			}
		}
	}
	var res commitRes
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		res, err = insertMsg(tx, &c, inline)
		return err
	})
	if err == nil && (res.err != nil || res.existing) {
		err = res.err
		if err == nil {
			err = fmt.Errorf("%w: idempotency key already used by message %s", ErrInvalid, res.id)
		}
	}
	if err != nil {
		if body != nil && inline == nil {
			s.removeBody(m.ID)
		}
		return fmt.Errorf("spool: import %s: %w", m.ID, err)
	}
	return nil
}

// AccountRecords lists every per-account record.
func (s *Spool) AccountRecords(ctx context.Context) ([]AccountRecord, error) {
	if err := s.begin(ctx, false); err != nil {
		return nil, fmt.Errorf("spool: listing account records: %w", err)
	}
	defer s.end()
	var out []AccountRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bktAccounts).ForEachBucket(func(name []byte) error {
			return tx.Bucket(bktAccounts).Bucket(name).ForEach(func(k, v []byte) error {
				out = append(out, AccountRecord{Account: string(name), Key: string(k), Value: append([]byte{}, v...)})
				return nil
			})
		})
	})
	if err != nil {
		return nil, fmt.Errorf("spool: listing account records: %w", err)
	}
	return out, nil
}

var _ Migratable = (*Spool)(nil)
