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
			return true
		}
		// more reports whether the page is full; a further match means
		// there is a next page.
		visit := func(id string) (stop bool, err error) {
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
		if f.State != "" {
			p := statePrefix(f.State)
			c := tx.Bucket(bktState).Cursor()
			k, _ := c.Seek(append(statePrefix(f.State), cursor...))
			if cursor != "" && k != nil && string(k[len(p):]) == cursor {
				k, _ = c.Next()
			}
			for ; k != nil && hasPrefix(k, p); k, _ = c.Next() {
				if stop, err := visit(string(k[len(p):])); stop || err != nil {
					return err
				}
			}
			return nil
		}
		c := tx.Bucket(bktMessages).Cursor()
		k, _ := c.Seek([]byte(cursor))
		if cursor != "" && k != nil && string(k) == cursor {
			k, _ = c.Next()
		}
		for ; k != nil; k, _ = c.Next() {
			if stop, err := visit(string(k)); stop || err != nil {
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
