package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Recipient budgets.
//
// Providers cap how many recipients one mailbox may send to in a day
// (Microsoft 10,000, Google 2,000). Delivery counts them per account in a
// rolling window; the spool keeps the counts so that a restart does not
// forget a day's sending and let the provider refuse the rest. Each
// delivery that counts is one entry: account 0x00 time (8 bytes,
// big-endian Unix nanoseconds) id -> recipients (uvarint). The routes
// bucket says which account delivered a message when it was not the
// message's own (a fallback route): id -> account.
//
// Both buckets are created on the first write: a database from before
// budgets opens unchanged (read-only too), and a missing bucket reads empty.
var (
	bktBudget = []byte("budget")
	bktRoutes = []byte("routes")
)

// BudgetEntry is one delivery counted against an account's budget.
type BudgetEntry struct {
	At         time.Time
	ID         string // the message
	Recipients int
}

// BudgetRecord counts n recipients of message id, delivered through account
// at at, and forgets the account's entries from before forgetBefore (out
// of the window), in one durable transaction. own is the message's own
// account: when it differs from account (a fallback delivered it), the
// route is kept for DeliveredVia.
func (s *Spool) BudgetRecord(ctx context.Context, account, id, own string, at time.Time, n int, forgetBefore time.Time) error {
	if account == "" || bytes.IndexByte([]byte(account), 0) >= 0 || id == "" || n < 0 {
		return fmt.Errorf("spool: recording recipients of %q for account %q: %w: empty or invalid name or count", id, account, ErrInvalid)
	}
	if err := s.begin(ctx, true); err != nil {
		return fmt.Errorf("spool: recording recipients of %s: %w", id, err)
	}
	defer s.end()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bktBudget)
		if err != nil {
			return err
		}
		prefix := budgetPrefix(account)
		cutoff := budgetKey(account, forgetBefore, "")
		c := b.Cursor()
		var old [][]byte
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && bytes.Compare(k, cutoff) < 0; k, _ = c.Next() {
			old = append(old, bytes.Clone(k))
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		if err := b.Put(budgetKey(account, at, id), binary.AppendUvarint(nil, uint64(n))); err != nil {
			return err
		}
		if own == "" || own == account {
			return nil
		}
		r, err := tx.CreateBucketIfNotExists(bktRoutes)
		if err != nil {
			return err
		}
		return r.Put([]byte(id), []byte(account))
	})
	if err != nil {
		return fmt.Errorf("spool: recording recipients of %s: %w", id, err)
	}
	return nil
}

// BudgetEntries returns account's entries at or after since, oldest first.
func (s *Spool) BudgetEntries(ctx context.Context, account string, since time.Time) ([]BudgetEntry, error) {
	if err := s.begin(ctx, false); err != nil {
		return nil, fmt.Errorf("spool: reading the recipient budget of %s: %w", account, err)
	}
	defer s.end()
	var out []BudgetEntry
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktBudget)
		if b == nil {
			return nil
		}
		prefix := budgetPrefix(account)
		c := b.Cursor()
		for k, v := c.Seek(budgetKey(account, since, "")); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			rest := k[len(prefix):]
			if len(rest) < 8 {
				continue // not ours: a longer account name sharing the prefix cannot happen (0x00 ends it)
			}
			n, w := binary.Uvarint(v)
			if w <= 0 {
				return fmt.Errorf("%w: recipient budget entry %q unreadable", ErrCorrupt, k)
			}
			out = append(out, BudgetEntry{
				At:         time.Unix(0, int64(binary.BigEndian.Uint64(rest[:8]))).UTC(),
				ID:         string(rest[8:]),
				Recipients: int(n),
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("spool: reading the recipient budget of %s: %w", account, err)
	}
	return out, nil
}

// DeliveredVia returns the account that delivered message id when it was
// not the message's own (a fallback route); "" otherwise.
func (s *Spool) DeliveredVia(ctx context.Context, id string) (string, error) {
	if err := s.begin(ctx, false); err != nil {
		return "", fmt.Errorf("spool: reading the route of %s: %w", id, err)
	}
	defer s.end()
	var via string
	err := s.db.View(func(tx *bolt.Tx) error {
		if r := tx.Bucket(bktRoutes); r != nil {
			via = string(r.Get([]byte(id)))
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("spool: reading the route of %s: %w", id, err)
	}
	return via, nil
}

func budgetPrefix(account string) []byte { return append([]byte(account), 0) }

func budgetKey(account string, at time.Time, id string) []byte {
	k := budgetPrefix(account)
	ns := at.UnixNano()
	if ns < 0 || at.IsZero() {
		ns = 0
	}
	k = binary.BigEndian.AppendUint64(k, uint64(ns))
	return append(k, id...)
}
