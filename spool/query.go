package spool

import (
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// DefaultListLimit and MaxListLimit bound List pages.
const (
	DefaultListLimit = 100
	MaxListLimit     = 10000
)

// Get returns one message.
func (s *Spool) Get(ctx context.Context, id string) (*Message, error) {
	if err := s.begin(ctx, false); err != nil {
		return nil, fmt.Errorf("spool: get %s: %w", id, err)
	}
	defer s.end()
	var m *Message
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		m, err = getMsg(tx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("spool: get %s: %w", id, err)
	}
	return m, nil
}

// List returns up to limit messages matching f in ID order, starting after
// cursor ("" = from the start). limit <= 0 means DefaultListLimit; it is
// capped at MaxListLimit.
func (s *Spool) List(ctx context.Context, f Filter, cursor string, limit int) (Page, error) {
	return s.list(ctx, f, ListOptions{}, cursor, limit)
}

// ListOptions extends a List for the web console's queue page: a predicate
// on the stored record, newest first, and a bound on the records examined.
type ListOptions struct {
	// Match, if set, keeps only the messages it returns true for. It runs
	// inside a read transaction: it must not call the spool.
	Match func(*Message) bool
	// Newest walks from the newest ID down; the cursor then continues
	// below it.
	Newest bool
	// MaxScan bounds the index entries examined (0 = no bound). When a
	// selective Match reaches it before the page is full, the page ends
	// early with Next set to the last ID examined, so a search over a large
	// queue answers in bounded time and the caller pages on.
	MaxScan int
}

// ListMatching is List with opts: the state index (or the ID order when no
// state is given) is walked from cursor until limit matches are found, and
// never past opts.MaxScan entries.
func (s *Spool) ListMatching(ctx context.Context, f Filter, opts ListOptions, cursor string, limit int) (Page, error) {
	return s.list(ctx, f, opts, cursor, limit)
}

func (s *Spool) list(ctx context.Context, f Filter, opts ListOptions, cursor string, limit int) (Page, error) {
	if f.State != "" && !f.State.Valid() {
		return Page{}, fmt.Errorf("spool: list: %w: unknown state %q", ErrInvalid, f.State)
	}
	if limit <= 0 {
		limit = DefaultListLimit
	}
	if limit > MaxListLimit {
		limit = MaxListLimit
	}
	if err := s.begin(ctx, false); err != nil {
		return Page{}, fmt.Errorf("spool: list: %w", err)
	}
	defer s.end()
	var page Page
	err := s.db.View(func(tx *bolt.Tx) error {
		match := func(m *Message) bool {
			if f.Account != "" && m.Account != f.Account {
				return false
			}
			if !f.CreatedBefore.IsZero() && !m.Created.Before(f.CreatedBefore) {
				return false
			}
			return opts.Match == nil || opts.Match(m)
		}
		scanned, last := 0, ""
		// visit reports stop once the page is full (a further match means
		// there is a next page) or the scan bound is reached.
		visit := func(id string) (stop bool, err error) {
			if opts.MaxScan > 0 && scanned == opts.MaxScan {
				page.Next = last // the next page starts after it
				return true, nil
			}
			scanned, last = scanned+1, id
			m, err := getMsg(tx, id)
			if err != nil {
				return true, fmt.Errorf("%w: index names %s: %w", ErrCorrupt, id, err)
			}
			if m.State == "" || (f.State != "" && m.State != f.State) || !match(m) {
				return false, nil
			}
			if len(page.Messages) == limit {
				page.Next = page.Messages[limit-1].ID
				return true, nil
			}
			page.Messages = append(page.Messages, m)
			return false, nil
		}
		var c *bolt.Cursor
		var p []byte
		if f.State != "" {
			p = statePrefix(f.State)
			c = tx.Bucket(bktState).Cursor()
		} else {
			c = tx.Bucket(bktMessages).Cursor()
		}
		k := seekFrom(c, p, cursor, opts.Newest)
		for ; k != nil && hasPrefix(k, p); k = step(c, opts.Newest) {
			if stop, err := visit(string(k[len(p):])); stop || err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Page{}, fmt.Errorf("spool: list: %w", err)
	}
	return page, nil
}

// seekFrom positions c at the first key under prefix p after cursor, in
// the walk's direction.
func seekFrom(c *bolt.Cursor, p []byte, cursor string, newest bool) []byte {
	if !newest {
		k, _ := c.Seek(append(append([]byte{}, p...), cursor...))
		if cursor != "" && k != nil && hasPrefix(k, p) && string(k[len(p):]) == cursor {
			k, _ = c.Next()
		}
		return k
	}
	if cursor == "" {
		// The last key under p: seek past the prefix, then step back.
		end := append(append([]byte{}, p...), 0xff)
		if k, _ := c.Seek(end); k == nil {
			k, _ = c.Last()
			return k
		}
		k, _ := c.Prev()
		return k
	}
	k, _ := c.Seek(append(append([]byte{}, p...), cursor...))
	if k == nil {
		k, _ = c.Last()
		return k
	}
	// Seek lands on cursor or the first key after it: either way the walk
	// continues with the key before.
	k, _ = c.Prev()
	return k
}

func step(c *bolt.Cursor, newest bool) []byte {
	if newest {
		k, _ := c.Prev()
		return k
	}
	k, _ := c.Next()
	return k
}

// Stats returns the count of messages per state, kept in the database.
func (s *Spool) Stats(ctx context.Context) (map[State]int, error) {
	if err := s.begin(ctx, false); err != nil {
		return nil, fmt.Errorf("spool: stats: %w", err)
	}
	defer s.end()
	out := make(map[State]int, len(States))
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktCounts)
		for _, st := range States {
			if v := b.Get([]byte(st)); len(v) == 8 {
				out[st] = int(binary.BigEndian.Uint64(v))
			} else {
				out[st] = 0
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("spool: stats: %w", err)
	}
	return out, nil
}

func validAccountKey(account, key string) error {
	if account == "" || key == "" {
		return fmt.Errorf("%w: account and key are required", ErrInvalid)
	}
	if len(account) > 256 || len(key) > 256 {
		return fmt.Errorf("%w: account or key longer than 256 bytes", ErrInvalid)
	}
	return nil
}

// AccountGet reads a per-account record (auth tokens, health). ok is false if absent.
func (s *Spool) AccountGet(ctx context.Context, account, key string) (value []byte, ok bool, err error) {
	if err := validAccountKey(account, key); err != nil {
		return nil, false, fmt.Errorf("spool: account get %s: %w", account, err)
	}
	if err := s.begin(ctx, false); err != nil {
		return nil, false, fmt.Errorf("spool: account get %s: %w", account, err)
	}
	defer s.end()
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktAccounts).Bucket([]byte(account))
		if b == nil {
			return nil
		}
		if v := b.Get([]byte(key)); v != nil {
			value, ok = append([]byte{}, v...), true
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("spool: account get %s: %w", account, err)
	}
	return value, ok, nil
}

// AccountPut durably writes a per-account record (committed and fsync'd on return).
func (s *Spool) AccountPut(ctx context.Context, account, key string, value []byte) error {
	if err := validAccountKey(account, key); err != nil {
		return fmt.Errorf("spool: account put %s: %w", account, err)
	}
	if err := s.begin(ctx, true); err != nil {
		return fmt.Errorf("spool: account put %s: %w", account, err)
	}
	defer s.end()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bktAccounts).CreateBucketIfNotExists([]byte(account))
		if err != nil {
			return err
		}
		if value == nil {
			value = []byte{}
		}
		return b.Put([]byte(key), value)
	})
	if err != nil {
		if isNoSpace(err) {
			return fmt.Errorf("spool: account put %s: %w: %w", account, ErrNoSpace, err)
		}
		return fmt.Errorf("spool: account put %s: %w", account, err)
	}
	return nil
}

// AccountDelete removes a per-account record.
func (s *Spool) AccountDelete(ctx context.Context, account, key string) error {
	if err := validAccountKey(account, key); err != nil {
		return fmt.Errorf("spool: account delete %s: %w", account, err)
	}
	if err := s.begin(ctx, true); err != nil {
		return fmt.Errorf("spool: account delete %s: %w", account, err)
	}
	defer s.end()
	err := s.db.Update(func(tx *bolt.Tx) error {
		accts := tx.Bucket(bktAccounts)
		b := accts.Bucket([]byte(account))
		if b == nil {
			return nil
		}
		if err := b.Delete([]byte(key)); err != nil {
			return err
		}
		if k, _ := b.Cursor().First(); k == nil {
			return accts.DeleteBucket([]byte(account))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("spool: account delete %s: %w", account, err)
	}
	return nil
}
