package spool

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bktAudit holds the admin audit log: one entry per state-changing admin
// action, keyed by time (unix nanoseconds, big-endian) and a sequence
// number, so keys sort by time and never collide. Created on the first
// write: an older database opens unchanged and reads an empty log.
var bktAudit = []byte("audit")

// AuditEntry is one admin action: who did what to which messages or account,
// and how it ended.
type AuditEntry struct {
	Time   time.Time `json:"time"`
	Via    string    `json:"via"`            // socket, console
	UID    int       `json:"uid"`            // the socket peer's uid; -1 otherwise
	User   string    `json:"user,omitempty"` // login or console user
	Action string    `json:"action"`         // hold, release, requeue, delete, purge, flush, pause, ...
	Target string    `json:"target,omitempty"`
	Detail string    `json:"detail,omitempty"`
	Result string    `json:"result"` // "ok" or the error
	Code   string    `json:"code,omitempty"`
}

// MaxAuditEntries bounds the log whatever the retention: past it the
// oldest entries go first, so a script looping on an action cannot fill the
// disk through the audit log.
const MaxAuditEntries = 100_000

const maxAuditField = 2000

// AuditBoundEvery is how often a backend's AuditAppend enforces
// MaxAuditEntries: counting the log costs a walk or a query, so it is done
// every this many entries only.
const AuditBoundEvery = 1000

func clip(s string) string {
	if len(s) > maxAuditField {
		return s[:maxAuditField] + "..."
	}
	return s
}

// EncodeAuditEntry checks e (it needs a time and an action), clips its free
// text fields and returns the JSON every backend stores, so that all of them
// keep the same entries.
func EncodeAuditEntry(e AuditEntry) ([]byte, error) {
	if e.Action == "" || e.Time.IsZero() {
		return nil, fmt.Errorf("%w: an entry needs a time and an action", ErrInvalid)
	}
	e.Target, e.Detail, e.Result = clip(e.Target), clip(e.Detail), clip(e.Result)
	return json.Marshal(e)
}

// AuditAppend durably records e (committed and fsync'd on return).
func (s *Spool) AuditAppend(ctx context.Context, e AuditEntry) error {
	v, err := EncodeAuditEntry(e)
	if err != nil {
		return fmt.Errorf("spool: audit: %w", err)
	}
	if err := s.begin(ctx, true); err != nil {
		return fmt.Errorf("spool: audit: %w", err)
	}
	defer s.end()
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bktAudit)
		if err != nil {
			return err
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		k := make([]byte, 16)
		binary.BigEndian.PutUint64(k, uint64(e.Time.UnixNano()))
		binary.BigEndian.PutUint64(k[8:], seq)
		if err := b.Put(k, v); err != nil {
			return err
		}
		// Keep the bound: drop the oldest beyond it.
		if seq%AuditBoundEvery != 0 {
			return nil
		}
		for n := b.Stats().KeyN - MaxAuditEntries; n > 0; n-- {
			c := b.Cursor()
			if k, _ := c.First(); k == nil {
				break
			}
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if isNoSpace(err) {
			return fmt.Errorf("spool: audit: %w: %w", ErrNoSpace, err)
		}
		return fmt.Errorf("spool: audit: %w", err)
	}
	return nil
}

// AuditList returns entries at or after since, newest first, at most limit
// (all when limit <= 0).
func (s *Spool) AuditList(ctx context.Context, since time.Time, limit int) ([]AuditEntry, error) {
	if err := s.begin(ctx, false); err != nil {
		return nil, fmt.Errorf("spool: reading the audit log: %w", err)
	}
	defer s.end()
	out := []AuditEntry{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktAudit)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			if len(k) == 16 && !since.IsZero() && int64(binary.BigEndian.Uint64(k)) < since.UnixNano() {
				break
			}
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				continue // one damaged entry must not hide the rest
			}
			out = append(out, e)
			if limit > 0 && len(out) >= limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("spool: reading the audit log: %w", err)
	}
	return out, nil
}

// AuditPrune deletes entries older than before and returns how many.
func (s *Spool) AuditPrune(ctx context.Context, before time.Time) (int, error) {
	if err := s.begin(ctx, true); err != nil {
		return 0, fmt.Errorf("spool: pruning the audit log: %w", err)
	}
	defer s.end()
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktAudit)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, _ := c.First(); len(k) >= 8 && int64(binary.BigEndian.Uint64(k)) < before.UnixNano(); k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("spool: pruning the audit log: %w", err)
	}
	return n, nil
}
